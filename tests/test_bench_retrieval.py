import json

import numpy as np
import pytest

from claspkit.bench import retrieval as BR
from claspkit.errors import ParamError


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
    from claspkit.experiments import pipeline
    from claspkit.config import load_params
    from claspkit.encoders.backbones import create_backbone
    from claspkit.encoders.features import encoder_options

    monkeypatch.setenv("CLASPKIT_RUNS", str(tmp_path / "runs"))
    kw = dict(n_timing=3, overrides={"epochs": 2, "bootstrap": 20}, progress=False, heads=("stats", "paper"))
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
    # every head maps speech into the text space the cascade embeds its transcripts in
    assert rows["paper"]["text_backbone"] == rows["stats"]["text_backbone"] == rows["cascade"]["text_backbone"]
    # timed: a random sample of test items, not the manifest's first ones
    P = load_params("tiny")
    manifest = pipeline.corpus(P, progress=False).set_index("id")
    test_ids = list(manifest.index[manifest["split"] == "test"])
    timed = out["meta"]["timing_ids"]
    assert len(timed) == len(set(timed)) == out["meta"]["n_timing"] == 3
    assert set(timed) <= set(test_ids) and timed != test_ids[:3]
    # each head timed one at a time and batched, with a spread, and its ratio to the cascade inside its CI
    for r in rows.values():
        assert set(r["timing"]) == {"batch_1", f"batch_{BR.TIMING_BATCH}"}
        for t in r["timing"].values():
            assert 0 < t["p10_s"] <= t["median_s"] <= t["p90_s"]
            lo, hi = t["speedup_vs_cascade_ci"]
            assert lo <= t["speedup_vs_cascade"] <= hi
        assert r["speedup_vs_cascade_ci"] == r["timing"][f"batch_{BR.TIMING_BATCH}"]["speedup_vs_cascade_ci"]
    # timed with the image CNN the scored features came from (tiny scores torch features, not ONNX Runtime's)
    scored = create_backbone("image", P.image_backbone, **encoder_options(P, "image")).cache_id
    assert rows["paper"]["timed_image_cache_id"] == rows["stats"]["timed_image_cache_id"] == scored
    saved = json.loads(out["path"].read_text())
    assert [r["kind"] for r in saved["rows"]] == ["paper", "stats", "cascade"]
    assert saved["meta"]["heads"] == ["paper", "stats"]
    again = BR.run("tiny", scaling=[80], scaling_head="stats", **kw)
    assert [r["hits@1"] for r in again["rows"]] == [r["hits@1"] for r in out["rows"]]  # reused, deterministic
    points = again["rows_scaling"]
    assert [p["train_items"] for p in points] == [80, 320] and points[0]["n"] == rows["cascade"]["n"]
    # the full-size point is the stats head scored again (not a copy of its row): the same model, the same numbers
    assert points[1]["hits@1"] == rows["stats"]["hits@1"] and points[1]["mrr_ci"] == rows["stats"]["mrr_ci"]
    assert points[1]["val_mrr"] == rows["stats"]["val_mrr"] and 0 < points[0]["val_mrr"] <= 1
    assert again["meta"]["scaling_head"] == "stats"


def test_a_head_in_another_text_space_than_the_cascade_is_refused_before_training(tmp_path, monkeypatch):
    from claspkit.experiments import pipeline

    monkeypatch.setenv("CLASPKIT_RUNS", str(tmp_path / "runs"))

    def no_training(*a, **k):
        raise AssertionError("trained before the text spaces were checked")

    monkeypatch.setattr(pipeline, "frame_stage", no_training)
    monkeypatch.setattr(pipeline, "stage3", no_training)
    with pytest.raises(ParamError, match=r"stats head maps speech into the minilm-en text space but the cascade "
                                         r"embeds its transcripts with e5-small-multilingual.*Drop text_backbone"):
        BR.run("tiny", heads=("stats", "paper"), stats={"text_backbone": "minilm-en"}, progress=False)
    assert BR._one_text_space("e5", {"paper": "e5", "stats": "e5"}) == "e5"


def test_the_cascade_uses_stage3s_text_space_when_a_preset_fixes_stage3(tmp_path, monkeypatch):
    """tiny fixes Stage 3 (e5); a Stage-2 result that prefers muse must not pull the cascade into muse's space."""
    from claspkit.experiments import pipeline
    from claspkit.evaluation import results

    monkeypatch.setenv("CLASPKIT_RUNS", str(tmp_path / "runs"))
    results.write_stage("tiny", "stage2", [{"system": "m", "speech_backbone": "whisper-tiny.en", "fusion": "concat",
                                            "text_backbone": "muse-multilingual", "val_mrr": 0.9}])

    class Trained(Exception):
        pass

    def training(*a, **k):
        raise Trained

    monkeypatch.setattr(pipeline, "frame_stage", training)
    monkeypatch.setattr(pipeline, "stage3", training)
    with pytest.raises(Trained):                                    # past the text-space check, into training
        BR.run("tiny", heads=("paper", "attention"), progress=False)


def test_timing_sample_is_seeded_random_and_takes_all_of_a_small_split():
    picked = BR._timing_sample(1000, 100, seed=42)
    assert len(set(picked)) == 100 and picked == BR._timing_sample(1000, 100, seed=42)
    assert picked != list(range(100)) and max(picked) > 500 and picked != BR._timing_sample(1000, 100, seed=7)
    assert sorted(BR._timing_sample(40, 100, seed=42)) == list(range(40))
    with pytest.raises(ParamError, match="n_timing"):
        BR._timing_sample(40, 0, seed=42)


def test_speed_spread_and_ratio_ci_come_from_the_per_batch_times():
    sizes = np.array([8, 8, 4])
    head = np.array([0.8, 1.6, 0.4])        # 0.1, 0.2 and 0.1 s per utterance
    cascade = np.array([4.0, 4.0, 2.0])
    t = BR._spread(head, sizes, cascade, n_boot=200, seed=0)
    assert t["s_per_utt"] == pytest.approx(2.8 / 20) and t["speedup_vs_cascade"] == pytest.approx(10 / 2.8)
    assert t["median_s"] == pytest.approx(0.1) and t["p90_s"] == pytest.approx(0.2) and t["p10_s"] == pytest.approx(0.1)
    lo, hi = t["speedup_vs_cascade_ci"]
    assert 2.5 - 1e-9 <= lo < t["speedup_vs_cascade"] < hi <= 5 + 1e-9  # resampled batches: between their ratios


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
