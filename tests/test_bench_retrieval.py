import json

import numpy as np
import pytest

from claspkit import bench_retrieval as BR


def test_override_parsing_and_the_printed_table():
    assert BR._override("branches=speech") == ("branches", "speech")
    assert BR._override("lr=3e-4") == ("lr", 3e-4) and BR._override("attention_layers=2") == ("attention_layers", 2)
    with pytest.raises(Exception, match="KEY=VALUE"):
        BR._override("speech")
    rows = [{"system": "a", "n": 3, "hits@1": 0.5, "hits@1_ci": [0.2, 0.8], "mrr": 0.6, "mrr_ci": [0.3, 0.9],
             "s_per_utt": 0.1, "speedup_vs_cascade": 5.0}]
    out = BR.format_rows(rows)
    assert "0.500 [0.200, 0.800]" in out and "5.0" in out and "0.1" in out


@pytest.mark.slow
def test_tiny_run_scores_all_systems_on_the_same_gallery(tmp_path, monkeypatch):
    """The paper head, the stats head and the cascade on the tiny test split (features shared with the
    notebooks' cache). The attention head is left to notebook 05, whose default run trains all three heads
    through this same function: here it would cost CI two more trainings for no new assertion."""
    monkeypatch.setenv("CLASPKIT_RUNS", str(tmp_path / "runs"))
    kw = dict(n_timing=2, overrides={"epochs": 2, "bootstrap": 20}, progress=False, heads=("stats", "paper"))
    out = BR.run("tiny", **kw)
    rows = {r["kind"]: r for r in out["rows"]}
    assert set(rows) == {"paper", "stats", "cascade"}
    assert len({r["n"] for r in rows.values()}) == 1 and rows["cascade"]["n"] >= 30
    for r in rows.values():
        lo, hi = r["hits@1_ci"]
        assert 0 <= lo <= r["hits@1"] <= hi <= 1 and r["s_per_utt"] > 0
        assert (r["kind"] == "cascade") == ("val_mrr" not in r) and 0 < r.get("val_mrr", 1) <= 1
        if r["kind"] != "cascade":
            d, lo, hi = r["vs_cascade"]["hits@1"]
            assert d == pytest.approx(r["hits@1"] - rows["cascade"]["hits@1"], abs=1e-4) and lo <= d <= hi
    assert rows["stats"]["fusion"] == "stats" and rows["paper"]["fusion"] != "stats"
    assert rows["cascade"]["speedup_vs_cascade"] == pytest.approx(1.0)
    saved = json.loads(out["path"].read_text())
    assert [r["kind"] for r in saved["rows"]] == ["paper", "stats", "cascade"]
    assert saved["meta"]["heads"] == ["paper", "stats"]
    again = BR.run("tiny", scaling=[80], scaling_head="stats", **kw)
    assert [r["hits@1"] for r in again["rows"]] == [r["hits@1"] for r in out["rows"]]  # reused, deterministic
    points = again["rows_scaling"]
    assert [p["train_items"] for p in points] == [80, 320] and points[0]["n"] == rows["cascade"]["n"]
    assert points[1]["hits@1"] == rows["stats"]["hits@1"] and 0 < points[0]["val_mrr"] <= 1
    assert again["meta"]["scaling_head"] == "stats"


def test_versus_is_the_paired_difference_with_discordant_counts():
    eye = np.eye(4) + 0.01                       # every query ranks its gold first
    worse = eye.copy()
    worse[0, 1] = worse[1, 2] = 2.0              # queries 0 and 1 put another item first: rank 2
    v = BR.versus(worse, eye, n_boot=200, seed=0)
    assert v["hits@1"][0] == pytest.approx(-0.5) and v["mrr"][0] == pytest.approx((0.5 + 0.5) / -4)
    lo, hi = v["hits@1"][1:]
    assert -1 <= lo <= -0.5 <= hi <= 0
    assert (v["only_this_first"], v["only_ref_first"]) == (0, 2)
    assert BR.versus(eye, worse, n_boot=0)["hits@1"] == [0.5, None, None]
    same = BR.versus(eye, eye, n_boot=50)
    assert same["hits@1"] == [0.0, 0.0, 0.0] and same["only_this_first"] == same["only_ref_first"] == 0
    with pytest.raises(Exception, match="same test items"):
        BR.versus(eye, np.eye(3))
    assert BR.versus_line("stats", v).startswith("stats: hits@1 -0.500 [") and "only for the cascade 2" in \
        BR.versus_line("stats", v)


def test_heads_are_checked_and_ordered_before_anything_trains():
    assert BR._heads(["stats", "paper", "stats"]) == ("paper", "stats")
    assert BR._training_order(("paper", "stats")) == ["stats", "paper"]  # the frames pass fills the mean cache
    with pytest.raises(Exception, match="stats"):
        BR._heads(["stat"])
    with pytest.raises(Exception, match="at least one"):
        BR._heads([])
    with pytest.raises(Exception, match="frame head"):
        BR.run("tiny", heads=("paper",), scaling=[10], progress=False)
    assert BR.main(["--preset", "tiny", "--heads", "gating"]) == 2
