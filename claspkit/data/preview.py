"""Audio players for notebooks that stay small: a short MP3 preview embedded, not the PCM file.

IPython's ``Audio`` embeds 16-bit PCM as base64 (~43 KB per second at 16 kHz), which made the committed
01 and 08 notebooks 1-2 MB and added that to git history at every regeneration. A 16 kbit/s mono MP3 is
~2 KB per second and plays in every browser; a preview is also cut to ``max_seconds``.
"""
from __future__ import annotations

import base64
import io

import numpy as np

from claspkit.constants import SAMPLE_RATE
from claspkit.errors import ParamError

__all__ = ["PREVIEW_BITRATE", "PREVIEW_SECONDS", "encode_mp3", "audio_preview"]

PREVIEW_BITRATE = 16_000
PREVIEW_SECONDS = 6.0


def encode_mp3(wave: np.ndarray, sr: int = SAMPLE_RATE, bitrate: int = PREVIEW_BITRATE) -> bytes:
    """Mono float waveform (-1..1) -> MP3 bytes, with PyAV's bundled LAME (no system FFmpeg needed)."""
    import av

    x = np.asarray(wave, dtype=np.float32).reshape(1, -1)
    if x.size == 0:
        raise ParamError("encode_mp3: the waveform is empty; nothing to preview")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=sr)
        stream.layout, stream.bit_rate = "mono", bitrate
        frame = av.AudioFrame.from_ndarray(np.clip(x, -1, 1), format="flt", layout="mono")
        frame.sample_rate = sr
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


def audio_preview(wave: np.ndarray, sr: int = SAMPLE_RATE, start_s: float = 0.0, end_s: float | None = None,
                  max_seconds: float = PREVIEW_SECONDS):
    """An HTML audio player for ``wave[start_s:end_s]`` (at most ``max_seconds``), embedded as a small MP3."""
    from IPython.display import HTML

    stop = start_s + max_seconds if end_s is None else min(end_s, start_s + max_seconds)
    clip = np.asarray(wave)[int(start_s * sr):int(stop * sr)]
    data = base64.b64encode(encode_mp3(clip, sr)).decode("ascii")
    return HTML(f'<audio controls preload="none" src="data:audio/mpeg;base64,{data}"></audio>')
