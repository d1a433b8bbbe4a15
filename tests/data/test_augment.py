"""Training augmentation (claspkit.data.augment): each simulated channel does what its name says, recipes are
seeded per clip, and cached copies are content-addressed, byte-identical across runs and never half-written."""
import hashlib
import json

import numpy as np
import pytest
import soundfile as sf

from claspkit.data.augment import codecs, copies, masking, noise, recipe as R, rooms
from claspkit.errors import AudioError, ParamError
from fakes import SR, tone, tone_files

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def white(seconds=1.0, seed=0):
    x = np.random.default_rng(seed).standard_normal(int(seconds * SR))
    return 0.9 * x / np.max(np.abs(x))


def band_energy(x, lo, hi):
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return spec[(f >= lo) & (f < hi)].sum() / spec.sum()


def lag_of(x, y, span=50):
    """The shift of ``y`` against ``x`` that correlates best (0: aligned)."""
    core = slice(span, len(x) - span)
    return max(range(-span, span + 1), key=lambda s: float(np.dot(x[core], y[span + s:len(x) - span + s])))


# ------------------------------------------------------------------ telephone and codecs
@pytest.mark.parametrize("channel", [codecs.telephone, codecs.mu_law])
def test_phone_channels_remove_the_band_above_4khz_and_below_the_highpass(channel):
    x = white()
    y = channel(x)
    assert len(y) == len(x) and band_energy(x, 4100, 8000) > 0.4
    assert band_energy(y, 4100, 8000) < 1e-4                  # 8 kHz sampling: nothing above 4 kHz survives
    assert band_energy(y, 0, 100) < 0.02 * band_energy(x, 0, 100)       # the 300 Hz high-pass
    assert band_energy(channel(x, highpass_hz=0), 0, 100) > 0.5 * band_energy(x, 0, 100)
    assert lag_of(x, y) == 0
    with pytest.raises(ParamError, match="highpass_hz"):
        channel(x, highpass_hz=5000)


def test_mu_law_quantizes_at_8_bits_and_its_error_follows_the_level():
    x = white()
    phone = codecs.telephone(x)
    err = lambda a, b: 10 * np.log10(np.sum((a - b) ** 2) / np.sum(a ** 2))
    loud = err(phone, codecs.mu_law(x))
    assert -45 < loud < -30                                   # about 38 dB SQNR: 8-bit mu-law
    quiet = err(codecs.telephone(0.01 * x), codecs.mu_law(0.01 * x))
    assert quiet > loud + 3                                   # quiet speech falls on the coarse steps


@pytest.mark.parametrize("codec,kbps,min_snr", [("mp3", 32, 8), ("mp3", 16, 4), ("opus", 16, 4), ("opus", 8, 1),
                                                ("g722", 64, 15)])
def test_codec_roundtrips_keep_length_rate_and_alignment_and_are_deterministic(codec, kbps, min_snr):
    from scipy.signal import lfilter

    x = lfilter([1], [1, -0.9], np.random.default_rng(1).standard_normal(SR + 123))
    x = 0.8 * x / np.max(np.abs(x))
    y = codecs.codec_roundtrip(x, codec, kbps)
    assert y.shape == x.shape and y.dtype == np.float64          # the input's length, at 16 kHz
    assert abs(lag_of(x, y)) <= 2                                 # encoder delay and padding trimmed
    snr = 10 * np.log10(np.sum(x ** 2) / np.sum((x - y) ** 2))
    assert min_snr < snr < 60                                     # changed, but still the same signal
    assert np.array_equal(y, codecs.codec_roundtrip(x, codec, kbps))


def test_codec_parameters_are_checked():
    x = white(0.2)
    with pytest.raises(ParamError, match="unknown codec 'aac'; valid: g722, mp3, opus"):
        codecs.codec_roundtrip(x, "aac")
    with pytest.raises(ParamError, match="g722 takes a whole number of kbit/s from 64 to 64"):
        codecs.codec_roundtrip(x, "g722", 48)
    with pytest.raises(ParamError, match="resample first"):
        codecs.codec_roundtrip(x, "mp3", 32, sr=8000)


@pytest.mark.parametrize("fn", [codecs.telephone, codecs.mu_law, lambda x: codecs.codec_roundtrip(x, "mp3", 32),
                                lambda x: rooms.reverberate(x, np.ones(3)), lambda x: noise.apply_gain(x, 0)])
def test_every_channel_refuses_empty_and_silent_input_clearly(fn):
    with pytest.raises(AudioError, match="is empty"):
        fn(np.zeros(0))
    with pytest.raises(AudioError, match="is silent"):
        fn(np.zeros(1600))
    with pytest.raises(AudioError, match="1-D waveform"):
        fn(np.ones((2, 100)))


def test_gain_clips_only_above_full_scale():
    x = white()
    assert np.max(np.abs(noise.apply_gain(x, 0))) == pytest.approx(noise.PEAK)
    assert np.max(np.abs(noise.apply_gain(x, -20))) == pytest.approx(noise.PEAK / 10)
    hot = noise.apply_gain(x, 12)
    assert np.max(np.abs(hot)) == 1.0 and np.mean(np.abs(hot) == 1.0) > 0.05


def test_speed_changes_the_length_by_the_factor():
    x = tone(1.0)
    for factor in (0.9, 1.1):
        assert abs(len(noise.change_speed(x, factor)) - SR / factor) <= 1
    with pytest.raises(ParamError, match="speed factor"):
        noise.change_speed(x, 0)


# ------------------------------------------------------------------ rooms
@pytest.mark.parametrize("rt60,room,distance", [(0.25, 4.0, 1.5), (0.5, 6.0, 2.0), (0.9, 8.0, 3.0), (0.6, 3.0, 0.5)])
def test_rir_has_the_requested_rt60(rt60, room, distance):
    for seed in range(3):
        h = rooms.room_impulse_response(rt60, room, distance, np.random.default_rng(seed))
        assert h[0] == 1.0 and len(h) == int(np.ceil(rt60 * SR)) + 1
        assert rooms.schroeder_rt60(h) == pytest.approx(rt60, rel=0.08)


def test_rir_is_seeded_and_its_direct_to_reverberant_ratio_follows_the_distance():
    rng = lambda s: np.random.default_rng(s)
    a, b = (rooms.room_impulse_response(0.5, 5.0, 1.0, rng(3)) for _ in range(2))
    assert np.array_equal(a, b) and not np.array_equal(a, rooms.room_impulse_response(0.5, 5.0, 1.0, rng(4)))
    drr = lambda h: 10 * np.log10(h[0] ** 2 / np.sum(h[1:] ** 2))
    near, far = (rooms.room_impulse_response(0.5, 5.0, d, rng(0)) for d in (0.3, 3.0))
    assert drr(near) > drr(far) + 15                           # energy 1/d^2 against a diffuse field
    x = white(0.5)
    y = rooms.reverberate(x, far)
    assert len(y) == len(x) and lag_of(x, y, 20) == 0                    # the direct sound stays at sample 0
    assert np.corrcoef(x, y)[0, 1] < 0.5                                 # but most of what is heard is the room


def test_rir_parameters_are_checked():
    rng = np.random.default_rng(0)
    with pytest.raises(ParamError, match="rt60_s must be a positive number"):
        rooms.room_impulse_response(0, 5, 1, rng)
    with pytest.raises(ParamError, match="longer than the room's diagonal"):
        rooms.room_impulse_response(0.5, 2, 4, rng)
    with pytest.raises(ParamError, match="does not decay"):
        rooms.schroeder_rt60(np.ones(100))


# ------------------------------------------------------------------ recipes
SHA = "ab" * 32


def test_unknown_channels_and_parameters_list_the_valid_ones():
    with pytest.raises(ParamError, match=r"unknown channel 'reverb' is not one of: g722, gain, mp3, mu_law, noise, "
                                         r"opus, room, speed, telephone"):
        R.Recipe.parse(["room", "reverb"])
    with pytest.raises(ParamError, match="unknown channel recipe 'studio' is not one of: codecs, phone, real, rooms"):
        R.Recipe.parse("studio")
    with pytest.raises(ParamError, match="channel 'room' has no parameter 'rt30' is not one of: distance_m, p, "):
        R.Recipe.parse({"room": {"rt30": [0.1, 0.2]}})
    for bad, match in (({"room": {"rt60_s": [0.8, 0.2]}}, "low <= high"), ({"room": {"p": 2}}, "probability"),
                       ({"mp3": {"kbps": [320]}}, "from 8 to 160"), ({"noise": {"kinds": ["pink"]}}, "unknown noise"),
                       ({"speed": {"factors": []}}, "non-empty list"), ([], "non-empty list of channel names")):
        with pytest.raises(ParamError, match=match):
            R.Recipe.parse(bad)


def test_recipes_fill_defaults_keep_chain_order_and_name_a_new_key_for_any_change():
    r = R.Recipe.parse({"mp3": {}, "room": {"rt60_s": [0.3, 0.4]}})
    assert list(r.channels) == ["room", "mp3"] and r.channels["room"]["room_m"] == [3.0, 10.0]
    assert R.Recipe.parse(["room", "mp3"]).digest(1) != r.digest(1) != r.digest(2)
    assert R.Recipe.parse(r) is r and R.Recipe.parse(dict(reversed(list(r.channels.items())))).digest(1) == r.digest(1)
    assert r.key(1)["recipe"] == R.VERSION
    assert all(R.Recipe.parse(name) for name in R.RECIPES)


def test_draws_are_seeded_per_clip_and_channel_and_one_transmission_at_most():
    real = R.Recipe.parse("real")
    d = real.draws(SHA, 5)
    assert d == real.draws(SHA, 5) and d != real.draws(SHA, 6) and d != real.draws("cd" * 32, 5)
    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(200)]
    for sha in shas:
        names = [n for n, _ in real.draws(sha, 5)]
        assert sum(n in R.TRANSMISSION for n in names) <= 1
        assert names == [n for n in R.CHANNELS if n in names]              # the chain's order
    sent = {n for sha in shas for n, _ in real.draws(sha, 5) if n in R.TRANSMISSION}
    assert sent == set(R.TRANSMISSION)
    rooms_in = sum(any(n == "room" for n, _ in real.draws(sha, 5)) for sha in shas)
    assert 70 < rooms_in < 130                                          # p = 0.5
    # adding a channel leaves the others' draws alone
    room_only = dict(R.Recipe.parse(["room"]).draws(SHA, 5))["room"]
    assert dict(R.Recipe.parse(["room", "gain"]).draws(SHA, 5))["room"] == room_only
    assert 0.2 <= room_only["rt60_s"] <= 0.8 and 3 <= room_only["room_m"] <= 10


def test_apply_recipe_needs_a_babble_source_and_passes_silence_errors_on():
    x = tone(0.5)
    with pytest.raises(ParamError, match="babble noise is made from other clips"):
        R.apply_recipe(x, {"noise": {"kinds": ["babble"]}}, SHA, 0)
    y = R.apply_recipe(x, {"noise": {"kinds": ["white"], "snr_db": [10, 10]}}, SHA, 0)
    assert 10 * np.log10(np.sum(x.astype(float) ** 2) / np.sum((y - x) ** 2)) == pytest.approx(10, abs=1e-6)
    with pytest.raises(AudioError, match="silent"):
        R.apply_recipe(np.zeros(800), ["room"], SHA, 0)


# ------------------------------------------------------------------ cached copies
@pytest.fixture
def clips(tmp_path):
    return tone_files(tmp_path / "clean", 5)


REAL = {**R.RECIPES["real"], "noise": {"talkers": 2}}


def test_channel_copies_are_byte_identical_order_free_and_keyed_by_recipe_seed_and_version(clips, tmp_path,
                                                                                        monkeypatch):
    a = copies.channel_copies(clips, REAL, seed=3, out_dir=tmp_path / "a")
    b = copies.channel_copies(clips[::-1], REAL, seed=3, out_dir=tmp_path / "b")[::-1]
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert a[0].parent.name == b[0].parent.name and a[0].parent.parent.name == "channels"
    for c, p in zip(clips, a):
        y, sr = sf.read(p)
        assert sr == SR and np.max(np.abs(y)) == pytest.approx(0.95, abs=1e-3)
        speed = dict(R.Recipe.parse(REAL).draws(copies.file_shas([c])[0], 3)).get("speed", {"factors": 1.0})["factors"]
        assert abs(len(y) - len(sf.read(c)[0]) / speed) <= 1
    written = json.loads((a[0].parent / "recipe.json").read_text())
    assert written["recipe"] == R.VERSION and written["seed"] == 3 and "pool" in written
    assert written["channels"]["room"]["p"] == 0.5
    others = [copies.channel_copies(clips, REAL, seed=4, out_dir=tmp_path / "a"),
              copies.channel_copies(clips, {**REAL, "gain": {"db": [-3, 0]}}, seed=3, out_dir=tmp_path / "a")]
    monkeypatch.setattr(R, "VERSION", "channels-test")
    others.append(copies.channel_copies(clips, REAL, seed=3, out_dir=tmp_path / "a"))
    assert len({o[0].parent for o in others} | {a[0].parent}) == 4


def test_channel_copies_resume_and_a_crash_leaves_no_corrupt_file(clips, tmp_path, monkeypatch):
    from claspkit.data.augment import base

    spec = ["room", "mp3"]
    first = copies.channel_copies(clips, spec, out_dir=tmp_path)
    stamp = first[0].stat().st_mtime_ns
    first[2].unlink()
    calls = []
    real_write = sf.write

    def dying_write(path, data, *args, **kw):
        real_write(path, data[:len(data) // 2], *args, **kw)     # half the file, then the process dies
        calls.append(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(sf, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        copies.channel_copies(clips, spec, out_dir=tmp_path)
    assert calls and not first[2].exists()                       # no half-written clip under its final name
    assert not list(first[0].parent.glob(".*"))                  # nor a temporary file left behind
    monkeypatch.setattr(sf, "write", real_write)
    again = copies.channel_copies(clips, spec, out_dir=tmp_path)
    assert again == first and first[2].is_file() and first[0].stat().st_mtime_ns == stamp
    assert base.PEAK == 0.95


def test_channel_copies_name_the_silent_file(clips, tmp_path):
    silent = tmp_path / "clean" / "silent.wav"
    sf.write(silent, np.zeros(4000, np.float32), SR, subtype="PCM_16")
    with pytest.raises(AudioError, match="silent.wav"):
        copies.channel_copies([*clips, silent], ["room"], out_dir=tmp_path)


# ------------------------------------------------------------------ frame masking
def test_frame_masks_stay_inside_valid_frames_are_bounded_and_seeded():
    x = np.ones((6, 30, 16), np.float32)
    lengths = np.array([30, 20, 10, 4, 2, 1])
    for b, n in enumerate(lengths):
        x[b, n:] = 0
    a = masking.mask_frames(x.copy(), lengths, np.random.default_rng(0), time_width=5, channel_width=4, masks=2)
    assert np.array_equal(a, masking.mask_frames(x.copy(), lengths, np.random.default_rng(0), 5, 4, 2))
    assert not np.array_equal(a, masking.mask_frames(x.copy(), lengths, np.random.default_rng(1), 5, 4, 2))
    assert np.all(a[x == 0] == 0) and 0 < np.mean(a[x == 1] == 0) < 0.6
    for b, n in enumerate(lengths):
        rows = np.flatnonzero(np.all(a[b, :n] == 0, axis=1))
        assert len(rows) <= 2 * min(5, n // 2)                  # never the whole clip
    only_time = masking.mask_frames(x.copy(), lengths, np.random.default_rng(0), time_width=5)
    assert np.all(np.all(only_time == 0, axis=2) | np.all(only_time == x, axis=2))     # whole steps only
    assert np.array_equal(masking.mask_frames(x.copy(), lengths, np.random.default_rng(0)), x)   # off
    with pytest.raises(ParamError, match="wider than the features"):
        masking.mask_frames(x.copy(), lengths, np.random.default_rng(0), channel_width=17)
    with pytest.raises(ParamError, match="time_width must be an int >= 0"):
        masking.mask_frames(x.copy(), lengths, np.random.default_rng(0), time_width=-1)
