"""Rank an index's segments for a query by CLASP, by their transcripts, or by both; narrow each hit to its speech.

* ``clasp``: cosine between the query's text embedding and the CLASP speech vectors (``Index.search_vectors``).
* ``transcript``: cosine between the query's and the stored transcripts' embeddings by the same text encoder
  (``claspkit.search.transcripts``): the transcribe-then-search cascade, on the index's own segments.
* ``hybrid``: weighted reciprocal-rank fusion, ``(RRF_K + 1) * (w / (RRF_K + rank_clasp) + (1 - w) / (RRF_K +
  rank_transcript))`` (so first in both scores 1.0). Ranks, not cosines, are fused because the two cosines live on
  different scales (speech-to-text against text-to-text). ``RRF_K`` = 60 is the constant of Cormack et al. (2009).
  CLASP's rank is taken among its top ``HYBRID_CANDIDATES`` rows (those beyond count as rank ``HYBRID_CANDIDATES +
  1``), so an ANN index is never scanned in full; the transcripts are scored exactly. The weight ``w`` is read from
  ``hybrid_weight.json`` next to this module, written by ``claspkit.evaluation.transcript_search.choose_hybrid_weight``
  on validation recordings only (the file names the data that chose it).

Boundaries (``refine``): a transcribed hit spans its words, from the first word's start to the last word's end,
padded by ``WORD_PAD_S`` (the VAD's own pad) and kept inside the segment. An untranscribed hit is cut again by the
VAD at a finer setting (``FINE_VAD``: no merging, 0.1 s pauses, 0.05 s pad) on its own audio, and spans the speech
found there; this costs a VAD pass over the first and last ``EDGE_S`` of each shown hit at query time (the file
read by seeking where libsndfile can) and nothing at indexing time.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from claspkit.errors import ClaspkitError, ParamError, choices_hint
from claspkit.search.index import Hit, normalize_rows, top_k

__all__ = ["RANKS", "RRF_K", "HYBRID_CANDIDATES", "WORD_PAD_S", "FINE_VAD", "EDGE_S", "RankedHit", "hybrid_weight",
           "default_rank", "check_rank", "fuse_ranks", "rank_rows", "word_bounds", "vad_bounds", "ranked_hits",
           "transcripts_of", "search_ranked", "clear_cache"]

RANKS = ("clasp", "transcript", "hybrid")
RRF_K = 60
HYBRID_CANDIDATES = 1000
WORD_PAD_S = 0.1
FINE_VAD = {"pad_s": 0.05, "min_pause_s": 0.1, "min_s": 0.0, "merge_gap_s": 0.0}
EDGE_S = 2.0                    # the finer cut reads this much at each end of a hit
WEIGHT_FILE = "hybrid_weight.json"


@dataclass(frozen=True)
class RankedHit(Hit):
    """A hit with how it was ranked, its segment's own edges, its per-system cosines and its transcript."""

    rank_mode: str = "clasp"
    segment_start_s: float = 0.0
    segment_end_s: float = 0.0
    scores: dict | None = None          # {"clasp": cosine, "transcript": cosine or None}
    transcript: dict | None = None      # {"text", "words": [[word, start_s, end_s], ...]}, or None

    def as_dict(self) -> dict:
        d = {**super().as_dict(), "rank_mode": self.rank_mode,
             "segment": {"start_s": self.segment_start_s, "end_s": self.segment_end_s}, "scores": self.scores}
        if self.transcript is not None:
            d["transcript"] = self.transcript
        return d


@functools.lru_cache(maxsize=1)
def hybrid_weight() -> dict:
    """The committed choice of the CLASP weight in ``hybrid`` (``{"clasp_weight", "rrf_k", "chosen_by", ...}``)."""
    text = resources.files("claspkit.search").joinpath(WEIGHT_FILE).read_text()
    info = json.loads(text)
    if not 0.0 <= float(info["clasp_weight"]) <= 1.0 or int(info["rrf_k"]) != RRF_K:
        raise ClaspkitError(f"claspkit/search/{WEIGHT_FILE} holds weight {info['clasp_weight']!r} and rrf_k "
                            f"{info['rrf_k']!r}; regenerate it with "
                            "claspkit.evaluation.transcript_search.choose_hybrid_weight")
    return info


def default_rank(covered: np.ndarray | None) -> str:
    """hybrid when every segment has a transcript, else clasp."""
    return "hybrid" if covered is not None and len(covered) and bool(np.all(covered >= 0)) else "clasp"


def check_rank(rank: str, covered: np.ndarray | None, index_root) -> None:
    """A clear error for a rank the index cannot serve."""
    from claspkit.paths import display_path

    if rank not in RANKS:
        raise ParamError(f"rank must be one of {', '.join(RANKS)}, got {rank!r}{choices_hint(rank, RANKS)}")
    if rank == "clasp":
        return
    fix = (f"re-index with `claspkit index AUDIO_DIR --model CHECKPOINT --out {display_path(index_root)} --transcribe` "
           "(only the missing transcripts are computed), or pass --rank clasp")
    if covered is None:
        raise ClaspkitError(f"--rank {rank} needs transcripts, and the index {display_path(index_root)} has none; "
                            + fix)
    missing = int(np.sum(covered < 0))
    if missing:
        raise ClaspkitError(f"--rank {rank} needs a transcript for every segment, and {missing} of {len(covered)} "
                            f"segments of {display_path(index_root)} have none (files added or changed, or the index "
                            f"rebuilt with another text encoder, since the last --transcribe run); {fix}")


def _ranks_of(order: np.ndarray, n: int, missing: int) -> np.ndarray:
    """Rank (1-based) of every row given the rows in ranked order; rows not in ``order`` get ``missing``."""
    r = np.full(n, missing, np.int64)
    r[order] = np.arange(1, len(order) + 1)
    return r


def fuse_ranks(rank_a: np.ndarray, rank_b: np.ndarray, weight_a: float, k: int = RRF_K) -> np.ndarray:
    """Weighted reciprocal-rank fusion of two rankings of the same rows (1-based ranks), scaled by ``k + 1`` so that
    first in both is 1.0 (raw RRF scores differ in the third decimal, which a printed score would hide)."""
    return (k + 1) * (weight_a / (k + rank_a) + (1.0 - weight_a) / (k + rank_b))


def _transcript_scores(index, store, row_map: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Cosine of every index row's transcript with the query (rows without one: -inf)."""
    t = np.asarray(store.vectors @ q[0], np.float32) if len(store.vectors) else np.zeros(0, np.float32)
    out = np.full(len(index), -np.inf, np.float32)
    has = row_map >= 0
    out[has] = t[row_map[has]]
    return out


def rank_rows(index, q: np.ndarray, k: int, rank: str, store=None, row_map=None,
              weight: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k index rows and their scores for one query vector ``q`` (1, dim) by ``rank`` (see the module doc)."""
    n = len(index)
    k = min(int(k), n)
    if rank == "clasp":
        rows, scores = index.search_vectors(q, k)
        return rows[0], scores[0]
    everything = np.arange(n)[None, :]
    tscores = _transcript_scores(index, store, row_map, q)
    if rank == "transcript":
        rows, scores = top_k(tscores[None, :], everything, k)
        return rows[0], scores[0]
    w = hybrid_weight()["clasp_weight"] if weight is None else float(weight)
    c = min(n, max(k, HYBRID_CANDIDATES))
    rank_c = _ranks_of(index.search_vectors(q, c)[0][0], n, c + 1)
    rank_t = _ranks_of(top_k(tscores[None, :], everything, n)[0][0], n, n + 1)
    rows, scores = top_k(fuse_ranks(rank_c, rank_t, w)[None, :], everything, k)
    return rows[0], scores[0]


def word_bounds(words: list, start_s: float, end_s: float, pad_s: float = WORD_PAD_S) -> tuple[float, float]:
    """The span of a segment's words, padded, inside the segment; the segment's own edges when it has no words."""
    if not words:
        return start_s, end_s
    lo = max(start_s, float(words[0][1]) - pad_s)
    hi = min(end_s, float(words[-1][2]) + pad_s)
    return (round(lo, 3), round(hi, 3)) if hi > lo else (start_s, end_s)


def _read_span(path: Path, start_s: float, end_s: float) -> tuple[np.ndarray, float]:
    """16 kHz mono audio of ``path`` from ``start_s`` to ``end_s`` (seeking where libsndfile can); its true start."""
    import soundfile as sf

    from claspkit.constants import SAMPLE_RATE
    from claspkit.data.audio import load_audio, resample

    try:
        info = sf.info(str(path))
        a, b = int(start_s * info.samplerate), int(np.ceil(end_s * info.samplerate))
        x, _ = sf.read(str(path), start=a, stop=b, dtype="float32", always_2d=True)
        mono = np.ascontiguousarray(x.mean(axis=1), np.float32)
        return resample(mono, info.samplerate, SAMPLE_RATE), a / info.samplerate
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError):
        audio = load_audio(path, SAMPLE_RATE, max_seconds=end_s + 1.0)      # compressed formats: decode the head
        return audio[int(start_s * SAMPLE_RATE):int(np.ceil(end_s * SAMPLE_RATE))], start_s


def _speech(path: Path, start_s: float, end_s: float) -> list[tuple[float, float]]:
    """Speech regions of ``path`` between two times by the finer VAD cut, in the file's time."""
    from claspkit.constants import SAMPLE_RATE
    from claspkit.search.segment import segment

    audio, t0 = _read_span(path, start_s, end_s)
    return [(t0 + s, t0 + e) for s, e in segment(audio, SAMPLE_RATE, **FINE_VAD)] if len(audio) else []


def vad_bounds(path: Path | None, start_s: float, end_s: float) -> tuple[float, float]:
    """The speech inside a segment by a finer VAD cut (``FINE_VAD``) of its first and last ``EDGE_S`` (only the
    edges move, so only they are read); the segment's own edge where it finds no speech or cannot read the file."""
    if path is None:
        return start_s, end_s
    try:
        if end_s - start_s <= 2 * EDGE_S:
            head = tail = _speech(path, start_s, end_s)
        else:
            head, tail = _speech(path, start_s, start_s + EDGE_S), _speech(path, end_s - EDGE_S, end_s)
    except (ClaspkitError, OSError, ValueError, RuntimeError):
        return start_s, end_s
    lo = max(start_s, head[0][0]) if head else start_s
    hi = min(end_s, tail[-1][1]) if tail else end_s
    return (round(lo, 3), round(hi, 3)) if hi > lo else (start_s, end_s)


def ranked_hits(index, q: np.ndarray, rows: np.ndarray, scores: np.ndarray, rank: str, store=None, row_map=None,
                refine: bool = True) -> list[RankedHit]:
    """Hits of ``rows`` with both systems' cosines, their transcripts (when the index has them) and refined edges."""
    base = index.hits(rows, scores)
    trows = row_map[rows] if row_map is not None else np.full(len(rows), -1)
    entries = iter(store.entries([t for t in trows if t >= 0]) if store is not None else [])
    out = []
    for i, h in enumerate(base):
        entry = next(entries) if trows[i] >= 0 else None
        if not refine:
            lo, hi = h.start_s, h.end_s
        elif entry is not None:
            lo, hi = word_bounds(entry["words"], h.start_s, h.end_s)
        else:
            lo, hi = vad_bounds(h.path, h.start_s, h.end_s)
        cos = {"clasp": round(float(np.asarray(index.vectors[rows[i]], np.float32) @ q[0]), 6),
               "transcript": round(float(np.asarray(store.vectors[trows[i]]) @ q[0]), 6) if entry is not None else None}
        out.append(RankedHit(h.file, lo, hi, h.score, h.path, rank_mode=rank, segment_start_s=h.start_s,
                             segment_end_s=h.end_s, scores=cos, transcript=entry))
    return out


_STORES: dict = {}


def clear_cache() -> None:
    """Forget opened transcript stores (``claspkit.search.query.clear_caches`` calls this)."""
    _STORES.clear()


def transcripts_of(index) -> tuple:
    """(store, row_map) of a loaded index, or (None, None) when it was never transcribed; cached per generation."""
    from claspkit.search.transcripts import MANIFEST, FOLDER, open_transcripts

    manifest = index.root / FOLDER / MANIFEST
    key = (str(index.root.resolve()), index.manifest["generation"],
           manifest.stat().st_mtime_ns if manifest.is_file() else None)
    if key not in _STORES:
        _STORES.clear()
        store = open_transcripts(index.root)
        _STORES[key] = (store, store.align(index) if store is not None else None)
    return _STORES[key]


def search_ranked(index, q: np.ndarray, k: int, rank: str | None = None, refine: bool = True) -> list[RankedHit]:
    """Top-k hits of an embedded query on a loaded index by ``rank`` (None: ``default_rank``)."""
    q = normalize_rows(np.atleast_2d(q))
    store, row_map = transcripts_of(index)
    rank = default_rank(row_map) if rank is None else rank
    check_rank(rank, row_map, index.root)
    rows, scores = rank_rows(index, q, k, rank, store, row_map)
    return ranked_hits(index, q, rows, scores, rank, store, row_map, refine)
