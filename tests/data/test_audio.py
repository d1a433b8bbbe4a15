"""Every kind of bad or unusual audio file gets its documented behaviour."""
import warnings

import numpy as np
import pytest
import soundfile as sf

from conftest import write_m4a

from claspkit.data.audio import ClippedAudioWarning, load_audio, validate_waveform
from claspkit.errors import AudioError, DataMissingError, ParamError


def tone(sr, seconds=1.0, freq=440.0, amp=0.5, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def write(tmp_path, name, data, sr, subtype=None):
    p = tmp_path / name
    sf.write(p, data, sr, subtype=subtype)
    return p


def dominant_freq(x, sr):
    spec = np.abs(np.fft.rfft(x))
    return np.argmax(spec) * sr / len(x)


def test_plain_16k_is_peak_normalised(tmp_path):
    p = write(tmp_path, "a.wav", tone(16000, amp=0.25), 16000)
    x = load_audio(p)
    assert x.dtype == np.float32 and x.ndim == 1 and len(x) == 16000
    assert np.abs(x).max() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_other_rates_are_resampled(tmp_path, sr):
    p = write(tmp_path, f"r{sr}.wav", tone(sr, seconds=2.0, freq=440.0), sr)
    x = load_audio(p)
    assert len(x) == 32000
    assert dominant_freq(x, 16000) == pytest.approx(440.0, abs=1.0)


def test_resample_to_other_target_rate(tmp_path):
    p = write(tmp_path, "a.wav", tone(16000, seconds=1.0), 16000)
    assert len(load_audio(p, sr=22050)) == 22050


def test_stereo_is_downmixed_by_mean(tmp_path):
    left = tone(16000, freq=300.0, amp=0.4)
    right = tone(16000, freq=1000.0, amp=0.2)
    p = write(tmp_path, "st.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    x = load_audio(p)
    want = (left + right) / 2
    np.testing.assert_allclose(x, want / np.abs(want).max(), atol=1e-4)


def test_opposite_channels_cancel_to_silence(tmp_path):
    x = tone(16000)
    p = write(tmp_path, "cancel.wav", np.stack([x, -x], axis=1), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="silent after downmixing"):
        load_audio(p)


def test_empty_file(tmp_path):
    p = write(tmp_path, "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match=r"empty\.wav is empty"):
        load_audio(p)


def test_silent_file(tmp_path):
    p = write(tmp_path, "silent.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(AudioError, match=r"silent\.wav is silent.*drop it"):
        load_audio(p)


def test_nearly_silent_but_audible_is_kept(tmp_path):
    p = write(tmp_path, "quiet.wav", tone(16000, amp=1e-3), 16000, subtype="FLOAT")
    assert np.abs(load_audio(p)).max() == pytest.approx(1.0, abs=1e-6)


def test_nan_file(tmp_path):
    x = tone(16000)
    x[100:110] = np.nan
    p = write(tmp_path, "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav contains NaN or infinite samples \(10 of 16000\)"):
        load_audio(p)


def test_inf_waveform():
    x = tone(16000)
    x[5] = np.inf
    with pytest.raises(AudioError, match="clip7 contains NaN"):
        validate_waveform(x, 16000, "clip7")


@pytest.mark.parametrize("subtype", ["FLOAT", "PCM_16"])
def test_clipped_file_warns_and_is_used(tmp_path, subtype):
    x = np.clip(tone(16000, amp=3.0), -1.0, 1.0)
    p = write(tmp_path, "clipped.wav", x, 16000, subtype=subtype)
    with pytest.warns(ClippedAudioWarning, match=r"clipped\.wav is clipped"):
        y = load_audio(p)
    assert len(y) == 16000


@pytest.mark.parametrize("subtype", ["FLOAT", "PCM_16"])
def test_full_scale_sine_is_not_clipping(tmp_path, subtype):
    p = write(tmp_path, "peak.wav", tone(16000, amp=0.99995), 16000, subtype=subtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(p)


def test_corrupt_file(tmp_path):
    p = tmp_path / "corrupt.wav"
    good = write(tmp_path, "good.wav", tone(16000), 16000).read_bytes()
    p.write_bytes(b"RIFF" + b"\x00\xff" * 20 + good[200:400])
    with pytest.raises(AudioError, match=r"cannot read .*corrupt\.wav.*re-export"):
        load_audio(p)


def test_not_audio_at_all(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello, I am not a sound file\n" * 10)
    with pytest.raises(AudioError, match=r"notes\.txt"):
        load_audio(p)


def test_missing_file(tmp_path):
    with pytest.raises(DataMissingError, match="nothere.wav does not exist"):
        load_audio(tmp_path / "nothere.wav")


def test_bad_parameters(tmp_path):
    p = write(tmp_path, "a.wav", tone(16000), 16000)
    with pytest.raises(ParamError):
        load_audio(p, sr=0)
    with pytest.raises(ParamError):
        load_audio(p, max_seconds=-1)


def test_hour_long_file_is_accepted_and_can_be_truncated(tmp_path):
    sr = 8000  # an hour at 8 kHz keeps the file small (57 MB) and exercises the resampler on it
    rng = np.random.default_rng(0)
    noise = (rng.integers(-300, 300, size=sr * 3600, dtype=np.int16))
    p = tmp_path / "hour.wav"
    sf.write(p, noise, sr, subtype="PCM_16")
    head = load_audio(p, max_seconds=2.5)
    assert len(head) == 40000
    full = load_audio(p)
    assert len(full) == 16000 * 3600 and full.dtype == np.float32
    assert np.abs(full).max() == pytest.approx(1.0, abs=1e-6)


def test_validate_rejects_shapes():
    with pytest.raises(AudioError, match="1-D"):
        validate_waveform(np.zeros((2, 2, 2)), 16000, "cube")
    with pytest.raises(AudioError, match="numeric"):
        validate_waveform(np.array(["a", "b"]), 16000, "strings")


def test_m4a_is_decoded_downmixed_and_resampled(tmp_path):
    p = write_m4a(tmp_path / "phone.m4a", tone(44100, seconds=2.0, channels=2), 44100)
    with pytest.raises(sf.SoundFileError):
        sf.info(str(p))                                       # the reason for the FFmpeg path
    x = load_audio(p)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) / 16000 - 2.0) < 0.15                   # AAC adds encoder priming/padding only
    assert np.isclose(np.abs(x).max(), 1.0)
    assert abs(dominant_freq(x, 16000) - 440) < 5


def test_m4a_max_seconds(tmp_path):
    p = write_m4a(tmp_path / "long.m4a", tone(16000, seconds=3.0), 16000)
    assert len(load_audio(p, max_seconds=1.0)) == 16000


def test_corrupt_m4a_names_both_decoders(tmp_path):
    good = write_m4a(tmp_path / "good.m4a", tone(16000), 16000).read_bytes()
    p = tmp_path / "broken.m4a"
    p.write_bytes(good[:64] + b"\x00" * 100)
    with pytest.raises(AudioError, match=r"broken\.m4a.*soundfile.*FFmpeg.*re-export"):
        load_audio(p)
