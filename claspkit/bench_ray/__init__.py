"""Moved to ``claspkit.bench.ray`` (``python -m claspkit.bench.ray``); this alias goes in the next
release."""
from claspkit.bench import moved

__all__: list = []      # the names are claspkit.bench.ray's, handed out by __getattr__
__getattr__ = moved("claspkit.bench_ray", "claspkit.bench.ray")
