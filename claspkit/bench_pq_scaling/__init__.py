"""Moved to ``claspkit.bench.pq_scaling`` (``python -m claspkit.bench.pq_scaling``); this alias goes in the next
release."""
from claspkit.bench import moved

__all__: list = []      # the names are claspkit.bench.pq_scaling's, handed out by __getattr__
__getattr__ = moved("claspkit.bench_pq_scaling", "claspkit.bench.pq_scaling")
