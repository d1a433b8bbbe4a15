"""Simulated rooms: a seeded statistical room impulse response (RIR) of our own, and reverberation with it.

Why our own and not an image-source package: the only knobs the augmentation needs are the ones that set
how a room sounds to a speech encoder (RT60, room size, talker distance), and a statistical model gets them
from room-acoustics formulas in a few lines, with no compiled dependency, byte-identical on every machine.
The model (Kuttruff's, as in Polack's stochastic RIRs):

* the direct sound, at sample 0 (the pre-delay is dropped, so the words keep their timing), with amplitude
  1/distance;
* reflections as image sources: their arrival rate grows as ``4 pi c^3 t^2 / V`` (sparse early echoes that
  thicken into a diffuse tail; ``V`` = room_m^3), each of random sign, with the 1/(c t) spreading loss of
  its path, all under the energy decay ``exp(-13.8 t / RT60)`` (60 dB in RT60 seconds).

So the direct-to-reverberant ratio follows from the physics (the critical distance 0.057 sqrt(V / RT60)):
a small, live room heard from 3 m is mostly reverberation, a large, damped one from 0.5 m mostly direct.
Not modelled: frequency-dependent absorption (real rooms lose highs faster) and the room's exact shape.
"""
from __future__ import annotations

import math

import numpy as np

from claspkit.constants import SAMPLE_RATE
from claspkit.data.augment.base import as_signal
from claspkit.errors import ParamError

__all__ = ["SPEED_OF_SOUND", "room_impulse_response", "reverberate", "schroeder_rt60"]

SPEED_OF_SOUND = 343.0           # m/s at 20 degrees C
DECAY_DB = 60.0


def room_impulse_response(rt60_s: float, room_m: float, distance_m: float, rng: np.random.Generator,
                          sr: int = SAMPLE_RATE) -> np.ndarray:
    """A seeded RIR (float64, direct sound at sample 0 with value 1, ``ceil(rt60_s * sr) + 1`` samples: the
    tail has decayed 60 dB at its end) of a room of side ``room_m`` heard ``distance_m`` from the talker."""
    for name, v in (("rt60_s", rt60_s), ("room_m", room_m), ("distance_m", distance_m)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ParamError(f"{name} must be a positive number, got {v!r}")
    if distance_m > room_m * math.sqrt(3):
        raise ParamError(f"distance_m ({distance_m:g} m) is longer than the room's diagonal "
                         f"({room_m * math.sqrt(3):.2f} m for room_m={room_m:g}); use a closer talker or a larger room")
    c, volume = SPEED_OF_SOUND, float(room_m) ** 3
    n = int(math.ceil(rt60_s * sr)) + 1
    t = distance_m / c + np.arange(n) / sr                      # each sample's path time since emission
    rate = 4 * math.pi * c ** 3 * t ** 2 / volume / sr           # expected image sources arriving per sample
    counts = rng.poisson(rate)
    counts[0] = 0
    signs = 2 * rng.binomial(counts, 0.5) - counts              # the sum of `counts` random +-1
    decay = np.exp(-math.log(10) * DECAY_DB / 20 * (t - t[0]) / rt60_s)
    h = signs / (c * t) * decay
    h[0] = 1.0 / distance_m
    return h * distance_m


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``x`` convolved with ``rir``, cut to ``len(x)`` (the tail past the clip's end is dropped, so a copy
    keeps its clean clip's length and timing)."""
    from scipy.signal import fftconvolve

    x = as_signal(x, "the reverberation's input")
    rir = as_signal(rir, "the room impulse response")
    return fftconvolve(x, rir)[:len(x)]


def schroeder_rt60(rir: np.ndarray, sr: int = SAMPLE_RATE, fit_db: tuple[float, float] = (-5.0, -35.0)) -> float:
    """RT60 measured from an impulse response (ISO 3382's T30 by default): the slope of a least-squares line
    through the Schroeder energy decay curve between ``fit_db`` levels, extrapolated to 60 dB."""
    h = as_signal(rir, "the impulse response")
    edc = np.cumsum((h ** 2)[::-1])[::-1]
    db = 10 * np.log10(np.maximum(edc / edc[0], 1e-300))
    hi, lo = fit_db
    sel = np.flatnonzero((db <= hi) & (db >= lo))
    if len(sel) < 2 or db[-1] > lo:
        raise ParamError(f"the impulse response does not decay from {hi:g} to {lo:g} dB; pass a longer one "
                         "or a narrower fit_db")
    slope = np.polyfit(sel / sr, db[sel], 1)[0]
    return float(-DECAY_DB / slope)
