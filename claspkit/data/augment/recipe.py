"""Channel recipes: which simulated recording channels a training copy goes through, and their ranges.

A recipe names channels and, for each, its parameters: a ``[low, high]`` range is drawn uniformly, a list
(``factors``, ``kinds``, ``kbps``) is drawn from, a single number is fixed, and ``p`` is the chance the
channel is applied at all. Channels act in the order a real recording meets them: speed, then the room,
then additive noise (in the room), then the level (gain, clipping), then one transmission channel. The
transmission channels (telephone, mu_law, g722, mp3, opus) are alternatives: each clip gets one of those the
recipe lists, drawn uniformly, then applied with that channel's ``p``.

Every draw is seeded per clip and per channel (``channel_rng``: seed, the clean file's sha256, the channel's
name), so a copy is a function of its clean file, the recipe and the seed only. ``Recipe.key`` (the version
tag, every parameter with its defaults filled in, and the seed) is what names the cache folder: changing
any range, or the code's behaviour (bump ``VERSION``), gives new files, never a stale copy.

Named recipes (``RECIPES``) give the usual mixes; ``Recipe.parse`` also takes a list of channel names (at
their default ranges) or a dict of names to parameter overrides.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable

import numpy as np

from claspkit.config import channel_recipe
from claspkit.constants import CHANNEL_PARAMS, CHANNEL_RECIPES, CHANNEL_STAGES, SAMPLE_RATE
from claspkit.data.augment import codecs, noise, rooms
from claspkit.data.augment.base import as_signal, channel_rng
from claspkit.errors import ParamError

__all__ = ["VERSION", "STAGES", "CHANNELS", "TRANSMISSION", "RECIPES", "Channel", "Recipe", "apply_recipe"]

VERSION = "channels-v1"          # bump when any channel's output changes: it is part of every cache key
STAGES = CHANNEL_STAGES


@dataclass(frozen=True)
class Channel:
    """One simulated channel: its place in the chain, its parameters (``[low, high]`` ranges unless named in
    ``lists``, which are drawn from), and the function that applies one draw."""

    stage: str
    defaults: dict
    lists: tuple = ()
    apply: Callable | None = None


def _room(x, d, rng, ctx):
    distance = min(d["distance_m"], 0.9 * d["room_m"])          # a talker stays inside the room
    return rooms.reverberate(x, rooms.room_impulse_response(d["rt60_s"], d["room_m"], distance, rng))


def _noise(x, d, rng, ctx):
    if d["kinds"] == "white":
        n = noise.white_noise(len(x), rng)
    else:
        if ctx.get("babble") is None:
            raise ParamError("babble noise is made from other clips of the set: apply this recipe through "
                             "channel_copies (or pass babble=), or list only kinds=['white']")
        n = ctx["babble"](len(x), rng, int(d["talkers"]))
    return noise.mix_at_snr(x, n, d["snr_db"])


_APPLY = {
    "speed": lambda x, d, rng, ctx: noise.change_speed(x, d["factors"]),
    "room": _room,
    "noise": _noise,
    "gain": lambda x, d, rng, ctx: noise.apply_gain(x, d["db"]),
    "telephone": lambda x, d, rng, ctx: codecs.telephone(x, d["highpass_hz"]),
    "mu_law": lambda x, d, rng, ctx: codecs.mu_law(x, d["highpass_hz"]),
    "g722": lambda x, d, rng, ctx: codecs.codec_roundtrip(x, "g722"),
    "mp3": lambda x, d, rng, ctx: codecs.codec_roundtrip(x, "mp3", d["kbps"]),
    "opus": lambda x, d, rng, ctx: codecs.codec_roundtrip(x, "opus", d["kbps"]),
}
# the channels' parameters are data in constants (config checks a recipe from them); here they meet their code
CHANNELS = {name: Channel(stage, defaults, lists, _APPLY[name])
            for name, (stage, defaults, lists) in CHANNEL_PARAMS.items()}
TRANSMISSION = tuple(k for k, c in CHANNELS.items() if c.stage == "transmission")
RECIPES = CHANNEL_RECIPES


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: ``channels`` maps each channel name (in chain order) to all its parameters."""

    channels: dict

    @classmethod
    def parse(cls, spec) -> "Recipe":
        """A Recipe from a named recipe (``RECIPES``), a list of channel names, or a dict name -> overrides."""
        if isinstance(spec, Recipe):
            return spec
        return cls(channel_recipe(spec))

    def key(self, seed: int) -> dict:
        """What names the cache folder of this recipe's copies (the set's babble pool is added by the caller)."""
        return {"recipe": VERSION, "seed": int(seed), "channels": self.channels}

    def digest(self, seed: int, **extra) -> str:
        return hashlib.sha256(json.dumps({**self.key(seed), **extra}, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def uses_babble(self) -> bool:
        return "babble" in self.channels.get("noise", {}).get("kinds", ())

    def plan(self, sha256: str, seed: int) -> list[tuple[str, dict, np.random.Generator]]:
        """The channels one clip goes through, in order, with their drawn parameters and the generator each
        continues with (the noise's samples, the room's reflections)."""
        steps = []
        sent = [k for k in self.channels if k in TRANSMISSION]
        chosen = sent[int(channel_rng(seed, sha256, "transmission").integers(len(sent)))] if sent else None
        for name, params in self.channels.items():
            if name in TRANSMISSION and name != chosen:
                continue
            rng = channel_rng(seed, sha256, name)
            applied = rng.random() < params["p"]         # always drawn: p never shifts the other draws
            drawn = {}
            for k, v in params.items():
                if k == "p":
                    continue
                if k in CHANNELS[name].lists:
                    drawn[k] = v[int(rng.integers(len(v)))]
                elif isinstance(v, list):
                    drawn[k] = float(rng.uniform(v[0], v[1]))
                else:
                    drawn[k] = v
            if applied:
                steps.append((name, drawn, rng))
        return steps

    def draws(self, sha256: str, seed: int) -> list[tuple[str, dict]]:
        """What ``plan`` applies to a clip, for a log or a test: [(channel, drawn parameters)]."""
        return [(name, drawn) for name, drawn, _ in self.plan(sha256, seed)]


def apply_recipe(x: np.ndarray, recipe, sha256: str, seed: int, babble=None,
                 sr: int = SAMPLE_RATE) -> np.ndarray:
    """One clip (16 kHz mono) through the channels ``recipe`` draws for it. ``babble(n, rng, talkers)``
    returns babble noise of ``n`` samples (``channel_copies`` builds it from the other clips of the set)."""
    if sr != SAMPLE_RATE:
        raise ParamError(f"channel recipes run at {SAMPLE_RATE} Hz, got sr={sr}; load the clip with load_audio")
    recipe = Recipe.parse(recipe)
    y = as_signal(x, "the clip")
    for name, drawn, rng in recipe.plan(sha256, seed):
        y = CHANNELS[name].apply(y, drawn, rng, {"babble": babble})
    return y
