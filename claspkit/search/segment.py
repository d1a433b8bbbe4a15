"""Cut a long recording into speech segments that a sentence-level encoder can embed.

CLASP's fusion model was trained on single sentences (Speech Brown: up to 48 tokens, a few seconds
to about 15 s), so search works best on sentence-sized pieces of a lecture or meeting. Segments come
from a real voice-activity detector, silero-vad, using the *sequence* ONNX model its pip package ships
(``silero_vad_16k_sequence.onnx``, sha256-checked): it computes the same per-32-ms speech
probabilities as the streaming model but in one ONNX call per 16 s block: about 500x real time on one
quiet core (250-300x on a loaded 2-core machine), against 140x for the streaming ONNX model and 55x for
TorchScript, with identical timestamps. No torch hub, no network.

The rules, applied in this order (all deterministic: same audio, same segments):

1. silero's state machine turns probabilities into speech regions: speech starts at probability
   >= ``threshold`` (0.5), ends after ``min_pause_s`` (0.2 s) below ``threshold - 0.15``; regions
   shorter than 0.25 s are noise and dropped; each region is padded by ``pad_s`` (0.1 s), sharing the
   pause with its neighbour when the pause is shorter than two pads. 0.2 s keeps the pauses between
   sentences as boundaries (0.3-1 s in read speech; espeak-ng leaves about 0.29 s) and the commas
   and word gaps inside a sentence (about 0.1 s) as not.
2. A region longer than ``max_s`` is cut by silero at its longest internal pause (>= 98 ms).
3. A piece shorter than ``min_s`` (1.0 s) is merged into the nearer neighbour when the gap is at most
   ``merge_gap_s`` (1.0 s) and the result is at most ``max_s``; otherwise it is kept (a lone "yes" is
   still speech, and dropping it would hide it from search).
4. Anything still longer than ``max_s`` (continuous speech with no pause) is split into equal parts.

Default ``max_s`` is 15 s: the longest training sentences are about that long, Whisper's encoder
takes up to 30 s, and a hit's timestamps stay precise enough to jump to.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from claspkit.constants import SAMPLE_RATE
from claspkit.errors import BackboneError, ChecksumError, ParamError

__all__ = [
    "FRAME", "VAD_FILE", "VAD_SHA256", "SegmentParams", "speech_probabilities", "segments_from_probs",
    "segment",
]

FRAME = 512                      # silero's window at 16 kHz (32 ms)
VAD_FILE = "silero_vad_16k_sequence.onnx"
VAD_SHA256 = "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85"  # silero-vad 6.2.3


@dataclass(frozen=True)
class SegmentParams:
    """The segmentation knobs; their ``key`` goes into the index identity so a change re-embeds."""

    max_s: float = 15.0
    min_s: float = 1.0
    pad_s: float = 0.1
    min_pause_s: float = 0.2
    merge_gap_s: float = 1.0
    threshold: float = 0.5

    def __post_init__(self):
        if not self.max_s > 1.0:
            raise ParamError(f"max_s must be above 1 s, got {self.max_s!r}; use e.g. 15")
        if not 0 <= self.min_s < self.max_s:
            raise ParamError(f"min_s must be in [0, max_s={self.max_s}), got {self.min_s!r}")
        if not 0 <= self.pad_s <= 1.0:
            raise ParamError(f"pad_s must be in [0, 1] s, got {self.pad_s!r}")
        if not 0.05 <= self.min_pause_s <= 5.0:
            raise ParamError(f"min_pause_s must be in [0.05, 5] s, got {self.min_pause_s!r}")
        if not self.merge_gap_s >= 0:
            raise ParamError(f"merge_gap_s must be >= 0, got {self.merge_gap_s!r}")
        if not 0.16 <= self.threshold < 1:
            raise ParamError(f"threshold must be in [0.16, 1), got {self.threshold!r}; silero's default is 0.5")

    def key(self) -> str:
        """Stable text naming the VAD model and every knob (part of the index's identity)."""
        knobs = ",".join(f"{k}={v:g}" for k, v in sorted(asdict(self).items()))
        return f"silero-vad:{VAD_SHA256[:12]}:{knobs}"


def _vad_path() -> Path:
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.origin:
        raise BackboneError("silero-vad is not installed; install it with `pip install silero-vad==6.2.3`")
    return Path(spec.origin).parent / "data" / VAD_FILE


@functools.lru_cache(maxsize=1)
def _vad_model():
    """The packaged sequence model, checked against the pinned sha256 before first use."""
    path = _vad_path()
    if not path.is_file():
        raise BackboneError(f"silero-vad has no {VAD_FILE}; install silero-vad==6.2.3 (it ships the model)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != VAD_SHA256:
        raise ChecksumError(f"{VAD_FILE} has sha256 {digest[:12]}..., expected {VAD_SHA256[:12]}...; "
                            "reinstall silero-vad==6.2.3 (`pip install --force-reinstall silero-vad==6.2.3`)")
    import torch  # silero_vad's package import sets torch's thread count to 1: undo that for the encoders

    threads = torch.get_num_threads()
    try:
        from silero_vad.sequence_vad import SileroVADSequence
        from silero_vad.utils_vad import get_speech_timestamps_from_probs
    finally:
        torch.set_num_threads(threads)
    return SileroVADSequence(str(path), sampling_rate=SAMPLE_RATE), get_speech_timestamps_from_probs


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """Per-frame (32 ms) speech probability of a 16 kHz mono waveform."""
    audio = np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
    if audio.size == 0:
        return np.zeros(0, dtype=np.float32)
    model, _ = _vad_model()
    return model.audio_forward(audio, sampling_rate=SAMPLE_RATE)


def segments_from_probs(probs: np.ndarray, n_samples: int, params: SegmentParams = SegmentParams()
                        ) -> list[tuple[float, float]]:
    """Rules 1-4 of the module docstring on precomputed probabilities; (start_s, end_s) in seconds."""
    if n_samples <= 0 or len(probs) == 0:
        return []
    _, to_timestamps = _vad_model()
    regions = to_timestamps(
        [float(p) for p in probs], sampling_rate=SAMPLE_RATE, threshold=params.threshold,
        min_speech_duration_ms=250, max_speech_duration_s=params.max_s,
        min_silence_duration_ms=int(round(params.min_pause_s * 1000)), speech_pad_ms=int(round(params.pad_s * 1000)),
        audio_length_samples=int(n_samples))
    spans = [(r["start"] / SAMPLE_RATE, r["end"] / SAMPLE_RATE) for r in regions if r["end"] > r["start"]]
    spans = _merge_short(spans, params)
    out: list[tuple[float, float]] = []
    for s, e in spans:
        parts = max(1, math.ceil((e - s) / params.max_s - 1e-9))
        step = (e - s) / parts
        out.extend((s + i * step, s + (i + 1) * step) for i in range(parts))
    return [(round(s, 3), round(e, 3)) for s, e in out]


def _merge_short(spans: list[tuple[float, float]], params: SegmentParams) -> list[tuple[float, float]]:
    """Merge each piece shorter than min_s into its nearer neighbour when the gap and length allow."""
    spans = list(spans)
    i = 0
    while i < len(spans):
        s, e = spans[i]
        if e - s >= params.min_s:
            i += 1
            continue
        options = []
        if i > 0:
            options.append((s - spans[i - 1][1], i - 1))
        if i + 1 < len(spans):
            options.append((spans[i + 1][0] - e, i + 1))
        merged = False
        for gap, j in sorted(options):
            lo, hi = min(spans[j][0], s), max(spans[j][1], e)
            if gap <= params.merge_gap_s and hi - lo <= params.max_s:
                spans[min(i, j)] = (lo, hi)
                del spans[max(i, j)]
                i = min(i, j)          # the merged piece may still be short: look at it again
                merged = True
                break
        if not merged:
            i += 1
    return spans


def segment(audio: np.ndarray, sr: int = SAMPLE_RATE, params: SegmentParams | None = None, **knobs
            ) -> list[tuple[float, float]]:
    """Speech segments of a 16 kHz mono waveform as sorted, non-overlapping (start_s, end_s) pairs.

    ``knobs`` override single fields of ``SegmentParams`` (``max_s=10``). Silence gives ``[]``.
    """
    if sr != SAMPLE_RATE:
        raise ParamError(f"segment() needs {SAMPLE_RATE} Hz audio, got sr={sr}; "
                         "read it with claspkit.data.audio.load_audio (which resamples)")
    params = SegmentParams(**{**asdict(params or SegmentParams()), **knobs})
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    return segments_from_probs(speech_probabilities(audio), audio.size, params)
