"""The spectrogram image: fixed size, fixed colormap, fixed dB range, log-frequency axis, one code path."""
import numpy as np
import pytest
import torch

from claspkit.encoders import spectrogram as S
from claspkit.errors import AudioError, ParamError

SR = 16000


def tone(freq, seconds=1.0, amp=0.5, sr=SR):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chirpy(seed=0, seconds=2.0):
    """A speech-like test signal: noise plus a few tones, no silence."""
    rng = np.random.default_rng(seed)
    x = 0.05 * rng.standard_normal(int(SR * seconds)).astype(np.float32)
    for f in (220, 660, 1800):
        x += tone(f, seconds, 0.2)
    return x


def lut_index(img, cmap="magma"):
    """Map every pixel back to its colormap index (fails if a colour is not in the LUT)."""
    def code(a):
        a = a.reshape(-1, 3).astype(np.int64)
        return (a[:, 0] << 16) | (a[:, 1] << 8) | a[:, 2]

    lut = code(S._lut(cmap))
    order = np.argsort(lut)
    px = code(img)
    pos = np.clip(np.searchsorted(lut[order], px), 0, 255)
    assert (lut[order][pos] == px).all(), "a pixel colour is not from the fixed colormap"
    return order[pos].reshape(img.shape[:2])


def test_shape_dtype_and_custom_size():
    img = S.spectrogram_image(chirpy())
    assert img.shape == (224, 224, 3) and img.dtype == np.uint8
    assert S.spectrogram_image(chirpy(), height=64, width=96).shape == (64, 96, 3)


def test_same_input_same_image_and_one_colormap():
    a = S.spectrogram_image(chirpy(1))
    b = S.spectrogram_image(chirpy(1).copy())
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(S._lut("magma"), axis=0)) == 256
    lut_index(a)  # every pixel comes from the single magma LUT
    lut_index(S.spectrogram_image(chirpy(2), cmap="viridis"), "viridis")


def test_fixed_db_range_uses_the_full_colormap():
    x = np.concatenate([tone(1000, 1.0, 0.9), np.zeros(SR, np.float32)])
    db = S.stft_db(x)
    assert db.max() == 0.0 and db.min() == -80.0  # relative to the clip's peak, clamped at -top_db
    idx = lut_index(S.spectrogram_image(x))
    assert idx.max() >= 240  # the tone's row (averaged with its neighbouring bins) is near the top colour
    assert idx[:, -20:].max() == 0  # digital silence is clamped at -top_db = bottom of the colormap
    idx40 = lut_index(S.spectrogram_image(x, top_db=40))
    assert (idx40[:, :100] == 0).mean() > (idx[:, :100] == 0).mean()  # a narrower range clamps more


def test_loudness_does_not_change_the_image():
    x = chirpy(3)
    loud, quiet = S.spectrogram_image(x), S.spectrogram_image(0.01 * x)
    i_loud, i_quiet = lut_index(loud), lut_index(quiet)
    assert np.abs(i_loud - i_quiet).max() <= 1  # float rounding at most one LUT step
    assert (i_loud != i_quiet).mean() < 0.01


def test_different_clips_share_the_same_db_scale():
    a, b = lut_index(S.spectrogram_image(chirpy(4))), lut_index(S.spectrogram_image(tone(500, 2.0)))
    db_a, db_b = S.stft_db(chirpy(4)), S.stft_db(0.001 * tone(500, 2.0))
    assert db_a.max() == db_b.max() == 0.0 and db_a.min() >= -80.0 and db_b.min() >= -80.0
    assert a.max() >= 240 and b.max() >= 240 and not np.array_equal(a, b)


def brightest_row(freq):
    idx = lut_index(S.spectrogram_image(tone(freq, 1.0)))
    return int(np.argmax(idx[:, 100:124].mean(axis=1)))


def test_log_frequency_axis():
    r500, r1k, r2k, r4k = (brightest_row(f) for f in (500, 1000, 2000, 4000))
    assert r4k < r2k < r1k < r500  # low frequencies at the bottom (larger row index)
    octave = 224 / S._symlog(8000, 65.4)  # rows per octave above the linear region
    for hi, lo in ((r1k, r500), (r2k, r1k), (r4k, r2k)):
        assert lo - hi == pytest.approx(octave, abs=2.5)


def test_time_axis_is_stretched_to_the_width():
    x = np.concatenate([tone(1000, 1.0), np.zeros(3 * SR, np.float32)])
    idx = lut_index(S.spectrogram_image(x))
    assert idx[:, :50].max() > 200 and idx[:, 70:].max() == 0


def test_very_short_and_long_inputs():
    assert S.spectrogram_image(tone(440, 0.01)).shape == (224, 224, 3)  # shorter than one FFT window
    long = 0.1 * np.random.default_rng(0).standard_normal(SR * 120).astype(np.float32)
    assert S.spectrogram_image(long).shape == (224, 224, 3)


@pytest.mark.parametrize("bad, match", [
    (np.zeros(0, np.float32), "non-empty"),
    (np.zeros(1000, np.float32), "silent"),
    (np.full(1000, np.nan, np.float32), "NaN"),
    (np.zeros((2, 100), np.float32), "1-D"),
])
def test_bad_waveforms(bad, match):
    with pytest.raises(AudioError, match=match):
        S.spectrogram_image(bad)


def test_bad_parameters():
    with pytest.raises(ParamError, match="n_fftt"):
        S.spectrogram_image(tone(440), n_fftt=1024)
    with pytest.raises(ParamError, match="colormap"):
        S.spectrogram_image(tone(440), cmap="no-such-map")
    with pytest.raises(ParamError, match="positive integer"):
        S.spectrogram_image(tone(440), width=0)


def test_params_id_tracks_the_drawing():
    assert S.DEFAULT.id() == S.SpectrogramParams().id()
    assert S.DEFAULT.id() != S.DEFAULT.with_(width=128).id()
    assert S.DEFAULT.id().startswith(S.SPECTROGRAM_VERSION)


def test_batch_equals_single():
    waves = [chirpy(5, 1.0), tone(300, 3.0)]
    batch = S.spectrogram_images(waves, width=100)
    for w, img in zip(waves, batch):
        np.testing.assert_array_equal(img, S.spectrogram_image(w, width=100))


def test_to_tensor_normalises_per_channel():
    img = np.zeros((2, 4, 5, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 255, 0, 128
    t = S.to_tensor(img, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    assert t.shape == (2, 3, 4, 5) and t.dtype == torch.float32
    assert torch.allclose(t[:, 0], torch.tensor(1.0))
    assert torch.allclose(t[:, 1], torch.tensor(-2.0))
    assert torch.allclose(t[:, 2], torch.tensor(128 / 255 - 0.5))
    assert S.to_tensor(img[0]).shape == (1, 3, 4, 5)
    with pytest.raises(ParamError):
        S.to_tensor(img.astype(np.float32))


def test_stft_matches_torch_stft():
    """The numpy STFT is the same transform as torch.stft(center=True, constant padding, periodic Hann)."""
    x = chirpy(6, 2.5)
    mag = torch.stft(torch.from_numpy(x), 1536, 384, window=torch.hann_window(1536), center=True,
                     pad_mode="constant", return_complex=True).abs().numpy()
    ref = 20 * np.log10(np.maximum(mag / mag.max(), 1e-4))
    np.testing.assert_allclose(S.stft_db(x), ref, atol=0.01)
