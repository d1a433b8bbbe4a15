import numpy as np
import pytest
from sklearn.metrics import f1_score

from claspkit.errors import ParamError
from claspkit.evaluation.metrics import (bootstrap_ci, candidate_sets, candidates_protocol, cosine_matrix, dedupe,
                              full_gallery, macro_f1, ranks, retrieval_report, versus)
from claspkit.evaluation.report import versus_line

# Hand example. Row 0 has a tie with its gold (0.9 at col 2); row 1's gold is beaten by 0.8.
SIM = np.array([[0.9, 0.2, 0.9],
                [0.8, 0.5, 0.1],
                [0.3, 0.3, 0.7]])


def test_ranks_hand_example_with_ties_both_directions():
    assert ranks(SIM).tolist() == [1, 2, 1]                       # paper: ties favour the gold
    assert ranks(SIM, tie_rule="pessimistic").tolist() == [2, 2, 1]
    assert ranks(SIM, tie_rule="mean").tolist() == [1.5, 2, 1]
    # text -> speech: column 2's gold 0.7 is beaten by 0.9 (row 0)
    assert ranks(SIM.T).tolist() == [1, 1, 2]


def test_full_gallery_hand_example():
    m = full_gallery(SIM)
    assert m["hits@1"] == pytest.approx(2 / 3) and m["hits@5"] == 1 and m["hits@10"] == 1
    assert m["mrr"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["meanr"] == pytest.approx(4 / 3) and m["n"] == 3
    p = full_gallery(SIM, tie_rule="pessimistic")
    assert (p["hits@1"], p["mrr"], p["meanr"]) == pytest.approx((1 / 3, 2 / 3, 5 / 3))
    # random tie-breaking: row 0 is a hit half the time, E[1/rank] = (1 + 1/2) / 2
    e = full_gallery(SIM, tie_rule="mean")
    assert (e["hits@1"], e["mrr"], e["meanr"]) == pytest.approx((0.5, 0.75, 1.5))
    t = full_gallery(SIM.T)
    assert (t["hits@1"], t["mrr"]) == pytest.approx((2 / 3, (1 + 1 + 0.5) / 3))


def test_macro_f1_hand_example():
    # >= 0.5: row0 {0,2}, row1 {0,1}, row2 {2}: tp 3, fp 2, fn 0, tn 4
    # F1(1) = 6/8, F1(0) = 8/10 -> macro 0.775
    assert macro_f1(SIM) == pytest.approx(0.775)
    assert macro_f1(SIM.T) == pytest.approx(0.775)  # same pairs, same labels


@pytest.mark.parametrize("shape,thr", [((7, 7), 0.5), ((5, 9), 0.3), ((1, 1), 0.5), ((1, 1), 2.0),
                                       ((4, 4), -2.0), ((4, 6), 2.0), ((30, 30), 0.1)])
def test_macro_f1_equals_sklearn(shape, thr):
    rng = np.random.default_rng(sum(shape))
    sim = rng.uniform(-1, 1, size=shape)
    labels = np.zeros(shape, dtype=int)
    labels[np.arange(shape[0]), np.arange(shape[0])] = 1
    expect = f1_score(labels.ravel(), (sim >= thr).ravel().astype(int), average="macro", zero_division=0)
    assert macro_f1(sim, threshold=thr) == pytest.approx(expect)


def test_candidate_sets_are_seeded_distinct_and_hold_gold_at_its_position():
    cand, pos = candidate_sets(200, 300, 5, seed=1)
    again, pos2 = candidate_sets(200, 300, 5, seed=1)
    assert np.array_equal(cand, again) and np.array_equal(pos, pos2)
    assert not np.array_equal(candidate_sets(200, 300, 5, seed=2)[0], cand)
    assert np.array_equal(cand[np.arange(200), pos], np.arange(200))
    for i, row in enumerate(cand):
        assert len(set(row)) == 5 and (row == i).sum() == 1
    assert np.bincount(pos, minlength=5).min() > 20  # gold position spread over all 5 slots
    with pytest.raises(ParamError, match="n_candidates"):
        candidate_sets(3, 3, 5)


def test_candidates_protocol_matches_direct_computation():
    rng = np.random.default_rng(0)
    sim = rng.uniform(-1, 1, size=(40, 40)) + 0.8 * np.eye(40)
    cand, pos = candidate_sets(40, 40, 5, seed=7)
    scores = np.take_along_axis(sim, cand, axis=1)
    gold = scores[np.arange(40), pos]
    r = 1 + (scores > gold[:, None]).sum(1)
    labels = np.zeros_like(scores, dtype=int)
    labels[np.arange(40), pos] = 1
    m = candidates_protocol(sim, 5, seed=7)
    assert m["hits@1"] == pytest.approx(np.mean(r == 1))
    assert m["mrr"] == pytest.approx(np.mean(1 / r)) and m["meanr"] == pytest.approx(r.mean())
    assert m["hits@5"] == 1.0 and m["n"] == 40
    assert m["macro_f1"] == pytest.approx(f1_score(labels.ravel(), (scores >= 0.5).ravel(), average="macro"))


def test_candidates_protocol_ties_and_f1_by_hand():
    flat = np.full((10, 10), 0.6)  # every candidate ties with the gold, all predicted relevant
    m = candidates_protocol(flat)
    assert (m["hits@1"], m["mrr"]) == (1.0, 1.0)
    p = candidates_protocol(flat, tie_rule="pessimistic")
    assert (p["hits@1"], p["mrr"], p["meanr"]) == pytest.approx((0, 0.2, 5))
    # 50 pairs: tp 10, fp 40 -> F1(1) = 20/60; no true negative -> F1(0) = 0
    assert m["macro_f1"] == pytest.approx(1 / 6)


def test_bootstrap_ci():
    lo, hi = bootstrap_ci(np.array([0.0, 1.0]), n=1000, seed=0)
    assert (lo, hi) == (0.0, 1.0)
    assert bootstrap_ci(np.full(50, 0.3)) == pytest.approx((0.3, 0.3))
    rng = np.random.default_rng(3)
    sim = rng.normal(size=(300, 300)) + 2.0 * np.eye(300)
    point = full_gallery(sim)
    for metric in ("hits@1", "mrr", "meanr", "macro_f1"):
        lo, hi = bootstrap_ci(sim, metric, n=300, seed=5)
        assert lo < point[metric] < hi
        assert (lo, hi) == bootstrap_ci(sim, metric, n=300, seed=5)
    with pytest.raises(ParamError, match="hits@1"):
        bootstrap_ci(sim, "accuracy")


def test_retrieval_report_row():
    rng = np.random.default_rng(4)
    sim = rng.normal(size=(60, 60)) + 1.5 * np.eye(60)
    row = retrieval_report(sim, n_boot=100)
    assert {k: row[k] for k in full_gallery(sim)} == full_gallery(sim)
    assert row["protocol"] == "full" and len(row["hits@1_ci"]) == 2 and len(row["mrr_ci"]) == 2
    cand = retrieval_report(sim, protocol="candidates", n_boot=0, seed=9)
    assert {k: cand[k] for k in full_gallery(sim)} == candidates_protocol(sim, seed=9)
    assert "mrr_ci" not in cand
    with pytest.raises(ParamError, match="candidates, full"):
        retrieval_report(sim, protocol="hard")
    with pytest.raises(ParamError, match="tie_rule"):
        retrieval_report(sim, tie_rule="random")


def test_dedupe_first_occurrence_and_ties_vanish():
    texts = ["A cat.", "a  cat.", "Dog", "a cat", "dog "]
    idx = dedupe(texts)
    assert idx.tolist() == [0, 2, 3]
    emb = {"a cat.": [1.0, 0.0, 0.0], "dog": [0.0, 1.0, 0.0], "a cat": [0.6, 0.0, 0.8]}
    text_emb = np.array([emb[" ".join(t.lower().split())] for t in texts])
    sim = cosine_matrix(text_emb, text_emb)  # query i == its own text: duplicates tie with the gold
    assert ranks(sim, "pessimistic").tolist() == [2, 2, 2, 1, 2]
    sub = sim[np.ix_(idx, idx)]
    assert ranks(sub, "pessimistic").tolist() == ranks(sub).tolist() == [1, 1, 1]


def test_input_validation():
    with pytest.raises(ParamError, match="n_gallery >= n_queries"):
        ranks(np.zeros((3, 2)))
    with pytest.raises(ParamError, match="NaN"):
        full_gallery(np.array([[np.nan]]))
    with pytest.raises(ParamError, match="all-zero"):
        cosine_matrix(np.zeros((2, 3)), np.ones((2, 3)))


def test_large_gallery_is_fast_and_float32_safe():
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(3000, 3000)).astype(np.float32)
    row = retrieval_report(sim, n_boot=50)
    assert row["n"] == 3000 and 0 <= row["macro_f1"] <= 1


def test_versus_is_the_paired_difference_with_discordant_counts():
    eye = np.eye(4) + 0.01                       # every query ranks its gold first
    worse = eye.copy()
    worse[0, 1] = worse[1, 2] = 2.0              # queries 0 and 1 put another item first: rank 2
    v = versus(worse, eye, n_boot=200, seed=0)
    assert v["hits@1"][0] == pytest.approx(-0.5) and v["mrr"][0] == pytest.approx((0.5 + 0.5) / -4)
    lo, hi = v["hits@1"][1:]
    assert -1 <= lo <= -0.5 <= hi <= 0
    assert (v["only_this_first"], v["only_ref_first"]) == (0, 2)
    assert versus(eye, worse, n_boot=0)["hits@1"] == [0.5, None, None]
    same = versus(eye, eye, n_boot=50)
    assert same["hits@1"] == [0.0, 0.0, 0.0] and same["only_this_first"] == same["only_ref_first"] == 0
    with pytest.raises(Exception, match="same test items"):
        versus(eye, np.eye(3))
    assert versus_line("stats", v).startswith("stats: hits@1 -0.500 [") and "only for the cascade 2" in \
        versus_line("stats", v)
