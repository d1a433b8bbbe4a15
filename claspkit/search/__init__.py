"""Search: cut recordings into speech segments, embed them into an index on disk, and query it with text.

``segment`` is not re-exported: it is also the name of its submodule (``claspkit.search.segment.segment``).
"""
from claspkit.lazy import lazy_api

_API = {
    "build_index": "query",
    "search": "query",
    "open_index": "query",
    "BuildSummary": "query",
    "Index": "index",
    "Hit": "index",
    "IndexWriter": "index",
    "load_index": "index",
    "SegmentParams": "segment",
    "embed_folder": "embed",
    "read_vectors": "embed",
    "make_lectures": "demo",
    "RankedHit": "rank",
    "RANKS": "rank",
    "open_transcripts": "transcripts",
}
__all__ = sorted(_API)
__getattr__, __dir__ = lazy_api(__name__, _API)
