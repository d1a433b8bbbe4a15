"""`python -m claspkit.bench.real_speech`: does training on more voices carry CLASP over to real recorded speech?

CLASP trained on a few espeak-ng voices collapses on real recordings (issue 27). This benchmark trains the paper
head once per preset, with every knob equal but the voices (the first preset's values, the same sentences and
splits), and scores every head beside the transcribe-then-search cascade on the same real recordings: the Asterisk
English prompts (one professional speaker, in no training corpus), full gallery, speech -> text, 95% bootstrap CIs,
and each head's paired difference with the cascade and with the first preset's head (queries resampled jointly).
Stage 3's configuration is fixed for all (``stage3``), so only the training speech differs.

Sources: training and validation are the presets' synthetic Brown corpora; the Asterisk prompts only test, and
no recipe or budget is chosen on them (epochs and early stopping use each corpus's own validation split).
Writes ``results/bench/real_speech.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from claspkit.errors import ClaspkitError, ParamError

__all__ = ["DEFAULT_STAGE3", "SAME_KNOBS_EXCEPT", "preset_params", "score_systems", "run", "format_rows", "main"]

DEFAULT_STAGE3 = {"speech_backbone": "whisper-base", "text_backbone": "e5-small-multilingual", "fusion": "gating"}
# Knobs that may differ between the compared presets: everything else is the first preset's.
SAME_KNOBS_EXCEPT = ("preset", "voices", "held_out_voice")


def preset_params(presets, overrides: dict | None = None) -> list:
    """One Params per preset, equal in every knob but ``SAME_KNOBS_EXCEPT`` (the first preset's values)."""
    from claspkit.config import Params, load_params

    if len(presets) < 2 or len(set(presets)) != len(presets):
        raise ParamError(f"compare at least two different presets, got {list(presets)}")
    knobs = {"stage3": DEFAULT_STAGE3, **(overrides or {})}
    stage3 = knobs["stage3"] if isinstance(knobs["stage3"], dict) else {}     # load_params refuses a bad one
    first = load_params(presets[0], {**knobs, "speech_backbone": stage3.get("speech_backbone"),
                                     "text_backbone": stage3.get("text_backbone")})
    common = {k: v for k, v in first.items() if k not in SAME_KNOBS_EXCEPT}
    out = [first]
    for name in presets[1:]:
        loaded = load_params(name, {**common, "voices": load_params(name).voices})   # validates the voices
        out.append(Params({**loaded, **common}))    # a knob the preset sets where the first has None: the first's
    return out


def score_systems(sims: dict, reference: str, baseline: str | None, n_boot: int = 1000, seed: int = 42) -> list[dict]:
    """One row per system (label -> speech x text similarity on the same items): full-gallery metrics with CIs,
    and the paired difference with ``reference`` (the cascade) and with ``baseline`` (the first head)."""
    from claspkit.evaluation.metrics import retrieval_report, versus

    shapes = {s.shape for s in sims.values()}
    if len(shapes) != 1:
        raise ClaspkitError(f"the systems were scored on different items: {sorted(shapes)}")
    rows = []
    for label, sim in sims.items():
        row = {"system": label, **retrieval_report(sim, protocol="full", n_boot=n_boot, seed=seed)}
        for name, other in (("vs_cascade", reference), ("vs_baseline", baseline)):
            if other is not None and other != label:
                row[name] = versus(sim, sims[other], n_boot=n_boot, seed=seed)
        rows.append(row)
    return rows


def run(presets=("small", "voices"), n_sentences: int | None = 3000, real_items: int | None = None,
        overrides: dict | None = None, progress: bool = True, out=None) -> dict:
    from claspkit.bench.machine import machine_info
    from claspkit.evaluation import robustness
    from claspkit.experiments import pipeline
    from claspkit.paths import atomic_write_text, project_root

    Ps = preset_params(presets, {"n_sentences": n_sentences, **(overrides or {})})
    t0 = time.perf_counter()
    heads = {}
    for P in Ps:
        st = pipeline.stage3(P, "contrastive", progress=progress)
        heads[f"CLASP {P.preset} ({st.manifest.voice.nunique()} voices, {len(st.data['train'])} pairs)"] = st
    train_s = time.perf_counter() - t0
    S = robustness.make_systems(Ps[0], heads, Ps[0].asr_backbone)
    prompts = robustness.real_prompts("en", real_items, Ps[0].seed, progress=progress)
    sims, wer = robustness.similarities(S, list(prompts.path), list(prompts.text), references=list(prompts.text),
                                        progress=progress)
    cascade = S.labels[-1]
    rows = score_systems(sims, cascade, next(iter(heads)), seed=Ps[0].seed)
    result = {"meta": {**machine_info(), "presets": list(presets), "n_sentences": n_sentences, "stage3": Ps[0].stage3,
                       "knobs": {k: v for k, v in Ps[0].items() if k not in SAME_KNOBS_EXCEPT},
                       "voices": {P.preset: P.voices for P in Ps}, "real_items": len(prompts),
                       "test_source": "Asterisk English prompts (sentence-like, deduplicated)", "cascade_wer": wer,
                       "train_s": round(train_s, 1), "score_s": round(time.perf_counter() - t0 - train_s, 1)},
              "rows": rows}
    path = project_root() / "results" / "bench" / "real_speech.json" if out is None else out
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=1, default=float))
    result["path"] = path
    return result


def format_rows(rows: list[dict]) -> str:
    lines = [f"{'system':<58} {'n':>4} {'HITS@1 [95% CI]':>24} {'MRR [95% CI]':>24}"]
    for r in rows:
        cells = [f"{r[m]:.3f} [{r[m + '_ci'][0]:.3f}, {r[m + '_ci'][1]:.3f}]" for m in ("hits@1", "mrr")]
        lines.append(f"{r['system']:<58} {r['n']:>4} {cells[0]:>24} {cells[1]:>24}")
        for key in ("vs_cascade", "vs_baseline"):
            if key in r:
                d = r[key]["hits@1"]
                lines.append(f"    {key}: HITS@1 {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="small,voices", help="comma-separated; the first is the baseline")
    ap.add_argument("--sentences", type=int, default=3000, help="Brown sentences per corpus (the same ones)")
    ap.add_argument("--real-items", type=int, default=None, help="Asterisk prompts scored (default: all)")
    args = ap.parse_args(argv)
    try:
        result = run(tuple(args.presets.split(",")), args.sentences, args.real_items)
    except ClaspkitError as e:
        print(f"claspkit bench.real_speech: {e}", file=sys.stderr)
        return 2
    print(format_rows(result["rows"]))
    print(f"results: {result['path']}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
