"""Cached training copies: one derived clip per clean clip, content-addressed and written once.

``augmented_copies`` is the first recipe (issue 11: a speed factor, then white or babble noise) and keeps
its exact files; ``channel_copies`` runs any channel ``Recipe`` (rooms, noise, gain, telephone and codecs).
Both write 16 kHz PCM16 under ``data/audio/derived/<kind>/<digest>/<sha256[:16]>.wav``, where the digest
names the recipe, its version, the seed and (when babble is possible) the set the babble comes from, and
a ``recipe.json`` beside the clips says what made them. Files already there are reused, so an interrupted
run resumes; every file is written atomically.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from claspkit.constants import SAMPLE_RATE
from claspkit.data.augment.base import derived_root, file_shas, item_rng, pcm16, write_wav
from claspkit.data.augment.noise import BABBLE_TALKERS, NOISE_KINDS, babble_noise, change_speed, mix_at_snr, \
    white_noise
from claspkit.data.augment.recipe import Recipe, apply_recipe
from claspkit.errors import AudioError, ParamError, choices_hint

__all__ = ["AUGMENT_RECIPE", "SPEEDS", "augmented_copies", "channel_copies"]

AUGMENT_RECIPE = "augment-v1"
SPEEDS = (0.9, 1.0, 1.1)


def _babble_from_set(n: int, i: int, shas: list[str], paths: list[Path], rng: np.random.Generator,
                     talkers: int) -> np.ndarray:
    """Babble for clip ``i`` from up to ``talkers`` *other* clips of the set (another sha256), picked in sha
    order, so the draw ignores the order of ``paths``."""
    from claspkit.data.audio import load_audio

    others = sorted({shas[j]: j for j in range(len(paths)) if shas[j] != shas[i]}.items())
    others = [j for _, j in others]
    picks = rng.choice(others, size=min(talkers, len(others)), replace=False) if others else []
    return babble_noise(n, [load_audio(paths[j]) for j in picks], None, rng, talkers=len(picks))


def _write_recipe(folder: Path, recipe: dict) -> None:
    from claspkit.paths import atomic_write_text

    atomic_write_text(folder / "recipe.json", json.dumps(recipe, indent=1, sort_keys=True) + "\n")


def augmented_copies(paths: Sequence, seed: int = 42, snr_range=(0.0, 20.0), speeds=SPEEDS, kinds=NOISE_KINDS,
                     talkers: int = BABBLE_TALKERS, out_dir=None, progress: bool = False) -> list[Path]:
    """One perturbed copy of each training clip, toward real audio: a speed factor drawn from ``speeds``
    (resampled, so tempo and pitch change together), then white or babble noise (babble from other clips
    of ``paths``) at an SNR drawn uniformly from ``snr_range``. Every draw is seeded by (seed, the clip's
    sha256); files are written once under ``data/audio/derived/augment/``. Gain needs no perturbation:
    every clip is peak-normalised when it is loaded."""
    from claspkit.data.audio import load_audio
    from claspkit.progress import progress_bar

    bad = [k for k in kinds if k not in NOISE_KINDS]
    if bad or not kinds:
        raise ParamError(f"unknown noise {choices_hint(bad[0] if bad else '', NOISE_KINDS)}")
    lo, hi = map(float, snr_range)
    if not lo <= hi or not speeds or min(speeds) <= 0:
        raise ParamError(f"need snr_range (low, high) with low <= high and positive speeds, got {snr_range}, {speeds}")
    paths = [Path(p) for p in paths]
    shas = file_shas(paths)
    recipe = {"recipe": AUGMENT_RECIPE, "seed": int(seed), "snr_range": [lo, hi], "speeds": [float(v) for v in speeds],
              "kinds": list(kinds), "talkers": int(talkers),
              "pool": hashlib.sha256("\n".join(shas).encode()).hexdigest()}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    folder = derived_root(out_dir) / "augment" / digest
    out = [folder / f"{sha[:16]}.wav" for sha in shas]
    todo = [i for i, p in enumerate(out) if not p.is_file()]
    for i in progress_bar(todo, desc="augmenting", unit="clip", disable=not progress):
        rng = item_rng(seed, shas[i], 0)
        speed = float(rng.choice(list(speeds)))
        kind = str(rng.choice(list(kinds)))
        snr = float(rng.uniform(lo, hi))
        x = change_speed(load_audio(paths[i]), speed, SAMPLE_RATE)
        if kind == "white":
            noise = white_noise(len(x), rng)
        else:
            noise = _babble_from_set(len(x), i, shas, paths, rng, talkers)
        write_wav(out[i], pcm16(mix_at_snr(x, noise, snr)))
    folder.mkdir(parents=True, exist_ok=True)
    _write_recipe(folder, recipe)
    return out


def channel_copies(paths: Sequence, recipe, seed: int = 42, out_dir=None, progress: bool = False) -> list[Path]:
    """One copy of each clip through the channels ``recipe`` (a ``Recipe``, a name in ``RECIPES``, a list of
    channel names or a dict of overrides) draws for it, in ``paths`` order, under
    ``data/audio/derived/channels/<digest>/``. Byte-identical across runs and orders of ``paths``; babble
    (when the recipe's noise has it) comes from the other clips of ``paths``, whose digest the folder name
    includes. A silent or empty clip fails with the file's name."""
    from claspkit.data.audio import load_audio
    from claspkit.paths import display_path
    from claspkit.progress import progress_bar

    recipe = Recipe.parse(recipe)
    paths = [Path(p) for p in paths]
    shas = file_shas(paths)
    key = recipe.key(seed)
    if recipe.uses_babble:
        key["pool"] = hashlib.sha256("\n".join(sorted(set(shas))).encode()).hexdigest()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    folder = derived_root(out_dir) / "channels" / digest
    out = [folder / f"{sha[:16]}.wav" for sha in shas]
    todo = [i for i, p in enumerate(out) if not p.is_file()]
    for i in progress_bar(todo, desc="recording channels", unit="clip", disable=not progress):
        def babble(n, rng, talkers, i=i):
            return _babble_from_set(n, i, shas, paths, rng, talkers)

        try:
            y = apply_recipe(load_audio(paths[i]), recipe, shas[i], seed, babble=babble)
        except AudioError as e:
            raise AudioError(f"{display_path(paths[i])}: {e}") from None
        write_wav(out[i], pcm16(y))
    folder.mkdir(parents=True, exist_ok=True)
    _write_recipe(folder, key)
    return out
