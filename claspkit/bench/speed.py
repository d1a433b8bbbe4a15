"""`python -m claspkit.bench.speed`: the shipped model against the cascade, timed on the same real utterances.

What `claspkit index` pays per utterance with the model that ships (both branches concurrently, then the head;
the image CNN in ONNX Runtime, as `index` runs it; a speech-only variant is timed beside it when asked) against
transcribe-then-search (whisper-base, then the same text encoder), on a seeded random sample of real English
Asterisk prompts, one at a time and in batches (``bench.retrieval.time_systems``: the pipelines alternate batch by
batch, so a load on the machine falls on both), with the per-utterance spread and a bootstrap CI of the speed
ratio. Writes ``results/bench/speed-<cpu kind>.json``: one file per CPU kind, since kernels differ by kind.
"""
from __future__ import annotations

import argparse
import json
import sys

from claspkit.errors import ClaspkitError

__all__ = ["run", "main"]


def run(n: int = 100, seed: int = 42, out=None) -> dict:
    from claspkit.bench.machine import machine_info
    from claspkit.bench.retrieval import time_systems
    from claspkit.encoders.backbones import create_backbone
    from claspkit.evaluation import robustness
    from claspkit.experiments.pipeline import sample_indices
    from claspkit.model.clasp import CLASP
    from claspkit.paths import atomic_write_text, project_root
    from claspkit.pretrained import default_name

    prompts = robustness.real_prompts("en", None, seed)
    sample = prompts.iloc[sample_indices(len(prompts), min(n, len(prompts)), seed)]
    models = {default_name(): CLASP.from_pretrained()}
    timing = time_systems(models, create_backbone("asr", "whisper-base"), list(sample.path), 1000, seed)
    info = machine_info()
    result = {"meta": {**info, "model": default_name(), "items": len(sample), "seconds_of_audio":
                       round(float(sample.duration.sum()), 1), "asr": "whisper-base",
                       "sample": "seeded random Asterisk English prompts (sentence-like)"},
              "timing": timing}
    path = project_root() / "results" / "bench" / f"speed-{info['cpu_kind']}.json" if out is None else out
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=1, default=float))
    result["path"] = path
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100, help="utterances timed (a seeded random sample)")
    args = ap.parse_args(argv)
    try:
        result = run(args.items)
    except ClaspkitError as e:
        print(f"claspkit bench.speed: {e}", file=sys.stderr)
        return 2
    for kind, by_batch in result["timing"].items():
        for batch, t in by_batch.items():
            ratio = t.get("speedup_vs_cascade")
            ci = t.get("speedup_vs_cascade_ci")
            print(f"{kind:>28} {batch:>8}: {t['s_per_utt'] * 1000:7.1f} ms/utt (p10 {t['p10_s'] * 1000:.0f}, "
                  f"median {t['median_s'] * 1000:.0f}, p90 {t['p90_s'] * 1000:.0f})"
                  + (f", {ratio:.1f}x the cascade [{ci[0]:.1f}, {ci[1]:.1f}]" if kind != "cascade" else ""))
    print(f"results: {result['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
