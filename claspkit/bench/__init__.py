"""Benchmarks, each runnable as ``python -m claspkit.bench.<name>`` (``make bench`` runs them all): ``backbones``
(throughput and memory per backbone), ``search`` (query latency and indexing speed), ``pq_scaling`` (the compressed
index's scan as it grows), ``ray`` (the Ray engine against the local one), ``retrieval`` (CLASP heads against
transcribe-then-search on one gallery), ``channels`` (the simulated recording channels' CPU cost), ``voices`` (each
TTS voice's synthesis speed and Whisper WER); ``machine`` records what a figure was measured on.

Until the next release the old names (``python -m claspkit.bench_search`` ...) are alias packages
(``moved``, ``run_moved``): packages, not modules, so that git sees each old file renamed into ``bench/``.
"""
import importlib
import sys
import warnings

__all__ = ["moved", "run_moved"]


def _note(old: str, new: str) -> str:
    return f"{old} moved to {new}; the old name goes in the next release"


def moved(old: str, new: str):
    """The ``__getattr__`` of the alias package ``old``: ``new``'s names, with a DeprecationWarning."""
    def __getattr__(attr):
        warnings.warn(_note(old, new), DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), attr)

    return __getattr__


def run_moved(old: str, new: str) -> None:
    """``python -m old`` (the alias package's ``__main__``): say where the benchmark moved, then run ``new``'s main."""
    print(f"note: `python -m {old}`: {_note(old, new)} (`python -m {new}`)", file=sys.stderr)
    sys.exit(importlib.import_module(new).main())
