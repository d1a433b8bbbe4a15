"""Pseudo-transcripts: the cascade's ASR labels untranscribed speech, and only its confident answers are kept.

This is the teacher side of distillation (SpeechDPR distils a cascade into a speech retriever on untranscribed
speech): Whisper's greedy transcript of a segment becomes the text its speech embedding should land on. A wrong
transcript teaches a wrong pair, so each one carries Whisper's own confidence and ``Confidence`` filters on it
with Whisper's fallback thresholds (mean log-probability -1.0, compression ratio 2.4, no-speech 0.6), tightened
for labels: mean log-probability at least -0.6 and at least two words. Transcripts are cached per (ASR, audio
content, language) like the cascade's, so an interrupted labelling resumes and a second run costs nothing.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from claspkit.errors import AudioError, BackboneError, DataMissingError, ParamError

__all__ = ["Confidence", "transcribe_scored", "confident", "rejection_counts"]

WORD = re.compile(r"\w", re.UNICODE)
UNREADABLE = {"text": "", "avg_logprob": float("-inf"), "no_speech_prob": 1.0, "compression_ratio": 0.0}


@dataclass(frozen=True)
class Confidence:
    """Which pseudo-transcripts are trusted as training text."""

    min_avg_logprob: float = -0.6
    max_no_speech_prob: float = 0.6
    max_compression_ratio: float = 2.4
    min_words: int = 2

    def __post_init__(self):
        if not self.min_avg_logprob <= 0:
            raise ParamError(f"min_avg_logprob is a mean log-probability (<= 0), got {self.min_avg_logprob!r}")
        if not 0 < self.max_no_speech_prob <= 1:
            raise ParamError(f"max_no_speech_prob must be in (0, 1], got {self.max_no_speech_prob!r}")
        if not self.max_compression_ratio > 0:
            raise ParamError(f"max_compression_ratio must be > 0, got {self.max_compression_ratio!r}")
        if not isinstance(self.min_words, int) or self.min_words < 1:
            raise ParamError(f"min_words must be an int >= 1, got {self.min_words!r}")

    def reason(self, entry: dict) -> str | None:
        """Why ``entry`` (from :func:`transcribe_scored`) is rejected, or None when it is kept."""
        if "error" in entry:
            return "unusable audio"
        words = [w for w in str(entry.get("text", "")).split() if WORD.search(w)]
        if len(words) < self.min_words:
            return "too few words"
        if entry["no_speech_prob"] > self.max_no_speech_prob:
            return "no speech"
        if entry["avg_logprob"] < self.min_avg_logprob:
            return "low log-probability"
        if entry["compression_ratio"] > self.max_compression_ratio:
            return "repetitive"
        return None

    def as_dict(self) -> dict:
        return asdict(self)


def transcribe_scored(asr, paths: Sequence, language: str | None = None, cache=None, progress: bool = True,
                      loader=None) -> list[dict]:
    """One ``{"text", "avg_logprob", "no_speech_prob", "compression_ratio"}`` per audio file, through the
    transcript cache (finished items are never transcribed again; each is stored as soon as it is done)."""
    from claspkit.evaluation.asr import TranscriptCache, file_sha256
    from claspkit.progress import progress_bar

    if not callable(getattr(asr, "transcribe_scored", None)):
        raise BackboneError(f"ASR {getattr(asr, 'name', asr)!r} gives no confidence (transcribe_scored); "
                            "pseudo-labels need a Whisper ASR such as whisper-base")
    if not isinstance(cache, TranscriptCache):
        cache = TranscriptCache(cache)
    if loader is None:
        from claspkit.data.audio import load_audio as loader
    paths = [Path(p) for p in paths]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataMissingError(f"{len(missing)} audio files do not exist (e.g. {missing[0]}); rebuild them")
    keys = [cache.key(asr.scored_cache_id, file_sha256(p), language) for p in paths]
    out = [cache.get_entry(k) for k in keys]
    todo = [i for i, e in enumerate(out) if e is None or "avg_logprob" not in e]
    for i in progress_bar(todo, desc=f"pseudo-transcribe ({asr.name})", unit="file", disable=not progress or not todo):
        try:
            wave = loader(paths[i])
        except AudioError as e:          # reported as a rejection, never cached: a fixed file is tried again
            out[i] = {**UNREADABLE, "error": str(e)}
            continue
        entry = asr.transcribe_scored([wave], language=language)[0]
        entry = {**entry, "text": str(entry["text"]).strip()}
        cache.put(keys[i], entry["text"], {k: v for k, v in entry.items() if k != "text"}
                  | {"asr": asr.scored_cache_id, "language": language})
        out[i] = entry
    return [{k: e[k] for k in (*UNREADABLE, *(("error",) if "error" in e else ()))} for e in out]


def confident(entries: Sequence[dict], confidence: Confidence = Confidence()) -> list[bool]:
    """Which entries pass ``confidence``."""
    return [confidence.reason(e) is None for e in entries]


def rejection_counts(entries: Sequence[dict], confidence: Confidence = Confidence()) -> dict:
    """``{"kept": n, "<reason>": n, ...}``: what the filter did, for the run's report."""
    counts: dict = {"kept": 0}
    for e in entries:
        r = confidence.reason(e) or "kept"
        counts[r] = counts.get(r, 0) + 1
    return counts
