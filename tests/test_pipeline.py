"""The stage orchestration: splits, dedupe, checkpoint reuse by fingerprint, model selection on validation."""
import numpy as np
import pandas as pd
import pytest

from claspkit.experiments import pipeline
from claspkit.evaluation import results
from claspkit.config import load_params
from claspkit.errors import ClaspkitError, ParamError


def _toy(n=60, dup_test=True, seed=0):
    """A manifest + features where speech is a noisy linear view of text (learnable in a few epochs)."""
    rng = np.random.default_rng(seed)
    text = rng.normal(size=(n, 8)).astype(np.float32)
    speech = (text @ rng.normal(size=(8, 6)) + 0.05 * rng.normal(size=(n, 6))).astype(np.float32)
    image = rng.normal(size=(n, 5)).astype(np.float32)
    split = np.array(["train"] * (n - 20) + ["val"] * 10 + ["test"] * 10)
    texts = [f"sentence {i}" for i in range(n)]
    if dup_test:
        texts[-1] = texts[-2]  # a duplicate text in the test split
    manifest = pd.DataFrame({"id": [f"x{i}" for i in range(n)], "text": texts, "split": split})
    return manifest, {"speech": speech, "image": image, "text": text}


@pytest.fixture
def P(isolated_data):
    return load_params("tiny", epochs=3, batch_size=8, bootstrap=20, patience=5)


def test_split_data_dedupes_only_the_test_split():
    manifest, feats = _toy()
    data = pipeline.split_data(manifest, feats)
    assert [len(data[s]) for s in pipeline.SPLITS] == [40, 10, 9]
    assert len(set(data["test"].texts)) == len(data["test"])
    assert data["test"].arrays["speech"].shape == (9, 6)


def test_fit_reuses_the_same_model_and_retrains_a_changed_one(P):
    manifest, feats = _toy()
    data = pipeline.split_data(manifest, feats)
    first = pipeline.fit(P, data, "m", progress=False)
    again = pipeline.fit(P, data, "m", progress=False)
    assert not first.reused and again.reused
    assert again.best_epoch == first.best_epoch
    emb = [pipeline.speech_embeddings(t, data["test"]) for t in (first, again)]
    np.testing.assert_allclose(emb[0], emb[1], atol=1e-6)
    changed = pipeline.fit(P, data, "m", progress=False, lr=3e-3)
    assert not changed.reused and changed.config["lr"] == 3e-3


def test_fit_resumes_an_interrupted_training(P):
    manifest, feats = _toy()
    data = pipeline.split_data(manifest, feats)
    full = pipeline.fit(P, data, "full", progress=False, epochs=4, patience=10)
    # an interrupted run: the same fingerprint with a checkpoint written after 2 epochs
    part = pipeline.fit(P, data, "part", progress=False, epochs=2, patience=10)
    d = part.checkpoint
    fp_full = (full.checkpoint / "fingerprint.txt").read_text()
    (d / "fingerprint.txt").write_text(fp_full)  # the 4-epoch run's identity, stopped at epoch 2
    resumed = pipeline.fit(P, data, "part", progress=False, epochs=4, patience=10)
    assert not resumed.reused and len(resumed.history) == 4
    np.testing.assert_allclose(pipeline.speech_embeddings(resumed, data["test"]),
                               pipeline.speech_embeddings(full, data["test"]), atol=1e-5)


def test_evaluate_rows_cover_protocols_and_directions_with_tuned_f1(P):
    manifest, feats = _toy()
    data = pipeline.split_data(manifest, feats)
    t = pipeline.fit(P, data, "m", progress=False)
    rows = pipeline.evaluate(P, t, data["test"], stage="stage1", system="combined", val=data["val"])
    assert {(r["protocol"], r["direction"]) for r in rows} == {
        (p, d) for p in ("candidates", "full") for d in pipeline.DIRECTIONS.values()}
    for r in rows:
        assert 0 <= r["hits@1"] <= 1 and r["n"] == 9
        assert r["speech_backbone"] == P.speech_backbone and r["branches"] == "combined"
        # the tuned threshold belongs to the full gallery (the candidate protocol scores other pairs)
        assert ("macro_f1_tuned" in r) == (r["protocol"] == "full")
        if r["protocol"] == "full":
            assert 0 <= r["macro_f1_tuned"] <= 1
    table = pipeline.table(rows, protocol="full")
    assert list(table.index) == ["combined"]


def test_tuned_threshold_separates_gold_from_distractors():
    sim = np.full((5, 5), 0.8) + np.eye(5) * 0.15
    t = pipeline.tuned_threshold(sim)
    assert 0.8 < t <= 0.95


def test_a_changed_budget_resumes_or_ends_the_same_run(P):
    manifest, feats = _toy()
    data = pipeline.split_data(manifest, feats)
    fresh = pipeline.fit(P, data, "fresh", progress=False, epochs=4, patience=10)
    short = pipeline.fit(P, data, "m", progress=False, epochs=2, patience=10)       # another budget: trained
    longer = pipeline.fit(P, data, "m", progress=False, epochs=4, patience=10)     # resumed at epoch 2
    assert not short.reused and not longer.reused
    assert len(longer.history) == 4 and longer.history[:2] == short.history
    np.testing.assert_array_equal(pipeline.speech_embeddings(longer, data["test"]),
                                  pipeline.speech_embeddings(fresh, data["test"]))
    ended = pipeline.fit(P, data, "m", progress=False, epochs=3, patience=10)      # a budget already spent
    assert ended.reused and len(ended.history) == 4


def test_the_same_training_under_another_name_is_copied_not_retrained(P):
    manifest, feats = _toy()
    data = pipeline.split_data(manifest, feats)
    first = pipeline.fit(P, data, "stage2-cell", progress=False)
    twin = pipeline.fit(P, data, "stage3", progress=False)
    assert not first.reused and twin.reused and twin.checkpoint.name == "stage3"
    assert twin.history == first.history and twin.best_epoch == first.best_epoch
    np.testing.assert_array_equal(pipeline.speech_embeddings(twin, data["test"]),
                                  pipeline.speech_embeddings(first, data["test"]))
    assert sorted(p.name for p in twin.checkpoint.parent.iterdir()) == ["stage2-cell", "stage3"]  # no temp left
    # another budget, knob or damaged source is not the same training
    assert not pipeline.fit(P, data, "longer", progress=False, epochs=4).reused
    assert not pipeline.fit(P, data, "other-lr", progress=False, lr=3e-3).reused
    for d in ("stage3", "longer"):
        (first.checkpoint.parent / d / "model.safetensors").write_bytes(b"damaged")
    (first.checkpoint / "model.safetensors").write_bytes(b"damaged")
    assert not pipeline.fit(P, data, "third", progress=False).reused


def test_best_stage2_uses_validation_not_test(P):
    assert "preset" in pipeline.best_stage2(P)["chosen_by"]
    rows = [{"system": "a", "speech_backbone": "whisper-tiny.en", "text_backbone": "e5-small-multilingual",
             "fusion": "concat", "val_mrr": 0.4, "mrr": 0.9},
            {"system": "b", "speech_backbone": "whisper-tiny.en", "text_backbone": "muse-multilingual",
             "fusion": "gating", "val_mrr": 0.6, "mrr": 0.1}]
    results.write_stage(P.preset, "stage2", rows)
    best = pipeline.best_stage2(P)
    assert (best["text_backbone"], best["fusion"]) == ("muse-multilingual", "gating")


def test_attention_grid_rows_neither_choose_stage3_nor_stand_in_table2(P):
    from claspkit.evaluation import report

    paper_row = {"stage": "stage2", "system": "e5-small-multilingual + whisper-tiny.en, gating", "protocol": "full",
                 "direction": "speech->text", "speech_backbone": "whisper-tiny.en",
                 "text_backbone": "e5-small-multilingual", "fusion": "gating", "val_mrr": 0.3, "hits@1": 0.2,
                 "mrr": 0.3}
    attention_row = {**paper_row, "stage": "attention_grid", "fusion": "attention", "val_mrr": 0.9, "hits@1": 0.9,
                     "system": "e5-small-multilingual + whisper-tiny.en, attention"}
    results.write_stage(P.preset, "stage2", [paper_row])
    results.write_stage(P.preset, "attention_grid", [attention_row])
    assert pipeline.best_stage2(P)["fusion"] == "gating"
    systems = set(report.table2(P.preset)["system"].dropna())
    assert paper_row["system"] in systems and attention_row["system"] not in systems


def test_changed_features_retrain_instead_of_reusing(P):
    manifest, feats = _toy()
    data = pipeline.split_data(manifest, feats)
    assert not pipeline.fit(P, data, "m", progress=False).reused
    feats["image"] = feats["image"] + 1e-3  # e.g. a backbone whose preprocessing changed
    changed = pipeline.split_data(manifest, feats)
    assert not pipeline.fit(P, changed, "m", progress=False).reused


def test_train_subsets_nest_and_are_seeded():
    from claspkit.encoders.frames import Frames
    from claspkit.experiments.pipeline import Split, train_subset

    frames = Frames([np.full((i % 3 + 1, 2), i, np.float16) for i in range(10)])
    split = Split(ids=[f"s{i}" for i in range(10)], texts=[f"t{i}" for i in range(10)],
                  arrays={"speech": frames, "text": np.arange(10.0)[:, None]})
    small, large = train_subset(split, 3, seed=1), train_subset(split, 6, seed=1)
    assert set(small.ids) <= set(large.ids) and len(large) == 6
    assert small.ids == train_subset(split, 3, seed=1).ids and small.ids != train_subset(split, 3, seed=2).ids
    assert [int(f[0, 0]) for f in small.arrays["speech"].items] == [int(i[1:]) for i in small.ids]
    assert small.arrays["text"][:, 0].tolist() == [float(i[1:]) for i in small.ids]
    with pytest.raises(ParamError):
        train_subset(split, 11, seed=1)


def test_the_attention_grid_scores_every_pair_and_stage3_attention_copies_its_cell(tmp_path, monkeypatch):
    """notebook 03's optional grid (``stage2_attention``; off on tiny to keep ``make test`` short), on fakes."""
    from claspkit.encoders import backbones
    from fakes import fake_factory, fake_manifest

    manifest = fake_manifest(tmp_path, monkeypatch)
    monkeypatch.setattr(backbones, "create_backbone", fake_factory({}))
    monkeypatch.setattr(pipeline, "corpus", lambda P, progress=True: manifest)
    P = load_params("tiny", epochs=2, batch_size=8, bootstrap=20, attention_dim=16, attention_heads=2,
                    stage2_text_backbones=["e5-small-multilingual", "muse-multilingual"])
    rows = pipeline.stage2_attention_rows(P, progress=False)
    systems = {r["system"] for r in rows}
    assert systems == {f"{t} + whisper-tiny.en, attention" for t in P.stage2_text_backbones}
    assert {r["stage"] for r in rows} == {"attention_grid"} and all(r["fusion"] == "attention" for r in rows)
    assert all(r["val_mrr"] is not None and 0 <= r["hits@1"] <= 1 for r in rows)
    chosen = pipeline.attention_stage(P, progress=False)  # no Stage-2 results: the preset's pair, a grid cell
    assert chosen.trained.reused and chosen.trained.name == "attention-contrastive"
    assert "preset" in chosen.chosen_by


def test_the_stats_head_trains_on_frames_with_its_own_defaults(tmp_path, monkeypatch):
    """``stats_stage`` on fakes: frames in, random batches of 256 even where the preset asks for length batches."""
    from claspkit.encoders import backbones
    from fakes import fake_factory, fake_manifest

    manifest = fake_manifest(tmp_path, monkeypatch)
    monkeypatch.setattr(backbones, "create_backbone", fake_factory({}))
    monkeypatch.setattr(pipeline, "corpus", lambda P, progress=True: manifest)
    P = load_params("tiny", epochs=2, bootstrap=20, stats_hidden=16, length_batches=True)
    st = pipeline.stats_stage(P, progress=False, batch_size=8)
    assert st.trained.name == "stats-contrastive" and st.trained.config["fusion"] == "stats"
    assert st.P.length_batches is False and "length_batches" not in st.trained.config
    assert st.trained.config["learnable_scale"] is True and st.trained.config["stats_hidden"] == 16
    assert pipeline.stats_stage(P, progress=False, batch_size=8).trained.reused
    assert pipeline.FRAME_DEFAULTS["stats"]["batch_size"] == 256
    emb = pipeline.speech_embeddings(st.trained, st.data["test"])
    assert emb.shape == (len(st.data["test"]), st.trained.config["out_dim"])
    with pytest.raises(ParamError, match="attention, stats"):
        pipeline.frame_stage(P, "gating")


def test_a_preset_can_fix_stage3_whatever_stage2_chose(isolated_data):
    P = load_params("small")                                             # no stage3 knob: validation chooses
    rows = [{"system": "b", "speech_backbone": "whisper-tiny.en", "text_backbone": "muse-multilingual",
             "fusion": "concat", "val_mrr": 0.6, "mrr": 0.1}]
    results.write_stage(P.preset, "stage2", rows)
    assert P.stage3 is None and pipeline.stage3_config(P)["fusion"] == "concat"
    fixed = {"speech_backbone": "whisper-tiny.en", "text_backbone": "e5-small-multilingual", "fusion": "gating"}
    Q = pipeline.with_overrides(P, stage3=fixed)
    assert pipeline.stage3_config(Q) == {**fixed, "chosen_by": "the preset (stage3)"}
    assert pipeline.best_stage2(Q)["fusion"] == "concat"                 # what validation chose is still shown
    for bad, words in (({"fusion": "gating"}, "exactly"), ({**fixed, "fusion": "stats"}, "paper head"),
                       ({**fixed, "text_backbone": "nope"}, "e5-small-multilingual")):
        with pytest.raises(ClaspkitError, match=words):
            pipeline.with_overrides(P, stage3=bad)
