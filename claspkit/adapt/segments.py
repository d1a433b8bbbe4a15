"""Untranscribed recordings as sentence-sized training items: short files whole, long ones cut by the VAD.

``claspkit adapt`` learns from pairs of (segment, pseudo-transcript). A file up to ``max_s`` (15 s, the
longest training sentences) is one item; a longer one is cut with the search index's VAD
(``claspkit.search.segment``) and each piece is written as its own 16 kHz wav, named by the source's
sha256 and the span, so the feature and transcript caches key it by content and a rerun cuts nothing twice.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from claspkit.constants import SAMPLE_RATE
from claspkit.errors import AudioError, DataMissingError, ParamError
from claspkit.paths import atomic_path, display_path

__all__ = ["audio_files", "cut_segments", "COLUMNS"]

COLUMNS = ("path", "source", "start_s", "end_s")


def audio_files(source) -> list[Path]:
    """The audio files ``claspkit index`` would read under a folder (``claspkit.search.query.audio_files``), or
    the one file given."""
    from claspkit.search.query import AUDIO_EXTENSIONS
    from claspkit.search.query import audio_files as folder_files

    source = Path(source).expanduser()
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DataMissingError(f"{display_path(source)} is neither a folder nor an audio file: check the path")
    files = folder_files(source)
    if not files:
        raise DataMissingError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {display_path(source)}")
    return files


def cut_segments(paths: Sequence, work_dir, max_s: float = 15.0, progress: bool = True) -> tuple[pd.DataFrame, list]:
    """One row per training item (``COLUMNS``) and the files skipped as ``(path, reason)``.

    Unreadable, empty or silent files are skipped with their reason, never fatal: one bad file in an
    archive must not stop the adaptation of the rest."""
    import soundfile as sf

    from claspkit.data.audio import load_audio
    from claspkit.paths import sha256_file
    from claspkit.progress import progress_bar
    from claspkit.search.segment import segment
    from claspkit.search.staging import cut_segments as pieces

    if not max_s > 1.0:
        raise ParamError(f"max_s must be above 1 s, got {max_s!r}")
    work_dir = Path(work_dir)
    rows, skipped = [], []
    for p in progress_bar(list(paths), desc="segment", unit="file", disable=not progress):
        p = Path(p)
        try:
            info = sf.info(str(p))
            short = info.duration <= max_s
        except Exception:               # not a libsndfile format (m4a...): load it and look
            short = None
        try:
            if short:
                rows.append({"path": str(p), "source": str(p), "start_s": 0.0, "end_s": float(info.duration)})
                continue
            x = load_audio(p)
            if x.size <= max_s * SAMPLE_RATE:
                rows.append({"path": str(p), "source": str(p), "start_s": 0.0, "end_s": x.size / SAMPLE_RATE})
                continue
            spans = segment(x, max_s=max_s)
            if not spans:
                skipped.append((str(p), "no speech found by the VAD"))
                continue
            sha = sha256_file(p)[:16]
            for (a, b), piece in zip(spans, pieces(x, spans)):       # cut as the index cuts them
                wav = work_dir / "segments" / f"{sha}-{a:.2f}-{b:.2f}.wav"
                if not wav.is_file():
                    with atomic_path(wav, suffix=".wav") as tmp:
                        sf.write(str(tmp), piece, SAMPLE_RATE, subtype="PCM_16", format="WAV")
                rows.append({"path": str(wav), "source": str(p), "start_s": float(a), "end_s": float(b)})
        except AudioError as e:
            skipped.append((str(p), str(e)))
    return pd.DataFrame(rows, columns=list(COLUMNS)), skipped
