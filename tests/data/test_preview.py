import base64
import io
import re

import av
import numpy as np
import pytest

from claspkit.data.preview import PREVIEW_KBPS, PREVIEW_SECONDS, audio_preview
from claspkit.errors import ParamError


def _tone(seconds, sr=16000):
    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def _decoded_seconds(mp3: bytes) -> float:
    with av.open(io.BytesIO(mp3)) as f:
        n = sum(frame.samples for frame in f.decode(audio=0))
        return n / f.streams.audio[0].rate


def _mp3(html: str) -> bytes:
    return base64.b64decode(re.search(r"base64,([^\"]+)", html).group(1))


def test_mp3_preview_keeps_the_duration_at_a_fraction_of_the_pcm_size():
    mp3 = _mp3(audio_preview(_tone(4.0)).data)
    assert abs(_decoded_seconds(mp3) - 4.0) < 0.1
    assert len(mp3) < 4.0 * PREVIEW_KBPS * 1000 / 8 * 1.1 < 4.0 * 16000 * 2 / 10   # a tenth of the 16-bit PCM


def test_the_player_plays_the_asked_span_cut_to_the_preview_length():
    wave = _tone(20.0)
    html = audio_preview(wave, start_s=2.0, end_s=5.0).data
    assert abs(_decoded_seconds(_mp3(html)) - 3.0) < 0.1 and "<audio controls" in html
    long = _mp3(audio_preview(wave).data)
    assert abs(_decoded_seconds(long) - PREVIEW_SECONDS) < 0.1


def test_an_empty_span_is_refused_clearly():
    with pytest.raises(ParamError, match="empty"):
        audio_preview(_tone(1.0), start_s=5.0)
