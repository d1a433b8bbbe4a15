"""The Debian-packaged TTS engines (flite, festival, rhvoice, pico, mbrola): install without root, speak, fail clearly.

They install into the data folder on first use (about 244 MB for all, reused afterwards); a test skips only
when the pinned download itself is impossible here (no network and no placed .deb).
"""
import shutil

import numpy as np
import pytest
import soundfile as sf

from claspkit.config import load_params
from claspkit.data import tts
from claspkit.data.tts import _debian, voicesets
from claspkit.errors import DataMissingError, ParamError, ToolMissingError

SAY = {"en": "The jury said it found no evidence of irregularities.",
       "fr": "Tous les êtres humains naissent libres et égaux.",
       "es": "Todos los seres humanos nacen libres e iguales.",
       "it": "Tutti gli esseri umani nascono liberi ed eguali.",
       "de": "Alle Menschen sind frei und gleich an Würde geboren.",
       "ru": "Все люди рождаются свободными и равными."}
DEBIAN = [n for n, cls in tts.ENGINES.items() if issubclass(cls, _debian.DebianEngine)]
SPECS = [f"{n}:{v}" for n in DEBIAN for v in tts.ENGINES[n].VOICES]


@pytest.fixture(autouse=True)
def fresh_engines(monkeypatch):
    monkeypatch.setattr(tts._registry, "_INSTANCES", {})


def _ready(spec):
    """The checked voice spec, or a skip when its pinned packages cannot be downloaded here."""
    try:
        return tts.check_voice(spec)
    except ToolMissingError as e:
        if isinstance(e.__cause__, DataMissingError):
            pytest.skip(f"cannot download the {spec.split(':')[0]} engine here: {e}")
        raise


@pytest.mark.parametrize("spec", SPECS)
def test_every_voice_speaks_16k_mono_pcm16(spec, tmp_path):
    vs = _ready(spec)
    syn = tts.get_synthesizer(vs.engine)
    out = tmp_path / "a.wav"
    dur = syn.synthesize(SAY[syn.VOICES[vs.voice].lang], vs, out)
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    audio, _ = sf.read(str(out))
    assert 1.0 < dur < 10.0 and np.sqrt(np.mean(audio ** 2)) > 0.01  # speech, not near-silence


@pytest.mark.parametrize("engine", DEBIAN)
def test_engine_is_deterministic(engine, tmp_path):
    spec = next(s for s in SPECS if s.startswith(f"{engine}:"))
    vs = _ready(spec)
    syn = tts.get_synthesizer(engine)
    a = syn.synthesize(SAY["en"], vs, tmp_path / "a.wav")
    syn.synthesize("Something else entirely, said in between.", vs, tmp_path / "b.wav")
    assert syn.synthesize(SAY["en"], vs, tmp_path / "c.wav") == a
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "c.wav").read_bytes()


def test_content_addresses_differ_across_engines_and_builds(monkeypatch):
    text = "Hello there."
    paths = {s: tts.audio_relpath(text, s) for s in ("flite:slt", "festival:slt", "rhvoice:slt", "pico:en-US",
                                                     "mbrola:us1")}
    assert len(set(paths.values())) == len(paths)
    assert all(p.startswith(f"audio/{s.split(':')[0]}/") for s, p in paths.items())
    # the address needs nothing installed, and names the build: another pinned .deb moves every file
    before = tts.audio_relpath(text, "flite:slt")
    pool, size, sha = _debian.PINS["libflite1"]
    monkeypatch.setitem(_debian.PINS, "libflite1", (pool.replace("2.2-5", "2.2-6"), size, sha))
    assert tts.audio_relpath(text, "flite:slt") != before
    monkeypatch.setitem(_debian.PINS, "libflite1", (pool, size, "0" * 64))
    assert tts.audio_relpath(text, "flite:slt") != before
    # a voice's own package is in its address (MBROLA databases, RHVoice languages)
    assert "mbrola-us1=" in tts.get_synthesizer("mbrola").cache_tag(tts.parse_voice("mbrola:us1"))


def test_bad_voice_names_list_the_valid_ones():
    with pytest.raises(ParamError) as e:
        tts.check_voice("flite:kal32")
    assert "kal16" in str(e.value) and "rms" in str(e.value)
    with pytest.raises(ParamError, match="evgeniy") as e:  # not offered: CC BY-NC-ND
        tts.check_voice("rhvoice:evgeniy-eng")
    assert "bdl" in str(e.value)
    with pytest.raises(ParamError, match="en-GB"):
        tts.check_voice("pico:en-AU")
    with pytest.raises(ParamError, match="take no variant"):
        tts.check_voice("mbrola:us1+f2")
    with pytest.raises(ParamError, match="festival, flite"):
        tts.check_voice("marytts:cmu-slt")


def test_list_voices_covers_every_engine_and_language_without_installing(isolated_data):
    voices = tts.list_voices()
    for spec in ("flite:rms", "rhvoice:bdl", "pico:en-GB", "mbrola:us2", "festival:don", "mbrola:de2",
                 "rhvoice:anna", "festival:el"):
        assert spec in voices
    assert not (isolated_data / "raw").exists()  # nothing was downloaded to list them


def test_a_failed_download_says_what_to_do(isolated_data, monkeypatch):
    monkeypatch.setenv("CLASPKIT_DEBIAN_MIRROR", "http://127.0.0.1:9/debian/")  # nothing listens there
    with pytest.raises(ToolMissingError) as e:
        tts.check_voice("pico:en-US")
    msg = str(e.value)
    assert "python -m claspkit.fetch --voices" in msg and "libttspico0" in msg and "CLASPKIT_DEBIAN_MIRROR" in msg
    assert isinstance(e.value.__cause__, DataMissingError)


def test_a_damaged_install_names_the_folder_to_delete(tmp_path, monkeypatch):
    _ready("flite:slt")  # installed in the data folder; copy it to damage the copy only
    src = tts.get_synthesizer("flite").ready()
    data = tmp_path / "data"
    monkeypatch.setenv("CLASPKIT_DATA", str(data))
    for root in src.values():
        shutil.copytree(root, data / "raw" / "debian" / root.name, symlinks=True)
    (data / "raw" / "debian" / src["flite"].name / "usr/bin/flite").unlink()
    monkeypatch.setattr(tts._registry, "_INSTANCES", {})
    with pytest.raises(ToolMissingError) as e:
        tts.check_voice("flite:slt")
    assert "damaged" in str(e.value) and src["flite"].name in str(e.value) and "Delete" in str(e.value)


def test_voice_sets_and_the_preset():
    en = voicesets.ENGLISH
    assert len(en) >= 15 and len({v.split(":")[0] for v in en}) >= 5 and len(set(en)) == len(en)
    assert {"fr", "es", "it", "de", "ru"} <= set(voicesets.BY_LANGUAGE)
    for lang, voices in voicesets.BY_LANGUAGE.items():
        for spec in voices:
            vs = tts.parse_voice(spec)
            cls = tts.ENGINES[vs.engine]
            if issubclass(cls, _debian.DebianEngine):
                assert cls.VOICES[vs.voice].lang == lang, spec
    held = voicesets.held_out_voices("en")
    assert held and all(v.startswith(voicesets.HELD_OUT_ENGINE + ":") for v in held)
    assert set(held).isdisjoint(voicesets.training_voices("en"))
    P = load_params("voices")
    assert P.voices == en and P.held_out_voice == voicesets.HELD_OUT_ENGINE + ":*"
