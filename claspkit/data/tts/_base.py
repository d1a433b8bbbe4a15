"""The engine interface and the post-processing every engine shares: any raw output -> 16 kHz mono PCM16 wav.

``FORMAT_TAG`` is part of every cache key, so a change to this post-processing moves every file.
"""
from __future__ import annotations

import functools
import os
import struct
from abc import ABC, abstractmethod

import numpy as np

from claspkit.constants import SAMPLE_RATE
from claspkit.data.tts._spec import VoiceSpec, parse_voice
from claspkit.errors import AudioError, ParamError, choices_hint
from claspkit.paths import atomic_path

__all__ = ["FORMAT_TAG", "MIN_PEAK", "Synthesizer", "to_mono_16k", "resample_poly"]

# Part of every cache key: bump when the post-processing (resampling, format) changes.
FORMAT_TAG = "16k-mono-pcm16-v1"
MIN_PEAK = 1e-4  # below this the "speech" is silence: an engine failure, not audio
_UMASK = os.umask(0o022)  # read once (os.umask can only be read by setting it)
os.umask(_UMASK)


class Synthesizer(ABC):
    """One TTS engine: ``name``, ``voices()``, ``synthesize(text, voice, out_path)``."""

    name: str = ""
    options: dict = {}  # option name -> (min, max) numeric range

    @property
    @abstractmethod
    def version(self) -> str:
        """Engine and data version; part of every cache key."""

    @abstractmethod
    def voices(self) -> list[str]:
        """Base voice names this engine accepts."""

    def variants(self) -> list[str]:
        return []

    def recommended(self) -> list[str]:
        """A few good voice names (``list_voices`` shows these)."""
        return self.voices()

    def cache_tag(self, vs: VoiceSpec) -> str:
        return self.version

    @abstractmethod
    def render(self, text: str, vs: VoiceSpec) -> tuple[np.ndarray, int]:
        """Raw engine output: (float32 or int16 samples, sample rate)."""

    def check(self, vs: VoiceSpec) -> None:
        """Raise ParamError naming the valid choices when the voice, variant or an option is unknown."""
        if vs.voice not in self.voices():
            raise ParamError(
                f"unknown voice {vs.spec!r}: {choices_hint(vs.voice, self.recommended())} (recommended "
                f"{self.name} voices, as '{self.name}:<voice>'; every voice it accepts: {', '.join(self.voices())})"
            )
        if vs.variant and vs.variant not in self.variants():
            hint = (choices_hint(vs.variant, self.variants()) if self.variants()
                    else f"{self.name} voices take no variant")
            raise ParamError(f"unknown variant in voice {vs.spec!r}: {hint}")
        for key, value in vs.options:
            if key not in self.options:
                raise ParamError(f"unknown option in voice {vs.spec!r}: {choices_hint(key, self.options)}")
            lo, hi = self.options[key]
            try:
                x = float(value)
            except ValueError:
                x = float("nan")
            if not lo <= x <= hi:
                raise ParamError(f"option {key}={value} in voice {vs.spec!r} must be a number in [{lo}, {hi}]")

    def synthesize(self, text: str, voice, out_path) -> float:
        """Write ``text`` spoken by ``voice`` to ``out_path`` (16 kHz mono PCM16 wav, atomically).

        Returns the duration in seconds. Raises AudioError when the engine gives no audio.
        """
        import soundfile as sf

        vs = voice if isinstance(voice, VoiceSpec) else parse_voice(voice if ":" in str(voice)
                                                                    else f"{self.name}:{voice}")
        self.check(vs)
        if not str(text).strip():
            raise AudioError(f"nothing to say: empty text for voice {vs.spec!r}; drop empty sentences first")
        audio, sr = self.render(str(text), vs)
        audio = to_mono_16k(audio, sr)
        if audio.size == 0 or not np.isfinite(audio).all() or np.abs(audio).max() < MIN_PEAK:
            raise AudioError(f"{self.name} produced no usable audio for {text[:60]!r} with voice {vs.spec!r}")
        with atomic_path(out_path, suffix=".wav") as tmp:
            sf.write(tmp, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")
            os.chmod(tmp, 0o666 & ~_UMASK)  # temp files are private; the result follows the umask
        return audio.size / SAMPLE_RATE


def to_mono_16k(audio, sr: int) -> np.ndarray:
    """Any engine output -> float32 mono at 16 kHz (polyphase resampling, deterministic)."""
    a = np.asarray(audio)
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    a = a.astype(np.float32)
    if a.ndim == 2:
        a = a.mean(axis=1)
    if sr != SAMPLE_RATE and a.size:
        from math import gcd

        g = gcd(int(sr), SAMPLE_RATE)
        a = resample_poly(a, SAMPLE_RATE // g, int(sr) // g)
    return a


def resample_poly(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """Rational resampling by ``up/down`` with a Kaiser-windowed sinc (beta 5, 10 zero crossings).

    The filter and alignment of ``scipy.signal.resample_poly``, in numpy, so synthesis workers
    start without importing scipy.signal. Every ``up`` outputs consume exactly ``down``
    inputs with the same taps, so the whole filter is one matrix product.
    """
    x = np.asarray(x, dtype=np.float64)
    mat, lo, width = _polyphase_matrix(up, down)
    n_out = -(-x.size * up // down)
    periods = -(-n_out // up)
    taps = _polyphase_taps(up, down)
    pad = np.zeros(taps + periods * down + lo + width)
    pad[taps:taps + x.size] = x
    frames = np.lib.stride_tricks.as_strided(pad[lo:], shape=(periods, width), strides=(down * 8, 8), writeable=False)
    return (frames @ mat).reshape(-1)[:n_out].astype(np.float32)


def _polyphase_taps(up: int, down: int) -> int:
    return -(-(20 * max(up, down) + 1) // up)


@functools.lru_cache(maxsize=8)
def _polyphase_matrix(up: int, down: int):
    """(matrix, first input offset, window width): output ``r*up + q`` = pad[r*down + lo:][:width] @ matrix[:, q]."""
    rate = max(up, down)
    half = 10 * rate
    t = np.arange(-half, half + 1, dtype=np.float64)
    h = np.sinc(t / rate) * np.kaiser(2 * half + 1, 5.0)
    h *= up / h.sum()
    taps = _polyphase_taps(up, down)
    bank = np.zeros(taps * up)
    bank[: h.size] = h
    coef = bank.reshape(taps, up).T[:, ::-1]  # coef[phase, i] multiplies pad[base + 1 + i]
    idx = np.arange(up) * down + half
    phase, base = idx % up, idx // up
    lo = int(base.min()) + 1
    width = int(base.max()) + 1 + taps - lo
    mat = np.zeros((width, up))
    for q in range(up):
        start = base[q] + 1 - lo
        mat[start:start + taps, q] = coef[phase[q]]
    return mat, lo, width


def _wav_bytes_to_array(data: bytes) -> tuple[np.ndarray, int]:
    """PCM16 wav bytes as espeak-ng --stdout writes them (its size fields are placeholders)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError("espeak-ng did not write a WAV stream")
    pos, sr = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if cid == b"fmt ":
            fmt, channels, sr = struct.unpack("<HHI", data[pos + 8:pos + 16])
            bits = struct.unpack("<H", data[pos + 22:pos + 24])[0]
            if fmt != 1 or bits != 16:
                raise AudioError(f"unexpected espeak-ng output format (format {fmt}, {bits} bits)")
        elif cid == b"data":
            if sr is None:
                break
            pcm = np.frombuffer(data[pos + 8:pos + 8 + (len(data) - pos - 8) // 2 * 2], dtype="<i2")
            return pcm.reshape(-1, channels) if channels > 1 else pcm, sr
        pos += 8 + size + (size & 1)
    raise AudioError("espeak-ng wrote a WAV stream without audio data")
