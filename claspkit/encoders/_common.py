"""What every backbone family shares: the ``Encoder`` interface, input checks, windows and pooling, threads.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from claspkit.encoders._hub import is_local
from claspkit.errors import AudioError, ParamError

__all__ = [
    "WINDOW_S", "cpu_threads", "Encoder", "make_cache_id", "check_waves", "check_texts", "windows", "pool_windows",
    "l2_normalize", "batches", "check_pool", "join_windows",
]


WINDOW_S = 30.0


def cpu_threads(threads: int = 0) -> int:
    """The thread count a CTranslate2 / ONNX Runtime backbone runs with: ``threads``, or torch's when 0.

    Never the runtime's own default: on an AMD EPYC, CTranslate2's whisper gave other bits at 1 and 2
    threads (up to 0.02 apart), so a Ray worker must run the driver's count, and one rule for every
    runtime (torch's count, which the engine hands its workers) makes that so."""
    import torch

    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
        raise ParamError(f"threads must be a non-negative int (0 = torch's thread count), got {threads!r}")
    return int(threads) or torch.get_num_threads()


class Encoder:
    """What every backbone exposes; subclasses set the attributes and implement encode/transcribe."""
    role: str
    name: str
    dim: int | None
    sample_rate: int | None = None
    cache_id: str
    weight_bytes: int

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.role}/{self.name} dim={self.dim} cache_id={self.cache_id!r}>"


def make_cache_id(role: str, name: str, weights_sha: str, prep: str) -> str:
    """``role/name/weights-hash/preprocessing``; a local folder appears by its base name only (the hash
    identifies it), so moving a model folder keeps its cache and no machine path is printed."""
    if ":" in name:
        prefix, target = name.split(":", 1)
        if is_local(target):
            name = f"{prefix}:{Path(target).expanduser().resolve().name}"
    return f"{role}/{name}/{weights_sha[:12]}/{prep}"


def check_waves(waves, who: str) -> list[np.ndarray]:
    """Encoders get 16 kHz mono float waveforms; anything else is an error naming the item."""
    from claspkit.data.audio import SILENCE_PEAK

    if isinstance(waves, np.ndarray) and waves.ndim == 1:
        raise ParamError(f"{who}.encode takes a list of waveforms, got one 1-D array; wrap it in a list")
    out = []
    for i, w in enumerate(waves):
        x = np.asarray(w, dtype=np.float32)
        if x.ndim != 1 or x.size == 0:
            raise AudioError(f"{who}: input {i} must be a non-empty 1-D 16 kHz waveform, got shape {x.shape}; "
                             "load files with claspkit.data.audio.load_audio")
        if not np.isfinite(x).all():
            raise AudioError(f"{who}: input {i} contains NaN or infinite samples; load files with "
                             "claspkit.data.audio.load_audio, which names the bad file")
        if float(np.abs(x).max()) < SILENCE_PEAK:
            raise AudioError(f"{who}: input {i} is silent; drop it (load_audio rejects silent files)")
        out.append(np.ascontiguousarray(x))
    return out


def check_texts(texts, who: str) -> list[str]:
    if isinstance(texts, str):
        raise ParamError(f"{who}.encode takes a list of strings, got one string; wrap it in a list")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ParamError(f"{who}: text {i} is {type(t).__name__}, not str; pass the sentences as strings")
    return texts


def windows(waves: list[np.ndarray], sr: int, window_s: float = WINDOW_S):
    """Cut each wave into windows of at most ``window_s``: [(item index, window)]."""
    size = int(window_s * sr)
    return [(i, w[s:s + size]) for i, w in enumerate(waves) for s in range(0, len(w), size)]


def pool_windows(n_items: int, dim: int, owners, means, weights) -> np.ndarray:
    """Frame-weighted average of window means per item = the mean over all of an item's valid frames."""
    out = np.zeros((n_items, dim), dtype=np.float64)
    tot = np.zeros(n_items, dtype=np.float64)
    for i, m, w in zip(owners, means, weights):
        out[i] += np.asarray(m, dtype=np.float64) * w
        tot[i] += w
    return (out / tot[:, None]).astype(np.float32)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


def batches(order, size):
    for s in range(0, len(order), size):
        yield order[s:s + size]


def check_pool(pool) -> int:
    if not isinstance(pool, int) or isinstance(pool, bool) or pool < 1:
        raise ParamError(f"frame_pool must be a positive int (encoder frames averaged per step), got {pool!r}")
    return pool


def join_windows(n_items: int, owners, window_frames) -> list[np.ndarray]:
    """Each item's window frames, concatenated in time (windows come in order)."""
    parts: list[list] = [[] for _ in range(n_items)]
    for i, f in zip(owners, window_frames):
        parts[i].append(f)
    return [np.concatenate(p) if len(p) > 1 else p[0] for p in parts]
