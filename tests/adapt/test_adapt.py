"""claspkit adapt: pseudo-labels with confidence, group-disjoint validation, fine-tuning from the model, M kept."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from search_fixtures import SENTENCES, SR, gap, make_checkpoint

from claspkit.adapt import pseudo, run
from claspkit.errors import ClaspkitError, ParamError
from claspkit.model.checkpoint import MODEL_FILE, load_checkpoint
from claspkit.paths import sha256_file


@pytest.fixture
def archive(tmp_path, voice):
    """Five one-sentence recordings, one with two sentences (cut by the VAD), a silent one and a broken one."""
    folder = tmp_path / "archive"
    folder.mkdir()
    for i, w in enumerate(voice):
        sf.write(folder / f"s{i}.wav", np.concatenate([gap(0.3), w, gap(0.3)]), SR)
    sf.write(folder / "long.wav", np.concatenate([gap(0.5), voice[0], gap(1.5), voice[1], gap(0.5)]), SR)
    sf.write(folder / "silent.wav", gap(2.0), SR)
    (folder / "broken.mp3").write_bytes(np.random.default_rng(0).bytes(3000))
    return folder


@pytest.fixture
def teacher(fakes, voice):
    asr = fakes("asr", "whisper-base")
    asr.known = {s: (len(w) + 0.6 * SR) / SR for s, w in zip(SENTENCES, voice)}
    return asr


def test_confidence_rejects_each_kind_of_bad_label():
    c = pseudo.Confidence()
    good = {"text": "the cat sat", "avg_logprob": -0.3, "no_speech_prob": 0.1, "compression_ratio": 1.5}
    assert c.reason(good) is None
    assert c.reason({**good, "text": "yes"}) == "too few words"
    assert c.reason({**good, "text": "... !"}) == "too few words"
    assert c.reason({**good, "no_speech_prob": 0.9}) == "no speech"
    assert c.reason({**good, "avg_logprob": -0.9}) == "low log-probability"
    assert c.reason({**good, "compression_ratio": 3.0}) == "repetitive"
    assert c.reason({**good, "error": "cannot read"}) == "unusable audio"
    assert pseudo.rejection_counts([good, {**good, "avg_logprob": -2.0}]) == {"kept": 1, "low log-probability": 1}
    with pytest.raises(ParamError, match="min_avg_logprob"):
        pseudo.Confidence(min_avg_logprob=0.5)


def test_scored_transcripts_are_cached_and_bad_files_are_not(isolated_data, archive, teacher):
    files = sorted(archive.glob("s*.wav")) + [archive / "broken.mp3"]
    first = pseudo.transcribe_scored(teacher, files, language="en", progress=False)
    assert [e["text"] for e in first[:5]] == SENTENCES
    assert "error" in first[-1] and pseudo.Confidence().reason(first[-1]) == "unusable audio"
    done = teacher.items
    again = pseudo.transcribe_scored(teacher, files, language="en", progress=False)
    assert teacher.items == done and again[:5] == first[:5]          # nothing transcribed twice
    with pytest.raises(ClaspkitError, match="confidence"):
        pseudo.transcribe_scored(object(), files, progress=False)


def test_group_split_is_seeded_and_keeps_groups_whole():
    groups = [f"g{i % 7}" for i in range(70)]
    a, b = run.group_split(groups, 0.3, 1), run.group_split(groups, 0.3, 1)
    assert (a == b).all() and 0 < a.sum() < len(a)
    held = {g for g, v in zip(groups, a) if v}
    assert all(v == (g in held) for g, v in zip(groups, a)) and len(held) == 2
    with pytest.raises(ParamError, match="2 groups"):
        run.group_split(["one"] * 5, 0.1, 0)


def test_dedupe_keeps_the_first_of_each_text():
    assert run.dedupe_texts(["Hello there.", "hello, THERE", "bye now"]).tolist() == [True, False, True]


def test_out_never_overwrites_the_model(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    for bad in (model, model / "inner"):
        with pytest.raises(ParamError, match="overwrite the model"):
            run.check_out(model, bad)
    (tmp_path / "done").mkdir()
    with pytest.raises(ParamError, match="--force"):
        run.check_out(model, tmp_path / "done")
    assert run.check_out(model, tmp_path / "done", force=True) == (tmp_path / "done").resolve()


def test_adapt_fine_tunes_a_copy_and_reports(isolated_data, tmp_path, archive, teacher, one_torch_thread):
    model = make_checkpoint(tmp_path / "m")
    before = sha256_file(model / MODEL_FILE)
    out = tmp_path / "m2"
    report = run.adapt(archive, model, out, max_s=3.0, finetune={"epochs": 3, "batch_size": 4}, progress=False)
    assert sha256_file(model / MODEL_FILE) == before                      # M only read
    assert (out / MODEL_FILE).is_file() and not run.work_folder(out).exists()
    saved = json.loads((out / run.ADAPT_FILE).read_text())
    assert saved["segments"] == 8                                  # 5 + long.wav's 2 pieces + silent.wav
    assert saved["pseudo"]["kept"] == 7 and saved["pseudo"]["repeated text"] == 2      # the pieces repeat s0, s1
    assert saved["pseudo"]["unusable audio"] == 1                     # the silent file (load_audio refuses it)
    assert [s[0].endswith("broken.mp3") for s in saved["skipped"]] == [True]
    assert saved["train_items"] + saved["val_items"] == 5 and saved["val_items"] >= 1
    assert len(saved["history"]) == 3 and report["out"] == out.resolve()
    old, new = load_checkpoint(model)[0].state_dict(), load_checkpoint(out)[0].state_dict()
    assert old.keys() == new.keys() and any(not torch.equal(old[k], new[k]) for k in old)
    calls = teacher.items
    stale = run.work_folder(out) / "train"                   # an interrupted fine-tuning on other inputs
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    (stale / "inputs.sha256").write_text("other inputs")
    run.adapt(archive, model, out, max_s=3.0, finetune={"epochs": 3, "batch_size": 4}, progress=False, force=True)
    assert teacher.items == calls                                          # a rerun transcribes nothing again
    assert len(json.loads((out / run.ADAPT_FILE).read_text())["history"]) == 3      # started over, not resumed
    with pytest.raises(ParamError, match="unknown fine-tuning knob"):
        run.adapt(archive, model, tmp_path / "m3", finetune={"epoch": 3}, progress=False)


def test_init_state_must_fit_the_head(tmp_path, one_torch_thread):
    from claspkit.model.train import train

    head, config = load_checkpoint(make_checkpoint(tmp_path / "m"))
    rng = np.random.default_rng(0)
    arrays = {"speech": rng.standard_normal((8, 8)).astype(np.float32),
              "image": rng.standard_normal((8, 6)).astype(np.float32),
              "text": rng.standard_normal((8, 16)).astype(np.float32)}
    state = head.state_dict()
    result = train({**config, "epochs": 1, "lr": 1e-12, "batch_size": 4}, arrays, arrays, progress=False,
                   init_state=state)
    assert all(torch.allclose(result.model.state_dict()[k].float(), v.float(), atol=1e-5) for k, v in state.items()
               if "running" not in k and "num_batches" not in k)
    with pytest.raises(ParamError, match="does not fit"):
        train({**config, "epochs": 1}, arrays, arrays, progress=False,
              init_state={k: v for k, v in state.items() if k != next(iter(state))})


def test_cli_adapt_refuses_its_own_model(tmp_path, capsys):
    from claspkit.cli import main

    model = make_checkpoint(tmp_path / "m")
    assert main(["adapt", str(tmp_path), "--model", str(model), "--out", str(model)]) == 2
    assert "overwrite the model" in capsys.readouterr().err
