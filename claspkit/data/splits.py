"""Deterministic train/val/test splits, stratified by category.

The paper used a random 80/10/10 split (seed 42) for Brown and kept the official splits of
Common Voice and FLEURS. Here every category is split on its own, so each split has the
same category mix, and the order of the input never matters: items are ranked by a seeded
hash of their id, not shuffled.

Rounding rule (exact, so small corpora still get a test set):
1. split totals: ``N`` items are apportioned to (train, val, test) by largest remainder of
   ``N * f`` (ties to the earlier split), e.g. 50 -> 40/5/5, 7 -> 5/1/1, 5 -> 4/1/0;
2. per category ``c`` of ``n_c`` items, each split first gets ``floor(n_c * f)``;
3. the remaining items go one at a time to the (category, split) cells with the largest
   fractional remainder ``n_c * f - floor(n_c * f)`` whose category still has items and
   whose split is still below its total (ties: earlier split, then a seeded hash of the
   category name); cells with no remainder take whatever is still left.
Category sizes and split totals are therefore both met exactly, and every cell is within
one item of its exact share whenever the totals allow it.
"""
from __future__ import annotations

import hashlib
import math
from collections import defaultdict

from claspkit.errors import ParamError

__all__ = ["SPLITS", "apportion", "split_counts", "stratified_split", "straddling_twins"]

SPLITS = ("train", "val", "test")


def apportion(total: int, weights) -> list[int]:
    """Integers proportional to ``weights`` summing to ``total`` (largest remainder; ties to the earlier)."""
    w = [float(x) for x in weights]
    s = sum(w)
    if total < 0 or s <= 0 or min(w) < 0:
        raise ParamError(f"cannot apportion {total} items over weights {list(weights)}")
    exact = [total * x / s for x in w]
    counts = [math.floor(x + 1e-9) for x in exact]
    while sum(counts) > total:  # only reachable through float rounding of the 1e-9 nudge
        counts[min(range(len(w)), key=lambda k: (exact[k] - counts[k], -k))] -= 1
    order = sorted(range(len(w)), key=lambda k: (-(exact[k] - counts[k]), k))
    for k in order[: total - sum(counts)]:
        counts[k] += 1
    return counts


def split_counts(n: int, fractions=(0.8, 0.1, 0.1)) -> tuple[int, ...]:
    """How many of ``n`` items each split gets (largest-remainder rounding, see module doc)."""
    return tuple(apportion(n, _check_fractions(fractions)))


def stratified_split(ids, categories, fractions=(0.8, 0.1, 0.1), seed: int = 42) -> dict:
    """``{id: 'train'|'val'|'test'}``, stratified by category, deterministic for a seed.

    Counts follow the rounding rule of the module docstring; within a category, ids are
    ranked by ``sha1(seed, id)`` and the first go to train, the next to val, the rest to test.
    """
    ids = [str(i) for i in ids]
    categories = [str(c) for c in categories]
    if len(ids) != len(categories):
        raise ParamError(f"stratified_split: {len(ids)} ids but {len(categories)} categories; pass one category per id")
    if len(set(ids)) != len(ids):
        raise ParamError("stratified_split: ids must be unique (a duplicate id would get two splits)")
    fr = _check_fractions(fractions)
    groups: dict[str, list[str]] = defaultdict(list)
    for i, c in zip(ids, categories):
        groups[c].append(i)
    counts = _cell_counts({c: len(m) for c, m in groups.items()}, fr, seed)
    out: dict = {}
    for cat, members in groups.items():
        members.sort(key=lambda i: (_h(seed, i), i))
        start = 0
        for name, k in zip(SPLITS, counts[cat]):
            for i in members[start:start + k]:
                out[i] = name
            start += k
    return out


def straddling_twins(ids, keys, split_of: dict) -> list:
    """The ids to drop so that no two items with one ``key`` (e.g. one spoken form) are in different splits.

    Where a key's items straddle splits, only those in its most held-out split (test, then val) stay: the
    held-out galleries never change, and what goes is a training (or validation) pair that would have taught the
    answer to a held-out query. Items whose key stays within one split are left alone, so a sample with no
    straddling key keeps every item and every split. Returned in the order of ``ids``.
    """
    ids, keys = [str(i) for i in ids], list(keys)
    if len(ids) != len(keys):
        raise ParamError(f"straddling_twins: {len(ids)} ids but {len(keys)} keys; pass one key per id")
    rank = {name: k for k, name in enumerate(SPLITS)}
    top: dict = {}
    for i, key in zip(ids, keys):
        top[key] = max(top.get(key, -1), rank[split_of[i]])
    return [i for i, key in zip(ids, keys) if rank[split_of[i]] < top[key]]


def _h(seed, key) -> str:
    return hashlib.sha1(f"{seed}\0{key}".encode("utf-8")).hexdigest()


def _cell_counts(sizes: dict, fr: list, seed) -> dict:
    """Per-category split counts meeting both the category sizes and the global split totals."""
    need = apportion(sum(sizes.values()), fr) if sizes else [0] * len(fr)
    cells = {c: [math.floor(n * f + 1e-9) for f in fr] for c, n in sizes.items()}
    for c, row in cells.items():
        while sum(row) > sizes[c]:  # float nudge overshoot (practically never)
            row[row.index(max(row))] -= 1
    left = {c: sizes[c] - sum(row) for c, row in cells.items()}
    need = [t - sum(cells[c][k] for c in cells) for k, t in enumerate(need)]
    order = sorted(((c, k) for c in cells for k in range(len(fr))),
                   key=lambda ck: (-(sizes[ck[0]] * fr[ck[1]] - cells[ck[0]][ck[1]]), ck[1], _h(seed, ck[0])))
    for strict in (True, False):
        for c, k in order:
            rem = sizes[c] * fr[k] - cells[c][k]
            if left[c] > 0 and need[k] > 0 and (rem > 1e-9 or not strict):
                cells[c][k] += 1
                left[c] -= 1
                need[k] -= 1
    return cells


def _check_fractions(fractions) -> list[float]:
    fr = [float(f) for f in fractions]
    if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1.0) > 1e-6:
        raise ParamError(f"split fractions must be three non-negative numbers summing to 1 (train, val, test), "
                         f"got {list(fractions)}")
    return fr
