"""Real recorded English speech without transcripts: the voice clips of *Flight of the Amazon Queen* (1995).

Debian's ``flight-of-the-amazon-queen`` 1.0.0-9 (main, freely redistributable) ships the game's CD
version as one ScummVM resource file, ``queen.1c``: 6,745 dialogue clips (``*.SB``, MP3) spoken by a
cast of voice actors, about 4.6 hours. It is the one multi-speaker real English source reachable here.
Its text is not usable as a transcript (matching lines to clips needs the game's own logic), so
claspkit uses it as *unlabeled* real speech: ``claspkit adapt`` transcribes it with the cascade's ASR
and keeps the confident transcripts (distillation, issue 27). It is never a test set.

The resource file: ``QTBL``, a 6-byte version (``CEM10``), 2 flag bytes, a compression byte (1 = MP3),
a big-endian uint16 entry count, then per entry a 12-byte zero-padded name, a bundle byte, and
big-endian uint32 offset and size. A clip's name is ``<dialogue><line><speaker><n>.SB``: ``J`` at
position 7 is Joe King (the hero), other letters and digits another character of that dialogue. The
first two characters name the dialogue (``group``): training code splits by it, so no conversation
is in both training and validation.

Each clip is decoded once with PyAV's FFmpeg into a 16 kHz mono PCM16 wav under
``data/audio/fotaq/<package sha>-av<PyAV version>/`` (written atomically, so an interrupted decode
resumes where it stopped).
"""
from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from claspkit.constants import SAMPLE_RATE
from claspkit.data.debdata import fetch_deb
from claspkit.errors import AudioError, DataMissingError
from claspkit.paths import atomic_path, data_dir, display_path

__all__ = ["PACKAGE", "PIN", "LICENSE", "Entry", "read_table", "speech_entries", "decode_mp3", "cache_folder",
           "load_fotaq", "COLUMNS"]

PACKAGE = "flight-of-the-amazon-queen"
PIN = ("pool/main/f/flight-of-the-amazon-queen/flight-of-the-amazon-queen_1.0.0-9_all.deb", 34859620,
       "40c08fd258d6fe95c46c1eaf5e9137f84ba330657995a281bd887c94a560a0f1")
LICENSE = "Flight-of-the-Amazon-Queen-License (free redistribution, attribution kept)"
RESOURCE = Path("usr/share/scummvm/flight-of-the-amazon-queen/queen.1c")
MAGIC, HEADER, ENTRY = b"QTBL", 15, 21
MP3 = 1
COLUMNS = ("id", "name", "group", "speaker", "text", "lang", "duration_s", "path", "source", "license", "split")


class Entry(NamedTuple):
    name: str
    offset: int
    size: int


def read_table(data: bytes, what: str = "queen.1c") -> list[Entry]:
    """Every entry of a ScummVM ``queen.1c`` resource file (see the module docstring for the layout).

    Raises ``AudioError`` naming the problem when the file is not one, is truncated, or is not MP3-compressed.
    """
    if len(data) < HEADER or data[:4] != MAGIC:
        raise AudioError(f"{what} is not a ScummVM Queen resource file (no QTBL header): the package is "
                         "damaged; delete its unpacked folder under data/raw/debian to fetch it again")
    if data[12] != MP3:
        raise AudioError(f"{what} uses compression type {data[12]}, not MP3 (1): an unexpected build")
    n = struct.unpack(">H", data[13:15])[0]
    if HEADER + n * ENTRY > len(data):
        raise AudioError(f"{what} is truncated: its table of {n} entries runs past the end of the file")
    out = []
    for i in range(n):
        o = HEADER + i * ENTRY
        name = data[o:o + 12].split(b"\0")[0].decode("ascii", "replace")
        _, offset, size = struct.unpack(">BII", data[o + 12:o + ENTRY])
        if offset + size > len(data):
            raise AudioError(f"{what}: entry {name!r} runs past the end of the file (truncated download?)")
        out.append(Entry(name, offset, size))
    return out


def speech_entries(entries: list[Entry]) -> list[Entry]:
    """The dialogue clips (``*.SB``) that are not empty, in table order."""
    return [e for e in entries if e.name.upper().endswith(".SB") and e.size > 0]


def _speaker(name: str) -> str:
    stem = name.rsplit(".", 1)[0]
    if len(stem) == 8 and stem[6] == "J":
        return "joe"                       # the hero, one actor throughout
    return f"{stem[:2].lower()}-{stem[6].lower()}" if len(stem) == 8 else f"{stem[:2].lower()}-other"


def decode_mp3(blob: bytes, dst, what: str) -> int:
    """Decode MP3 bytes into a 16 kHz mono PCM16 wav at ``dst`` (atomically); the sample count. The decoding is
    ``claspkit.data.audio``'s FFmpeg path (``read_with_ffmpeg``), fed from memory."""
    import soundfile as sf

    from claspkit.data.audio import read_with_ffmpeg, resample

    try:
        x, rate = read_with_ffmpeg(io.BytesIO(blob))
    except AudioError as e:
        raise AudioError(f"cannot decode {what} as MP3 ({e}): the resource file is corrupt; delete its unpacked "
                         "package folder under data/raw/debian to fetch it again") from e
    if x.size == 0:
        raise AudioError(f"{what} decodes to no samples")
    x = resample(x.mean(axis=1).astype(np.float32), rate, SAMPLE_RATE)
    with atomic_path(dst, suffix=".wav") as tmp:
        sf.write(str(tmp), np.clip(x, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return int(x.size)


def cache_folder(cache_dir=None) -> Path:
    """Where the decoded clips live, keyed by the package's sha256 and the PyAV (FFmpeg) build."""
    import av

    return Path(cache_dir or data_dir() / "audio" / "fotaq") / f"{PIN[2][:12]}-av{av.__version__}"


def load_fotaq(limit: int | None = None, *, dest_dir=None, cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """One row per dialogue clip (columns ``COLUMNS``; ``text`` empty: no transcripts ship), decoded on first use.

    ``limit`` keeps the first clips in table order (a quick look); the pinned package (35 MB) is fetched
    into ``dest_dir`` (default ``data/raw/debian``) without root.
    """
    import soundfile as sf

    from claspkit.progress import progress_bar

    root = fetch_deb(PACKAGE, dest_dir, pin=PIN)
    resource = root / RESOURCE
    if not resource.is_file():
        raise DataMissingError(f"{display_path(resource)} is missing from the unpacked package: delete "
                               f"{display_path(root)} to unpack it again")
    data = resource.read_bytes()
    clips = speech_entries(read_table(data, display_path(resource)))[:limit]
    out_dir = cache_folder(cache_dir)
    todo = [e for e in clips if not (out_dir / f"{e.name}.wav").is_file()]
    samples = {e.name: decode_mp3(data[e.offset:e.offset + e.size], out_dir / f"{e.name}.wav", e.name)
               for e in progress_bar(todo, desc="decoding FOTAQ clips", unit="clip", disable=not progress or not todo)}
    rows = []
    for e in clips:
        wav = out_dir / f"{e.name}.wav"
        n = samples[e.name] if e.name in samples else sf.info(str(wav)).frames
        rows.append({"id": f"fotaq-{e.name.rsplit('.', 1)[0].lower()}", "name": e.name, "group": e.name[:2].lower(),
                     "speaker": _speaker(e.name), "text": "", "lang": "en", "duration_s": n / SAMPLE_RATE,
                     "path": str(wav.resolve()), "source": "fotaq", "license": LICENSE, "split": "adapt"})
    return pd.DataFrame(rows, columns=list(COLUMNS))
