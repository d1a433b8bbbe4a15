import json

import pytest

from claspkit.bench import retrieval as BR


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


def test_main_prints_the_table_and_the_paired_lines(monkeypatch, capsys, tmp_path):
    ci = {"hits@1_ci": [0.8, 0.9], "mrr_ci": [0.85, 0.95]}
    rows = [{"system": "CLASP stats (x)", "kind": "stats", "n": 10, "hits@1": 0.9, "mrr": 0.92, **ci, "val_mrr": 0.9,
             "s_per_utt": 0.1, "speedup_vs_cascade": 8.0,
             "vs_cascade": {"hits@1": [0.1, -0.1, 0.3], "mrr": [0.02, 0.0, 0.05], "only_this_first": 3,
                            "only_ref_first": 2}},
            {"system": "ASR cascade (w)", "kind": "cascade", "n": 10, "hits@1": 0.8, "mrr": 0.9, **ci,
             "s_per_utt": 0.8, "speedup_vs_cascade": 1.0}]
    fake = {"rows": rows, "rows_scaling": [], "path": tmp_path / "r.json",
            "meta": {"speech_backbone": "s", "text_backbone": "t", "n_timing": 4}}
    monkeypatch.setattr(BR, "run", lambda *a, **k: fake)
    assert BR.main(["--preset", "tiny", "--heads", "stats"]) == 0
    out = capsys.readouterr().out
    assert "validation MRR" in out and "stats 0.900" in out
    assert "stats: hits@1 +0.100 [-0.100, +0.300], mrr +0.020 [+0.000, +0.050]; first only for stats 3, only for " \
           "the cascade 2" in out
