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
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from claspkit.constants import SAMPLE_RATE
from claspkit.data.augment import codecs, noise, rooms
from claspkit.data.augment.base import as_signal, channel_rng
from claspkit.errors import ParamError, choices_hint

__all__ = ["VERSION", "STAGES", "CHANNELS", "TRANSMISSION", "RECIPES", "Channel", "Recipe", "apply_recipe"]

VERSION = "channels-v1"          # bump when any channel's output changes: it is part of every cache key
STAGES = ("speed", "room", "noise", "gain", "transmission")


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


CHANNELS = {
    "speed": Channel("speed", {"p": 1.0, "factors": [0.9, 1.0, 1.1]}, ("factors",),
                     lambda x, d, rng, ctx: noise.change_speed(x, d["factors"])),
    "room": Channel("room", {"p": 1.0, "rt60_s": [0.2, 0.8], "room_m": [3.0, 10.0], "distance_m": [0.5, 3.0]},
                    (), _room),
    "noise": Channel("noise", {"p": 1.0, "kinds": ["white", "babble"], "snr_db": [5.0, 30.0],
                               "talkers": noise.BABBLE_TALKERS}, ("kinds",), _noise),
    "gain": Channel("gain", {"p": 1.0, "db": [-20.0, 6.0]}, (), lambda x, d, rng, ctx: noise.apply_gain(x, d["db"])),
    "telephone": Channel("transmission", {"p": 1.0, "highpass_hz": 300.0}, (),
                         lambda x, d, rng, ctx: codecs.telephone(x, d["highpass_hz"])),
    "mu_law": Channel("transmission", {"p": 1.0, "highpass_hz": 300.0}, (),
                      lambda x, d, rng, ctx: codecs.mu_law(x, d["highpass_hz"])),
    "g722": Channel("transmission", {"p": 1.0}, (), lambda x, d, rng, ctx: codecs.codec_roundtrip(x, "g722")),
    "mp3": Channel("transmission", {"p": 1.0, "kbps": [16, 24, 32]}, ("kbps",),
                   lambda x, d, rng, ctx: codecs.codec_roundtrip(x, "mp3", d["kbps"])),
    "opus": Channel("transmission", {"p": 1.0, "kbps": [8, 12, 16]}, ("kbps",),
                    lambda x, d, rng, ctx: codecs.codec_roundtrip(x, "opus", d["kbps"])),
}
TRANSMISSION = tuple(k for k, c in CHANNELS.items() if c.stage == "transmission")

RECIPES = {
    "rooms": {"room": {}},
    "phone": {"telephone": {}, "mu_law": {}, "g722": {}},
    "codecs": {"mp3": {}, "opus": {}},
    # toward real recordings: half the clips in a room, noise, a level, and one of the five channels
    "real": {"speed": {}, "room": {"p": 0.5}, "noise": {}, "gain": {},
             **{k: {"p": 0.8} for k in TRANSMISSION}},
}


def _check_value(name: str, key: str, value, lists: tuple):
    where = f"channel {name!r} parameter {key!r}"
    if key == "p":
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1):
            raise ParamError(f"{where} is a probability in [0, 1], got {value!r}")
        return float(value)
    if key in lists:
        if not isinstance(value, (list, tuple)) or not value:
            raise ParamError(f"{where} is a non-empty list of values to draw from, got {value!r}")
        if key == "kinds":
            for v in value:
                if v not in noise.NOISE_KINDS:
                    raise ParamError(f"{where}: unknown noise {choices_hint(v, noise.NOISE_KINDS)}")
            return [str(v) for v in value]
        if key == "kbps":
            lo, hi = codecs.CODECS[name][2]
            if not all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in value):
                raise ParamError(f"{where}: {name} takes whole kbit/s from {lo} to {hi}, got {value!r}")
            return [int(v) for v in value]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value):
            raise ParamError(f"{where}: speed factors must be positive numbers, got {value!r}")
        return [float(v) for v in value]
    if isinstance(CHANNELS[name].defaults[key], list):
        ok = (isinstance(value, (list, tuple)) and len(value) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))
        if not ok or value[0] > value[1]:
            raise ParamError(f"{where} is a range [low, high] with low <= high, got {value!r}")
        if key in ("rt60_s", "room_m", "distance_m") and value[0] <= 0:
            raise ParamError(f"{where} must be positive, got {value!r}")
        return [float(v) for v in value]
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0):
        raise ParamError(f"{where} is a number >= 0, got {value!r}")
    return type(CHANNELS[name].defaults[key])(value)


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: ``channels`` maps each channel name (in chain order) to all its parameters."""

    channels: dict

    @classmethod
    def parse(cls, spec) -> "Recipe":
        """A Recipe from a named recipe (``RECIPES``), a list of channel names, or a dict name -> overrides."""
        if isinstance(spec, Recipe):
            return spec
        if isinstance(spec, str):
            if spec not in RECIPES:
                raise ParamError(f"unknown channel recipe {choices_hint(spec, RECIPES)}; or list channel names "
                                 f"({', '.join(CHANNELS)})")
            spec = RECIPES[spec]
        if isinstance(spec, (list, tuple)):
            spec = {name: {} for name in spec}
        if not isinstance(spec, dict) or not spec:
            raise ParamError(f"a channel recipe is a recipe name ({', '.join(RECIPES)}), a non-empty list of "
                             f"channel names or a dict of them, got {spec!r}")
        out = {}
        for name, over in spec.items():
            if name not in CHANNELS:
                raise ParamError(f"unknown channel {choices_hint(name, CHANNELS)}")
            over = dict(over or {})
            bad = sorted(set(over) - set(CHANNELS[name].defaults))
            if bad:
                raise ParamError(f"channel {name!r} has no parameter {choices_hint(bad[0], CHANNELS[name].defaults)}")
            out[name] = {k: _check_value(name, k, over.get(k, v), CHANNELS[name].lists)
                         for k, v in CHANNELS[name].defaults.items()}
        order = {k: i for i, k in enumerate(CHANNELS)}
        return cls({k: out[k] for k in sorted(out, key=order.__getitem__)})

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
