"""The steps of indexing one file that both engines take (``build_index``'s local loop and
``claspkit.search.ray_index`` on Ray workers): decode it, cut its speech segments, stage its vectors, and say
why a file is skipped.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from claspkit.paths import display_path
from claspkit.search.segment import SAMPLE_RATE

__all__ = ["read_audio", "cut_segments", "settled_without_embedding", "stage_embedded", "skip_reason"]


def read_audio(path: Path) -> np.ndarray:
    """A recording as the index hears it: 16 kHz mono float32 (``claspkit.data.audio.load_audio``)."""
    from claspkit.data.audio import load_audio

    return load_audio(path, SAMPLE_RATE)


def cut_segments(audio: np.ndarray, spans) -> list[np.ndarray]:
    """Segments, each peak-normalised like a training clip."""
    out = []
    for s, e in spans:
        w = audio[int(round(s * SAMPLE_RATE)):int(round(e * SAMPLE_RATE))]
        out.append((w / max(float(np.abs(w).max(initial=0.0)), 1e-4)).astype(np.float32))
    return out


def settled_without_embedding(entry: dict, writer, staged_now: dict, summary, entries: list, how: dict, bar) -> bool:
    """Whether a file to index needs no embedding in this run, recorded as such: a second copy of a file embedded
    in this run (``staged_now``: sha256 -> duration) is reused, one staged by an interrupted run resumed, a
    zero-length one skipped. Both engines decide this the same way, before any decoding."""
    sha = entry["sha256"]
    if sha in staged_now or writer.is_staged(sha):
        if sha in staged_now:
            entry["duration_s"], how[entry["path"]] = staged_now[sha], "reused"
        else:
            entry["duration_s"], how[entry["path"]] = writer.staged_duration(sha), "resumed"
        entries.append(entry)
    elif entry["size"] == 0:
        summary.skipped.append({"path": entry["path"], "reason": "zero-length file (0 bytes)"})
    else:
        return False
    bar.update(1)
    return True


def stage_embedded(writer, group: list, vecs: np.ndarray, summary, how: dict) -> None:
    """Stage each file of ``group`` (``(entry, audio, spans)``, in order) with its rows of ``vecs`` and count it
    as embedded: the one place both engines turn a batch's vectors into resume points."""
    row = 0
    for entry, _, spans in group:
        writer.stage(entry["sha256"], vecs[row:row + len(spans)], spans, entry["duration_s"])
        row += len(spans)
        how[entry["path"]] = "embedded"
        summary.segments_embedded += len(spans)
        summary.audio_seconds += entry["duration_s"]


def skip_reason(e: Exception, path: Path) -> str:
    """The decoder's message without the path prefix (the listing already names the file)."""
    msg = str(e)
    for p in (display_path(path), str(path)):
        msg = msg.replace(p, "the file")
    return msg.replace("from the manifest", "from the folder")
