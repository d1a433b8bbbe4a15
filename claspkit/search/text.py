"""The text encoder an index was built against: loaded once per process and checked against the index.

Its own module because both searching (``query``) and transcript storage (``transcripts``) embed text
with it, and ``query`` reaches ``transcripts`` through the ranking: one place for the cache keeps
the two from importing each other.
"""
from __future__ import annotations

from claspkit.errors import ClaspkitError
from claspkit.model import clasp as _model

__all__ = ["text_encoder", "clear_text_encoders"]

_TEXT_ENCODERS: dict = {}


def clear_text_encoders() -> None:
    _TEXT_ENCODERS.clear()


def text_encoder(index):
    """The index's text backbone, checked to be the same (cache_id) as when the index was built."""
    model = index.identity["model"]
    name = model["backbones"]["text"]
    if name not in _TEXT_ENCODERS:
        _TEXT_ENCODERS[name] = _model.create_encoder("text", name)
    enc = _TEXT_ENCODERS[name]
    want = model["cache_ids"]["text"]
    if str(enc.cache_id) != want:
        raise ClaspkitError(f"text backbone {name} is now {enc.cache_id!r} but the index was built against "
                            f"{want!r} (its weights or preprocessing changed); rebuild the index with "
                            "`claspkit index ... --rebuild`")
    return enc
