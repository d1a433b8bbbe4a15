"""IVF-PQ in FAISS's 4-bit fast-scan layout with exact re-ranking: the ANN file of the largest indexes.

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
with ``python -m claspkit.bench.search --skip-exact --skip-indexing --queries 200 --pq-sizes
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
codes on one core (``SCAN_NS_PER_BYTE``, measured by ``claspkit.bench.pq_scaling`` at 30M), so it affords
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

Scaling (``python -m claspkit.bench.pq_scaling --sizes 1000000,3000000,10000000,30000000``: the codes only,
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
import time

import numpy as np

from claspkit.search._calibration import (
    ANN_PROBES, ANN_TARGET_RECALL, calibration_probes, recall_at_k, without_self,
)
from claspkit.search._exact import search_exact, top_k
from claspkit.search._ivf import TRAIN_PER_LIST, reusable

__all__ = [
    "PQ_DIMS_PER_SUBQUANTIZER", "PQ_BITS", "PQ_TRAIN", "KMEANS_ITERATIONS", "PQ_LISTS_PER_SQRT", "NPROBE_MAX",
    "RERANK_STEPS", "RERANK_MAX", "SCAN_NS_PER_BYTE", "PQ_SEARCH_IMPLEM", "PARALLEL_SCAN_MS", "PQ_RECALL_MARGIN",
    "RERANK_US", "pq_subquantizers", "set_nprobe", "single_threaded_faiss", "train_pq", "pq_lists", "exact_scores",
    "scanned_rows", "parallel_scan", "pq_candidates", "search_pq", "pq_cost", "calibrate_pq", "build_pq",
]

PQ_DIMS_PER_SUBQUANTIZER = 4    # PQ sub-quantizers: one per 4 dims (96 at dim 384) ...
PQ_BITS = 4                     # ... of 4 bits each, FAISS's fast-scan layout (48 bytes: 1/32 of the float32 row)
PQ_TRAIN = 32768                # rows for the PQ codebooks (128 per code word)
KMEANS_ITERATIONS = 10          # IVF-PQ's k-means (lists and codebooks; FAISS's default is 25, 2.5x the time)
PQ_LISTS_PER_SQRT = 2           # IVF-PQ nlist = 2 sqrt(n): k-means costs nlist^2, a PQ row scans 32x cheaper
NPROBE_MAX = 4096               # calibration range of nprobe ...
RERANK_STEPS = (16, 32, 64, 128, 256, 512, 1024)   # ... and of the re-ranked candidates
RERANK_MAX = 1024
SCAN_NS_PER_BYTE = 0.12         # cost model, one core (claspkit.bench.pq_scaling, 30M rows: 1.1 GB of codes in 127 ms)
PQ_SEARCH_IMPLEM = 14           # FAISS fast scan parallel over (query, list) pairs: one query on every core ...
PARALLEL_SCAN_MS = 10.0         # ... when its scan would take this long on one (``parallel_scan``)
PQ_RECALL_MARGIN = 0.01         # IVF-PQ calibrates to the target + this: held-out queries came ~0.01 under it
RERANK_US = 20.0                # per candidate: one random 1.5 KB read when the vectors are not cached


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

