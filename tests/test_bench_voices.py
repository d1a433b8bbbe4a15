import json

import numpy as np
import pytest

from claspkit.bench import voices as V
from claspkit.data.tts import _registry
from claspkit.data.tts._base import Synthesizer
from claspkit.data.tts.voicesets import BY_LANGUAGE
from claspkit.errors import ToolMissingError

TEXTS = ["the cat sat on the mat", "a storm is coming tonight"]


class FakeSynth(Synthesizer):
    name = "fake"
    version = "fake-1"

    def voices(self):
        return ["a", "b"]

    def render(self, text, vs):
        t = np.arange(len(text) * 400) / 16000
        return (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000


class BrokenSynth(FakeSynth):
    def __init__(self):
        raise ToolMissingError("the broken engine's package could not be downloaded")


class EchoASR:
    """Hears the references exactly for the first voice's files, one wrong word per sentence otherwise."""

    def transcribe(self, waves, language=None):
        self.calls = getattr(self, "calls", 0) + 1
        return TEXTS if self.calls == 1 else [t.replace("the", "a", 1) for t in TEXTS]


@pytest.fixture
def fake_engines(monkeypatch):
    monkeypatch.setattr(_registry, "_INSTANCES", {})
    monkeypatch.setitem(_registry.ENGINES, "fake", FakeSynth)
    monkeypatch.setitem(_registry.ENGINES, "broken", BrokenSynth)
    monkeypatch.setitem(BY_LANGUAGE, "en", BY_LANGUAGE["en"] + ["fake:a", "broken:x"])
    monkeypatch.setitem(BY_LANGUAGE, "fr", BY_LANGUAGE["fr"] + ["fake:b"])
    monkeypatch.setattr(V, "brown_sentences", lambda n, seed=42: TEXTS[:n])
    monkeypatch.setattr(V, "asr_model", EchoASR)


@pytest.mark.parametrize("argv, message", [
    (["--sentences", "0", "--voices", "fake:a"], "at least 1"),
    (["--voices", " , "], "--voices is empty"),
    (["--voices", "no-engine-prefix"], "bad voice spec"),
    (["--voices", "fake:a,nosuch:a"], "unknown TTS engine"),
    (["--voices", "fake:zz"], "unknown voice 'fake:zz'"),
    (["--preset", "no-such-preset"], "unknown preset"),
])
def test_argument_errors_exit_2_before_synthesis(argv, message, fake_engines, monkeypatch, capsys):
    monkeypatch.setattr(V, "bench_voice", lambda *a: pytest.fail("synthesized for bad arguments"))
    assert V.main([*argv, "--out", ""]) == 2
    assert message in capsys.readouterr().err


def test_voices_and_preset_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as e:
        V.main(["--voices", "espeak:en-us", "--preset", "voices"])
    assert e.value.code == 2


def test_json_rows_speed_wer_for_english_only_and_skipped_engines(tmp_path, fake_engines):
    out = tmp_path / "voices.json"
    assert V.main(["--voices", "fake:a,fake:b,broken:x", "--sentences", "2", "--wer", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["texts"] == TEXTS and d["sentences"] == 2 and d["asr"] == V.ASR
    for key in ("cpu", "date", "commit", "load_average", "load_average_end"):
        assert key in d
    a, b, broken = d["voices"]
    assert a["status"] == b["status"] == "ok" and a["language"] == "en" and b["language"] == "fr"
    assert a["audio_s"] == pytest.approx(sum(len(t) * 400 for t in TEXTS) / 16000)
    assert a["x_real_time"] == pytest.approx(a["audio_s"] / a["synth_wall_s"], rel=0.01)
    assert a["wer"]["wer"] == 0.0 and a["wer"]["ref_words"] == 11 and "paths" not in a
    assert "wer" not in b                                      # not English: no Whisper tiny.en WER
    assert broken == {"voice": "broken:x", "language": "en", "status": "skipped",
                      "reason": "ToolMissingError: the broken engine's package could not be downloaded"}


def test_without_wer_no_asr_is_loaded(tmp_path, fake_engines, monkeypatch):
    monkeypatch.setattr(V, "asr_model", lambda: pytest.fail("loaded the ASR without --wer"))
    assert V.main(["--voices", "fake:a", "--sentences", "1", "--out", str(tmp_path / "v.json")]) == 0
    d = json.loads((tmp_path / "v.json").read_text())
    assert d["asr"] is None and "wer" not in d["voices"][0]


def test_voice_language():
    assert V.voice_language("flite:slt") == "en" and V.voice_language("mbrola:fr1") == "fr"
    assert V.voice_language("espeak:en-gb+f2?rate=150") == "en" and V.voice_language("espeak:de") == "de"
    assert V.voice_language("piper:someone") is None
