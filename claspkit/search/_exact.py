"""Exact search over unit vectors: the inner product of the query with every stored row, block by block.

Below ``ANN_MIN_SEGMENTS`` (``claspkit.search.index``) an index is searched this way only (see ``_ivf`` for why),
and the ANN files are calibrated and re-ranked against it.
"""
from __future__ import annotations

import numpy as np

from claspkit.errors import ClaspkitError, ParamError

__all__ = ["normalize_rows", "top_k", "EXACT_BLOCK", "search_exact"]


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
