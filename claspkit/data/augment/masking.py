"""SpecAugment-style masking of frame features: a train-time transform for the frame heads.

The attention and stats heads read each clip's cached encoder frames (``claspkit.encoders.frames``), so the
cheapest augmentation is on those frames, per batch, with no new audio and no new features: zero a few
spans of time steps and a few bands of feature channels (Park et al. 2019's time and frequency masks, here
on the encoder's output channels). Only valid frames are masked (padding stays padding), a time mask is at
most ``time_width`` steps and never the whole clip, and the draws come from the generator the trainer seeds
per epoch, so a resumed run masks exactly as an uninterrupted one.
"""
from __future__ import annotations

import numpy as np

from claspkit.errors import ParamError

__all__ = ["mask_frames"]


def mask_frames(x: np.ndarray, lengths: np.ndarray, rng: np.random.Generator, time_width: int = 0,
                channel_width: int = 0, masks: int = 2) -> np.ndarray:
    """Zero, in place and per item, ``masks`` time spans of 0..``time_width`` steps (within the item's valid
    frames, at most half of them) and ``masks`` channel bands of 0..``channel_width`` channels, of a padded
    (batch, steps, dim) batch; returns ``x``. Widths of 0 turn that kind of mask off."""
    if x.ndim != 3 or len(lengths) != len(x):
        raise ParamError(f"mask_frames takes a padded (batch, steps, dim) array and one length per item, got "
                         f"{x.shape} and {len(lengths)} lengths")
    for k, v in (("time_width", time_width), ("channel_width", channel_width), ("masks", masks)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ParamError(f"{k} must be an int >= 0, got {v!r}")
    if channel_width > x.shape[2]:
        raise ParamError(f"channel_width ({channel_width}) is wider than the features ({x.shape[2]} channels)")
    for b, n in enumerate(np.asarray(lengths, dtype=np.int64)):
        if n < 1:
            raise ParamError(f"item {b} of the batch has no frames (length {n}); drop it or re-extract it")
        for _ in range(masks if time_width else 0):
            w = int(rng.integers(0, min(time_width, n // 2) + 1))
            t0 = int(rng.integers(0, n - w + 1))
            x[b, t0:t0 + w, :] = 0.0
        for _ in range(masks if channel_width else 0):
            w = int(rng.integers(0, channel_width + 1))
            c0 = int(rng.integers(0, x.shape[2] - w + 1))
            x[b, :n, c0:c0 + w] = 0.0
    return x
