"""Moved to ``claspkit.bench.retrieval`` (``python -m claspkit.bench.retrieval``); this alias goes in the next
release."""
from claspkit.bench import moved

__all__: list = []      # the names are claspkit.bench.retrieval's, handed out by __getattr__
__getattr__ = moved("claspkit.bench_retrieval", "claspkit.bench.retrieval")
