"""A trained fusion head applied to branch features: unit vectors in the text space, the same for an item alone
and in any batch (what ``CLASP``, the index and the evaluation embed with).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from claspkit.constants import FRAME_FUSIONS
from claspkit.encoders.frames import Frames, as_frames
from claspkit.errors import ParamError

__all__ = ["embed_speech"]


def embed_speech(model: nn.Module, speech=None, image=None, batch_size: int = 256) -> np.ndarray:
    """L2-normalised fusion outputs (n, out_dim) float32, computed in eval mode (the mode is restored after).

    For a frame head (attention, stats) ``speech`` is frame features (``Frames`` or a list of (T_i, dim) arrays,
    rounded to float16 as the cache stores them); items are batched by length, so padding stays small.
    """
    if getattr(model, "kind", None) in FRAME_FUSIONS:
        return _embed_frames(model, None if speech is None else as_frames(speech), image, batch_size)
    inputs = [None if x is None else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
              for x in (speech, image)]
    sizes = {len(x) for x in inputs if x is not None}
    if len(sizes) != 1:
        raise ParamError("pass speech and/or image features with the same number of rows")
    n, was_training = sizes.pop(), model.training
    model.eval()
    try:
        with torch.no_grad():
            outs = [F.normalize(model(*(None if x is None else _full_chunk(x, a, batch_size) for x in inputs)),
                                dim=1)[:min(batch_size, n - a)] for a in range(0, n, batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(outs).numpy()


def _full_chunk(x: torch.Tensor, start: int, size: int) -> torch.Tensor:
    """Rows ``start:start + size`` of ``x``, zero-padded to ``size`` rows. Every matrix product then has
    the same shape whatever the number of items: MKL picks its sgemm kernel by shape, and on some CPUs
    (measured on an AMD EPYC) a row's result differed by ~3e-8 between a batch of 1 and one of 300, so an
    index built in other groupings (the Ray engine) or a vector embedded alone would not be bit-identical."""
    chunk = x[start:start + size]
    if len(chunk) == size:
        return chunk
    return torch.cat([chunk, chunk.new_zeros((size - len(chunk), *chunk.shape[1:]))])


def _embed_frames(model: nn.Module, frames: Frames | None, image, batch_size: int) -> np.ndarray:
    if frames is None:
        raise ParamError(f"the {model.kind} head needs the speech frame features; pass them (got None)")
    image = None if image is None else torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    if image is not None and len(image) != len(frames):
        raise ParamError(f"pass speech frames and image features for the same items ({len(frames)} vs {len(image)})")
    order = np.argsort(frames.lengths, kind="stable")
    out = np.zeros((len(frames), int(model.config["out_dim"])), dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for a in range(0, len(frames), batch_size):
                idx = order[a:a + batch_size]
                x, lengths = frames.pad(idx)
                img = None if image is None else image[torch.from_numpy(idx)]
                y = model(torch.from_numpy(x), img, lengths=torch.from_numpy(lengths))
                out[idx] = F.normalize(y, dim=1).numpy()
    finally:
        model.train(was_training)
    return out
