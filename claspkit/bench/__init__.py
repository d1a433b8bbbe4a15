"""Benchmarks, each runnable as ``python -m claspkit.bench.<name>`` (``make bench`` runs them all): ``backbones``
(throughput and memory per backbone), ``search`` (query latency and indexing speed), ``pq_scaling`` (the compressed
index's scan as it grows), ``ray`` (the Ray engine against the local one), ``retrieval`` (CLASP heads against
transcribe-then-search on one gallery).

Until the next release the old names (``python -m claspkit.bench_search`` ...) are aliases made by ``moved``.
"""
import importlib
import sys
import warnings

__all__ = ["moved"]


def moved(old: str, new: str, name: str):
    """For the alias module ``old`` of benchmark ``new``: run as ``python -m old`` (``name == "__main__"``) it says
    where the benchmark moved and runs ``new``'s main; imported, its names are ``new``'s, with a warning."""
    if name == "__main__":
        print(f"note: `python -m {old}` is now `python -m {new}`; the old name goes in the next release",
              file=sys.stderr)
        sys.exit(importlib.import_module(new).main())

    def __getattr__(attr):
        warnings.warn(f"{old} moved to {new}; import it from there (the old name goes in the next release)",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), attr)

    return __getattr__
