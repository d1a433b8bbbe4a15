"""The FOTAQ recipe: the ScummVM resource table is parsed exactly, its MP3 clips decode, damage is named."""
import struct

import numpy as np
import pytest
import soundfile as sf

from claspkit.data import fotaq
from claspkit.data.augment.codecs import encode_audio
from claspkit.errors import AudioError


def resource(entries: dict, compression: int = 1) -> bytes:
    """A queen.1c-like file holding ``entries`` (name -> bytes)."""
    table, blobs = b"", b""
    start = fotaq.HEADER + fotaq.ENTRY * len(entries)
    for name, data in entries.items():
        table += name.encode().ljust(12, b"\0") + struct.pack(">BII", 1, start + len(blobs), len(data))
        blobs += data
    head = fotaq.MAGIC + b"CEM10\0" + b"\0\0" + bytes([compression]) + struct.pack(">H", len(entries))
    return head + table + blobs


@pytest.fixture(scope="module")
def mp3():
    t = np.arange(16000) / 16000
    return encode_audio((0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), "mp3", 32)


def test_table_lists_clips_and_decodes_them(tmp_path, mp3):
    data = resource({"020006J1.SB": mp3, "AND1.DOG": b"dialogue", "EMPTY01P.SB": b""})
    entries = fotaq.read_table(data)
    assert [e.name for e in entries] == ["020006J1.SB", "AND1.DOG", "EMPTY01P.SB"]
    clips = fotaq.speech_entries(entries)
    assert [e.name for e in clips] == ["020006J1.SB"]
    n = fotaq.decode_mp3(data[clips[0].offset:clips[0].offset + clips[0].size], tmp_path / "a.wav", "clip")
    x, sr = sf.read(tmp_path / "a.wav")
    assert sr == 16000 and len(x) == n and abs(n - 16000) < 2000 and np.abs(x).max() > 0.1
    assert fotaq._speaker("020006J1.SB") == "joe" and fotaq._speaker("020006P1.SB") == "02-p"


@pytest.mark.parametrize("damage, message", [
    (lambda d: b"XXXX" + d[4:], "no QTBL header"),
    (lambda d: d[:12] + bytes([2]) + d[13:], "not MP3"),
    (lambda d: d[:40], "truncated"),
    (lambda d: d[:-10], "past the end"),
])
def test_damaged_resource_is_named(mp3, damage, message):
    with pytest.raises(AudioError, match=message):
        fotaq.read_table(damage(resource({"020006J1.SB": mp3, "020006P1.SB": mp3})))


def test_corrupt_clip_is_an_audio_error(tmp_path):
    with pytest.raises(AudioError, match="MP3"):
        fotaq.decode_mp3(b"\0" * 100, tmp_path / "x.wav", "020006J1.SB")
    assert not (tmp_path / "x.wav").exists()
