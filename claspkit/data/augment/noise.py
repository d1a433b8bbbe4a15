"""Additive noise, speed and gain: the perturbations the project used first (noise sweep, speed-and-noise copies).

SNR is speech power over noise power over the whole clip. Babble is the sum of other clips, each at unit
RMS, so no single talker dominates. Speed is resampling (tempo and pitch change together, as in Kaldi's
speed perturbation). Gain acts before a transmission channel: every clip is peak-normalised when it is
loaded, so a level change only shows where it clips (above full scale) or where a channel quantizes.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from claspkit.constants import BABBLE_TALKERS, NOISE_KINDS, SAMPLE_RATE
from claspkit.data.augment.base import PEAK, as_signal
from claspkit.errors import AudioError, ParamError

__all__ = ["NOISE_KINDS", "BABBLE_TALKERS", "mix_at_snr", "white_noise", "loop_crop", "babble_noise",
           "change_speed", "apply_gain"]


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``clean + g * noise`` with g chosen so that power(clean) / power(g * noise) is ``snr_db``."""
    clean = np.asarray(clean, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    if clean.shape != noise.shape or clean.ndim != 1:
        raise ParamError(f"clean and noise must be 1-D arrays of one length, got {clean.shape} and {noise.shape}")
    if not np.isfinite(snr_db):
        raise ParamError(f"snr_db must be a finite number of dB, got {snr_db!r}")
    ps, pn = float(np.mean(clean ** 2)), float(np.mean(noise ** 2))
    if ps == 0:
        raise AudioError("the clean signal is silent: an SNR is undefined; drop the item or fix the file")
    if pn == 0:
        raise AudioError("the noise is silent: pick noise with energy (another babble pool, or white noise)")
    return clean + noise * np.sqrt(ps / (pn * 10 ** (snr_db / 10)))


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n)


def loop_crop(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``x`` looped from a random offset to ``n`` samples."""
    reps = -(-n // len(x)) + 1
    start = int(rng.integers(0, len(x)))
    return np.tile(x, reps)[start:start + n]


def babble_noise(n: int, pool: Sequence[np.ndarray], exclude: int | None, rng: np.random.Generator,
                 talkers: int = BABBLE_TALKERS) -> np.ndarray:
    """The sum of ``talkers`` other clips of ``pool`` (never ``pool[exclude]``), each looped from a random
    offset to ``n`` samples and scaled to unit RMS, so no single talker dominates."""
    others = [i for i in range(len(pool)) if i != exclude and np.any(pool[i])]
    if len(others) < talkers:
        raise ParamError(f"babble needs {talkers} other clips with sound, the pool has {len(others)}; "
                         "use a larger set or fewer talkers")
    out = np.zeros(n)
    for i in rng.choice(others, size=talkers, replace=False):
        x = loop_crop(np.asarray(pool[i], dtype=np.float64), n, rng)
        out += x / np.sqrt(np.mean(x ** 2))
    return out


def change_speed(x: np.ndarray, factor: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``x`` played ``factor`` times faster (resampled: ``factor`` 1.1 is 10 % shorter and higher)."""
    from claspkit.data.audio import resample

    if not factor > 0:
        raise ParamError(f"a speed factor must be > 0, got {factor!r}")
    if factor == 1.0:
        return np.asarray(x, dtype=np.float64)
    y = resample(np.asarray(x, dtype=np.float32), int(round(sr * factor)), sr)
    return y.astype(np.float64)


def apply_gain(x: np.ndarray, db: float) -> np.ndarray:
    """``x`` scaled to peak ``PEAK`` (0.95) and then by ``db``, clipped at full scale (+-1), as an input stage
    driven too hard clips; 0 dB and below never clip."""
    x = as_signal(x, "the gain's input")
    if not np.isfinite(db):
        raise ParamError(f"gain must be a finite number of dB, got {db!r}")
    return np.clip(x * (PEAK / np.max(np.abs(x)) * 10 ** (db / 20)), -1.0, 1.0)
