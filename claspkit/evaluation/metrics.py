"""Retrieval metrics and the paper's two protocols, on a similarity matrix.

``sim`` has shape (n_queries, n_gallery) and gallery item i is the gold of query i (extra gallery
columns beyond n_queries are pure distractors). Speech->text retrieval scores ``sim``; text->speech
scores ``sim.T``. Every function is vectorised and works in row chunks, so a 6000 x 6000 matrix is fine.

Ranks: rank = 1 + #(gallery scores strictly greater than the gold score) -- the paper's rule, which
lets ties favour the gold (``tie_rule='optimistic'``, the default, so our numbers are comparable with
the paper's). ``'pessimistic'`` puts the gold after every tied item; ``'mean'`` is the expectation
under random tie-breaking (HITS@k = P(rank <= k), MRR = E[1/rank], meanR = E[rank]). With
:func:`dedupe` applied first the three rules only differ for genuinely equal scores.

Macro-F1 (the paper's "classification"): every (query, item) pair is predicted relevant iff its
cosine >= threshold (0.5); the label is 1 only for the gold pair; sklearn's macro F1 (mean of the F1 of
class 1 and of class 0) over all pairs, computed from confusion counts, never from n^2 label arrays.
"""
from __future__ import annotations

import unicodedata

import numpy as np

from claspkit.errors import ParamError, choices_hint

__all__ = [
    "TIE_RULES", "PROTOCOLS", "KS", "METRICS", "CI_METRICS", "cosine_matrix", "ranks", "macro_f1",
    "full_gallery", "candidate_sets", "candidates_protocol", "bootstrap_ci", "ratio_ci", "versus", "retrieval_report",
    "dedupe_key", "dedupe",
]

TIE_RULES = ("optimistic", "pessimistic", "mean")
PROTOCOLS = ("full", "candidates")
KS = (1, 5, 10)
METRICS = ("hits@1", "hits@5", "hits@10", "mrr", "meanr", "macro_f1")
CI_METRICS = ("hits@1", "mrr", "meanr", "macro_f1")
_CHUNK = 512


# ----------------------------------------------------------------------------- inputs
def cosine_matrix(queries, gallery) -> np.ndarray:
    """Cosine similarities (n_queries, n_gallery) as float32; a zero vector is an error, not a 0 score."""
    q, g = (np.asarray(x, dtype=np.float32) for x in (queries, gallery))
    out = []
    for name, x in (("query", q), ("gallery", g)):
        if x.ndim != 2:
            raise ParamError(f"{name} embeddings must be 2-D (n, dim), got shape {x.shape}")
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        if not np.all(np.isfinite(x)) or np.any(norm == 0):
            raise ParamError(f"{name} embeddings contain NaN/inf or all-zero rows; re-extract those features")
        out.append(x / norm)
    return out[0] @ out[1].T


def _check_sim(sim) -> np.ndarray:
    sim = np.asarray(sim)
    if sim.ndim != 2 or sim.shape[0] < 1 or sim.shape[1] < sim.shape[0]:
        raise ParamError(f"sim must be (n_queries, n_gallery) with n_gallery >= n_queries >= 1 and gold on the "
                         f"diagonal, got shape {sim.shape}; for the other direction pass sim.T of a square matrix")
    if not np.issubdtype(sim.dtype, np.floating):
        sim = sim.astype(np.float64)
    if not np.isfinite(sim).all():
        raise ParamError("sim contains NaN or inf; check the embeddings that produced it")
    return sim


def _check_choice(what, value, choices):
    if value not in choices:
        raise ParamError(f"{what} {choices_hint(value, choices)}")


# ----------------------------------------------------------------------------- per-query statistics
def _gold_stats(scores: np.ndarray, gold: np.ndarray, threshold: float) -> np.ndarray:
    """Per row: (#greater than gold, #ties besides gold, gold >= thr, #items >= thr, #items). int64 (n, 5)."""
    n, m = scores.shape
    out = np.empty((n, 5), dtype=np.int64)
    for a in range(0, n, _CHUNK):
        block = scores[a:a + _CHUNK]
        g = block[np.arange(len(block)), gold[a:a + _CHUNK]][:, None]
        out[a:a + _CHUNK, 0] = (block > g).sum(1)
        out[a:a + _CHUNK, 1] = (block == g).sum(1) - 1
        out[a:a + _CHUNK, 2] = g[:, 0] >= threshold
        out[a:a + _CHUNK, 3] = (block >= threshold).sum(1)
    out[:, 4] = m
    return out


def _per_query(stats: np.ndarray, tie_rule: str) -> dict[str, np.ndarray]:
    """Per-query HITS@k, reciprocal rank and rank from the (greater, ties) counts."""
    _check_choice("tie_rule", tie_rule, TIE_RULES)
    g, e = stats[:, 0].astype(np.float64), stats[:, 1].astype(np.float64)
    if tie_rule != "mean":
        rank = g + 1 + (e if tie_rule == "pessimistic" else 0)
        vals = {f"hits@{k}": (rank <= k).astype(np.float64) for k in KS}
        vals.update(mrr=1 / rank, meanr=rank)
        return vals
    # gold equally likely at ranks g+1 .. g+1+e
    harmonic = np.concatenate([[0.0], np.cumsum(1 / np.arange(1, int(stats[:, 4].max()) + 1))])
    vals = {f"hits@{k}": np.clip((k - g) / (e + 1), 0, 1) for k in KS}
    vals["mrr"] = (harmonic[(g + e + 1).astype(int)] - harmonic[g.astype(int)]) / (e + 1)
    vals["meanr"] = g + 1 + e / 2
    return vals


def _f1_from_counts(c: np.ndarray) -> np.ndarray:
    """Macro F1 over the classes present (sklearn's rule) from summed (gold>=thr, #>=thr, #pairs, #queries).

    ``c`` has shape (..., 4): true positives, predicted positives, pairs, positive labels.
    """
    tp, pp, total, pos = (c[..., i].astype(np.float64) for i in range(4))
    fp, fn = pp - tp, pos - tp
    tn = total - tp - fp - fn
    f1_pos = 2 * tp / (2 * tp + fp + fn)           # class 1 always present (every query has a gold)
    neg_present = (total > pos) | (total > pp)     # a 0 label, or a 0 prediction
    with np.errstate(invalid="ignore", divide="ignore"):
        f1_neg = np.where(neg_present, 2 * tn / (2 * tn + fn + fp), 0.0)
    return np.where(neg_present, (f1_pos + f1_neg) / 2, f1_pos)


def _f1_counts(stats: np.ndarray) -> np.ndarray:
    """Per-query (tp, predicted positives, pairs, positive labels) -- summable over queries."""
    return np.stack([stats[:, 2], stats[:, 3], stats[:, 4], np.ones(len(stats), dtype=np.int64)], axis=1)


def _summary(stats: np.ndarray, tie_rule: str) -> dict:
    vals = {k: float(v.mean()) for k, v in _per_query(stats, tie_rule).items()}
    vals["macro_f1"] = float(_f1_from_counts(_f1_counts(stats).sum(0)))
    vals["n"] = int(len(stats))
    return vals


def _full_stats(sim, threshold):
    sim = _check_sim(sim)
    return _gold_stats(sim, np.arange(sim.shape[0]), threshold)


# ----------------------------------------------------------------------------- public metrics
def ranks(sim, tie_rule: str = "optimistic") -> np.ndarray:
    """Rank of each query's gold (1 = best), float64. Default: 1 + #(scores strictly greater) (the paper's)."""
    return _per_query(_full_stats(sim, np.inf), tie_rule)["meanr"]


def macro_f1(sim, threshold: float = 0.5) -> float:
    """sklearn ``f1_score(labels, sim.ravel() >= threshold, average='macro')`` with labels = the gold pairs."""
    return float(_f1_from_counts(_f1_counts(_full_stats(sim, threshold)).sum(0)))


def full_gallery(sim, threshold: float = 0.5, tie_rule: str = "optimistic") -> dict:
    """HITS@1/5/10, MRR, meanR, Macro-F1 and n over the whole matrix (the paper's hard protocol)."""
    return _summary(_full_stats(sim, threshold), tie_rule)


def candidate_sets(n_queries: int, n_gallery: int, n_candidates: int = 5, seed: int = 42):
    """Per query: gold plus n_candidates-1 distinct random distractors, gold at a random position.

    Returns (candidates (n_queries, n_candidates) gallery indices, gold_position (n_queries,)).
    Drawn from one seeded numpy Generator, so every system sees the same candidate lists.
    """
    if not 2 <= n_candidates <= n_gallery:
        raise ParamError(f"n_candidates must be between 2 and the gallery size {n_gallery}, got {n_candidates}")
    rng = np.random.default_rng(seed)
    k = n_candidates - 1
    d = rng.integers(0, n_gallery - 1, size=(n_queries, k))
    while True:  # redraw rows with a repeated distractor: uniform over k-subsets
        srt = np.sort(d, axis=1)
        bad = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
        if not bad.any():
            break
        d[bad] = rng.integers(0, n_gallery - 1, size=(int(bad.sum()), k))
    d += d >= np.arange(n_queries)[:, None]  # skip the gold index
    pos = rng.integers(0, n_candidates, size=n_queries)
    cand = np.empty((n_queries, n_candidates), dtype=np.int64)
    is_gold = np.arange(n_candidates)[None, :] == pos[:, None]
    cand[is_gold] = np.arange(n_queries)
    cand[~is_gold] = d.ravel()
    return cand, pos


def _candidate_stats(sim, n_candidates, seed, threshold):
    sim = _check_sim(sim)
    cand, pos = candidate_sets(sim.shape[0], sim.shape[1], n_candidates, seed)
    scores = np.take_along_axis(sim, cand, axis=1)
    return _gold_stats(scores, pos, threshold)


def candidates_protocol(sim, n_candidates: int = 5, seed: int = 42, threshold: float = 0.5,
                        tie_rule: str = "optimistic") -> dict:
    """The paper's '5 random candidates' protocol (seeded; the authors' was not).

    Each query is ranked among its own candidates only. Macro-F1 here is computed over the
    n_queries * n_candidates (query, candidate) pairs: label 1 for the gold candidate, prediction 1 if
    cosine >= threshold, sklearn macro F1 over those pairs. HITS@5/@10 are 1 by construction with 5.
    """
    return _summary(_candidate_stats(sim, n_candidates, seed, threshold), tie_rule)


# ----------------------------------------------------------------------------- confidence intervals
def _bootstrap(stat, n_items: int, n: int, seed: int, level: float) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    values = np.empty(n)
    step = max(1, 2_000_000 // max(n_items, 1))
    for a in range(0, n, step):
        idx = rng.integers(0, n_items, size=(min(step, n - a), n_items))
        values[a:a + len(idx)] = stat(idx)
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def _ci_from_stats(stats, metric, tie_rule, n, seed, level):
    _check_choice("metric", metric, METRICS)
    if metric == "macro_f1":
        counts = _f1_counts(stats)
        return _bootstrap(lambda idx: _f1_from_counts(counts[idx].sum(1)), len(stats), n, seed, level)
    vals = _per_query(stats, tie_rule)[metric]
    return _bootstrap(lambda idx: vals[idx].mean(1), len(vals), n, seed, level)


def bootstrap_ci(values_or_sim, metric: str | None = "mrr", n: int = 1000, seed: int = 42, level: float = 0.95,
                 threshold: float = 0.5, tie_rule: str = "optimistic") -> tuple[float, float]:
    """Percentile bootstrap interval (95% by default) resampling *queries* with replacement.

    Pass per-query values (1-D: CI of their mean; ``metric`` unused) or a full-gallery ``sim`` (2-D) with a
    metric name. The gallery stays fixed, so a query's rank does not change across resamples; Macro-F1
    is recomputed from the resampled queries' confusion counts.
    """
    arr = np.asarray(values_or_sim)
    if not 0 < level < 1 or n < 1:
        raise ParamError(f"need 0 < level < 1 and n >= 1 resamples, got level={level}, n={n}")
    if arr.ndim == 1:
        vals = arr.astype(np.float64)
        if len(vals) == 0 or not np.isfinite(vals).all():
            raise ParamError("per-query values must be a non-empty finite 1-D array")
        return _bootstrap(lambda idx: vals[idx].mean(1), len(vals), n, seed, level)
    return _ci_from_stats(_full_stats(arr, threshold), metric, tie_rule, n, seed, level)


def ratio_ci(num, den, n: int = 1000, seed: int = 42, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``sum(num) / sum(den)``, resampling the paired units (e.g. the same
    utterances timed through two pipelines) jointly, so a speed ratio carries its uncertainty."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if num.shape != den.shape or num.ndim != 1 or not len(num) or not (np.isfinite(num).all() and (den > 0).all()):
        raise ParamError(f"need two finite 1-D arrays of one length with positive denominators, got {num.shape} and "
                         f"{den.shape}")
    if not 0 < level < 1 or n < 1:
        raise ParamError(f"need 0 < level < 1 and n >= 1 resamples, got level={level}, n={n}")
    return _bootstrap(lambda idx: num[idx].sum(1) / den[idx].sum(1), len(num), n, seed, level)


def versus(sim: np.ndarray, sim_ref: np.ndarray, n_boot: int = 1000, seed: int = 42) -> dict:
    """A system against a reference on the same queries: per-query differences, not two separate CIs.

    Both answer every query, so the paired difference (queries resampled jointly) has a much tighter CI than
    the two systems' own intervals suggest; the HITS@1 discordant counts say how many queries only one of the
    two ranks first. ``{metric: [mean difference, lo, hi]}`` (lo, hi None when ``n_boot`` is 0) and the counts.
    """
    mine, ref = ranks(sim), ranks(sim_ref)
    if mine.shape != ref.shape:
        raise ParamError(f"versus: {len(mine)} queries against {len(ref)}; score both on the same test items")
    out: dict = {}
    for m, value in (("hits@1", lambda r: (r <= 1).astype(np.float64)), ("mrr", lambda r: 1.0 / r)):
        d = value(mine) - value(ref)
        lo, hi = bootstrap_ci(d, n=n_boot, seed=seed) if n_boot else (None, None)
        out[m] = [round(float(d.mean()), 4)] + [None if x is None else round(float(x), 4) for x in (lo, hi)]
    out["only_this_first"] = int(((mine <= 1) & (ref > 1)).sum())
    out["only_ref_first"] = int(((ref <= 1) & (mine > 1)).sum())
    return out



# ----------------------------------------------------------------------------- report
def retrieval_report(sim, protocol: str = "full", n_candidates: int = 5, threshold: float = 0.5,
                     tie_rule: str = "optimistic", n_boot: int = 1000, seed: int = 42, level: float = 0.95) -> dict:
    """One flat result row: metrics, ``n``, ``protocol`` and ``<metric>_ci`` = [lo, hi] (none if n_boot=0).

    ``seed`` fixes both the candidate lists and the bootstrap resamples.
    """
    _check_choice("protocol", protocol, PROTOCOLS)
    if protocol == "full":
        stats = _full_stats(sim, threshold)
    else:
        stats = _candidate_stats(sim, n_candidates, seed, threshold)
    row = {"protocol": protocol, **_summary(stats, tie_rule)}
    if n_boot:
        for m in CI_METRICS:
            row[f"{m}_ci"] = list(_ci_from_stats(stats, m, tie_rule, n_boot, seed, level))
    return row


# ----------------------------------------------------------------------------- duplicates
def dedupe_key(text: str) -> str:
    """The duplicate key: Unicode NFKC, case-folded, whitespace collapsed; punctuation kept."""
    return " ".join(unicodedata.normalize("NFKC", str(text)).casefold().split())


def dedupe(texts) -> np.ndarray:
    """Indices (ascending) of the first occurrence of each normalised text.

    The one duplicate rule applied to every system: subset queries *and* gallery with the same
    indices (``sim[np.ix_(idx, idx)]``), so each gallery text is unique and query i keeps gold i.
    """
    seen, keep = set(), []
    for i, t in enumerate(texts):
        key = dedupe_key(t)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)
