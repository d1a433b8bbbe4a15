"""IVF-Flat, the ANN file of mid-sized indexes, and what every ANN kind shares (its FAISS class, the 2x reuse rule).

Search (figures from ``python -m claspkit.bench.search`` on 2 cores at load average ~1.6, dim 384,
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
"""
from __future__ import annotations

import numpy as np

from claspkit.errors import ClaspkitError
from claspkit.search._calibration import ANN_PROBES, ANN_TARGET_RECALL, calibration_probes, recall_at_k, without_self
from claspkit.search._exact import search_exact

__all__ = ["TRAIN_PER_LIST", "search_ann", "build_ann", "PQ_KINDS", "ann_class", "reusable"]

TRAIN_PER_LIST = 20             # k-means sample per IVF list (FAISS suggests 39-256; 20 halves the 1M build)


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

