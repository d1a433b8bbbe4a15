"""claspkit: a reproducible, Jupyter-first companion to CLASP (Abootorabi & Asgari, ECIR 2025).

Modules are imported on demand so ``import claspkit`` stays cheap; see the README for the map.
"""
import warnings

# Libraries we call import tqdm.auto, which warns in Jupyter without ipywidgets; claspkit's own bars
# are plain text, so the warning (with a machine path in it) would only clutter stored outputs.
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"
