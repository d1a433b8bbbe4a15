"""Adapting a trained head to untranscribed real recordings: distillation from the cascade (``claspkit adapt``).
"""
from claspkit.lazy import lazy_api

_API = {
    "adapt": "run",
    "embed_files": "run",
    "Confidence": "pseudo",
    "transcribe_scored": "pseudo",
    "cut_segments": "segments",
}
__all__ = sorted(_API)
__getattr__, __dir__ = lazy_api(__name__, _API)
