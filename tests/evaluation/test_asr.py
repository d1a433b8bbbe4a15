"""The cascade baseline: WER by hand-counted examples, the transcript cache, the pipeline timing."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from claspkit.evaluation import asr
from claspkit.errors import BackboneError, DataMissingError, ParamError
from nbval_platform import simd_level


# ---------------------------------------------------------------- WER

def test_normalizer_lowercases_strips_punctuation_and_collapses_space():
    assert asr.normalize_for_wer("  Hello,   World!  ") == "hello world"
    assert asr.normalize_for_wer("Don't stop.") == "dont stop"
    assert asr.normalize_for_wer("well-being — now") == "well being now"
    assert asr.normalize_for_wer("“Quoted” (text)") == "quoted text"
    assert asr.normalize_for_wer("5% of $10") == "5 of $10"  # % is punctuation (Po); $ is a symbol, kept


def test_edit_counts_by_hand():
    assert asr.edit_counts("a b c".split(), "a b c".split()) == (0, 0, 0)
    assert asr.edit_counts("a b c".split(), "a x c".split()) == (1, 0, 0)
    assert asr.edit_counts("a b c".split(), "a c".split()) == (0, 1, 0)
    assert asr.edit_counts("a b c".split(), "a b c d".split()) == (0, 0, 1)
    assert asr.edit_counts([], "x y".split()) == (0, 0, 2)
    assert asr.edit_counts("x y".split(), []) == (0, 2, 0)
    # kitten -> sitting as words: 2 substitutions and 1 insertion
    assert sum(asr.edit_counts(list("kitten"), list("sitting"))) == 3


def test_wer_is_corpus_level_not_mean_of_sentences():
    refs = ["the cat sat", "a b c d e f g h i j"]
    hyps = ["the dog sat", "a b c d e f g h i j"]
    # 1 edit over 13 words (a per-sentence mean would give (1/3 + 0)/2)
    assert asr.wer(refs, hyps) == pytest.approx(1 / 13)
    d = asr.wer_details(["The cat, sat."], ["the cat sat on"])
    assert d["wer"] == pytest.approx(1 / 3) and d["insertions"] == 1 and d["ref_words"] == 3


def test_wer_rejects_bad_input():
    with pytest.raises(ParamError, match="one hypothesis per reference"):
        asr.wer(["a"], ["a", "b"])
    with pytest.raises(ParamError, match="no reference words"):
        asr.wer(["", "!!"], ["a", "b"])
    with pytest.raises(ParamError, match="lists of sentences"):
        asr.wer("a b", "a b")


# ---------------------------------------------------------------- fakes

class FakeASR:
    """Transcribes a waveform as the number of samples it has (so each file gives its own text)."""
    name, role, cache_id, weight_bytes = "fake-asr", "asr", "fake-asr-v1", 1000

    def __init__(self):
        self.calls = 0
        self.languages = []

    def transcribe(self, waves, language=None):
        self.calls += len(waves)
        self.languages.append(language)
        time.sleep(0.002 * len(waves))
        return [f"Item {len(w)}." for w in waves]


class FakeText:
    name, role, cache_id, dim, weight_bytes = "fake-text", "text", "fake-text-v1", 8, 500

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            out[i, len(t) % self.dim] = 1.0
        return out


class FakeAudioEncoder:
    role = "speech"

    def __init__(self, name, dim, wb, delay):
        self.name, self.dim, self.weight_bytes, self.delay, self.cache_id = name, dim, wb, delay, name

    def encode(self, waves):
        time.sleep(self.delay * len(waves))
        return np.stack([np.full(self.dim, float(np.mean(w)), np.float32) for w in waves])



def _fake_loader(path):
    return np.frombuffer(open(path, "rb").read(), dtype=np.uint8).astype(np.float32) / 255.0


@pytest.fixture
def audio_files(tmp_path):
    files = []
    for i in range(5):
        p = tmp_path / f"a{i}.wav"
        p.write_bytes(bytes(range(10 + i)))
        files.append(p)
    return files


# ---------------------------------------------------------------- cache

def test_transcribe_all_caches_by_model_content_and_language(tmp_path, audio_files):
    cache = tmp_path / "tx"
    a = FakeASR()
    out = asr.transcribe_all(a, audio_files, batch=2, progress=False, cache=cache, loader=_fake_loader)
    assert out == [f"Item {10 + i}." for i in range(5)] and a.calls == 5
    # second run: nothing transcribed again
    again = asr.transcribe_all(a, audio_files, batch=2, progress=False, cache=cache, loader=_fake_loader)
    assert again == out and a.calls == 5
    # a changed file is transcribed again, and only that one
    audio_files[1].write_bytes(bytes(range(40)))
    changed = asr.transcribe_all(a, audio_files, batch=2, progress=False, cache=cache, loader=_fake_loader)
    assert changed[1] == "Item 40." and a.calls == 6
    # another language (or model) is another key
    asr.transcribe_all(a, audio_files[:2], progress=False, cache=cache, language="en", loader=_fake_loader)
    assert a.calls == 8 and a.languages[-1] == "en"
    b = FakeASR()
    b.cache_id = "fake-asr-v2"
    asr.transcribe_all(b, audio_files[:1], progress=False, cache=cache, loader=_fake_loader)
    assert b.calls == 1
    # entries are JSON files with the text; no temp files are left behind
    entries = list(cache.rglob("*.json"))
    assert len(entries) == 9 and not list(cache.rglob("*.tmp"))
    assert "text" in json.loads(entries[0].read_text())


def test_transcribe_all_resumes_after_interruption(tmp_path, audio_files):
    class Crashing(FakeASR):
        def transcribe(self, waves, language=None):
            if self.calls >= 2:
                raise KeyboardInterrupt
            return super().transcribe(waves, language)

    cache = tmp_path / "tx"
    with pytest.raises(KeyboardInterrupt):
        asr.transcribe_all(Crashing(), audio_files, batch=2, progress=False, cache=cache, loader=_fake_loader)
    assert len(list(cache.rglob("*.json"))) == 2  # the first batch was kept
    a = FakeASR()
    out = asr.transcribe_all(a, audio_files, batch=2, progress=False, cache=cache, loader=_fake_loader)
    assert a.calls == 3 and out[4] == "Item 14."


def test_corrupt_cache_entry_is_recomputed(tmp_path, audio_files):
    cache = tmp_path / "tx"
    a = FakeASR()
    asr.transcribe_all(a, audio_files[:1], progress=False, cache=cache, loader=_fake_loader)
    (entry,) = cache.rglob("*.json")
    entry.write_text('{"te')
    assert asr.transcribe_all(a, audio_files[:1], progress=False, cache=cache, loader=_fake_loader) == ["Item 10."]
    assert a.calls == 2


def test_transcribe_all_errors(tmp_path, audio_files):
    with pytest.raises(DataMissingError, match="does not exist"):
        asr.transcribe_all(FakeASR(), [tmp_path / "nope.wav"], progress=False, cache=tmp_path, loader=_fake_loader)

    class NoId(FakeASR):
        cache_id = None

    with pytest.raises(BackboneError, match="cache_id"):
        asr.transcribe_all(NoId(), audio_files, progress=False, cache=tmp_path, loader=_fake_loader)

    class Short(FakeASR):
        def transcribe(self, waves, language=None):
            return ["x"]

    with pytest.raises(BackboneError, match="returned 1 transcripts"):
        asr.transcribe_all(Short(), audio_files, batch=3, progress=False, cache=tmp_path / "c", loader=_fake_loader)


def test_cascade_embeddings(tmp_path, audio_files):
    tx, emb = asr.cascade_embeddings(FakeASR(), FakeText(), audio_files, progress=False,
                                     cache=tmp_path / "tx", loader=_fake_loader, text_cache=tmp_path / "feat")
    assert len(tx) == 5 and emb.shape == (5, 8) and emb.dtype == np.float32
    np.testing.assert_array_equal(emb, FakeText().encode(tx))
    assert len(list((tmp_path / "feat").rglob("*.npy"))) == 5  # transcripts embedded through the feature cache


def test_cascade_keeps_empty_transcripts_in_place(tmp_path, audio_files):
    class Deaf(FakeASR):
        def transcribe(self, waves, language=None):
            return ["" if len(w) % 2 else f"Item {len(w)}." for w in waves]

    tx, emb = asr.cascade_embeddings(Deaf(), FakeText(), audio_files, progress=False, cache=tmp_path / "tx",
                                     loader=_fake_loader, text_cache=False)
    assert tx == ["Item 10.", "", "Item 12.", "", "Item 14."]
    np.testing.assert_array_equal(emb, FakeText().encode(tx))  # row order kept; "" embedded as ""


# ---------------------------------------------------------------- efficiency

def clasp_of(monkeypatch, encoders, **head):
    """A real CLASP object over fake backbones (``encoders``: role -> encoder) and a fresh head."""
    from claspkit.model import clasp as M
    from claspkit.model.fusion import build_fusion

    monkeypatch.setattr(M, "create_encoder", lambda role, name, **kw: encoders[role])
    cfg = {"fusion": "concat", "branches": "combined", "speech_dim": 6, "image_dim": 5, "out_dim": 8,
           "dropout_scale": 1.0, "speech_backbone": "sp", "image_backbone": "im", "text_backbone": "fake-text",
           **head}
    return M.CLASP(build_fusion(cfg), cfg)


def test_measure_pipelines_sizes_times_and_breakdown(monkeypatch):
    speech = FakeAudioEncoder("sp", 6, 10_000, 0.001)
    image = FakeAudioEncoder("im", 5, 2_000, 0.001)
    model = clasp_of(monkeypatch, {"speech": speech, "image": image, "text": FakeText()})
    n_params = sum(p.numel() for p in model.head.parameters())
    waves = [np.full(1600, 0.1 * i, np.float32) for i in range(6)]
    res = asr.measure_pipelines(model, FakeASR(), waves, batch_size=4)
    summ = res["summary"].set_index("pipeline")
    clasp_row, casc_row = summ.iloc[0], summ.iloc[1]
    assert clasp_row.weight_bytes == 12_000 + 4 * n_params
    assert casc_row.weight_bytes == 1500
    assert res["size_ratio"] == pytest.approx(1500 / (12_000 + 4 * n_params))
    assert (summ.n == 6).all()
    st = res["stages"]
    assert set(st.stage) == {"speech encoder", "image encoder", "fusion", "ASR", "text encoder"}
    assert (st.seconds > 0).all()
    for pipe, g in st.groupby("pipeline"):
        assert g.share.sum() == pytest.approx(1.0)
    # the cascade runs its stages one after the other; CLASP's branches run concurrently, so its wall
    # time is at least its slowest branch (thread start-up on a loaded machine can add to it)
    casc_stages = st[st.pipeline == casc_row.name].seconds.sum()
    assert casc_row.seconds == pytest.approx(casc_stages, rel=0.05, abs=0.005)
    by_stage = st[st.pipeline == clasp_row.name].set_index("stage").seconds
    assert max(by_stage["speech encoder"], by_stage["image encoder"]) <= clasp_row.seconds
    assert res["speed_ratio"] == pytest.approx(casc_row.seconds / clasp_row.seconds)
    # the speech encoder sleeps 1 ms per item: it must show at least that much time
    assert by_stage["speech encoder"] >= 0.006
    # the rows notebook 05 writes for the README (JSON-able, one per pipeline)
    rows, meta = asr.efficiency_rows(res)
    assert [r["kind"] for r in rows] == ["clasp", "cascade"] and rows[1]["weight_bytes"] == 1500
    assert meta["size_ratio"] == pytest.approx(res["size_ratio"]) and len(meta["stages"]) == 5
    json.dumps({"rows": rows, "meta": meta})


def test_measure_pipelines_speech_only_and_errors(monkeypatch):
    speech = FakeAudioEncoder("sp", 6, 100, 0.0)
    model = clasp_of(monkeypatch, {"speech": speech, "text": FakeText()}, branches="speech")
    res = asr.measure_pipelines(model, FakeASR(), [np.zeros(100, np.float32)])
    assert "image encoder" not in set(res["stages"].stage)
    assert res["summary"].pipeline[0] == "CLASP (speech encoder + fusion)"
    with pytest.raises(ParamError, match="at least one utterance"):
        asr.measure_pipelines(model, FakeASR(), [])

    class NoBytes(FakeText):
        weight_bytes = None

    model = clasp_of(monkeypatch, {"speech": speech, "text": NoBytes()}, branches="speech")
    with pytest.raises(BackboneError, match="weight_bytes"):
        asr.measure_pipelines(model, FakeASR(), [np.zeros(100, np.float32)])


def test_measure_pipelines_times_more_heads_in_the_same_alternation(monkeypatch):
    """bench_retrieval times every head against one cascade run: each extra head gets its own row."""
    slow = FakeAudioEncoder("sp", 6, 10_000, 0.004)
    fast = FakeAudioEncoder("sp", 6, 10_000, 0.0)
    model = clasp_of(monkeypatch, {"speech": fast, "text": FakeText()}, branches="speech")
    other = clasp_of(monkeypatch, {"speech": slow, "text": FakeText()}, branches="speech")
    waves = [np.full(1600, 0.1 * i, np.float32) for i in range(4)]
    res = asr.measure_pipelines(model, FakeASR(), waves, batch_size=2, others={"slow": other})
    summ = res["summary"].set_index("kind")
    assert list(summ.index) == ["clasp", "cascade", "slow"] and (summ.n == 4).all()
    assert summ.loc["slow", "seconds"] >= 4 * 0.004   # its own encoder slept, timed under its own name
    assert summ.loc["slow", "weight_bytes"] == summ.loc["clasp", "weight_bytes"]
    assert set(res["stages"].pipeline) == {summ.loc["clasp", "pipeline"], summ.loc["cascade", "pipeline"]}
    with pytest.raises(ParamError, match="other names"):
        asr.measure_pipelines(model, FakeASR(), waves, others={"cascade": other})


def test_measure_pipelines_gives_an_attention_head_the_frames(monkeypatch):
    class FrameEncoder(FakeAudioEncoder):
        def encode(self, waves):
            raise AssertionError("an attention head must not get the mean-pooled vector")

        def encode_frames(self, waves):
            return [np.full((len(w) // 400, self.dim), float(np.mean(w)), np.float32) for w in waves]

    model = clasp_of(monkeypatch, {"speech": FrameEncoder("sp", 6, 100, 0.0), "text": FakeText()},
                     fusion="attention", branches="speech", attention_dim=8, attention_heads=2)
    waves = [np.full(400 * (i + 2), 0.1 * i, np.float32) for i in range(5)]
    res = asr.measure_pipelines(model, FakeASR(), waves, batch_size=2)
    assert set(res["stages"].stage) == {"speech encoder", "fusion", "ASR", "text encoder"}
    assert (res["summary"].n == 5).all() and res["speed_ratio"] > 0


# ---------------------------------------------------------------- the real model (slow)

@pytest.mark.slow
@pytest.mark.xfail(simd_level() != "avx512", strict=False, reason="whisper-tiny.en's int8 greedy decoding "
                   "mishears espeak on an AVX2-only AMD EPYC (2026-12-05: 'servitude' -> 'served with food'); the "
                   "words asserted were heard on AVX-512 CPUs. Not the quantisation: float32 and int8_float32 mishear "
                   "the same words there (WER 0.29 and 0.31 against int8's 0.31 on the four clips below)")
def test_real_whisper_tiny_en_on_espeak_clip(tmp_path):
    from claspkit.data.audio import load_audio
    from claspkit.encoders.backbones import create_backbone
    from claspkit.data.tts import get_synthesizer

    from claspkit.config import SCHEMA

    texts = ["No one shall be held in slavery or servitude.",
             "The scientists measured the temperature of the water every morning.",
             "The jury said it found no evidence of irregularities in the election.",
             "She smiled at him and walked home slowly through the park."]
    voices = SCHEMA["voices"].default  # the corpus's own voices, one sentence each
    wavs = [tmp_path / f"clip{i}.wav" for i in range(len(texts))]
    for text, voice, wav in zip(texts, voices, wavs):
        get_synthesizer("espeak").synthesize(text, voice, wav)
    model = create_backbone("asr", "whisper-tiny.en")
    hyps = asr.transcribe_all(model, wavs, progress=False, cache=tmp_path / "tx", language="en", loader=load_audio)
    assert asr.wer(texts, hyps) < 0.3, hyps  # OFFLINE.md: about 0.12-0.27 on espeak-ng speech
