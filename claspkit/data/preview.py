"""Audio players for notebooks that stay small: a short MP3 preview embedded, not the PCM file.

IPython's ``Audio`` embeds 16-bit PCM as base64 (~43 KB per second at 16 kHz), which made the committed
01 and 08 notebooks 1-2 MB and added that to git history at every regeneration. A 16 kbit/s mono MP3 is
~2 KB per second and plays in every browser; a preview is also cut to ``max_seconds``.
"""
from __future__ import annotations

import base64

import numpy as np

from claspkit.constants import SAMPLE_RATE
from claspkit.data.augment.codecs import encode_audio
from claspkit.errors import ParamError

__all__ = ["PREVIEW_KBPS", "PREVIEW_SECONDS", "audio_preview"]

PREVIEW_KBPS = 16
PREVIEW_SECONDS = 6.0


def audio_preview(wave: np.ndarray, sr: int = SAMPLE_RATE, start_s: float = 0.0, end_s: float | None = None,
                  max_seconds: float = PREVIEW_SECONDS):
    """An HTML audio player for ``wave[start_s:end_s]`` (at most ``max_seconds``), embedded as a small MP3."""
    from IPython.display import HTML

    stop = start_s + max_seconds if end_s is None else min(end_s, start_s + max_seconds)
    clip = np.asarray(wave)[int(start_s * sr):int(stop * sr)]
    if clip.size == 0:
        raise ParamError(f"audio_preview: {start_s}-{stop} s is empty in a {len(wave) / sr:.1f} s waveform")
    data = base64.b64encode(encode_audio(clip, "mp3", PREVIEW_KBPS, sr)).decode("ascii")
    return HTML(f'<audio controls preload="none" src="data:audio/mpeg;base64,{data}"></audio>')
