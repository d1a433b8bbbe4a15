"""Demo recordings for the search notebook: multi-sentence "lectures" whose sentence timings are known.

Each lecture is several synthesized sentences joined by pauses, so a search hit can be checked
against where the sentence really is. Sentences are synthesized through the content-addressed TTS
cache, and the lecture files are rewritten only when their content changes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from claspkit.constants import SAMPLE_RATE
from claspkit.data import tts
from claspkit.data.corpus import audio_path
from claspkit.errors import AudioError
from claspkit.paths import atomic_path

__all__ = ["make_lectures", "hit_is_correct"]


def make_lectures(out_dir, lectures: dict[str, tuple[str, list[str]]], gap_s: float = 1.0,
                  workers: int = 2, progress: bool = False) -> pd.DataFrame:
    """Write ``<name>.wav`` for each ``name: (voice, sentences)``; return the ground-truth timings.

    Returns one row per sentence: ``file`` (relative to ``out_dir``), ``lecture``, ``voice``, ``text``,
    ``start_s``, ``end_s``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = [{"id": f"{name}-{i}", "voice": voice, "text": text, "path": tts.audio_relpath(text, voice)}
             for name, (voice, sentences) in lectures.items() for i, text in enumerate(sentences)]
    tts.synthesize_corpus(items, workers=workers, progress=progress)
    gap = np.zeros(int(gap_s * SAMPLE_RATE), dtype=np.float32)
    rows, k = [], 0
    for name, (voice, sentences) in lectures.items():
        parts, t = [gap], gap_s
        for text in sentences:
            wave, sr = sf.read(audio_path(items[k]["path"]), dtype="float32")
            if sr != SAMPLE_RATE:
                raise AudioError(f"{items[k]['path']}: synthesized audio is {sr} Hz, expected {SAMPLE_RATE}; "
                                 "delete it and rerun")
            dur = len(wave) / SAMPLE_RATE
            rows.append({"file": f"{name}.wav", "lecture": name, "voice": voice, "text": text,
                         "start_s": round(t, 2), "end_s": round(t + dur, 2)})
            parts += [wave, gap]
            t += dur + gap_s
            k += 1
        audio = np.concatenate(parts)
        target = out_dir / f"{name}.wav"
        if not target.is_file() or not np.array_equal(sf.read(target, dtype="float32")[0], audio):
            with atomic_path(target, suffix=".wav") as tmp:
                sf.write(tmp, audio, SAMPLE_RATE, subtype="FLOAT", format="WAV")
    return pd.DataFrame(rows)


def hit_is_correct(truth: pd.DataFrame, text: str, file: str, start_s: float, end_s: float) -> bool:
    """A hit is right when its segment overlaps the span where ``text`` is spoken in ``file``."""
    spans = truth[(truth.text == text) & (truth.file == file)]
    return bool(((spans.start_s < end_s) & (spans.end_s > start_s)).any())
