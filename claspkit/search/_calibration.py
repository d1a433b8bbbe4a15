"""Calibrating an ANN index: probe queries drawn from the index itself, and recall@k against the exact search.

Both ANN kinds (``_ivf``'s IVF-Flat, ``_pq``'s IVF-PQ) choose their search settings as the cheapest that reach
``ANN_TARGET_RECALL`` on these probes, and store the recall they measured in the index manifest.
"""
from __future__ import annotations

import numpy as np

from claspkit.search._exact import normalize_rows

__all__ = ["ANN_TARGET_RECALL", "ANN_PROBES", "calibration_probes", "without_self", "probe_queries", "recall_at_k"]

ANN_TARGET_RECALL = 0.95
ANN_PROBES = 200                # probe queries for the nprobe calibration


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
