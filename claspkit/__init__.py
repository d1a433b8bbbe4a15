"""claspkit: a reproducible, Jupyter-first companion to CLASP (Abootorabi & Asgari, ECIR 2025).

Modules are imported on demand so ``import claspkit`` stays cheap; see the README for the map.
"""
__version__ = "0.1.0"
