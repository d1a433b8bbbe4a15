"""Robustness (notebook 09): noise mixing, derived audio, the shared scoring of CLASP and the cascade,
the unseen-voice heads, long recordings and the report block."""
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from claspkit.config import load_params
from claspkit.evaluation import robustness as R
from claspkit.errors import AudioError, ParamError
from fakes import SR, fake_factory, fake_manifest, tone, tone_files

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def snr_db(clean, mixed):
    noise = mixed - clean
    return 10 * np.log10(np.mean(clean ** 2) / np.mean(noise ** 2))


# ------------------------------------------------------------------ mixing
@pytest.mark.parametrize("target", [20, 10, 5, 0, -5])
def test_mix_at_snr_hits_the_requested_ratio(target):
    rng = np.random.default_rng(0)
    clean = tone(1.0, 300).astype(np.float64)
    for noise in (rng.standard_normal(len(clean)) * 7, tone(1.0, 1234, seed=3).astype(np.float64)):
        assert snr_db(clean, R.mix_at_snr(clean, noise, target)) == pytest.approx(target, abs=1e-9)


def test_mix_at_snr_refuses_silence_and_mismatched_shapes():
    x = tone(0.5)
    with pytest.raises(AudioError, match="clean signal is silent"):
        R.mix_at_snr(np.zeros(100), np.ones(100), 10)
    with pytest.raises(AudioError, match="noise is silent"):
        R.mix_at_snr(x, np.zeros_like(x), 10)
    with pytest.raises(ParamError, match="one length"):
        R.mix_at_snr(x, x[:-1], 10)
    with pytest.raises(ParamError, match="finite"):
        R.mix_at_snr(x, x, float("inf"))


def test_babble_never_uses_the_excluded_clip_and_needs_enough_talkers():
    pool = [tone(0.5, 200 + 100 * i, i) for i in range(6)]
    rng = np.random.default_rng(1)
    out = R.babble_noise(4000, pool, exclude=2, rng=rng, talkers=5)   # the 5 others: all of them
    spectrum = np.abs(np.fft.rfft(out))
    freqs = np.fft.rfftfreq(len(out), 1 / SR)
    energy = {f: spectrum[np.argmin(np.abs(freqs - f))] for f in (200, 300, 400, 500, 600, 700)}
    assert energy[400] < 0.05 * min(v for f, v in energy.items() if f != 400)
    with pytest.raises(ParamError, match="babble needs 6 other clips"):
        R.babble_noise(4000, pool, exclude=0, rng=rng, talkers=6)


# ------------------------------------------------------------------ derived audio
@pytest.fixture
def clips(tmp_path):
    return tone_files(tmp_path / "clean", 6)


def test_noisy_versions_are_deterministic_order_free_and_resumable(clips, tmp_path):
    a = R.noisy_versions(clips, "white", 5, seed=7, out_dir=tmp_path / "a")
    b = R.noisy_versions(clips[::-1], "white", 5, seed=7, out_dir=tmp_path / "b")[::-1]
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]   # an item's noise ignores the order
    assert a[0].parent.name.startswith("white-5dB-seed7-")
    x, sr = sf.read(a[0])
    assert sr == SR and len(x) == len(sf.read(clips[0])[0]) and np.max(np.abs(x)) == pytest.approx(R.PEAK, abs=1e-3)
    stamp = a[0].stat().st_mtime_ns
    a[1].unlink()
    again = R.noisy_versions(clips, "white", 5, seed=7, out_dir=tmp_path / "a")
    assert again == a and a[1].is_file() and a[0].stat().st_mtime_ns == stamp   # only the missing one is written
    other = R.noisy_versions(clips, "white", 5, seed=8, out_dir=tmp_path / "a")
    assert other[0].parent != a[0].parent and other[0].read_bytes() != a[0].read_bytes()


def test_babble_folder_depends_on_the_pool_and_the_written_snr_is_right(clips, tmp_path):
    from claspkit.data.audio import load_audio

    full = R.noisy_versions(clips, "babble", 10, out_dir=tmp_path, talkers=3)
    part = R.noisy_versions(clips[:5], "babble", 10, out_dir=tmp_path, talkers=3)
    assert full[0].parent != part[0].parent
    clean, mixed = load_audio(clips[0]).astype(np.float64), load_audio(full[0]).astype(np.float64)
    gain = np.dot(mixed, clean) / np.dot(clean, clean)    # the file is the mixture, peak-normalised
    assert snr_db(gain * clean, mixed) == pytest.approx(10, abs=0.7)
    with pytest.raises(ParamError, match="unknown noise"):
        R.noisy_versions(clips, "pink", 10, out_dir=tmp_path)


# ------------------------------------------------------------------ scoring on the same items
class RecognisingASR:
    """Recognises the clean clips it was told about (by their samples); anything else is misheard."""

    name, role, cache_id = "fake-asr", "asr", "fake-asr-robust-v1"

    def __init__(self, known):
        self.known = {np.asarray(w, np.float32)[:400].tobytes(): t for w, t in known}
        self.languages = []

    def transcribe(self, waves, language=None):
        self.languages.append(language)
        return [self.known.get(np.asarray(w, np.float32)[:400].tobytes(), "sentence 999") for w in waves]


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    from claspkit.experiments import pipeline
    from claspkit.encoders import backbones
    from claspkit.data.audio import load_audio
    from claspkit.config import load_params
    from fakes import FakeText

    manifest = fake_manifest(tmp_path, monkeypatch)
    monkeypatch.setattr(backbones, "create_backbone", fake_factory({}))
    P = load_params("tiny", epochs=3, batch_size=8, bootstrap=20, fusion="concat")
    data = pipeline.split_data(manifest, pipeline.features(P, manifest, progress=False))
    trained = pipeline.fit(P, data, "stage3-contrastive", progress=False)
    manifest["voice"] = ["v1" if i % 2 else "v2" for i in range(len(manifest))]
    stage = pipeline.Stage3(P, manifest, data, trained, "test")
    paths = pipeline.audio_paths(manifest, data["test"].ids)
    asr = RecognisingASR([(load_audio(p), t) for p, t in zip(paths, data["test"].texts)])
    S = R.Systems(P, {"paper": stage}, asr, "fake-asr", FakeText())
    return S, stage, paths, data["test"].texts


def test_speech_vectors_of_files_equal_the_split_embeddings(fake_run):
    from claspkit.experiments import pipeline

    S, stage, paths, _ = fake_run
    np.testing.assert_allclose(pipeline.speech_vectors(stage, paths),
                               pipeline.speech_embeddings(stage.trained, stage.data["test"]), atol=1e-6)


def test_evaluate_scores_every_system_on_one_gallery_and_noise_hurts_the_cascade(fake_run):
    S, stage, paths, texts = fake_run
    rows = R.evaluate(S, paths, texts, "real speech", language="fr", references=texts)
    assert [(r["system"], r["direction"]) for r in rows] == [
        ("paper", "speech->text"), ("paper", "text->speech"),
        ("ASR cascade (fake-asr)", "speech->text"), ("ASR cascade (fake-asr)", "text->speech")]
    cascade = rows[2]
    assert cascade["hits@1"] == 1.0 and cascade["wer"] == 0 and S.asr.languages[-1] == "fr"
    assert all(r["n"] == len(paths) and r["protocol"] == "full" and r["section"] == "real speech" for r in rows)
    with pytest.raises(ParamError, match="as many texts"):
        R.evaluate(S, paths, texts[:-1], "x")
    sweep = R.noise_sweep(S, paths, texts, kinds=["white"], snrs=[0], seed=1)
    by = {(r["noise"], r["kind"]): r for r in sweep}
    assert set(by) == {("clean", "clasp"), ("clean", "cascade"), ("white", "clasp"), ("white", "cascade")}
    assert by["white", "cascade"]["hits@1"] < by["clean", "cascade"]["hits@1"] == 1.0
    assert by["white", "cascade"]["snr_db"] == 0.0 and by["clean", "clasp"]["snr_db"] is None
    table = R.summary_table(sweep)
    assert list(table.columns) == ["n", "hits@1", "mrr", "WER"]
    assert table.index.get_level_values("snr_db").tolist()[:2] == ["clean", "clean"]


def test_unseen_voice_heads_leave_the_voice_out_and_match_the_control_size(fake_run):
    from claspkit.model.checkpoint import read_checkpoint_config

    _, stage, _, _ = fake_run
    heads = R.unseen_voice_heads(stage, "v1")
    (full, full_st), (control, control_st), (held, held_st) = heads.items()
    voice = stage.manifest.set_index("id")["voice"]
    assert {voice[i] for i in held_st.data["train"].ids} == {"v2"}
    assert len(control_st.data["train"]) == len(held_st.data["train"]) == 12
    assert {voice[i] for i in control_st.data["train"].ids} == {"v1", "v2"}
    assert held_st.trained.name == "stage3-contrastive-without-v1" and full_st is stage
    assert read_checkpoint_config(held_st.trained.checkpoint)["checkpoint"]["epoch"] >= 1
    assert list(R.voice_items(stage, "test", "v1")) == [i for i, x in enumerate(stage.data["test"].ids)
                                                         if voice[x] == "v1"]
    with pytest.raises(ParamError, match="'v3' is not one of"):
        R.voice_items(stage, "test", "v3")


def test_a_whole_engine_can_be_held_out(fake_run):
    _, stage, _, _ = fake_run
    engine_of = {"v1": "flite:slt", "v2": "pico:en-US"}
    stage.manifest = stage.manifest.assign(voice=stage.manifest["voice"].map(engine_of))
    voice = stage.manifest.set_index("id")["voice"]
    held = R.voice_items(stage, "train", "pico:*")
    assert len(held) and {voice[stage.data["train"].ids[i]] for i in held} == {"pico:en-US"}
    assert len(R.voice_items(stage, "train", "pico:*", keep=False)) == len(stage.data["train"]) - len(held)
    with pytest.raises(ParamError, match="flite:\\*"):
        R.voice_items(stage, "train", "espeak:*")
    P = load_params("tiny", voices=["flite:slt", "pico:en-US"], held_out_voice="pico:*")
    assert P.held_out_voice == "pico:*"
    with pytest.raises(ParamError, match="<engine>:"):
        load_params("tiny", voices=["flite:slt", "pico:en-US"], held_out_voice="rhvoice:*")


# ------------------------------------------------------------------ long recordings
def test_long_recordings_know_their_exact_boundaries(clips, tmp_path):
    prompts = pd.DataFrame({"id": [f"p{i}" for i in range(5)], "text": [f"t{i}" for i in range(5)],
                            "path": [str(p) for p in clips[:5]]})
    truth = R.long_recordings(prompts, per_file=2, pause_s=0.5, out_dir=tmp_path)
    assert list(truth.file) == ["recording-01.wav"] * 2 + ["recording-02.wav"] * 2 + ["recording-03.wav"]
    lengths = [len(sf.read(p)[0]) / SR for p in clips[:5]]
    assert truth.start_s.iloc[0] == 0.5 and truth.end_s.iloc[0] == pytest.approx(0.5 + lengths[0])
    assert truth.start_s.iloc[1] == pytest.approx(0.5 + lengths[0] + 0.5)
    x, _ = sf.read(tmp_path / "long" / truth.attrs["folder"].split("/")[-1] / "recording-01.wav")
    assert len(x) / SR == pytest.approx(0.5 * 3 + lengths[0] + lengths[1])
    assert R.long_recordings(prompts, per_file=2, pause_s=0.5, out_dir=tmp_path).equals(truth)
    with pytest.raises(ParamError, match="per_file"):
        R.long_recordings(prompts, per_file=0)


def test_long_search_scores_a_segment_the_asr_heard_nothing_in(fake_run, clips, tmp_path, monkeypatch):
    """Notebook 09 crashed here: an empty transcript became " ", which text encoding refuses. It is embedded
    as the cascade embeds one (``asr.embed_transcripts``: the empty string) and ranks as it ranks."""
    import dataclasses

    from claspkit.search import index as I, query as Q
    from fakes import FakeText

    S, stage, _, _ = fake_run
    prompts = pd.DataFrame({"id": [f"p{i}" for i in range(4)], "text": [f"sentence {i}" for i in range(4)],
                            "path": [str(p) for p in clips[:4]]})
    truth = R.long_recordings(prompts, per_file=2, pause_s=0.5, out_dir=tmp_path / "derived")
    files = sorted(set(truth["file"]))

    class Recording(FakeText):  # unit vectors: a text matches itself best
        cache_id = "fake-text/unit-v1"

        def __init__(self):
            self.seen = []

        def encode(self, texts):
            self.seen += list(texts)
            x = super().encode(texts)
            return x / np.linalg.norm(x, axis=1, keepdims=True)

    class SegmentIndex:  # one segment per prompt, at its exact boundaries
        _paths, file_of_row = files, [files.index(f) for f in truth["file"]]
        start_s, end_s = truth["start_s"].tolist(), truth["end_s"].tolist()
        vectors = Recording().encode(list(truth["text"]))

        def __len__(self):
            return len(truth)

    class Deaf:
        def transcribe(self, waves, language=None):
            return ["" if i == 0 else f"sentence {i} " for i in range(len(waves))]

    monkeypatch.setattr(Q, "build_index", lambda *a, **k: None)
    monkeypatch.setattr(I, "load_index", lambda d: SegmentIndex())
    monkeypatch.setattr(Q, "text_encoder", lambda idx: Recording())
    text = Recording()
    rows, facts = R.long_search(dataclasses.replace(S, asr=Deaf(), text_encoder=text), stage, truth, tmp_path / "ix")
    clasp, cascade = rows
    assert "" in text.seen and cascade["kind"] == "cascade" and cascade["n"] == 4 and facts["segments"] == 4
    assert clasp["hits@1"] == 1.0
    assert 0.75 <= cascade["hits@1"] <= 1  # the three heard segments are found; the deaf one ranks as it may


def test_long_scores_count_rank_hit_and_timestamps():
    truth = pd.DataFrame({"start_s": [1.0, 5.0, 9.0], "end_s": [3.0, 7.0, 10.0]})
    spans = np.array([[1.2, 3.4], [4.0, 7.1], [8.0, 9.0]])
    scores = np.array([[0.9, 0.1, 0.0],    # gold 0, rank 1, edges within 0.5
                       [0.9, 0.5, 0.1],    # gold 1, rank 2
                       [0.1, 0.2, 0.3]])   # no segment overlaps (gold -1): a miss
    out = R._long_scores(scores, np.array([0, 1, -1]), spans, truth, 0.5)
    assert out["mrr"].tolist() == [1.0, 0.5, 0.0] and out["hits@1"].tolist() == [1, 0, 0]
    assert out["timestamps within 0.5 s"].tolist() == [1, 0, 0]
    spans[0, 0] = 0.4                        # start 0.6 s early: a hit, but not on time
    assert R._long_scores(scores, np.array([0, 1, -1]), spans, truth, 0.5)["timestamps within 0.5 s"][0] == 0


# ------------------------------------------------------------------ parameters, figure, report
@pytest.mark.parametrize("override, match", [
    ({"robust_noises": ["pink"]}, "robust_noises"), ({"robust_languages": ["de"]}, "robust_languages"),
    ({"robust_snrs": []}, "robust_snrs"), ({"held_out_voice": "espeak:fr"}, "held_out_voice"),
    ({"multilingual_speech_backbone": "whisper-huge"}, "whisper-base")])
def test_bad_robustness_parameters_fail_at_once(override, match):
    from claspkit.config import load_params
    from claspkit.errors import ClaspkitError

    with pytest.raises(ClaspkitError, match=match):
        load_params("tiny", override)


def test_multilingual_flag_comes_from_the_registry():
    from claspkit.encoders.backbones import is_multilingual

    assert is_multilingual("speech", "whisper-base") and not is_multilingual("speech", "whisper-tiny.en")
    assert is_multilingual("asr", "whisper-base") and not is_multilingual("speech", "hf:some/model")


def _row(section, system, kind, h, **kw):
    return {"section": section, "system": system, "kind": kind, "direction": "speech->text", "protocol": "full",
            "n": 10, "hits@1": h, "hits@1_ci": [h - 0.1, h + 0.1], "mrr": h, "mrr_ci": [h - 0.1, h + 0.1], **kw}


def test_snr_figure_and_readme_block_come_from_the_rows(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from claspkit.evaluation import plots, report
    from claspkit.evaluation.results import write_stage

    monkeypatch.setenv("CLASPKIT_RUNS", str(tmp_path / "runs"))
    rows = [_row("noise", s, k, h, noise="clean", snr_db=None)
            for s, k, h in (("A", "clasp", 0.5), ("C", "cascade", 0.9))]
    rows += [_row("noise", s, k, h - snr / 100, noise=n, snr_db=float(snr)) for s, k, h in (("A", "clasp", 0.45),
             ("C", "cascade", 0.8)) for n in ("white", "babble") for snr in (10, 0)]
    rows += [_row("real speech", "A", "clasp", 0.31), _row("real speech", "C", "cascade", 0.97, wer=0.05)]
    rows += [_row("long recordings", "A", "clasp", 0.3, **{"timestamps within 0.5 s": 0.25,
                                                            "timestamps within 0.5 s_ci": [0.2, 0.3]})]
    fig = plots.snr_curves(rows)
    assert [ax.get_title() for ax in fig.axes] == ["white noise", "babble noise"]
    plt.close(fig)
    with pytest.raises(ValueError, match="no noisy rows"):
        plots.snr_curves(rows[:2])
    assert report.robustness_markdown("tiny") is None
    facts = {"files": 1, "prompts": 8, "segments": 12, "audio_s": 59.2, "prompts with a segment within 0.5 s": 0.75}
    write_stage("tiny", "robustness", rows, meta={"real speech note": "16 prompts", "long recordings facts": facts})
    md = report.robustness_markdown("tiny")
    assert "| system | clean | white 10 dB | white 0 dB | babble 10 dB | babble 0 dB |" in md
    assert "| A | 0.500 | 0.350 | 0.450 | 0.350 | 0.450 |" in md
    assert "Real recorded English (Asterisk prompts, one professional voice); 16 prompts." in md
    assert "| speech->text | C | 10 | 0.970 [0.870, 1.070] | 0.970 [0.870, 1.070] | 0.050 |" in md
    assert ("1 files, 1.0 min, 8 prompts, 12 segments; 75.0% of the prompts have a segment within 0.5 s at both "
            "edges.") in md
    assert "| speech->text | A | 10 | 0.300 [0.200, 0.400] | 0.300 [0.200, 0.400] | 0.250 [0.200, 0.300] |  |" in md
    assert json.loads((tmp_path / "runs" / "tiny" / "results" / "robustness.json")
                      .read_text())["rows"][0]["system"] == "A"


# ------------------------------------------------------------------ augmentation
def test_augmented_copies_are_seeded_per_clip_and_perturb_speed_and_noise(clips, tmp_path):
    a = R.augmented_copies(clips, seed=3, out_dir=tmp_path / "a", talkers=2)
    b = R.augmented_copies(clips[::-1], seed=3, out_dir=tmp_path / "b", talkers=2)[::-1]
    assert len({p.parent for p in a}) == 1 and a[0].parent.parent.name == "augment"
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]   # a clip's draws ignore the order
    ratios = [len(sf.read(c)[0]) / len(sf.read(p)[0]) for c, p in zip(clips, a)]
    nearest = [min(R.SPEEDS, key=lambda v: abs(v - r)) for r in ratios]
    assert all(abs(r - v) < 0.01 for r, v in zip(ratios, nearest)) and len(set(nearest)) >= 2
    stamp = a[0].stat().st_mtime_ns
    assert R.augmented_copies(clips, seed=3, out_dir=tmp_path / "a", talkers=2) == a
    assert a[0].stat().st_mtime_ns == stamp                                # written once
    only_white = R.augmented_copies(clips, seed=3, kinds=["white"], speeds=[1.0], snr_range=(10, 10),
                                    out_dir=tmp_path / "w")
    from claspkit.data.audio import load_audio

    clean, mixed = load_audio(clips[0]).astype(np.float64), load_audio(only_white[0]).astype(np.float64)
    gain = np.dot(mixed, clean) / np.dot(clean, clean)
    assert snr_db(gain * clean, mixed) == pytest.approx(10, abs=0.5)
    with pytest.raises(ParamError, match="snr_range"):
        R.augmented_copies(clips, snr_range=(20, 0), out_dir=tmp_path)
    with pytest.raises(ParamError, match="unknown noise"):
        R.augmented_copies(clips, kinds=["pink"], out_dir=tmp_path)


def test_augmented_stage_doubles_training_and_leaves_val_and_test(fake_run):
    _, stage, _, _ = fake_run
    aug = R.augmented_stage(stage)
    train = aug.data["train"]
    assert len(train) == 2 * len(stage.data["train"]) and train.texts[:24] == train.texts[24:]
    assert train.ids[24] == f"{stage.data['train'].ids[0]}+augmented"
    assert aug.data["val"] is stage.data["val"] and aug.data["test"] is stage.data["test"]
    assert aug.trained.name == "stage3-contrastive-augmented" and not np.array_equal(
        train.arrays["speech"][:24], train.arrays["speech"][24:])
    assert R.augmented_stage(stage).trained.reused


def test_augmented_stage_takes_a_channel_recipe_from_the_call_or_the_params(fake_run):
    from claspkit.experiments import pipeline
    from claspkit.data.augment.recipe import Recipe

    _, stage, _, _ = fake_run
    spec = ["room", "telephone"]
    aug = R.augmented_stage(stage, channels=spec)
    assert aug.trained.name == f"stage3-contrastive-channels-{Recipe.parse(spec).digest(stage.P.seed)}"
    train = aug.data["train"]
    assert len(train) == 2 * len(stage.data["train"]) and train.ids[24].endswith("+augmented")
    plain = R.augmented_stage(stage)
    assert not np.array_equal(plain.data["train"].arrays["speech"][24:], train.arrays["speech"][24:])
    from_params = pipeline.Stage3(pipeline.with_overrides(stage.P, robust_channels=spec), stage.manifest,
                                  stage.data, stage.trained, stage.chosen_by)
    again = R.augmented_stage(from_params)
    assert again.trained.name == aug.trained.name and again.trained.reused
    with pytest.raises(ParamError, match="put the ranges in the channel recipe"):
        R.augmented_stage(stage, channels=spec, snr_range=(0, 5))
