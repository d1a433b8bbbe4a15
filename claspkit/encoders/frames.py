"""Frame features: a speech encoder's valid frames per item, pooled in time, kept as float16.

The paper's heads see one mean-pooled vector per clip; the ``attention`` fusion head attends over the
frame sequence instead. Why this form:

* **Pooled 4x in time** (``FRAME_POOL``; 80 ms steps for Whisper's and wav2vec2's 20 ms frames): the
  sequence a 5.5 s clip gives shrinks from 276 to 69 steps, which is what makes attention over a
  whole corpus cheap on a CPU. (A throwaway experiment with 5K pairs had one transformer layer over
  such frames beat a mean-pooled MLP; on the small preset's 2,400 pairs it does not yet: see
  ``python -m claspkit.bench.retrieval --scaling``.)
* **Valid frames only**, as the mean-pooled features use (padding excluded), so an item's frames do
  not depend on what it was batched with; longer clips concatenate the frames of their 30 s windows.
* **float16**: half the bytes of float32, and far below the noise of int8 encoder weights. Frames are
  rounded to float16 wherever they come from (cache or encoder), so training and inference see the
  same numbers.
* **Ragged** (``Frames``): one (T_i, dim) array per item, padded per batch to the batch's longest
  item only when a model needs a tensor (``pad``), with the lengths for the padding mask.
"""
from __future__ import annotations

import io
import math

import numpy as np

from claspkit.constants import SAMPLE_RATE
from claspkit.encoders._common import WINDOW_S
from claspkit.errors import ParamError

__all__ = ["FRAME_POOL", "DTYPE", "pool_time", "item_bytes", "frame_bytes", "Frames", "as_frames", "whisper_valid",
           "whisper_bucket", "whisper_frame_count"]

FRAME_POOL = 4  # encoder frames averaged into one step (80 ms for Whisper)
DTYPE = np.dtype("<f2")


def pool_time(frames: np.ndarray, pool: int) -> np.ndarray:
    """Average every ``pool`` consecutive frames; a last, shorter group is averaged over what it has."""
    x = np.asarray(frames, dtype=np.float32)
    starts = np.arange(0, len(x), pool)
    counts = np.diff(np.append(starts, len(x))).astype(np.float32)
    return np.add.reduceat(x, starts, axis=0) / counts[:, None]


def item_bytes(n_frames: int, dim: int) -> int:
    """Bytes of one cache entry: the .npy file of an (n_frames, dim) float16 array, header included."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": DTYPE.str, "fortran_order": False,
                                               "shape": (int(n_frames), int(dim))})
    return buf.tell() + int(n_frames) * int(dim) * DTYPE.itemsize


def frame_bytes(seconds: float, dim: int, pool: int = FRAME_POOL) -> int:
    """Bytes per item of a Whisper encoder's frame features for a clip of ``seconds`` (no model needed)."""
    return item_bytes(whisper_frame_count(int(round(seconds * SAMPLE_RATE)), pool), dim)


class Frames:
    """Ragged frame features: item ``i`` is a (T_i, dim) float16 array of its valid frames.

    ``frames[i]`` is one item's array; ``frames[idx]`` (slice, index array, list) is a Frames of those
    items (no copy). ``pool`` records how many encoder frames each step averages (None: unknown).
    """

    def __init__(self, items, dim: int | None = None, pool: int | None = None):
        arrays = []
        for i, x in enumerate(items):
            a = np.asarray(x)
            if a.ndim != 2 or len(a) == 0:
                raise ParamError(f"frame features: item {i} has shape {a.shape}, expected (frames >= 1, dim); "
                                 "compute them with claspkit.encoders.features.extract_frames or an encoder's "
                                 "encode_frames")
            if a.dtype != DTYPE:
                with np.errstate(over="ignore"):  # out of float16's range -> inf, refused below
                    a = a.astype(DTYPE)
            if not np.isfinite(a).all():
                raise ParamError(f"frame features: item {i} has NaN/inf values (or values beyond float16's "
                                 "range); re-extract that item")
            arrays.append(a)
        dims = {a.shape[1] for a in arrays} | ({int(dim)} if dim is not None else set())
        if len(dims) > 1:
            raise ParamError(f"frame features disagree on the dimension ({sorted(dims)}); extract every item "
                             "with the same speech backbone")
        self.items = arrays
        self.dim = dims.pop() if dims else None
        self.pool = pool
        self.lengths = np.array([len(a) for a in arrays], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return (f"Frames({len(self)} items, dim={self.dim}, pool={self.pool}, "
                f"{self.bytes_per_item():.0f} bytes/item)")

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            return self.items[idx]
        if isinstance(idx, slice):
            return Frames(self.items[idx], self.dim, self.pool)
        picked = np.asarray(idx)
        if picked.dtype == bool:
            picked = np.flatnonzero(picked)
        return Frames([self.items[int(i)] for i in picked], self.dim, self.pool)

    @property
    def nbytes(self) -> int:
        """Bytes of the float16 frames held (headers and Python objects aside)."""
        return int(sum(a.nbytes for a in self.items))

    def bytes_per_item(self) -> float:
        """Mean bytes per item of the float16 frames (``item_bytes`` adds the cache file's header)."""
        return self.nbytes / len(self) if len(self) else math.nan

    def pad(self, idx=None) -> tuple[np.ndarray, np.ndarray]:
        """(B, T_max, dim) float32 zero-padded to the longest selected item, and the (B,) lengths."""
        sel = self if idx is None else self[idx]
        if isinstance(sel, np.ndarray):  # a single int index
            sel = Frames([sel], self.dim, self.pool)
        out = np.zeros((len(sel), int(sel.lengths.max(initial=1)), self.dim or 0), dtype=np.float32)
        for row, a in enumerate(sel.items):
            out[row, :len(a)] = a
        return out, sel.lengths.copy()

    def update_hash(self, h) -> None:
        """Feed the exact frames (lengths, then bytes) into a hashlib object: a training run's identity."""
        h.update(self.lengths.tobytes())
        for a in self.items:
            h.update(np.ascontiguousarray(a).tobytes())


def as_frames(x, pool: int | None = None) -> Frames:
    """``x`` as Frames: Frames pass through, a list of (T_i, dim) arrays is wrapped (rounded to float16)."""
    if isinstance(x, Frames):
        return x
    if isinstance(x, np.ndarray) and x.ndim == 2:
        raise ParamError(f"got one (n, dim) = {x.shape} array where frame features were expected; the attention "
                         "head needs each item's frame sequence (pipeline.frame_features, "
                         "features.extract_frames or encode_frames), not the mean-pooled features")
    return Frames(list(x), pool=pool)


def whisper_valid(n_samples: int, n_out: int) -> int:
    """Encoder frames of a window that hold its audio (10 ms mel hop, stride 2: 20 ms frames)."""
    return min(n_out, math.ceil((n_samples // 160 + 1) / 2))


def whisper_bucket(bucket_s: float) -> int:
    """Whisper's per-item padding unit: ``bucket_s`` seconds in whole encoder frames (320 samples)."""
    return max(1, int(round(bucket_s * SAMPLE_RATE / 320))) * 320  # whole encoder frames


def whisper_frame_count(n_samples: int, pool: int = FRAME_POOL, bucket_s: float = 1.0) -> int:
    """Steps ``WhisperSpeechEncoder.encode_frames`` gives a clip of ``n_samples`` (16 kHz); no model needed."""
    size, bucket = int(WINDOW_S * SAMPLE_RATE), whisper_bucket(bucket_s)
    total = 0
    for start in range(0, int(n_samples), size):
        n = min(size, int(n_samples) - start)
        valid = whisper_valid(n, min(size, -(-n // bucket) * bucket) // 320)
        total += -(-valid // pool)
    return total
