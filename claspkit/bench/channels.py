"""Recording-channel benchmark: ``python -m claspkit.bench.channels [--items 20] [--repeats 3] [--out PATH]``.

CPU seconds per second of audio, on one thread, of each simulated recording channel alone at its default
parameters (``claspkit.data.augment.recipe.CHANNELS``; the noise channel once with white noise, once with babble
from the other clips) and of each named recipe (``RECIPES``), on ``--items`` seeded-random sentence prompts of the
real Asterisk English recordings. Each unit runs once as a warm-up, then ``--repeats`` times over all clips: the
median, min and max are reported, and for each recipe its x real time (audio seconds per CPU second). The JSON
carries the CPU model, date, commit and load average it was measured under (``claspkit.bench.machine``).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

from claspkit.bench.machine import load_average, machine_info, one_thread, run_and_save
from claspkit.errors import ParamError

__all__ = ["DEFAULT_OUT", "units", "load_prompts", "time_unit", "bench_channels", "format_table", "main"]

DEFAULT_OUT = "results/bench/channels.json"


def units() -> dict:
    """Name -> recipe spec: every channel alone at its defaults (noise split by kind), then the named recipes."""
    from claspkit.data.augment.recipe import CHANNELS, RECIPES

    out = {}
    for name in CHANNELS:
        if name == "noise":
            out["noise (white)"] = {"noise": {"kinds": ["white"]}}
            out["noise (babble)"] = {"noise": {"kinds": ["babble"]}}
        else:
            out[name] = [name]
    return {**out, **{f"recipe {name}": name for name in RECIPES}}


def load_prompts(n: int, seed: int) -> list[dict]:
    """``n`` sentence prompts of Asterisk English drawn with ``seed``, in prompt order: id, audio, sha256, seconds."""
    from claspkit.data.asterisk import UnmatchedPromptWarning, load_asterisk, sentence_prompts
    from claspkit.data.audio import load_audio
    from claspkit.paths import sha256_file

    with warnings.catch_warnings():            # one prompt without audio: known, and no figure depends on it
        warnings.simplefilter("ignore", UnmatchedPromptWarning)
        df = sentence_prompts(load_asterisk("en", progress=False))
    if n > len(df):
        raise ParamError(f"--items {n}: Asterisk English has {len(df)} sentence prompts; ask for at most that many")
    rows = df.iloc[sorted(np.random.default_rng(seed).choice(len(df), size=n, replace=False))]
    out = []
    for r in rows.itertuples():
        x = load_audio(r.path)
        out.append({"id": r.id, "audio": x, "sha256": sha256_file(r.path), "seconds": len(x) / 16000})
    return out


def time_unit(recipe, clips: list[dict], seed: int, repeats: int) -> dict:
    """CPU and wall seconds of ``repeats`` passes of every clip through ``recipe`` (after one warm-up clip);
    babble comes from the other clips of ``clips``, held in memory."""
    from claspkit.data.augment.noise import babble_noise
    from claspkit.data.augment.recipe import Recipe, apply_recipe

    recipe = Recipe.parse(recipe)
    pool = [c["audio"] for c in clips]

    def one_pass(items):
        for i, c in items:
            apply_recipe(c["audio"], recipe, c["sha256"], seed,
                         babble=lambda n, rng, talkers, i=i: babble_noise(n, pool, i, rng, talkers))

    one_pass(list(enumerate(clips))[:1])
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        one_pass(enumerate(clips))
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    audio_s = sum(c["seconds"] for c in clips)
    per_s = np.asarray(cpu) / audio_s
    return {"cpu_s_per_audio_s": float(np.median(per_s)), "min": float(per_s.min()), "max": float(per_s.max()),
            "x_real_time": float(audio_s / np.median(cpu)), "cpu_s": [round(x, 4) for x in cpu],
            "wall_s": [round(x, 4) for x in wall], "channels": recipe.channels}


def bench_channels(items: int = 20, repeats: int = 3, seed: int = 0) -> dict:
    if items < 1 or repeats < 1:
        raise ParamError(f"--items and --repeats must be at least 1, got {items} and {repeats}")
    if items < 5:
        raise ParamError(f"--items {items}: babble noise needs 4 other clips, so at least 5 items")
    clips = load_prompts(items, seed)
    out = {**machine_info(), "items": items, "repeats": repeats, "seed": seed,
           "audio_s": round(sum(c["seconds"] for c in clips), 2), "prompts": [c["id"] for c in clips], "rows": {}}
    with one_thread():
        for name, spec in units().items():
            out["rows"][name] = time_unit(spec, clips, seed, repeats)
    out["load_average_end"] = load_average()
    return out


def format_table(result: dict) -> str:
    lines = [f"{result['items']} Asterisk English prompts ({result['audio_s']:.0f} s of audio), {result['repeats']} "
             f"repeats, one thread, {result['cpu']}; load average {result['load_average']} -> "
             f"{result['load_average_end']}",
             f"{'unit':<18} {'CPU s / audio s':>16} {'min-max':>21} {'x real time':>12}"]
    for name, r in result["rows"].items():
        xrt = f"{r['x_real_time']:>12,.0f}" if name.startswith("recipe ") else ""
        lines.append(f"{name:<18} {r['cpu_s_per_audio_s']:>16.5f} {r['min']:>10.5f}-{r['max']:<10.5f}{xrt}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m claspkit.bench.channels", description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=20, help="Asterisk English sentence prompts (default 20)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes over all prompts; the median is "
                    "reported (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="draws the prompts and every channel's parameters (default 0)")
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"where the JSON goes (default {DEFAULT_OUT}); '' for none")
    args = ap.parse_args(argv)
    return run_and_save("bench.channels", lambda: bench_channels(args.items, args.repeats, args.seed),
                        format_table, args.out)


if __name__ == "__main__":
    sys.exit(main())
