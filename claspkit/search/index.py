"""A persistent, incremental, crash-safe index of segment embeddings, searched exactly or with FAISS.

Layout of an index folder (everything but ``index.json`` is named by a *generation* number)::

    index.json            manifest, written last: identity, files table, generation, skipped files
    vectors.<g>.npy       float32 (n_segments, dim), L2-normalised, rows grouped by file in path order
    segments.<g>.npy      per row: file number (int32), start_s, end_s (float32), a structured array
    ivf.<g>.faiss         only for large indexes: FAISS IVF-Flat (from 200K segments) or IVF-PQ (from 1M),
                          as the manifest's ``ann.kind`` says, with its byte size and calibrated settings
    work/<key>.npz        embeddings of single files staged during a run (resume points)
    .lock                 held (flock) by the one run allowed to write

Why this way:

* **Crash safety.** A run stages each embedded file in ``work/`` as soon as it is done, writes the
  next generation's files next to the current ones, and only then replaces ``index.json`` (atomic
  rename). A killed run leaves the previous generation and manifest untouched, so the old index keeps
  working; the next run finds the staged files and embeds only what is still missing.
* **Incremental.** Each file is recorded with its size, mtime and sha256 (content). Unchanged size and
  mtime: reused without reading; otherwise re-hashed, and reused when the content is the same (a
  ``touch`` or a rename costs nothing). Removed files drop out at the next commit.
* **One model per index.** The manifest's identity (checkpoint hash, backbone names and ``cache_id``s,
  segmentation settings) must match the run's, else a ``ClaspkitError`` names both.
* **Movable.** File paths are stored relative to the indexed folder, and the folder relative to the
  index, so moving both together keeps every hit resolvable.
* **Deterministic.** No timestamps or random state are stored: the same folder and model give
  byte-identical files.

Search (figures from ``python -m claspkit.bench_search`` on 2 cores at load average ~1.6, dim 384,
50 queries; the e5 query encoding, median 14.6 ms there, comes on top). Below ``ANN_MIN_SEGMENTS``
the exact inner product ``vectors @ q`` (numpy BLAS over the memory-mapped vectors) is used: median
0.5 ms at 10K and 8.7 ms at 100K segments (23.6 ms with the query encoding), exact, no extra memory.
FAISS's exact ``IndexFlatIP`` was slower for single queries at every size (1.4 / 20 / 167 ms at
10K / 100K / 1M) and needs a second in-memory copy, so it is not used. At 1M the exact scan takes
~86 ms, so from 200K segments on (where it passes ~20 ms) an IVF-Flat index is built at commit time
(``build_ann``: 4 sqrt(n) lists, spherical k-means, ``nprobe`` calibrated until recall@10 against the
exact search reaches ``ANN_TARGET_RECALL`` on probe queries drawn from the index itself; the recall is
stored in the manifest): at 1M, 6.1 ms median (21 ms with the query encoding) with recall@10 0.97 on
held-out probes, built in ~66 s and reused by later commits while the index stays within 2x of its
size. HNSW was measured too: 55 s to build at 100K on 2 cores (about 10 min at 1M) for no latency gain
that matters here.

Memory: 1,548 bytes per segment (1,536 for a 384-d float32 vector, 12 for its row of the segment table)
plus the manifest's ~200 bytes per file; the IVF-Flat adds ~1,550 bytes per segment (its own copy of the
vectors and an 8-byte id) and is held in RAM, while the exact path only memory-maps the vector file.

Compressed index, from ``PQ_MIN_SEGMENTS`` (1M) on (``build_pq``): IVF-Flat's RAM copy (1.5 GB at 1M, 15 GB
at 10M) is what stops an index from outgrowing memory, so from 1M on the ANN file is an IVF-PQ in FAISS's
4-bit fast-scan layout (kind ``ivf-pq4``): 48-byte codes (96 sub-quantizers of 4 bits, one per 4 dims, over
2 sqrt(n) spherical k-means lists, flat quantizer) plus 8-byte ids are all that is held in RAM; the top
``candidates`` rows it returns are re-ranked by their exact cosine against ``vectors.<g>.npy``,
memory-mapped and read only at those rows (``exact_scores``), so hits carry exact scores. ``nprobe`` and
``candidates`` are calibrated together on ``ANN_PROBES`` probe queries drawn from the index
(``calibrate_pq``: the cheapest pair by the cost model ``pq_cost`` whose recall@10 after re-ranking reaches
``ANN_TARGET_RECALL`` + ``PQ_RECALL_MARGIN``) and stored with the measured recall; the lists and codebooks
are reused while the index stays within 2x of the size they were trained at, and retrained beyond. Measured
with ``python -m claspkit.bench_search --skip-exact --skip-indexing --queries 200 --pq-sizes
1000000,10000000`` (200 held-out rows of the same distribution as queries, search only; the e5 query
encoding, 9.8 ms median there, comes on top; 2 idle Intel cores with AVX-512): at 1M (2,000 lists) recall@10
0.969 after re-ranking (calibration 0.971), nprobe 128 and 128 candidates, 2.0 ms median / 2.3 ms p95 (one
thread: see ``parallel_scan``), built in 17 s, 73 bytes per segment in RAM and 1,609 on disk. At 10M (6,324
lists) recall@10 0.968 (calibration 0.966), nprobe 1,024 and 128 candidates, 23.6 ms median / 25.1 ms p95
warm and 24.2 / 26.5 ms cold (the vector file evicted before each query), on both cores, against 94 ms for
the batched exact scan; built in 266 s (k-means 25 s, add 215 s), 70 bytes per segment in RAM and 1,606 on
disk (45.5 ms median before, on one thread per query and under load ~3.5). Why fast scan: the 8-bit
IVF-PQ it replaced (96-byte codes) ran into ``NPROBE_MAX`` (then 256) at 10M at recall
0.879 (0.832 held out, 167 ms median); 4-bit codes are looked up in SIMD registers, ~0.12 ns per byte of
codes on one core (``SCAN_NS_PER_BYTE``, measured by ``claspkit.bench_pq_scaling`` at 30M), so it affords
the lists recall needs (a one-off side-by-side at 1M: 24 ms per query for 8-bit codes, 2.5 ms for fast
scan, both at re-ranked recall 1.0). The margin: held-out recall came 0.01 under the calibration's at 1M in
the first fast-scan run (0.942 against 0.953), and a 10M calibration point moved from 0.960 to 0.950
between two draws of the data.

The lists are uneven: k-means on these anisotropic vectors makes the lists near their common direction
several times the mean (FAISS's imbalance factor 5.7 at 1M), and queries land in those more often, so a
query reads far more rows than nprobe times the mean list (``scanned_rows``, which the cost model counts on
the probe queries). Centring the vectors before k-means balanced the lists (1.07) but found no more
neighbours per row read (1M, one-off), so it is not done. A long scan runs on every core (FAISS fast scan's
``implem`` 14, parallel over query x list pairs; ``parallel_scan``): at 10M and nprobe 1,024, 43.9 ms on one
thread and 23.5 ms on two; with one CPU-bound process beside it 42.9 and 32.0 ms, with two 72.8 and 71.5 ms.
A short scan stays on one thread, since on busy cores it waits for time slices (1M, nprobe 128, one busy
process: 1.7 ms on one thread, 4.4 ms median and 31 ms p95 on two). Threads break ties among equal 16-bit
scores in any order, so ``pq_candidates`` cuts the candidates before a tie: results are the same on every run
and thread count (tested).

Scaling (``python -m claspkit.bench_pq_scaling --sizes 1000000,3000000,10000000,30000000``: the codes only,
in RAM; 200 held-out queries, 50 timed one at a time; 2 idle Intel cores): the share of the rows a query
must scan for recall@10 0.96 after re-ranking 128 candidates was 0.36 / 0.59 / 0.59 / 0.76 at 1M / 3M / 10M
/ 30M, and 0.26 / 0.45 / 0.47 / 0.50 re-ranking 256. On these vectors the partition prunes little, and the
scan grows almost in proportion to the index: at 30M the PQ search of one query took 127 / 82 ms on one core
(128 / 256 re-ranked) and 67 / 44 ms on two (95% parallel efficiency). Projection (arithmetic from those
figures): 100M segments take 6.8 GB of RAM and 160 GB of disk; re-ranking 256, with the share fitted as
~n^0.04, a query scans ~2.5 GB of codes: ~290 ms on one core, ~150 ms on these two, under 100 ms from 4 cores
at the measured efficiency (re-ranking 128: share 0.82, 460 ms on one core, 5 cores). 1B segments take 68 GB
of RAM and 1.6 TB of disk, and a query scans ~28 GB of codes (3.2 s on one core): at 100 ms that is ~280 GB/s
of memory bandwidth, past one machine, so an index that size should be sharded. Real embeddings are not
easier at small scale: at 39K rows and ~25 rows per list, text queries against the CLASP speech embeddings of
the ``xlarge`` corpus needed 8% of the rows for recall 0.94, where these synthetic vectors needed 0.6% for 0.99
(one-off).

Other choices, by measurement: no OPQ (its rotation training had not finished after 5 min at 1M on the 2 shared
cores while plain PQ's took ~15 s, and re-ranking already removes the code error OPQ would reduce); a flat
coarse quantizer, not HNSW (see ``train_pq``); 10 k-means iterations and single-threaded PQ training (see
``single_threaded_faiss``). The cost model's re-read cost (``RERANK_US``, 20 us per candidate) is an assumed
SSD random read, for vectors that no longer fit the page cache (100M = 154 GB): this VM's disk did not show
it (cold timed as warm). An index written with the 8-bit codes (kind ``ivf-pq``) still loads and searches;
its next commit retrains it as ``ivf-pq4``.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from claspkit.errors import ClaspkitError, DataMissingError, ParamError
from claspkit.paths import atomic_path, atomic_write_text, display_path
from claspkit.search.manifest import read_manifest

__all__ = [
    "FORMAT", "MANIFEST", "ANN_MIN_SEGMENTS", "ANN_TARGET_RECALL", "ANN_PROBES", "TRAIN_PER_LIST",
    "SEGMENT_DTYPE", "identity_key", "describe_model", "normalize_rows", "Hit", "Index", "EXACT_BLOCK",
    "search_exact", "search_ann", "build_ann", "probe_queries", "calibration_probes", "without_self",
    "recall_at_k", "read_index_manifest", "top_k",
    "load_index", "IndexWriter", "PQ_MIN_SEGMENTS", "PQ_DIMS_PER_SUBQUANTIZER", "PQ_TRAIN", "KMEANS_ITERATIONS",
    "NPROBE_MAX", "RERANK_STEPS", "RERANK_MAX", "SCAN_NS_PER_BYTE", "RERANK_US",
    "ann_kind", "reusable", "pq_subquantizers", "set_nprobe", "train_pq", "exact_scores", "search_pq", "pq_cost",
    "calibrate_pq", "build_pq", "pq_candidates", "PQ_SEARCH_IMPLEM", "PARALLEL_SCAN_MS",
    "scanned_rows", "parallel_scan", "ANN_FILE", "read_ann", "single_threaded_faiss",
    "PQ_LISTS_PER_SQRT",
    "pq_lists", "PQ_BITS", "PQ_KINDS", "ann_class", "PQ_RECALL_MARGIN",
]

FORMAT = 1
MANIFEST = "index.json"
ANN_MIN_SEGMENTS = 200_000      # exact search below, FAISS IVF at and above (see bench_search)
ANN_TARGET_RECALL = 0.95
ANN_PROBES = 200                # probe queries for the nprobe calibration
TRAIN_PER_LIST = 20             # k-means sample per IVF list (FAISS suggests 39-256; 20 halves the 1M build)
PQ_MIN_SEGMENTS = 1_000_000     # IVF-PQ + exact re-ranking from here on (IVF-Flat would hold 1.5 GB+ in RAM)
PQ_DIMS_PER_SUBQUANTIZER = 4    # PQ sub-quantizers: one per 4 dims (96 at dim 384) ...
PQ_BITS = 4                     # ... of 4 bits each, FAISS's fast-scan layout (48 bytes: 1/32 of the float32 row)
PQ_TRAIN = 32768                # rows for the PQ codebooks (128 per code word)
KMEANS_ITERATIONS = 10          # IVF-PQ's k-means (lists and codebooks; FAISS's default is 25, 2.5x the time)
PQ_LISTS_PER_SQRT = 2           # IVF-PQ nlist = 2 sqrt(n): k-means costs nlist^2, a PQ row scans 32x cheaper
NPROBE_MAX = 4096               # calibration range of nprobe ...
RERANK_STEPS = (16, 32, 64, 128, 256, 512, 1024)   # ... and of the re-ranked candidates
RERANK_MAX = 1024
SCAN_NS_PER_BYTE = 0.12         # cost model, one core (bench_pq_scaling, 30M rows: 1.1 GB of codes in 127 ms)
PQ_SEARCH_IMPLEM = 14           # FAISS fast scan parallel over (query, list) pairs: one query on every core ...
PARALLEL_SCAN_MS = 10.0         # ... when its scan would take this long on one (``parallel_scan``)
PQ_RECALL_MARGIN = 0.01         # IVF-PQ calibrates to the target + this: held-out queries came ~0.01 under it
RERANK_US = 20.0                # per candidate: one random 1.5 KB read when the vectors are not cached
SEGMENT_DTYPE = np.dtype([("file", "<i4"), ("start_s", "<f4"), ("end_s", "<f4")])


def identity_key(identity: dict) -> str:
    """Short stable hash of an identity dict (used to key staged work so runs of other models never mix)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def describe_model(identity: dict) -> str:
    """One line naming a model for error messages: checkpoint, its hash, the backbones."""
    m = identity.get("model", {})
    bb = ", ".join(f"{r}={n}" for r, n in sorted((m.get("backbones") or {}).items()) if n)
    return f"{m.get('checkpoint', '?')} (sha256 {str(m.get('checkpoint_sha256', '?'))[:12]}; {bb})"


def _same_model(a: dict, b: dict) -> bool:
    keys = ("checkpoint_sha256", "backbones", "cache_ids")
    return all(a.get("model", {}).get(k) == b.get("model", {}).get(k) for k in keys)


def _check_identity(stored: dict, wanted: dict, where: Path) -> None:
    ids_a = stored.get("model", {}).get("cache_ids") or {}
    ids_b = wanted.get("model", {}).get("cache_ids") or {}
    same_but_ids = _same_model(stored, {"model": {**wanted.get("model", {}), "cache_ids": ids_a}})
    if same_but_ids and ids_a != ids_b:
        roles = sorted(r for r in set(ids_a) | set(ids_b) if ids_a.get(r) != ids_b.get(r))
        diff = "; ".join(f"{r}: {ids_a.get(r)} vs {ids_b.get(r)}" for r in roles)
        raise ClaspkitError(
            f"the index {display_path(where)} was built with the same model {describe_model(stored)}, but its "
            f"{', '.join(roles)} features were computed differently ({diff}: another runtime, preprocessing or "
            "weights version); pass the same --image-runtime as before, another --out folder, or --rebuild")
    if not _same_model(stored, wanted):
        raise ClaspkitError(
            f"the index {display_path(where)} was built with model {describe_model(stored)}, but this run uses "
            f"{describe_model(wanted)}; an index holds one model's vectors only: pass another --out folder, "
            "or --rebuild to replace this index")
    for key in ("segmentation", "dim"):
        if stored.get(key) != wanted.get(key):
            raise ClaspkitError(
                f"the index {display_path(where)} was built with {key} {stored.get(key)!r}, this run uses "
                f"{wanted.get(key)!r}; pass another --out folder, or --rebuild to replace this index")


def _save_npz(path: Path, **arrays) -> None:
    with atomic_path(path, suffix=".npz.tmp") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit length; a zero or non-finite row is an error, never a silent junk vector."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ParamError(f"vectors must be a 2-D array (n, dim), got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    bad = ~np.isfinite(norms[:, 0]) | (norms[:, 0] < 1e-12)
    if bad.any():
        raise ClaspkitError(f"{int(bad.sum())} of {len(x)} vectors are zero or not finite; the model produced "
                            "unusable embeddings: check the checkpoint and the backbones")
    return (x / norms).astype(np.float32)


@dataclass(frozen=True)
class Hit:
    """One search result: a segment of a file (relative to the indexed folder) and its cosine score."""

    file: str
    start_s: float
    end_s: float
    score: float
    path: Path | None = None     # the file resolved on this machine (None when the folder is not found)

    def as_dict(self) -> dict:
        return {"file": self.file, "start_s": self.start_s, "end_s": self.end_s, "score": self.score}


class Index:
    """A committed index, read-only. Vectors are memory-mapped, so opening a large index is instant."""

    def __init__(self, root, manifest: dict, vectors: np.ndarray, table: dict, ann=None):
        self.root = Path(root)
        self.manifest = manifest
        self.vectors = vectors
        self.file_of_row = table["file"]
        self.start_s = table["start_s"]
        self.end_s = table["end_s"]
        self.ann = ann
        self.files = {f["path"]: f for f in manifest["files"]}
        self._paths = [f["path"] for f in manifest["files"]]

    # ------------------------------------------------------------------ reading
    @property
    def identity(self) -> dict:
        return self.manifest["identity"]

    @property
    def dim(self) -> int:
        return int(self.manifest["identity"]["dim"])

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def audio_root(self) -> Path | None:
        """The indexed folder: relative to the index first (so a moved pair works), then the old absolute path."""
        rel = self.root / self.manifest["audio_root"]["relative"]
        if rel.is_dir():
            return rel.resolve()
        absolute = Path(self.manifest["audio_root"]["absolute"])
        return absolute if absolute.is_dir() else None

    def file_rows(self, relpath: str) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, spans) of one file as stored."""
        f = self.files[relpath]
        rows = slice(f["first_row"], f["first_row"] + f["n_segments"])
        return (np.asarray(self.vectors[rows], dtype=np.float32),
                np.stack([self.start_s[rows], self.end_s[rows]], axis=1).astype(np.float32))

    def nbytes(self) -> dict:
        """Bytes on disk of each part, and per segment; ``ram_per_segment`` counts what is held in memory
        (ANN, segment table, manifest), the vectors being memory-mapped (paged in on demand, evictable)."""
        g = self.manifest["generation"]
        parts = {"vectors": self.root / f"vectors.{g}.npy", "segments": self.root / f"segments.{g}.npy",
                 "ann": self.root / ANN_FILE.format(g=g), "manifest": self.root / MANIFEST}
        sizes = {k: (p.stat().st_size if p.is_file() else 0) for k, p in parts.items()}
        sizes["total"] = sum(sizes.values())
        sizes["per_segment"] = sizes["total"] / max(1, len(self))
        sizes["ram_per_segment"] = (sizes["ann"] + sizes["segments"] + sizes["manifest"]) / max(1, len(self))
        return sizes

    # ------------------------------------------------------------------ search
    def search_vectors(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows and scores (inner product = cosine) for each query row; exact or IVF (see module doc)."""
        q = normalize_rows(np.atleast_2d(queries))
        if q.shape[1] != self.dim:
            raise ParamError(f"query vectors have dim {q.shape[1]}, the index has {self.dim}; "
                             "embed queries with the index's text backbone")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ParamError(f"k must be a positive integer, got {k!r}")
        n = len(self)
        k = min(int(k), n)
        if k == 0:
            return np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.float32)
        info = self.manifest.get("ann") or {}
        if self.ann is not None and info.get("kind") in PQ_KINDS:
            return search_pq(self.ann, self.vectors, q, k, info["nprobe"], info["candidates"])
        if self.ann is not None:
            return search_ann(self.ann, q, k, info["nprobe"])
        return search_exact(self.vectors, q, k)

    def hits(self, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
        root = self.audio_root
        out = []
        for r, s in zip(rows, scores):
            if r < 0:
                continue
            rel = self._paths[self.file_of_row[r]]
            out.append(Hit(rel, round(float(self.start_s[r]), 3), round(float(self.end_s[r]), 3), float(s),
                           (root / rel) if root is not None else None))
        return out

    def search(self, query_vector: np.ndarray, k: int = 10) -> list[Hit]:
        rows, scores = self.search_vectors(query_vector, k)
        return self.hits(rows[0], scores[0])


def top_k(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k columns of each row of ``scores``, highest first, ties broken by row number (deterministic)."""
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        scores, rows = np.take_along_axis(scores, part, axis=1), np.take_along_axis(rows, part, axis=1)
    order = np.lexsort((rows, -scores), axis=1)
    return np.take_along_axis(rows, order, axis=1), np.take_along_axis(scores, order, axis=1)


EXACT_BLOCK = 131072      # rows per block: bounds the score matrix for many queries at once


def search_exact(vectors: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product (cosine, the rows being unit length), block by block over the rows."""
    n = len(vectors)
    k = min(k, n)
    best_rows, best_scores = [], []
    for lo in range(0, n, EXACT_BLOCK):
        block = np.asarray(vectors[lo:lo + EXACT_BLOCK])
        scores = np.asarray(q @ block.T, dtype=np.float32)
        rows = np.broadcast_to(np.arange(lo, lo + len(block), dtype=np.int64), scores.shape)
        r, s = top_k(scores, rows, k)
        best_rows.append(r)
        best_scores.append(s)
    rows, scores = np.concatenate(best_rows, axis=1), np.concatenate(best_scores, axis=1)
    return top_k(scores, rows, k) if len(best_rows) > 1 else (rows, scores)


def search_ann(ann, q: np.ndarray, k: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    ann.nprobe = int(nprobe)
    scores, rows = ann.search(np.ascontiguousarray(q, dtype=np.float32), k)
    return rows.astype(np.int64), scores.astype(np.float32)


def build_ann(vectors: np.ndarray, seed: int = 0, previous=None, previous_info: dict | None = None):
    """IVF-Flat over ``vectors`` with a calibrated nprobe; returns (faiss index, info dict).

    ``nlist = 4 sqrt(n)`` (FAISS's guideline); spherical k-means (the vectors are unit length and the
    metric is the inner product) on ``TRAIN_PER_LIST`` sampled vectors per list. A previous generation's
    trained lists are reused while the index stays within a factor 2 of the size they were trained at
    (then only the vectors are re-added), so an incremental commit does not re-run k-means. ``nprobe`` is
    the smallest that reaches ``ANN_TARGET_RECALL`` recall@10 against the exact search on ``ANN_PROBES``
    leave-one-out probes (``calibration_probes``; doubling, then bisection).
    """
    import faiss

    n, dim = vectors.shape
    trained_on = (previous_info or {}).get("trained_on", 0)
    if previous is not None and previous.d == dim and reusable(previous_info, "ivf-flat", n, dim):
        ivf = previous
        ivf.reset()                                # keep the trained lists, drop the old vectors
    else:
        nlist = max(16, int(4 * np.sqrt(n)))
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, min(n, TRAIN_PER_LIST * nlist), replace=False))
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed, ivf.cp.spherical, ivf.cp.min_points_per_centroid = seed, True, 1
        ivf.train(np.asarray(vectors[sample], dtype=np.float32))
        trained_on = n
    for start in range(0, n, 65536):
        ivf.add(np.ascontiguousarray(vectors[start:start + 65536], dtype=np.float32))
    ids, probes = calibration_probes(vectors, ANN_PROBES, seed)
    exact = without_self(search_exact(vectors, probes, 11)[0], ids, 10)

    def recall(nprobe):
        return recall_at_k(without_self(search_ann(ivf, probes, 11, nprobe)[0], ids, 10), exact)

    lo, hi = 0, 1                                  # recall(lo) < target (or lo = 0), recall(hi) to be seen
    while hi < ivf.nlist and recall(hi) < ANN_TARGET_RECALL:
        lo, hi = hi, min(ivf.nlist, hi * 2)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if recall(mid) >= ANN_TARGET_RECALL else (mid, hi)
    return ivf, {"kind": "ivf-flat", "nlist": int(ivf.nlist), "nprobe": int(hi), "recall_at_10": round(recall(hi), 4),
                 "probes": len(probes), "trained_on": int(trained_on), "dim": int(dim)}


def ann_kind(n: int) -> str | None:
    """What ``commit`` builds for ``n`` segments: nothing (exact search), IVF-Flat, or IVF-PQ (see module doc).

    ``ivf-pq4`` is the 4-bit fast-scan IVF-PQ; ``ivf-pq`` (8-bit codes, built before it) still loads and
    searches, and is retrained as ``ivf-pq4`` at its index's next commit.
    """
    if n < ANN_MIN_SEGMENTS:
        return None
    return "ivf-flat" if n < PQ_MIN_SEGMENTS else "ivf-pq4"


PQ_KINDS = ("ivf-pq", "ivf-pq4")


def ann_class(kind: str):
    """The FAISS class an ANN file of ``kind`` must hold."""
    import faiss

    classes = {"ivf-flat": faiss.IndexIVFFlat, "ivf-pq": faiss.IndexIVFPQ, "ivf-pq4": faiss.IndexIVFPQFastScan}
    if kind not in classes:
        raise ClaspkitError(f"unknown ANN kind {kind!r} in the index manifest (this claspkit reads "
                            f"{', '.join(classes)}); rebuild the index with `claspkit index ... --rebuild`")
    return classes[kind]


def reusable(info: dict | None, kind: str, n: int, dim: int) -> bool:
    """True when a previous ANN of ``kind``, trained at ``info['trained_on']`` rows, may serve ``n`` rows (2x rule)."""
    info = info or {}
    trained_on = info.get("trained_on", 0)
    return (info.get("kind") == kind and info.get("dim", dim) == dim and bool(trained_on)
            and trained_on / 2 <= n <= 2 * trained_on)


def pq_subquantizers(dim: int) -> int:
    """Sub-quantizers (of ``PQ_BITS`` each) for ``dim``: one per ``PQ_DIMS_PER_SUBQUANTIZER`` dims (a divisor)."""
    m = max(1, dim // PQ_DIMS_PER_SUBQUANTIZER)
    while dim % m:
        m -= 1
    return m


def _ivf_of(ann):
    import faiss

    return faiss.extract_index_ivf(ann)


def set_nprobe(ann, nprobe: int) -> None:
    """Set ``nprobe`` on an IVF index (also one behind a transform)."""
    _ivf_of(ann).nprobe = int(nprobe)


@contextlib.contextmanager
def single_threaded_faiss():
    """FAISS on one thread inside the block: many small parallel regions (PQ codebooks: 96 k-means of 4-d
    points) ran 6x slower on 2 threads than on 1 on a shared machine (11 s vs 70 s)."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def _sample(vectors: np.ndarray, m: int, rng) -> np.ndarray:
    """``m`` random rows (all when fewer), read in file order."""
    n = len(vectors)
    return np.asarray(vectors[np.sort(rng.choice(n, min(n, m), replace=False))], np.float32)


def train_pq(vectors: np.ndarray, seed: int = 0, nlist: int | None = None):
    """An empty, trained IVF-PQ: spherical k-means lists (exact, flat quantizer), residual PQ codebooks.

    ``nlist = PQ_LISTS_PER_SQRT sqrt(n)`` (half IVF-Flat's: the k-means costs nlist^2 and a list's PQ rows
    scan 16x cheaper than float32 rows), k-means on ``TRAIN_PER_LIST`` sampled rows per list. The
    quantizer stays flat: an HNSW graph over these (close, anisotropic) centroids put only 68% of rows
    in their nearest list at a beam of 16 and 94% at 256, while being slower than the BLAS scan, and
    the misplaced rows cost recall (0.60 at 10M). The PQ codebooks (``pq_subquantizers(dim)`` sub-quantizers
    of ``PQ_BITS`` each, FAISS's fast-scan layout) are trained on ``PQ_TRAIN`` rows.
    """
    import faiss

    n, dim = vectors.shape
    nlist = nlist or pq_lists(n)               # given: ``vectors`` are a sample of a bigger index (benchmarks)
    rng = np.random.default_rng(seed)
    kmeans = faiss.Kmeans(dim, nlist, niter=KMEANS_ITERATIONS, seed=seed, spherical=True, min_points_per_centroid=1)
    kmeans.train(_sample(vectors, TRAIN_PER_LIST * nlist, rng))
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(kmeans.centroids)
    ann = faiss.IndexIVFPQFastScan(quantizer, dim, nlist, pq_subquantizers(dim), PQ_BITS, faiss.METRIC_INNER_PRODUCT)
    ann.own_fields = True
    quantizer.this.disown()                        # the IVF owns (and frees) its quantizer from now on
    ann.cp.seed = ann.pq.cp.seed = seed
    ann.pq.cp.min_points_per_centroid = 1          # small indexes (tests) train on fewer rows than 39 per code
    ann.pq.cp.niter = KMEANS_ITERATIONS             # re-ranking absorbs the codebooks' last few % of error
    set_nprobe(ann, 1)
    with single_threaded_faiss():
        ann.train(_sample(vectors, PQ_TRAIN, rng))  # the quantizer is complete: this trains the codebooks only
    return ann


def pq_lists(n: int) -> int:
    """nlist of an IVF-PQ over ``n`` rows."""
    return max(16, int(PQ_LISTS_PER_SQRT * np.sqrt(n)))


def _add_all(ann, vectors: np.ndarray) -> None:
    for start in range(0, len(vectors), 65536):
        ann.add(np.ascontiguousarray(vectors[start:start + 65536], dtype=np.float32))


def exact_scores(vectors: np.ndarray, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Exact cosines of each query with its candidate rows (-inf where a row is -1).

    Only those rows of the (memory-mapped) vectors are read, in file order, so the full-precision
    vectors can stay on disk: ~1.5 KB read per candidate.
    """
    out = np.full(rows.shape, -np.inf, np.float32)
    for i, cand in enumerate(rows):
        valid = np.nonzero(cand >= 0)[0]
        order = valid[np.argsort(cand[valid], kind="stable")]
        out[i, order] = np.asarray(vectors[cand[order]], np.float32) @ q[i]
    return out


def scanned_rows(ann, q: np.ndarray, nprobe: int) -> np.ndarray:
    """Rows in each query's ``nprobe`` lists: what its PQ scan reads. Lists differ in size (k-means on these
    anisotropic vectors puts 5x the mean in the lists near the common direction) and queries land in the
    big ones more often, so ``nprobe`` times the mean list under-counts ~4x."""
    import faiss

    ivf = _ivf_of(ann)
    if isinstance(ann, faiss.IndexPreTransform):
        q = ann.apply_chain(len(q), np.ascontiguousarray(q, dtype=np.float32))
    sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)], np.int64)
    _, lists = ivf.quantizer.search(np.ascontiguousarray(q, dtype=np.float32), int(nprobe))
    return np.where(lists >= 0, sizes[np.maximum(lists, 0)], 0).sum(axis=1)


def parallel_scan(ivf, nprobe: int) -> bool:
    """Whether one query's scan is long enough (``PARALLEL_SCAN_MS`` by the cost model, its rows estimated from the
    lists' imbalance) to search it on every core: a short one on 2 busy cores waits for time slices (1M, nprobe
    128, one CPU-bound process beside it: 1.7 ms on one thread, 4.4 ms median and 31 ms p95 on two)."""
    rows = min(ivf.ntotal, nprobe * ivf.ntotal / max(1, ivf.nlist) * ivf.invlists.imbalance_factor())
    return pq_cost(rows, 0, ivf.code_size) >= PARALLEL_SCAN_MS


def pq_candidates(ann, q: np.ndarray, count: int, nprobe: int, keep: int = 1,
                  parallel: bool | None = None) -> np.ndarray:
    """Rows of the ``count`` best PQ scores of each query (-1 padded), best first, ties by row number.

    A long fast scan runs one query on every core (``PQ_SEARCH_IMPLEM``, when ``parallel_scan`` says so, or
    as ``parallel`` forces it), and its threads break ties among equal (16-bit) scores in the order they
    meet: rows tied with the last score are dropped, so the candidates, and any prefix of them, are the same
    on every run and thread count. Unless fewer than ``keep`` rows would be left (more than ``count``
    identical segments): then any of them is as right as another.
    """
    import faiss

    ivf = faiss.downcast_index(_ivf_of(ann))
    ivf.nprobe = int(nprobe)
    fast = isinstance(ivf, faiss.IndexIVFFastScan)
    if fast:
        ivf.implem = PQ_SEARCH_IMPLEM if (parallel_scan(ivf, nprobe) if parallel is None else parallel) else 0
    scores, rows = ann.search(np.ascontiguousarray(q, dtype=np.float32), int(count))
    rows = rows.astype(np.int64)
    if fast:
        tied = scores <= scores[:, -1:]            # a padded tail scores -FLT_MAX and is -1 already
        tied &= ((~tied & (rows >= 0)).sum(axis=1) >= keep)[:, None]
        rows[tied] = -1
    scores = np.where(rows >= 0, scores, -np.inf)
    order = np.lexsort((np.where(rows >= 0, rows, np.iinfo(np.int64).max), -scores), axis=1)
    return np.take_along_axis(rows, order, axis=1)


def search_pq(ann, vectors: np.ndarray, q: np.ndarray, k: int, nprobe: int,
              candidates: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by exact cosine among the ``candidates`` best rows of the PQ index (approximate scores)."""
    rows = pq_candidates(ann, q, max(int(k), int(candidates)), nprobe, keep=k)
    return top_k(exact_scores(vectors, q, rows), rows, k)


def pq_cost(rows: float, candidates: int, code_bytes: int) -> float:
    """Modelled single-query cost in ms on one core: scanning ``rows`` codes plus re-reading the candidates."""
    return rows * code_bytes * SCAN_NS_PER_BYTE * 1e-6 + candidates * RERANK_US * 1e-3


def calibrate_pq(ann, vectors: np.ndarray, probes: np.ndarray, exact: np.ndarray,
                 ids: np.ndarray | None = None, trace: list | None = None) -> dict:
    """The cheapest (nprobe, candidates) by ``pq_cost`` whose recall@10 after re-ranking reaches the target
    plus ``PQ_RECALL_MARGIN``.

    One search per nprobe (doubling up to ``NPROBE_MAX``) with ``RERANK_MAX`` candidates gives the recall
    for every smaller candidate count too (PQ's top-R is a prefix of its top-R_max). When no setting
    reaches the target, the best measured one is kept and its (lower) recall stored. ``ids``: the probes'
    own rows (``calibration_probes``), left out of their results. ``trace`` (optional) receives every
    setting measured, for benchmarks.
    """
    ivf = _ivf_of(ann)
    nprobes = sorted({min(ivf.nlist, 2 ** i) for i in range(int(np.log2(NPROBE_MAX)) + 1)})
    steps = [c for c in RERANK_STEPS if c <= RERANK_MAX]
    best, best_recall = None, None
    for nprobe in nprobes:
        scan = float(scanned_rows(ann, probes, nprobe).mean())
        if best is not None and pq_cost(scan, steps[0], ivf.code_size) >= best["cost"]:
            break                                  # scanning alone would already cost more
        rows = pq_candidates(ann, probes, RERANK_MAX, nprobe)
        if ids is not None:
            rows[rows == ids[:, None]] = -1        # leave-one-out: a probe's own row is no neighbour
        scores = exact_scores(vectors, probes, rows)
        for c in steps:
            got, _ = top_k(scores[:, :c], rows[:, :c], exact.shape[1])
            r = recall_at_k(got, exact)
            setting = {"nprobe": nprobe, "candidates": c, "recall_at_10": round(r, 4),
                       "share": round(scan / ivf.ntotal, 4), "cost": pq_cost(scan, c, ivf.code_size)}
            if trace is not None:
                trace.append(setting)
            if best_recall is None or r > best_recall["recall_at_10"]:
                best_recall = setting
            if r >= ANN_TARGET_RECALL + PQ_RECALL_MARGIN:
                if best is None or setting["cost"] < best["cost"]:
                    best = setting
                break                              # more candidates at this nprobe only cost more
    chosen = best or best_recall
    return {"nprobe": chosen["nprobe"], "candidates": chosen["candidates"], "recall_at_10": chosen["recall_at_10"]}


class _Stopwatch:
    def __init__(self, out: dict | None):
        self.out, self.t = out, time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        if self.out is not None:
            self.out[name] = round(now - self.t, 1)
        self.t = now


def build_pq(vectors: np.ndarray, seed: int = 0, previous=None, previous_info: dict | None = None,
             timings: dict | None = None, trace: list | None = None):
    """IVF-PQ over ``vectors`` with exact re-ranking, calibrated on probe queries; returns (faiss index, info).

    A previous generation's trained lists and codebooks are reused while the index stays within 2x of
    the size they were trained at (the rows are re-encoded, k-means and PQ training are skipped).
    ``timings`` (optional) receives the seconds of each stage and ``trace`` the calibration's measured settings;
    both stay out of ``info`` (and the manifest).
    """
    n, dim = vectors.shape
    clock = _Stopwatch(timings)
    if previous is not None and previous.d == dim and reusable(previous_info, "ivf-pq4", n, dim):
        ann, trained_on = previous, int(previous_info["trained_on"])
        ann.reset()                                # keep lists and codebooks, drop the old codes
    else:
        ann, trained_on = train_pq(vectors, seed), n
    clock.lap("train")
    _add_all(ann, vectors)
    clock.lap("add")
    ids, probes = calibration_probes(vectors, ANN_PROBES, seed)
    exact = without_self(search_exact(vectors, probes, 11)[0], ids, 10)
    clock.lap("probes_exact")
    ivf = _ivf_of(ann)
    setting = calibrate_pq(ann, vectors, probes, exact, ids, trace)
    clock.lap("calibrate")
    set_nprobe(ann, setting["nprobe"])             # the file stores the search state: same input, same bytes
    return ann, {"kind": "ivf-pq4", "nlist": int(ivf.nlist), "code_bytes": int(ivf.code_size), "dim": int(dim),
                 **setting, "probes": len(probes), "trained_on": trained_on}


def calibration_probes(vectors: np.ndarray, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(row ids, queries): ``m`` stored rows, each to be searched for its nearest *other* rows (leave-one-out,
    ``without_self``), so the calibration's queries come from the data's own distribution, as ANN benchmarks
    hold out base vectors. Perturbed probes (``probe_queries``) stop measuring search at scale: at 10M
    synthetic rows their top-10s were mostly rows that align with the perturbation by chance (scores 0.50-0.52
    against 0.49 for rows of the source's own cluster), spread over every list, and recall fell to 0.65."""
    rng = np.random.default_rng(seed + 1)
    ids = np.sort(rng.choice(len(vectors), min(m, len(vectors)), replace=False))
    return ids, np.asarray(vectors[ids], np.float32)


def without_self(rows: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Each probe's result rows without its own row id, cut to ``k`` (-1 pads a short row)."""
    out = np.full((len(rows), k), -1, np.int64)
    for i, (r, own) in enumerate(zip(rows, ids)):
        r = r[r != own][:k]
        out[i, :len(r)] = r
    return out


def probe_queries(vectors: np.ndarray, m: int, seed: int = 0, cosine: float = 0.7) -> np.ndarray:
    """Synthetic queries near stored vectors (cosine ~0.7 to their source): a stress test, whose neighbours at
    10M+ rows are chance alignments rather than the source's cluster (see ``calibration_probes``)."""
    rng = np.random.default_rng(seed + 1)
    src = np.asarray(vectors[np.sort(rng.choice(len(vectors), min(m, len(vectors)), replace=False))], np.float32)
    noise = rng.standard_normal(src.shape).astype(np.float32)
    noise -= np.sum(noise * src, axis=1, keepdims=True) * src          # orthogonal to the source
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return normalize_rows(cosine * src + np.sqrt(1 - cosine ** 2) * noise)


def recall_at_k(got: np.ndarray, exact: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(got, exact)]))


# ---------------------------------------------------------------------- loading
def read_index_manifest(root) -> dict | None:
    return read_manifest(Path(root) / MANIFEST, "index", FORMAT,
                         "rebuild the index with `claspkit index ... --rebuild`")


ANN_FILE = "ivf.{g}.faiss"      # IVF-Flat or IVF-PQ, as the manifest's ann.kind says


def _rerun_hint(root: Path) -> str:
    return (f"run the same `claspkit index AUDIO_DIR --model CHECKPOINT --out {display_path(root)}` again "
            "(no --rebuild needed: it rebuilds the ANN file from the stored vectors, without re-embedding)")


def read_ann(root, manifest: dict):
    """The manifest's FAISS index, checked against it (size, kind, rows, dim); a clear error when it is not."""
    import faiss

    root = Path(root)
    info = manifest["ann"]
    path = root / ANN_FILE.format(g=manifest["generation"])
    if not path.is_file():
        raise DataMissingError(f"index {display_path(root)} is missing its {info['kind']} file {path.name}; "
                               + _rerun_hint(root))
    size = path.stat().st_size
    if "bytes" in info and size != info["bytes"]:
        raise ClaspkitError(f"{display_path(path)} has {size:,} bytes, the manifest says {info['bytes']:,} "
                            f"(truncated or overwritten); {_rerun_hint(root)}")
    try:
        ann = faiss.read_index(str(path))
    except RuntimeError as e:
        raise ClaspkitError(f"{display_path(path)} is not a readable FAISS index ({str(e).strip()[-200:]}); "
                            + _rerun_hint(root)) from e
    want = ann_class(info["kind"])
    if not isinstance(ann, want) or ann.ntotal != manifest["n_segments"] or ann.d != manifest["identity"]["dim"]:
        raise ClaspkitError(f"{display_path(path)} does not match the manifest (a {type(ann).__name__} of "
                            f"{ann.ntotal} {ann.d}-d rows, expected {info['kind']} of {manifest['n_segments']} "
                            f"{manifest['identity']['dim']}-d rows); {_rerun_hint(root)}")
    return ann


def load_index(root, ann: bool = True) -> Index:
    """Open a committed index folder (the ``--out`` of ``claspkit index``); ``ann=False`` skips its FAISS file
    (a writer only reads the previous generation's rows)."""
    root = Path(root)
    for attempt in range(2):       # a writer may commit between reading the manifest and the files
        manifest = read_index_manifest(root)
        if manifest is None:
            raise DataMissingError(f"{display_path(root)} is not a claspkit index (no {MANIFEST}); "
                                   "build one with `claspkit index AUDIO_DIR --model CHECKPOINT --out INDEX`")
        g = manifest["generation"]
        try:
            vectors = np.load(root / f"vectors.{g}.npy", mmap_mode="r") if manifest["n_segments"] else \
                np.zeros((0, manifest["identity"]["dim"]), np.float32)
            rows = np.load(root / f"segments.{g}.npy")
            table = {k: rows[k] for k in ("file", "start_s", "end_s")}
            faiss_index = read_ann(root, manifest) if ann and manifest.get("ann") else None
        except FileNotFoundError as e:
            if attempt == 0:
                continue
            if isinstance(e, DataMissingError):
                raise
            raise ClaspkitError(f"index {display_path(root)} is missing {Path(e.filename).name}; "
                                "rebuild it with `claspkit index ... --rebuild`") from e
        if vectors.shape != (manifest["n_segments"], manifest["identity"]["dim"]) or len(table["file"]) != len(vectors):
            raise ClaspkitError(f"index {display_path(root)} is inconsistent (vectors {vectors.shape}, "
                                f"{len(table['file'])} segment rows); rebuild it with `claspkit index ... --rebuild`")
        return Index(root, manifest, vectors, table, faiss_index)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------- writing
class IndexWriter:
    """Stages per-file embeddings and commits a new generation; use as a context manager (holds the lock).

    ``identity`` = {"model": {...}, "segmentation": str, "dim": int}. An existing index with another
    identity is refused unless ``rebuild`` (then it is replaced at commit; until then it stays usable).
    """

    def __init__(self, root, identity: dict, audio_root, rebuild: bool = False):
        self.root = Path(root)
        self.identity = identity
        self.audio_root = Path(audio_root).resolve()
        self.rebuild = rebuild
        self.work = self.root / "work" / identity_key(identity)
        self._lock_fh = None
        self.previous: Index | None = None
        self._prev_by_sha: dict[str, str] = {}

    def __enter__(self):
        if self.root.exists() and not self.root.is_dir():
            raise ClaspkitError(f"{display_path(self.root)} is a file, not an index folder; pass a folder to --out")
        self.root.mkdir(parents=True, exist_ok=True)
        fh = open(self.root / ".lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            fh.close()
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise ClaspkitError(f"another `claspkit index` run is writing {display_path(self.root)}; "
                                    "wait for it to finish (or stop it) and run again") from e
            raise
        self._lock_fh = fh
        try:
            if not self.rebuild and read_index_manifest(self.root) is not None:
                prev = load_index(self.root, ann=False)       # the ANN is read at commit, if reusable
                _check_identity(prev.identity, self.identity, self.root)
                self.previous = prev
                self._prev_by_sha = {f["sha256"]: p for p, f in prev.files.items()}
            self.work.mkdir(parents=True, exist_ok=True)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None
        return False

    # ------------------------------------------------------------------ staging
    def _stage_path(self, sha256: str) -> Path:
        return self.work / f"{sha256}.npz"

    def stage(self, sha256: str, vectors: np.ndarray, spans, duration_s: float) -> None:
        """Keep one file's embeddings (atomically) until the commit; a later run resumes from them."""
        vectors = normalize_rows(vectors) if len(vectors) else np.zeros((0, self.identity["dim"]), np.float32)
        if vectors.shape[1] != self.identity["dim"]:
            raise ClaspkitError(f"the model gives {vectors.shape[1]}-d vectors, the index expects "
                                f"{self.identity['dim']}; the checkpoint config's out_dim is wrong: retrain or fix it")
        spans = np.asarray(spans, np.float32).reshape(-1, 2)
        if len(spans) != len(vectors):
            raise ClaspkitError(f"{len(vectors)} vectors for {len(spans)} segments; the embedder dropped items")
        _save_npz(self._stage_path(sha256), vectors=vectors, spans=spans,
                  duration_s=np.array(float(duration_s), np.float64))

    def is_staged(self, sha256: str) -> bool:
        return self._stage_path(sha256).is_file()

    def staged_duration(self, sha256: str) -> float:
        with np.load(self._stage_path(sha256)) as z:
            return round(float(z["duration_s"]), 3)

    def segments_of(self, entry: dict) -> int:
        """Segments an entry will have at commit (staged, else from the previous index by content)."""
        return self._count_for(entry, self._prev_by_sha)

    def _rows_for(self, entry: dict, prev_by_sha: dict) -> tuple[np.ndarray, np.ndarray]:
        staged = self._stage_path(entry["sha256"])
        if staged.is_file():
            with np.load(staged) as z:
                return z["vectors"], z["spans"]
        if entry["sha256"] in prev_by_sha:
            return self.previous.file_rows(prev_by_sha[entry["sha256"]])
        raise ClaspkitError(f"no embeddings for {entry['path']} (neither staged nor in the previous index); "
                            "this is a bug in the caller: embed the file before committing")

    def _count_for(self, entry: dict, prev_by_sha: dict) -> int:
        staged = self._stage_path(entry["sha256"])
        if staged.is_file():
            with np.load(staged) as z:
                return len(z["spans"])
        if entry["sha256"] in prev_by_sha:
            return int(self.previous.files[prev_by_sha[entry["sha256"]]]["n_segments"])
        return len(self._rows_for(entry, prev_by_sha)[0])     # raises the clear error

    # ------------------------------------------------------------------ commit
    def commit(self, entries: list[dict], skipped: list[dict] | None = None) -> Index:
        """Write the next generation with ``entries`` (dicts with path, sha256, size, mtime_ns, duration_s).

        Files are ordered by path. The manifest is replaced last; then the old generation and the staged
        work are deleted. Returns the new, loaded index.
        """
        entries = sorted(entries, key=lambda e: e["path"])
        if len({e["path"] for e in entries}) != len(entries):
            raise ParamError("duplicate file paths in the index entries")
        prev_by_sha = self._prev_by_sha
        old = read_index_manifest(self.root)
        gen = (old["generation"] + 1) if old else 1
        dim = self.identity["dim"]

        counts = [self._count_for(e, prev_by_sha) for e in entries]
        n = int(sum(counts))
        files, row = [], 0
        file_idx = np.zeros(n, np.int32)
        start = np.zeros(n, np.float32)
        end = np.zeros(n, np.float32)
        vec_path = self.root / f"vectors.{gen}.npy"
        with atomic_path(vec_path, suffix=".npy.tmp") as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim)) if n else None
            for i, (e, c) in enumerate(zip(entries, counts)):
                v, spans = self._rows_for(e, prev_by_sha)
                if c:
                    out[row:row + c] = v
                    start[row:row + c], end[row:row + c] = spans[:, 0], spans[:, 1]
                    file_idx[row:row + c] = i
                files.append({**{k: e[k] for k in ("path", "sha256", "size", "mtime_ns", "duration_s")},
                              "first_row": row, "n_segments": c})
                row += c
            if out is not None:
                out.flush()
                del out
            else:
                np.save(tmp, np.zeros((0, dim), np.float32))
        table = np.zeros(n, dtype=SEGMENT_DTYPE)
        table["file"], table["start_s"], table["end_s"] = file_idx, start, end
        with atomic_path(self.root / f"segments.{gen}.npy", suffix=".npy.tmp") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, table)
        ann_info = self._write_ann(gen, np.load(vec_path, mmap_mode="r"))
        manifest = {
            "format": FORMAT, "generation": gen, "identity": self.identity, "n_segments": n,
            "audio_root": {"relative": Path(os.path.relpath(self.audio_root, self.root.resolve())).as_posix(),
                           "absolute": str(self.audio_root)},
            "ann": ann_info, "files": files,
            "skipped": sorted(skipped or [], key=lambda s: s["path"]),
        }
        atomic_write_text(self.root / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        self.previous = load_index(self.root)
        self._prev_by_sha = {f["sha256"]: p for p, f in self.previous.files.items()}
        self._cleanup(gen)
        return self.previous

    def _previous_ann(self, kind: str, n: int, dim: int):
        """The previous generation's trained ANN when the 2x rule allows reusing it; None (retrain) when not,
        or when its file is missing or unreadable (a re-run then repairs the index)."""
        prev = self.previous
        if prev is None or not reusable(prev.manifest.get("ann"), kind, n, dim):
            return None
        try:
            return read_ann(prev.root, prev.manifest)
        except ClaspkitError:
            return None

    def _write_ann(self, gen: int, vectors: np.ndarray) -> dict | None:
        """Build this generation's ANN file (before the manifest, so a crash leaves the old one in use)."""
        import faiss

        n, dim = vectors.shape
        kind = ann_kind(n)
        if kind is None:
            return None
        build = build_pq if kind in PQ_KINDS else build_ann
        prev = self.previous.manifest.get("ann") if self.previous is not None else None
        ann, info = build(vectors, previous=self._previous_ann(kind, n, dim), previous_info=prev)
        with atomic_path(self.root / ANN_FILE.format(g=gen), suffix=".faiss.tmp") as tmp:
            faiss.write_index(ann, str(tmp))
            info["bytes"] = tmp.stat().st_size
        return info

    def _cleanup(self, gen: int) -> None:
        keep = {f"vectors.{gen}.npy", f"segments.{gen}.npy", ANN_FILE.format(g=gen)}
        for pattern in ("vectors.*.npy", "segments.*.npy", "ivf.*.faiss"):
            for p in self.root.glob(pattern):
                if p.name not in keep:
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
        shutil.rmtree(self.root / "work", ignore_errors=True)
