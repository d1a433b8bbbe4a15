"""Telephone and codec channels: what a phone line, a VoIP call or a compressed upload does to speech.

* ``telephone``: the narrowband phone band. Resampled down to 8 kHz and back through a steep low-pass
  (nothing above 4 kHz survives, as on a real line), with a high-pass at ``highpass_hz`` (the G.712 band is
  300-3400 Hz; 0 turns it off).
* ``mu_law``: the same band, quantized to 8-bit mu-law at 8 kHz (G.711, the PSTN's codec).
* ``g722``: wideband HD voice (G.722, 16 kHz, 64 kbit/s: FFmpeg's encoder has only that mode).
* ``mp3`` and ``opus``: lossy round-trips at a given bitrate, at 16 kHz (MPEG-2 layer III, libopus).

The codecs run through PyAV's bundled FFmpeg (already a dependency for m4a input): no new package, no
system ffmpeg. Every output has the input's length and alignment (the containers' encoder delay and padding
are trimmed by the decoder; G.722's fixed 22-sample filter delay is removed here), so a copy's words stay
where the clean clip's are. All are deterministic: the same input gives the same bytes.
"""
from __future__ import annotations

import io

import numpy as np

from claspkit.constants import CODEC_KBPS, SAMPLE_RATE
from claspkit.data.augment.base import as_signal
from claspkit.errors import AudioError, ParamError

__all__ = ["PHONE_RATE", "MU", "G722_DELAY", "CODECS", "telephone", "mu_law", "encode_audio", "codec_roundtrip"]

PHONE_RATE = 8000
MU = 255                         # G.711 mu-law
G722_DELAY = 22                  # samples at 16 kHz: the QMF filter bank's delay (measured, tested)
# codec name -> (FFmpeg encoder, container, allowed kbit/s: constants.CODEC_KBPS, which config checks recipes with)
CODECS = {"mp3": ("libmp3lame", "mp3", CODEC_KBPS["mp3"]), "opus": ("libopus", "ogg", CODEC_KBPS["opus"]),
          "g722": ("g722", "wav", CODEC_KBPS["g722"])}


def _highpass(x: np.ndarray, hz: float, sr: int) -> np.ndarray:
    if not hz:
        return x
    from scipy.signal import butter, sosfilt

    if not 0 < hz < sr / 2:
        raise ParamError(f"highpass_hz must be between 0 and {sr / 2:g} Hz (0 = off), got {hz!r}")
    return sosfilt(butter(4, hz, btype="highpass", fs=sr, output="sos"), x)


def _phone_filter(sr: int) -> np.ndarray:
    """The anti-alias (and anti-image) low-pass of the 8 kHz line: flat to ~3.4 kHz, below -70 dB past 4 kHz.
    A general-purpose resampler's filter (torchaudio's, rolloff 0.99) lets ~0.5 % of the energy above 4 kHz
    through, which a real phone line's codec filter does not."""
    from scipy.signal import firwin

    return firwin(129, 3700, fs=sr, window=("kaiser", 8.0))


def _narrowband(x: np.ndarray, highpass_hz: float, sr: int, what: str, inner=None) -> np.ndarray:
    from math import gcd

    from scipy.signal import resample_poly

    if sr % PHONE_RATE:
        raise ParamError(f"the phone channels take a rate that is a multiple of {PHONE_RATE} Hz, got sr={sr}")
    x = as_signal(x, what)
    up, down = PHONE_RATE // gcd(sr, PHONE_RATE), sr // gcd(sr, PHONE_RATE)
    h = _phone_filter(sr * up)
    y = _highpass(resample_poly(x, up, down, window=h), highpass_hz, PHONE_RATE)
    if inner is not None:
        y = inner(y)
    z = resample_poly(y, down, up, window=h)
    return z[:len(x)] if len(z) >= len(x) else np.pad(z, (0, len(x) - len(z)))


def telephone(x: np.ndarray, highpass_hz: float = 300.0, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``x`` through the narrowband phone band (8 kHz sampling, high-passed at ``highpass_hz``), back at ``sr``."""
    return _narrowband(x, highpass_hz, sr, "the telephone channel's input")


def _mu_law_8bit(y: np.ndarray) -> np.ndarray:
    """Companded to 256 levels and expanded: the quantization error grows with the level, as in G.711."""
    peak = float(np.max(np.abs(y)))
    if peak > 1:                                        # a codec input above full scale saturates
        y = np.clip(y, -1.0, 1.0)
    c = np.sign(y) * np.log1p(MU * np.abs(y)) / np.log1p(MU)
    q = np.round((c + 1) / 2 * 255) / 255 * 2 - 1       # 8 bits
    return np.sign(q) * np.expm1(np.abs(q) * np.log1p(MU)) / MU


def mu_law(x: np.ndarray, highpass_hz: float = 300.0, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``x`` through a G.711 mu-law phone line: the telephone band, quantized to 8-bit mu-law at 8 kHz.
    The level matters (quiet speech falls on the coarse steps near zero), so it comes after any gain."""
    return _narrowband(x, highpass_hz, sr, "the mu-law channel's input", inner=_mu_law_8bit)


def encode_audio(x: np.ndarray, codec: str, kbps: int, sr: int = SAMPLE_RATE) -> bytes:
    """Mono float waveform -> the bytes of a ``codec`` file (PyAV's bundled FFmpeg, one thread: the same bytes
    on every machine)."""
    import av

    encoder, container, _ = CODECS[codec]
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(encoder, rate=sr)
        stream.bit_rate = int(kbps) * 1000
        stream.layout = "mono"
        stream.codec_context.thread_count = 1        # one thread: the same bytes whatever the machine
        fmt = stream.codec_context.codec.audio_formats[0].name
        to_codec = av.AudioResampler(format=fmt, layout="mono", rate=sr)
        frame = av.AudioFrame.from_ndarray(np.clip(x, -1, 1).astype(np.float32)[None, :], format="flt", layout="mono")
        frame.sample_rate = sr
        for f in [*to_codec.resample(frame), *to_codec.resample(None)]:
            out.mux(stream.encode(f))
        out.mux(stream.encode(None))
    return buf.getvalue()


def _decode(data: bytes, sr: int) -> np.ndarray:
    import av

    chunks = []
    with av.open(io.BytesIO(data)) as container:
        to_float = av.AudioResampler(format="flt", layout="mono", rate=sr)
        for frame in container.decode(container.streams.audio[0]):
            chunks += [o.to_ndarray()[0] for o in to_float.resample(frame)]
        chunks += [o.to_ndarray()[0] for o in to_float.resample(None)]
    return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0)


def codec_roundtrip(x: np.ndarray, codec: str, kbps: int | None = None, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``x`` encoded with ``codec`` (mp3, opus, g722) at ``kbps`` kbit/s and decoded back: the same length
    and rate. Samples above full scale are clipped, as any encoder's input would be."""
    import av

    if codec not in CODECS:
        raise ParamError(f"unknown codec {codec!r}; valid: {', '.join(sorted(CODECS))}")
    lo, hi = CODECS[codec][2]
    kbps = hi if kbps is None else kbps
    if not (isinstance(kbps, (int, np.integer)) and lo <= kbps <= hi):
        raise ParamError(f"{codec} takes a whole number of kbit/s from {lo} to {hi}, got {kbps!r}")
    if sr != SAMPLE_RATE:
        raise ParamError(f"the codec channels run at {SAMPLE_RATE} Hz, got sr={sr}; resample first")
    x = as_signal(x, f"the {codec} channel's input")
    delay = G722_DELAY if codec == "g722" else 0
    try:
        y = _decode(encode_audio(np.pad(x, (0, delay)), codec, int(kbps), sr), sr)[delay:]
    except av.FFmpegError as e:
        raise AudioError(f"the {codec} round-trip failed in FFmpeg: {e}") from e
    if abs(len(y) - len(x)) > sr // 50:
        raise AudioError(f"the {codec} round-trip returned {len(y)} samples for {len(x)}: the decoder did not trim "
                         "the encoder's padding (a PyAV/FFmpeg change?)")
    return y[:len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))
