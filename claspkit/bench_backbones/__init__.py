"""Moved to ``claspkit.bench.backbones`` (``python -m claspkit.bench.backbones``); this alias goes in the next
release."""
from claspkit.bench import moved

__all__: list = []      # the names are claspkit.bench.backbones's, handed out by __getattr__
__getattr__ = moved("claspkit.bench_backbones", "claspkit.bench.backbones")
