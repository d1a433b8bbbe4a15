import collections
import random

import pytest

from claspkit.errors import ParamError
from claspkit.data.spoken import spoken_form
from claspkit.data.splits import SPLITS, apportion, split_counts, straddling_twins, stratified_split


def _corpus(n, seed=0):
    rng = random.Random(seed)
    cats = [rng.choice("abcdefghijklmno") for _ in range(n)]
    return [f"brown-x{i:05d}" for i in range(n)], cats


def test_split_counts_rounding_rule():
    assert split_counts(100) == (80, 10, 10)
    assert split_counts(7) == (5, 1, 1)
    assert split_counts(5) == (4, 1, 0)  # tie between val and test goes to the earlier split
    assert split_counts(1) == (1, 0, 0) and split_counts(0) == (0, 0, 0)
    assert sum(split_counts(12345)) == 12345
    assert apportion(10, [3, 1]) == [8, 2] and apportion(3, [1, 1, 1]) == [1, 1, 1]


def test_split_is_deterministic_and_order_independent():
    ids, cats = _corpus(500)
    a = stratified_split(ids, cats, seed=42)
    assert a == stratified_split(ids, cats, seed=42)
    pairs = list(zip(ids, cats))
    random.Random(1).shuffle(pairs)
    assert stratified_split([p[0] for p in pairs], [p[1] for p in pairs], seed=42) == a
    assert stratified_split(ids, cats, seed=7) != a
    assert set(a.values()) == set(SPLITS) and set(a) == set(ids)


@pytest.mark.parametrize("n", [30, 50, 400, 5000])
def test_split_is_stratified_with_exact_totals(n):
    ids, cats = _corpus(n, seed=n)
    split = stratified_split(ids, cats, fractions=(0.8, 0.1, 0.1), seed=3)
    totals = collections.Counter(split.values())
    assert tuple(totals[s] for s in SPLITS) == split_counts(n)  # small corpora still get a test set
    per_cat = collections.defaultdict(collections.Counter)
    for i, c in zip(ids, cats):
        per_cat[c][split[i]] += 1
    for c, counts in per_cat.items():
        size = sum(counts.values())
        for s, f in zip(SPLITS, (0.8, 0.1, 0.1)):
            assert abs(counts[s] - size * f) < 1, (c, dict(counts))


def test_other_fractions_and_bad_input():
    ids, cats = _corpus(200)
    split = stratified_split(ids, cats, fractions=(0.5, 0.25, 0.25), seed=0)
    assert collections.Counter(split.values()) == {"train": 100, "val": 50, "test": 50}
    with pytest.raises(ParamError, match="summing to 1"):
        stratified_split(ids, cats, fractions=(0.8, 0.1, 0.2))
    with pytest.raises(ParamError, match="unique"):
        stratified_split(["a", "a"], ["x", "x"])
    with pytest.raises(ParamError, match="one category per id"):
        stratified_split(["a", "b"], ["x"])


def test_spoken_form_is_one_string_for_texts_spoken_alike():
    assert spoken_form('What is it"?') == spoken_form('"What is it"?') == "what is it"
    assert spoken_form("(B)") == spoken_form("B.") and spoken_form('"Uh-huh.') == spoken_form("Uh huh")
    assert spoken_form("Why not?") != spoken_form("Why now?")


def test_straddling_twins_keep_the_most_held_out_and_leave_one_split_groups_alone():
    ids = ["a", "b", "c", "d", "e", "f", "g", "h"]
    keys = ["x", "x", "y", "y", "y", "z", "z", "w"]
    split_of = {"a": "train", "b": "test", "c": "val", "d": "train", "e": "test", "f": "train", "g": "train",
                "h": "val"}
    assert straddling_twins(ids, keys, split_of) == ["a", "c", "d"]  # x: test stays; y: test stays; z, w: one split
    assert straddling_twins(ids[5:], keys[5:], split_of) == []
    with pytest.raises(ParamError, match="one key per id"):
        straddling_twins(ids, keys[:-1], split_of)
