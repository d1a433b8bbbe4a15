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
import sys


__all__ = ["run", "table", "main"]


def run(n: int = 100, seed: int = 42) -> dict:
    from claspkit.bench.machine import machine_info
    from claspkit.bench.retrieval import time_systems
    from claspkit.encoders.backbones import create_backbone
    from claspkit.evaluation import robustness
    from claspkit.experiments.pipeline import sample_indices
    from claspkit.model.clasp import CLASP
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
    return result


def table(result: dict) -> str:
    """Per pipeline and batch size: ms per utterance with its spread, and the ratio to the cascade."""
    lines = []
    for kind, by_batch in result["timing"].items():
        for batch, t in by_batch.items():
            ratio, ci = t.get("speedup_vs_cascade"), t.get("speedup_vs_cascade_ci")
            lines.append(f"{kind:>28} {batch:>8}: {t['s_per_utt'] * 1000:7.1f} ms/utt (p10 {t['p10_s'] * 1000:.0f}, "
                         f"median {t['median_s'] * 1000:.0f}, p90 {t['p90_s'] * 1000:.0f})"
                         + (f", {ratio:.1f}x the cascade [{ci[0]:.1f}, {ci[1]:.1f}]" if kind != "cascade" else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    from claspkit.bench.machine import cpu_kind, run_and_save
    from claspkit.paths import project_root

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100, help="utterances timed (a seeded random sample)")
    ap.add_argument("--out", default=str(project_root() / "results" / "bench" / f"speed-{cpu_kind()}.json"),
                    help="the result file (default: one per CPU kind)")
    args = ap.parse_args(argv)
    return run_and_save("bench.speed", lambda: run(args.items), table, args.out)


if __name__ == "__main__":
    sys.exit(main())
