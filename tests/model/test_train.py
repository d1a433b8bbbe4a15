import json

import numpy as np
import pytest
import torch

import claspkit.model.train as T
from claspkit.errors import ChecksumError, DataMissingError, ParamError
from claspkit.model.fusion import build_fusion
from claspkit.evaluation.metrics import cosine_matrix, full_gallery
from claspkit.model.checkpoint import load_checkpoint, save_checkpoint
from claspkit.model.inference import embed_speech
from claspkit.model.train import train, training_config


def make_split(n, seed, dims=(24, 20, 16)):
    """Text = a fixed random map of (speech, image) plus noise: learnable, not trivial."""
    rng = np.random.default_rng(seed)
    ds, di, dt = dims
    w = np.random.default_rng(123).normal(size=(ds + di, dt))
    speech, image = rng.normal(size=(n, ds)), rng.normal(size=(n, di))
    text = np.tanh(np.concatenate([speech, image], 1) @ w / 4) + 0.05 * rng.normal(size=(n, dt))
    return {k: v.astype(np.float32) for k, v in (("speech", speech), ("image", image), ("text", text))}


TRAIN, VAL = make_split(160, 1), make_split(48, 2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")
CFG = {"lr": 1e-3, "batch_size": 32, "epochs": 4, "patience": 3, "step_size": 2, "gamma": 0.5, "seed": 7,
       "loss": "contrastive", "fusion": "concat", "branches": "combined", "text_backbone": "e5-small"}


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def strip_time(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_two_runs_are_identical_and_learn():
    r1 = train(CFG, TRAIN, VAL, progress=False)
    r2 = train(CFG, TRAIN, VAL, progress=False)
    assert same_weights(weights(r1.model), weights(r2.model))
    assert strip_time(r1.history) == strip_time(r2.history)
    assert [h["epoch"] for h in r1.history] == [1, 2, 3, 4]
    assert [h["lr"] for h in r1.history] == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4])  # StepLR(2, 0.5)
    assert r1.history[-1]["train_loss"] < r1.history[0]["train_loss"]
    assert r1.best_val_loss == min(h["val_loss"] for h in r1.history)
    emb = embed_speech(r1.model, VAL["speech"], VAL["image"], batch_size=20)
    assert emb.shape == (48, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    # better than chance (MRR of a random ranking of 48 is about 0.09)
    assert full_gallery(cosine_matrix(emb, VAL["text"]))["mrr"] > 0.3
    assert r1.epoch_seconds > 0 and r1.config["out_dim"] == 16 and r1.config["text_backbone"] == "e5-small"


def test_training_leaves_global_rng_and_flags_alone():
    torch.manual_seed(0)
    expect = torch.rand(3)
    torch.manual_seed(0)
    torch.set_num_threads(threads := 2)
    train({**CFG, "epochs": 1}, TRAIN, VAL, progress=False, num_threads=1)
    assert torch.equal(torch.rand(3), expect)
    assert not torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == threads


@pytest.mark.parametrize("extra", [{}, {"learnable_scale": True, "fusion": "gating"}])
def test_resume_equals_uninterrupted(tmp_path, extra):
    cfg = {**CFG, **extra}
    full = train(cfg, TRAIN, VAL, progress=False)
    part = train({**cfg, "epochs": 2}, TRAIN, VAL, progress=False, checkpoint_dir=tmp_path, checkpoint_every=1)
    assert len(part.history) == 2
    resumed = train(cfg, TRAIN, VAL, progress=False, resume_from=tmp_path, checkpoint_dir=tmp_path)
    assert strip_time(resumed.history) == strip_time(full.history)
    assert same_weights(weights(resumed.model), weights(full.model))
    assert same_weights(resumed.loss_fn.state_dict(), full.loss_fn.state_dict())
    assert resumed.best_epoch == full.best_epoch
    # the folder now holds the finished run
    model, config = load_checkpoint(tmp_path)
    assert same_weights(weights(model), weights(full.model)) and config["checkpoint"]["epoch"] == 4
    with pytest.raises(ParamError, match="lr"):
        train({**cfg, "lr": 0.1}, TRAIN, VAL, progress=False, resume_from=tmp_path)


def test_early_stopping_keeps_best_weights(monkeypatch):
    scripted = iter([3.0, 2.0, 2.5, 2.4, 2.6, 1.0])
    states = []

    def fake_eval(model, loss_fn, data, bs):
        states.append(weights(model))
        return next(scripted)

    monkeypatch.setattr(T, "_evaluate", fake_eval)
    r = train({**CFG, "epochs": 10, "patience": 3}, TRAIN, VAL, progress=False)
    assert [h["val_loss"] for h in r.history] == [3.0, 2.0, 2.5, 2.4, 2.6]  # stopped before the 1.0
    assert r.stopped_early and r.best_epoch == 2 and r.best_val_loss == 2.0
    assert same_weights(weights(r.model), states[1]) and not same_weights(states[1], states[-1])


def test_checkpoint_roundtrip_is_safetensors_and_json_only(tmp_path):
    model = build_fusion({"fusion": "gating", "branches": "speech", "speech_dim": 24, "image_dim": None,
                          "out_dim": 16, "dropout_scale": 1.0}).eval()
    save_checkpoint(tmp_path, model, {"loss": "huber", "speech_backbone": "whisper-tiny.en"}, extra={"note": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded, config = load_checkpoint(tmp_path)
    x = torch.randn(5, 24)
    assert torch.equal(loaded(x, None), model(x, None))
    assert config["fusion"] == "gating" and config["speech_backbone"] == "whisper-tiny.en"
    assert config["checkpoint"]["note"] == "x"
    with pytest.raises(ParamError, match="weights only"):
        train({**CFG, "branches": "speech", "fusion": "gating"}, TRAIN, VAL, progress=False, resume_from=tmp_path)
    with pytest.raises(ParamError, match="disagrees"):
        save_checkpoint(tmp_path, model, {"fusion": "concat"})
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ChecksumError, match="interrupted"):
        load_checkpoint(tmp_path)
    with pytest.raises(DataMissingError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing")
    json.loads((tmp_path / "config.json").read_text())  # plain JSON


def test_single_branch_needs_only_its_features():
    only_image = {k: v for k, v in TRAIN.items() if k != "speech"}
    r = train({**CFG, "branches": "image", "epochs": 1}, only_image, {k: v for k, v in VAL.items() if k != "speech"},
              progress=False)
    assert r.config["speech_dim"] is None and r.config["image_dim"] == 20
    assert embed_speech(r.model, None, VAL["image"]).shape == (48, 16)


def test_bad_inputs_fail_with_a_fix():
    with pytest.raises(ParamError, match="lack 'image'"):
        train(CFG, {k: v for k, v in TRAIN.items() if k != "image"}, VAL, progress=False)
    bad = {**TRAIN, "speech": TRAIN["speech"].copy()}
    bad["speech"][3, 0] = np.nan
    with pytest.raises(ParamError, match="re-extract"):
        train(CFG, bad, VAL, progress=False)
    with pytest.raises(ParamError, match="contrastive, huber"):
        train({**CFG, "loss": "mse"}, TRAIN, VAL, progress=False)
    with pytest.raises(ParamError, match="batch_size"):
        train({**CFG, "batch_size": 1}, TRAIN, VAL, progress=False)
    with pytest.raises(ParamError, match="different dims"):
        train(CFG, TRAIN, {**VAL, "text": VAL["text"][:, :8]}, progress=False)


def test_huber_training_and_progress_bar(capsys):
    r = train({**CFG, "loss": "huber", "huber_delta": 0.6, "epochs": 2}, TRAIN, VAL, progress=True)
    assert r.history[1]["train_loss"] < r.history[0]["train_loss"]
    assert "val=" in capsys.readouterr().err


# ------------------------------------------------------------------ the attention head on frame features
from claspkit.encoders.frames import Frames  # noqa: E402


def make_frames_split(n, seed, ds=12, dt=16, di=10):
    """Ragged frames (3-14 steps); text = a fixed map of the frames' mean plus noise."""
    rng = np.random.default_rng(seed)
    w = np.random.default_rng(5).normal(size=(ds, dt))
    items = [rng.normal(size=(int(rng.integers(3, 15)), ds)).astype(np.float32) for _ in range(n)]
    text = np.stack([np.tanh(f.mean(0) @ w) for f in items]) + 0.05 * rng.normal(size=(n, dt))
    return {"speech": Frames(items, pool=4), "image": rng.normal(size=(n, di)).astype(np.float32),
            "text": text.astype(np.float32)}


FTRAIN, FVAL = make_frames_split(160, 1), make_frames_split(48, 2)
ATT = {**CFG, "fusion": "attention", "attention_dim": 32, "attention_heads": 4}


def test_attention_training_is_reproducible_learns_and_embeds_batch_independently():
    cfg = {**ATT, "branches": "speech", "lr": 3e-3, "epochs": 8, "patience": 8, "step_size": 20}
    r1, r2 = (train(cfg, FTRAIN, FVAL, progress=False) for _ in range(2))
    assert same_weights(weights(r1.model), weights(r2.model)) and strip_time(r1.history) == strip_time(r2.history)
    assert r1.history[-1]["train_loss"] < r1.history[0]["train_loss"]
    assert r1.config["frame_pool"] == 4 and r1.config["speech_dim"] == 12 and r1.config["attention_layers"] == 1
    emb = embed_speech(r1.model, FVAL["speech"])
    assert emb.shape == (48, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert full_gallery(cosine_matrix(emb, FVAL["text"]))["mrr"] > 0.5        # chance is about 0.09
    np.testing.assert_allclose(embed_speech(r1.model, FVAL["speech"], batch_size=1), emb, atol=1e-5)
    np.testing.assert_allclose(embed_speech(r1.model, list(FVAL["speech"].items[:5])), emb[:5], atol=1e-6)


@pytest.mark.parametrize("extra", [{}, {"learnable_scale": True, "scale_lr": 0.05}, {"length_batches": True}])
def test_attention_resume_equals_uninterrupted(tmp_path, extra):
    cfg = {**ATT, **extra}
    full = train(cfg, FTRAIN, FVAL, progress=False)
    train({**cfg, "epochs": 2}, FTRAIN, FVAL, progress=False, checkpoint_dir=tmp_path, checkpoint_every=1)
    resumed = train(cfg, FTRAIN, FVAL, progress=False, resume_from=tmp_path, checkpoint_dir=tmp_path)
    assert strip_time(resumed.history) == strip_time(full.history)
    assert same_weights(weights(resumed.model), weights(full.model))
    assert same_weights(resumed.loss_fn.state_dict(), full.loss_fn.state_dict())
    model, config = load_checkpoint(tmp_path)                             # rebuilt from config.json
    assert type(model).__name__ == "AttentionFusion" and config["attention_dim"] == 32
    x, lengths = FVAL["speech"].pad(slice(0, 7))
    with torch.no_grad():
        torch.testing.assert_close(model(torch.from_numpy(x), torch.from_numpy(FVAL["image"][:7]),
                                         lengths=torch.from_numpy(lengths)),
                                   full.model(torch.from_numpy(x), torch.from_numpy(FVAL["image"][:7]),
                                              lengths=torch.from_numpy(lengths)), rtol=0, atol=0)
    with pytest.raises(ParamError, match="attention_dim"):
        train({**cfg, "attention_dim": 64}, FTRAIN, FVAL, progress=False, resume_from=tmp_path)


def test_length_batches_are_full_seeded_similar_in_length_and_cover_the_epoch():
    from claspkit.model.train import _length_batches

    lengths = np.random.default_rng(0).integers(3, 200, size=1000)
    draw = lambda seed: _length_batches(lengths, 16, torch.Generator().manual_seed(seed), pool=10)
    a, b, c = draw(1), draw(1), draw(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and len(a) == len(b) == 1000 // 16
    assert not all(torch.equal(x, y) for x, y in zip(a, c))                # another epoch, other batches
    rows = torch.cat(a).numpy()
    assert all(len(x) == 16 for x in a) and len(np.unique(rows)) == len(rows) >= 1000 - 16
    padded = lambda batches: sum(len(x) * lengths[x.numpy()].max() for x in batches)
    random = [torch.from_numpy(p) for p in np.random.default_rng(3).permutation(1000)[:62 * 16].reshape(62, 16)]
    assert padded(a) < 0.75 * padded(random)                         # what it is for: far less padding
    # the knob enters the config only for the attention head, set; an earlier run's fingerprint stays
    assert "length_batches" not in training_config(ATT) and "length_batches" not in training_config(
        {**CFG, "length_batches": True})
    assert training_config({**ATT, "length_batches": True})["length_batches"] is True
    with pytest.raises(ParamError, match="length_batches must be True or False"):
        training_config({**ATT, "length_batches": "yes"})


def test_attention_learns_with_length_batches():
    cfg = {**ATT, "branches": "speech", "lr": 3e-3, "epochs": 8, "patience": 8, "step_size": 20,
           "length_batches": True}
    r = train(cfg, FTRAIN, FVAL, progress=False)
    assert r.config["length_batches"] is True and r.history[-1]["train_loss"] < r.history[0]["train_loss"]
    assert full_gallery(cosine_matrix(embed_speech(r.model, FVAL["speech"]), FVAL["text"]))["mrr"] > 0.5


def test_scale_lr_gives_the_logit_scale_its_own_decaying_rate(tmp_path):
    base = {**CFG, "learnable_scale": True}
    same = train(base, TRAIN, VAL, progress=False)
    fast = train({**base, "scale_lr": 0.05}, TRAIN, VAL, progress=False, checkpoint_dir=tmp_path)
    assert [h["scale_lr"] for h in fast.history] == pytest.approx([0.05, 0.05, 0.025, 0.025])   # StepLR(2, 0.5)
    assert "scale_lr" not in same.history[0] and "scale_lr" not in same.config
    moved = lambda r: abs(r.history[-1]["logit_scale"] - 1 / 0.07)
    assert moved(fast) > 3 * moved(same)
    assert all(h["logit_scale"] <= 100.0 for h in fast.history)
    groups = json.loads((tmp_path / "config.json").read_text())["checkpoint"]["optimizer_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([2.5e-4, 0.0125]) and len(groups[1]["params"]) == 1


def test_new_knobs_stay_out_of_existing_configs():
    """So every earlier configuration keeps its exact config, fingerprint and checkpoints."""
    knobs = T.training_config(CFG)
    assert set(knobs) == set(T.TRAIN_KEYS) | {"text_backbone"}
    assert {"attention_dim", "attention_layers", "attention_heads", "frame_pool"} <= set(T.training_config(ATT))
    assert T.training_config({**CFG, "learnable_scale": True, "scale_lr": 1})["scale_lr"] == 1.0


def test_frame_and_dense_features_are_not_mixed_up():
    with pytest.raises(ParamError, match="only the frame heads"):
        train(CFG, FTRAIN, FVAL, progress=False)
    with pytest.raises(ParamError, match="mean-pooled"):
        train(ATT, TRAIN, VAL, progress=False)
    with pytest.raises(ParamError, match="frame_pool"):
        train({**ATT, "frame_pool": 2}, FTRAIN, FVAL, progress=False)
    with pytest.raises(ParamError, match="learnable_scale=True"):
        train({**CFG, "scale_lr": 0.01}, TRAIN, VAL, progress=False)
    with pytest.raises(ParamError, match="scale_lr must be"):
        train({**CFG, "learnable_scale": True, "scale_lr": -1.0}, TRAIN, VAL, progress=False)
    with pytest.raises(ParamError, match="attention_layers"):
        train({**ATT, "attention_layers": 0}, FTRAIN, FVAL, progress=False)


@pytest.mark.parametrize("fusion", ["concat", "gating"])
def test_a_vector_is_bit_identical_alone_in_a_batch_and_in_another_grouping(fusion):
    """The paper's heads at real sizes: an index built in other groupings (Ray) must hold the same bytes."""
    torch.manual_seed(0)
    model = build_fusion({"fusion": fusion, "branches": "combined", "speech_dim": 384, "image_dim": 1280,
                          "out_dim": 384, "dropout_scale": 1.0})
    rng = np.random.default_rng(0)
    speech, image = rng.normal(size=(300, 384)).astype(np.float32), rng.normal(size=(300, 1280)).astype(np.float32)
    batch = embed_speech(model, speech, image)
    alone = np.concatenate([embed_speech(model, speech[i:i + 1], image[i:i + 1]) for i in range(0, 300, 37)])
    np.testing.assert_array_equal(alone, batch[::37])
    np.testing.assert_array_equal(embed_speech(model, speech[5:], image[5:], batch_size=64), batch[5:])


# ------------------------------------------------------------------ the stats head on frame features
STATS = {**CFG, "fusion": "stats", "stats_hidden": 64, "dropout_scale": 0.3}


def test_stats_training_is_reproducible_learns_and_embeds_batch_independently():
    cfg = {**STATS, "branches": "speech", "lr": 3e-3, "epochs": 8, "patience": 8, "step_size": 20}
    r1, r2 = (train(cfg, FTRAIN, FVAL, progress=False) for _ in range(2))
    assert same_weights(weights(r1.model), weights(r2.model)) and strip_time(r1.history) == strip_time(r2.history)
    assert r1.history[-1]["train_loss"] < r1.history[0]["train_loss"]
    assert r1.config["frame_pool"] == 4 and r1.config["stats_hidden"] == 64 and "attention_dim" not in r1.config
    emb = embed_speech(r1.model, FVAL["speech"])
    assert emb.shape == (48, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert full_gallery(cosine_matrix(emb, FVAL["text"]))["mrr"] > 0.5        # chance is about 0.09
    np.testing.assert_allclose(embed_speech(r1.model, FVAL["speech"], batch_size=1), emb, atol=1e-5)


def test_stats_resume_equals_uninterrupted_and_rebuilds(tmp_path):
    cfg = {**STATS, "learnable_scale": True, "length_batches": True}
    full = train(cfg, FTRAIN, FVAL, progress=False)
    train({**cfg, "epochs": 2}, FTRAIN, FVAL, progress=False, checkpoint_dir=tmp_path, checkpoint_every=1)
    resumed = train(cfg, FTRAIN, FVAL, progress=False, resume_from=tmp_path, checkpoint_dir=tmp_path)
    assert strip_time(resumed.history) == strip_time(full.history)
    assert same_weights(weights(resumed.model), weights(full.model))
    model, config = load_checkpoint(tmp_path)
    assert type(model).__name__ == "StatsFusion" and config["stats_hidden"] == 64
    np.testing.assert_array_equal(embed_speech(model, FVAL["speech"], FVAL["image"]),
                                  embed_speech(full.model, FVAL["speech"], FVAL["image"]))
    with pytest.raises(ParamError, match="stats_hidden"):
        train({**cfg, "stats_hidden": 32}, FTRAIN, FVAL, progress=False, resume_from=tmp_path)
    with pytest.raises(ParamError, match="mean-pooled"):
        train(STATS, TRAIN, VAL, progress=False)


def test_stats_ensemble_trains_each_member_on_its_own_loss_and_resumes(tmp_path):
    cfg = {**STATS, "branches": "speech", "lr": 3e-3, "epochs": 4, "patience": 4, "stats_members": 2}
    full = train(cfg, FTRAIN, FVAL, progress=False)
    assert full.config["stats_members"] == 2 and "stats_members" not in train(
        {**cfg, "stats_members": 1, "epochs": 1}, FTRAIN, FVAL, progress=False).config
    assert full.history[-1]["train_loss"] < full.history[0]["train_loss"]
    train({**cfg, "epochs": 2}, FTRAIN, FVAL, progress=False, checkpoint_dir=tmp_path, checkpoint_every=1)
    resumed = train(cfg, FTRAIN, FVAL, progress=False, resume_from=tmp_path, checkpoint_dir=tmp_path)
    assert strip_time(resumed.history) == strip_time(full.history)
    model, config = load_checkpoint(tmp_path)
    assert model.n_members == 2 and config["stats_members"] == 2
    emb = embed_speech(model, FVAL["speech"])
    np.testing.assert_array_equal(emb, embed_speech(full.model, FVAL["speech"]))
    assert full_gallery(cosine_matrix(emb, FVAL["text"]))["mrr"] > 0.5


def test_label_smoothing_enters_the_config_only_when_used_and_only_for_the_contrastive_loss():
    from claspkit.model.train import training_config

    assert "label_smoothing" not in training_config({**CFG, "label_smoothing": 0.0})
    assert training_config({**CFG, "label_smoothing": 0.1})["label_smoothing"] == 0.1
    with pytest.raises(ParamError, match="label_smoothing"):
        training_config({**CFG, "loss": "huber", "label_smoothing": 0.1})


# ------------------------------------------------------------------ frame masking (SpecAugment-style, train time only)
MASKS = {"frame_mask_time": 3, "frame_mask_channels": 4}


def test_frame_masking_enters_the_config_only_when_on_and_only_for_frame_heads():
    assert not set(T.MASK_KEYS) & set(training_config(ATT)) and not set(T.MASK_KEYS) & set(training_config(
        {**ATT, "frame_mask_time": 0, "frame_mask_channels": 0, "frame_masks": 5}))
    assert training_config({**ATT, **MASKS})["frame_masks"] == 2
    assert not set(T.MASK_KEYS) & set(training_config({**CFG, **MASKS}))    # a preset's masks skip the paper heads
    with pytest.raises(ParamError, match="frame_masks must be an int >= 1"):
        training_config({**ATT, **MASKS, "frame_masks": 0})


@pytest.mark.parametrize("head", [ATT, STATS])
def test_frame_masking_is_seeded_changes_training_still_learns_and_resumes_exactly(head, tmp_path):
    cfg = {**head, "branches": "speech", "lr": 3e-3, "epochs": 4, "patience": 4, "step_size": 20}
    plain = train(cfg, FTRAIN, FVAL, progress=False)
    m1, m2 = (train({**cfg, **MASKS}, FTRAIN, FVAL, progress=False) for _ in range(2))
    assert same_weights(weights(m1.model), weights(m2.model)) and strip_time(m1.history) == strip_time(m2.history)
    assert not same_weights(weights(plain.model), weights(m1.model))
    assert m1.history[-1]["train_loss"] < m1.history[0]["train_loss"] and m1.config["frame_mask_time"] == 3
    train({**cfg, **MASKS, "epochs": 2}, FTRAIN, FVAL, progress=False, checkpoint_dir=tmp_path, checkpoint_every=1)
    resumed = train({**cfg, **MASKS}, FTRAIN, FVAL, progress=False, resume_from=tmp_path, checkpoint_dir=tmp_path)
    assert strip_time(resumed.history) == strip_time(m1.history)
    assert same_weights(weights(resumed.model), weights(m1.model))
    # validation is never masked: the best weights' validation loss is the unmasked one
    va = T._tensors(FVAL, "validation", "speech", frames=True)
    assert m1.best_val_loss == pytest.approx(T._evaluate(m1.model, m1.loss_fn, va, 32), abs=1e-6)
