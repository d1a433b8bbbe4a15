"""What every augmentation shares: input checks, per-item seeds, and the written form of a derived clip.

A derived clip is a pure function of (the clean file's bytes, the recipe, the seed): its noise and its
draws come from a generator seeded by the seed, the file's sha256 and a label (the SNR of a sweep, or a
channel's name), so a copy does not depend on the order or the size of the set it was made with, and a
rerun writes the same bytes. Files are written atomically (``claspkit.paths.atomic_path``): a killed run
leaves a ``.tmp`` file, never a half-written clip that a later run would take for finished.
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from claspkit.constants import SAMPLE_RATE
from claspkit.errors import AudioError, ParamError

__all__ = ["PEAK", "as_signal", "item_rng", "channel_rng", "pcm16", "write_wav", "derived_root", "file_shas"]

PEAK = 0.95                      # derived clips are written peak-normalised to this level


def as_signal(x, what: str = "the signal") -> np.ndarray:
    """``x`` as a 1-D float64 waveform with sound in it, or a clear ``AudioError``: a transform of an empty or
    silent clip is meaningless (an SNR or an RT60 has nothing to act on), so it fails instead of writing junk."""
    from claspkit.data.audio import SILENCE_PEAK

    a = np.asarray(x)
    if a.ndim != 1:
        raise AudioError(f"{what} must be a 1-D waveform, got shape {a.shape}; pass one mono clip at a time")
    if a.size == 0:
        raise AudioError(f"{what} is empty (0 samples); drop the item or fix its file")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise AudioError(f"{what} contains NaN or infinite samples; re-export the file or drop the item")
    peak = float(np.max(np.abs(a)))
    if peak < SILENCE_PEAK:
        raise AudioError(f"{what} is silent (peak {peak:.2g}); a channel has nothing to act on: drop the item")
    return a


def item_rng(seed: int, sha256: str, snr_db: float) -> np.random.Generator:
    """The noise sweep's and the speed-and-noise copies' generator: (seed, file sha256, SNR in mdB)."""
    return np.random.default_rng([int(seed), int(sha256[:15], 16), int(round(float(snr_db) * 1000)) & 0xFFFFFFFF])


def channel_rng(seed: int, sha256: str, label: str) -> np.random.Generator:
    """One independent stream per (seed, clip, channel name): adding a channel to a recipe leaves the draws of
    the others unchanged, so two recipes that share a room share each clip's room."""
    return np.random.default_rng([int(seed), int(sha256[:15], 16), zlib.crc32(label.encode())])


def pcm16(x: np.ndarray) -> np.ndarray:
    """Peak-normalised to ``PEAK`` and rounded to 16-bit PCM (``load_audio`` peak-normalises again anyway)."""
    peak = float(np.max(np.abs(x)))
    if not peak > 0 or not np.isfinite(peak):
        raise AudioError(f"cannot write a derived clip whose peak is {peak}: the transform left no sound")
    return np.round(x * (PEAK / peak) * 32767).astype(np.int16)


def write_wav(path: Path, x16: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    import soundfile as sf

    from claspkit.paths import atomic_path

    with atomic_path(path, suffix=".wav") as tmp:
        sf.write(str(tmp), x16, sr, subtype="PCM_16", format="WAV")


def derived_root(root=None) -> Path:
    """``data/audio/derived`` (or ``root``): where every derived clip lives, one folder per recipe."""
    from claspkit.paths import data_dir

    return Path(root) if root is not None else data_dir() / "audio" / "derived"


def file_shas(paths: Sequence[Path]) -> list[str]:
    """sha256 of each file's bytes (each distinct path read once): the content address of its derived copies."""
    from claspkit.errors import DataMissingError
    from claspkit.paths import display_path, sha256_file

    missing = [p for p in dict.fromkeys(paths) if not Path(p).is_file()]
    if missing:
        raise DataMissingError(f"{len(missing)} audio file(s) not found, e.g. {display_path(missing[0])}; "
                               "build the corpus first or fix the paths")
    if not len(paths):
        raise ParamError("no audio files given to make derived copies of")
    memo = {p: sha256_file(p) for p in dict.fromkeys(paths)}
    return [memo[p] for p in paths]
