"""One batch through an encoder, the way every engine runs it: outputs checked, failures named.

The feature cache (``claspkit.encoders.features``), the Ray workers (``claspkit.encoders.engine``) and the
``CLASP`` model run their encoder batches through these, so a batch gives the same bytes and the same errors
wherever it runs.
"""
from __future__ import annotations

import numpy as np

from claspkit.encoders.frames import DTYPE as FRAME_DTYPE
from claspkit.errors import BackboneError, ClaspkitError

__all__ = ["MAX_LISTED", "FrameView", "encode_batch", "frame_outputs", "named", "listing", "branch_features"]

MAX_LISTED = 10     # items named in one error message


class FrameView:
    """An encoder seen through its frames: the attributes ``_extract`` uses, frame-valued."""

    def __init__(self, encoder):
        self.name, self.dim, self.sample_rate = encoder.name, encoder.dim, encoder.sample_rate
        self.role = getattr(encoder, "role", "speech")
        self.cache_id, self.encode = encoder.frames_cache_id, encoder.encode_frames
        self.backbone_spec = getattr(encoder, "backbone_spec", None)   # a Ray worker rebuilds the encoder
        # One pass, two caches: the mean-pooled features of the same forward pass go under the encoder's
        # own cache_id, so a later extract_audio of these files computes nothing.
        self._both = getattr(encoder, "encode_frames_and_means", None)
        self.companion_cache_id = getattr(encoder, "cache_id", None) if self._both is not None else None
        self._means = None
        if self._both is not None:
            self.encode = self._encode_both

    def _encode_both(self, waves):
        frames, self._means = self._both(waves)
        return frames

    def take_means(self):
        """The mean-pooled features of the last local batch (None after a Ray batch or when taken)."""
        means, self._means = self._means, None
        return means

    def __repr__(self) -> str:
        return f"<frames of {self.name} cache_id={self.cache_id!r}>"


def encode_batch(encoder, inputs: list, names: list[str], frames: bool = False):
    try:
        Y = encoder.encode(inputs)
    except ClaspkitError:
        raise
    except MemoryError as e:
        raise BackboneError(f"{encoder.name} ran out of memory on a batch of {len(inputs)} "
                            f"(first: {names[0]}); lower batch_size / batch_size_features") from e
    except Exception as e:
        raise BackboneError(f"{encoder.name} failed on a batch of {len(inputs)} items "
                            f"({listing(names)}): {type(e).__name__}: {e}; items computed before "
                            "are cached, so a re-run resumes here") from e
    if frames:
        return frame_outputs(encoder, Y, len(inputs))
    Y = np.asarray(Y)
    if Y.shape != (len(inputs), int(encoder.dim)):
        raise BackboneError(f"{encoder.name} returned shape {Y.shape} for {len(inputs)} items, expected "
                            f"({len(inputs)}, {encoder.dim}); the backbone's dim or pooling is wrong")
    return Y.astype(np.float32, copy=False)


def frame_outputs(encoder, Y, n: int) -> list[np.ndarray]:
    """An encoder's frame outputs checked (one (T >= 1, dim) array per input) and rounded to float16;
    values beyond float16's range become inf and are refused like any non-finite output."""
    shapes = [np.shape(y) for y in Y] if isinstance(Y, (list, tuple)) else None
    if shapes is None or len(shapes) != n or any(len(s) != 2 or s[0] < 1 or s[1] != int(encoder.dim) for s in shapes):
        raise BackboneError(f"{encoder.name} returned frames {shapes if shapes is not None else type(Y).__name__} "
                            f"for {n} items, expected a list of {n} (frames >= 1, {encoder.dim}) arrays; "
                            "the backbone's encode_frames is wrong")
    with np.errstate(over="ignore"):
        return [np.asarray(y, dtype=np.float32).astype(FRAME_DTYPE) for y in Y]


def named(name: str, message: str) -> str:
    """``name: message``, unless the message (e.g. load_audio's) already names the file."""
    bare = name.rsplit("/", 1)[-1]
    return message if bare in message else f"{name}: {message}"


def listing(names) -> str:
    names = list(names)
    return ", ".join(names[:MAX_LISTED]) + (f" (and {len(names) - MAX_LISTED} more)"
                                             if len(names) > MAX_LISTED else "")


def branch_features(enc, waves: list[np.ndarray], batch_size: int, frames: bool = False):
    """One backbone's features of ``waves`` in chunks of ``batch_size``: an (n, dim) array of means, or with
    ``frames`` a list of (T_i, dim) frame arrays. The chunks are what make a run reproducible bit for bit
    (a backbone may round differently in another batch), so every engine cuts them here."""
    if frames:
        x = [f for a in range(0, len(waves), batch_size) for f in enc.encode_frames(waves[a:a + batch_size])]
        shapes = {np.shape(f)[1:] for f in x}
        if len(x) != len(waves) or shapes - {(int(enc.dim),)}:
            raise ClaspkitError(f"backbone {enc.name} returned {len(x)} frame sequences of widths {sorted(shapes)} "
                                f"for {len(waves)} segments, expected {len(waves)} of width {enc.dim}; "
                                "the backbone is broken")
        return x
    parts = [np.asarray(enc.encode(waves[a:a + batch_size]), dtype=np.float32)
             for a in range(0, len(waves), batch_size)]
    x = np.concatenate(parts)
    if x.shape != (len(waves), int(enc.dim)):
        raise ClaspkitError(f"backbone {enc.name} returned shape {x.shape} for {len(waves)} "
                            f"segments, expected ({len(waves)}, {enc.dim}); the backbone is broken")
    return x
