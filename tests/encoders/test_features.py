"""The feature cache: content addressing, resumption after a kill, and refusal of bad items."""
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import soundfile as sf

from claspkit.errors import AudioError, BackboneError, ClaspkitError, DataMissingError, ParamError
from claspkit.encoders.features import (ExtractStats, FeatureCache, extract_audio, extract_manifest_features,
                               extract_text)

SR = 16000


def audio_feature(w: np.ndarray, dim: int) -> np.ndarray:
    """A deterministic function of the waveform, so equal inputs give equal rows."""
    base = [len(w) / SR, w.mean(), w.std(), np.abs(w).max(), w[::97].sum(), (w[1:] * w[:-1]).mean()]
    return np.resize(np.asarray(base, dtype=np.float32), dim)


class FakeAudio:
    role, sample_rate, name = "speech", SR, "fake-audio"

    def __init__(self, dim=6, cache_id="fake-audio-v1", nan_for_len=None):
        self.dim, self.cache_id, self.nan_for_len = dim, cache_id, nan_for_len
        self.batches = []  # lengths (samples) of the waveforms of each encode call

    def encode(self, waves):
        self.batches.append([len(w) for w in waves])
        out = np.stack([audio_feature(w, self.dim) for w in waves])
        for i, w in enumerate(waves):
            if len(w) == self.nan_for_len:
                out[i, 0] = np.nan
        return out

    @property
    def n_encoded(self):
        return sum(map(len, self.batches))


class FakeText:
    role, name = "text", "fake-text"

    def __init__(self, dim=5, cache_id="fake-text-v1"):
        self.dim, self.cache_id, self.seen = dim, cache_id, []

    def encode(self, texts):
        self.seen.extend(texts)
        digests = [hashlib.sha256(t.encode()).digest()[: self.dim] for t in texts]
        return np.stack([np.frombuffer(d, np.uint8).astype(np.float32) for d in digests])


def tone(path, freq, seconds, amp=0.3):
    t = np.arange(int(seconds * SR)) / SR
    sf.write(str(path), (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR, subtype="PCM_16")
    return path


@pytest.fixture
def wavs(tmp_path):
    folder = tmp_path / "wavs"
    folder.mkdir()
    durations = [0.6, 1.3, 0.4, 1.0, 0.8, 1.5, 0.5, 1.1]
    return [tone(folder / f"c{i:02d}.wav", 200 + 60 * i, d) for i, d in enumerate(durations)]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASPKIT_DATA", str(tmp_path / "data"))
    return FeatureCache(tmp_path / "cache")


def expected(enc, paths):
    from claspkit.data.audio import load_audio

    return np.stack([audio_feature(load_audio(p, SR), enc.dim) for p in paths])


def entries(cache, enc):
    return sorted(cache.folder(enc.cache_id).rglob("*.npy"))


def test_text_hit_miss_and_changed_text(cache):
    enc = FakeText()
    texts = ["the cat sat", "a dog ran", "on the mat"]
    X1, st1 = extract_text(enc, texts, cache=cache, progress=False, return_stats=True)
    assert (st1.n_computed, st1.n_reused) == (3, 0) and X1.dtype == np.float32 and X1.shape == (3, 5)
    X2, st2 = extract_text(enc, texts, cache=cache, progress=False, return_stats=True)
    assert (st2.n_computed, st2.n_reused) == (0, 3) and len(enc.seen) == 3
    np.testing.assert_array_equal(X1, X2)
    X3 = extract_text(enc, ["the cat sat", "a dog ran!", "on the mat"], cache=cache, progress=False)
    assert enc.seen[3:] == ["a dog ran!"]
    np.testing.assert_array_equal(X3[[0, 2]], X1[[0, 2]])
    assert not np.array_equal(X3[1], X1[1])


def test_order_kept_and_duplicates_computed_once(cache):
    enc = FakeText()
    texts = ["zeta", "alpha", "mid", "alpha", "beta"]
    X = extract_text(enc, texts, cache=cache, batch_size=2, progress=False)
    assert sorted(enc.seen) == ["alpha", "beta", "mid", "zeta"]
    np.testing.assert_array_equal(X, FakeText().encode(texts))


def test_audio_cache_and_changed_file(wavs, cache):
    enc = FakeAudio()
    X1, st = extract_audio(enc, wavs, cache=cache, batch_size=3, progress=False, return_stats=True)
    np.testing.assert_allclose(X1, expected(enc, wavs), rtol=1e-6)
    assert st.n_computed == len(wavs) and len(entries(cache, enc)) == len(wavs)
    assert st.audio_seconds == pytest.approx(sum(sf.info(str(p)).duration for p in wavs), abs=0.01)
    assert st.items_per_s > 0 and st.rtf > 0
    extract_audio(enc, wavs, cache=cache, progress=False)
    assert enc.n_encoded == len(wavs)
    tone(wavs[3], 999, 0.7)  # new content under the same name
    X2 = extract_audio(enc, wavs, cache=cache, progress=False)
    assert enc.batches[-1] == [int(0.7 * SR)]
    np.testing.assert_array_equal(np.delete(X2, 3, 0), np.delete(X1, 3, 0))
    np.testing.assert_allclose(X2[3], expected(enc, wavs[3:4])[0], rtol=1e-6)


def test_file_hashes_memo_avoids_rereading(wavs, cache, monkeypatch):
    import claspkit.encoders.features as F

    first = cache.file_hashes(wavs)
    reads = []
    monkeypatch.setattr(F, "sha256_file", lambda p: reads.append(p) or "0" * 64)
    assert FeatureCache(cache.root).file_hashes(wavs + wavs) == first + first
    assert reads == []


def test_cache_ids_never_collide(wavs, cache):
    a, b = FakeAudio(cache_id="model-a"), FakeAudio(cache_id="model-a/v2")
    extract_audio(a, wavs, cache=cache, progress=False)
    extract_audio(b, wavs, cache=cache, progress=False)
    assert a.n_encoded == b.n_encoded == len(wavs)
    assert cache.folder(a.cache_id) != cache.folder(b.cache_id)
    assert len(entries(cache, a)) == len(entries(cache, b)) == len(wavs)


def test_length_bucketing_longest_first(wavs, cache):
    enc = FakeAudio()
    extract_audio(enc, wavs, cache=cache, batch_size=3, progress=False)
    lengths = [n for batch in enc.batches for n in batch]
    assert lengths == sorted(lengths, reverse=True)
    assert [len(b) for b in enc.batches] == [3, 3, 2]


def test_failed_file_named_and_others_kept(wavs, cache):
    bad = wavs[2].with_name("broken.wav")
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    enc = FakeAudio()
    with pytest.raises(AudioError, match="broken.wav") as err:
        extract_audio(enc, wavs[:4] + [bad] + wavs[4:], cache=cache, batch_size=2, progress=False)
    assert "run again" in str(err.value)
    assert enc.n_encoded == len(wavs) and len(entries(cache, enc)) == len(wavs)
    extract_audio(enc, wavs, cache=cache, progress=False)
    assert enc.n_encoded == len(wavs)


def test_missing_file_is_named_before_any_work(wavs, cache):
    enc = FakeAudio()
    with pytest.raises(DataMissingError, match="nowhere.wav"):
        extract_audio(enc, wavs + [wavs[0].with_name("nowhere.wav")], cache=cache, progress=False)
    assert enc.batches == []


def test_non_finite_output_refused_and_never_stored(wavs, cache):
    enc = FakeAudio(nan_for_len=int(1.0 * SR))  # c03.wav lasts 1.0 s
    with pytest.raises(ClaspkitError, match="c03.wav.*non-finite") as err:
        extract_audio(enc, wavs, cache=cache, batch_size=4, progress=False)
    assert not isinstance(err.value, AudioError)
    assert len(entries(cache, enc)) == len(wavs) - 1
    fixed = FakeAudio()
    X = extract_audio(fixed, wavs, cache=cache, progress=False)
    assert fixed.batches == [[SR]]
    np.testing.assert_allclose(X, expected(fixed, wavs), rtol=1e-6)


def test_bad_encoder_output_shape(cache):
    enc = FakeText()
    enc.encode = lambda texts: np.zeros((len(texts), 3), np.float32)
    with pytest.raises(BackboneError, match=r"shape \(2, 3\).*expected \(2, 5\)"):
        extract_text(enc, ["a", "b"], cache=cache, progress=False)


def test_bad_text_items_rejected(cache):
    with pytest.raises(ParamError, match=r"#1 \(nan\)"):
        extract_text(FakeText(), ["fine", float("nan"), "  "], cache=cache, progress=False)


def test_corrupt_entries_deleted_and_recomputed(wavs, cache):
    enc = FakeAudio()
    X = extract_audio(enc, wavs, cache=cache, progress=False)
    files = entries(cache, enc)
    files[0].write_bytes(files[0].read_bytes()[:-3])  # truncated
    files[1].write_bytes(b"\x00" * files[1].stat().st_size)  # right size, garbage
    data = bytearray(files[2].read_bytes())
    data[-4:] = np.float32(np.nan).tobytes()  # well-formed but NaN
    files[2].write_bytes(bytes(data))
    again = FakeAudio()
    X2, st = extract_audio(again, wavs, cache=cache, progress=False, return_stats=True)
    assert (st.n_repaired, st.n_computed, again.n_encoded) == (3, 3, 3)
    np.testing.assert_array_equal(X, X2)
    assert cache.verify(enc.cache_id, enc.dim) == {"ok": len(wavs), "removed_bad": 0, "removed_tmp": 0}


def test_no_cache_mode_writes_nothing(wavs, tmp_path, monkeypatch):
    monkeypatch.setenv("CLASPKIT_DATA", str(tmp_path / "data"))
    enc = FakeAudio()
    X = extract_audio(enc, wavs, cache=False, progress=False)
    extract_audio(enc, wavs, cache=False, progress=False)
    assert enc.n_encoded == 2 * len(wavs) and X.shape == (len(wavs), enc.dim)
    assert not (tmp_path / "data").exists()


def test_stats_text():
    st = ExtractStats("b", "speech", 4, n_items=10, n_computed=8, n_reused=2, load_seconds=1.0,
                      encode_seconds=3.0, audio_seconds=16.0, seconds=4.5)
    assert st.items_per_s == 2.0 and st.rtf == 0.25
    assert "8 computed, 2 reused, 2.0 items/s, RTF 0.250" in str(st)


def test_manifest_features_in_row_order(wavs, tmp_path, monkeypatch):
    import pandas as pd

    from claspkit.config import load_params

    data = tmp_path / "data"
    monkeypatch.setenv("CLASPKIT_DATA", str(data))
    (data / "audio").mkdir(parents=True)
    for p in wavs:
        p.rename(data / "audio" / p.name)
    rel = [f"audio/{p.name}" for p in wavs]
    manifest = pd.DataFrame({"path": rel, "text": [f"sentence {i}" for i in range(len(wavs))]})
    P = load_params("tiny")
    enc = {"speech": FakeAudio(), "image": FakeAudio(dim=3, cache_id="fake-image"), "text": FakeText()}
    enc["image"].role = "image"
    F = extract_manifest_features(P, manifest, encoders=enc, progress=False)
    assert {k: v.shape for k, v in F.items()} == {"speech": (8, 6), "image": (8, 3), "text": (8, 5)}
    np.testing.assert_allclose(F["speech"], expected(enc["speech"], [data / r for r in rel]), rtol=1e-6)
    assert list(F.stats_table()["role"]) == ["speech", "image", "text"]
    assert (data / "features").is_dir()
    with pytest.raises(ParamError, match="'audio' is not one of"):
        extract_manifest_features(P, manifest, roles=("audio",), encoders=enc)
    with pytest.raises(BackboneError, match="speech encoder"):
        extract_manifest_features(P, manifest, roles=("image",), encoders={"image": enc["speech"]})


# --------------------------------------------------------------------------- interrupted runs
WORKER = '''
import os, sys, time
from pathlib import Path
import numpy as np

class SlowEncoder:
    name, role, dim, sample_rate, cache_id = "slow-fake", "speech", 4, 16000, "slow-fake-v1"

    def __init__(self, counter, delay):
        self.counter, self.delay, self.calls = counter, delay, 0

    def encode(self, waves):
        time.sleep(self.delay)
        self.calls += 1
        if self.delay and self.calls > 3:
            time.sleep(60)  # stall mid-run, so the signal always lands before the end, however loaded the machine
        out = np.array([[len(w) / 16000, w.mean(), w.std(), np.abs(w).max()] for w in waves], np.float32)
        with open(self.counter, "a") as fh:  # persisted, so a killed run's work can be counted
            fh.write(f"{len(waves)}\\n")
            fh.flush()
            os.fsync(fh.fileno())
        return out

if __name__ == "__main__":
    import signal
    # a job started in the background (CI) inherits SIGINT as ignored; a user's Ctrl-C is not
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from claspkit.encoders.features import extract_audio
    wavs = sorted(Path(sys.argv[1]).glob("*.wav"))
    extract_audio(SlowEncoder(sys.argv[2], float(sys.argv[3])), wavs, batch_size=int(sys.argv[4]),
                  progress=False)
'''


def _count(path):
    return sum(int(x) for x in path.read_text().split()) if path.exists() else 0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "ctrl-c"])
def test_interrupted_run_resumes_without_recomputing(tmp_path, monkeypatch, sig):
    n, batch = 24, 4
    folder = tmp_path / "wavs"
    folder.mkdir()
    wavs = [tone(folder / f"w{i:02d}.wav", 150 + 40 * i, 0.3 + 0.05 * (i % 7)) for i in range(n)]
    (tmp_path / "slowfake.py").write_text(textwrap.dedent(WORKER))
    monkeypatch.setenv("CLASPKIT_DATA", str(tmp_path / "data"))
    monkeypatch.syspath_prepend(str(tmp_path))
    counter = tmp_path / "calls-1.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
    child = subprocess.Popen([sys.executable, str(tmp_path / "slowfake.py"), str(folder), str(counter),
                              "0.15", str(batch)], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while _count(counter) < 3 * batch:  # three batches encoded, more to come
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline, "the worker never got going"
        time.sleep(0.02)
    child.send_signal(sig)
    rc = child.wait(timeout=20)
    err = child.stderr.read().decode()
    assert rc != 0
    if sig == signal.SIGINT:
        assert "KeyboardInterrupt" in err

    import slowfake

    cache = FeatureCache()
    audit = cache.verify(slowfake.SlowEncoder.cache_id, slowfake.SlowEncoder.dim)
    assert audit["removed_bad"] == 0  # no corrupt entry after the interruption
    done = audit["ok"]
    assert 2 * batch <= done < n  # the third batch may be encoded but not yet written
    assert _count(counter) - done <= batch  # at most the batch in flight was lost

    counter2 = tmp_path / "calls-2.txt"
    enc = slowfake.SlowEncoder(str(counter2), 0.0)
    X, st = extract_audio(enc, wavs, batch_size=batch, progress=False, return_stats=True)
    assert _count(counter2) == n - done == st.n_computed and st.n_reused == done
    from claspkit.data.audio import load_audio

    np.testing.assert_allclose(X, enc.encode([load_audio(p, SR) for p in wavs]), rtol=1e-6)
    assert cache.verify(enc.cache_id, enc.dim)["ok"] == n


@pytest.mark.slow
def test_real_backbones_through_the_cache(wavs, cache):
    from claspkit.encoders.backbones import create_backbone

    speech = create_backbone("speech", "whisper-tiny.en")
    X1, st1 = extract_audio(speech, wavs[:3], cache=cache, progress=False, return_stats=True)
    X2, st2 = extract_audio(speech, wavs[:3], cache=cache, progress=False, return_stats=True)
    assert X1.shape == (3, speech.dim) and np.isfinite(X1).all() and np.array_equal(X1, X2)
    assert (st1.n_computed, st2.n_reused) == (3, 3) and 0 < st1.rtf
    text = create_backbone("text", "e5-small-multilingual")
    T = extract_text(text, ["a cat on a mat", "un chat sur un tapis"], cache=cache, progress=False)
    assert T.shape == (2, text.dim) and len(entries(cache, text)) == 2
