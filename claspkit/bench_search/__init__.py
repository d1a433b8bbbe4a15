"""Moved to ``claspkit.bench.search`` (``python -m claspkit.bench.search``); this alias goes in the next
release."""
from claspkit.bench import moved

__all__: list = []      # the names are claspkit.bench.search's, handed out by __getattr__
__getattr__ = moved("claspkit.bench_search", "claspkit.bench.search")
