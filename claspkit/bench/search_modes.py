"""`python -m claspkit.bench.search_modes`: the shipped model's three ranking modes on long real recordings.

What a user gets from ``claspkit index DIR --out X --transcribe && claspkit search X "..."`` with no ``--model``:
Asterisk English prompts joined with pauses into long files (notebook 09's ``robustness.long_recordings``), indexed
with the model that ships and ``--transcribe``, every prompt's text searched under ``--rank clasp``, ``transcript``
and ``hybrid``: HITS@1, MRR and hit boundaries within 0.5 s, with 95% bootstrap CIs, and indexing speed with and
without the transcription pass (x real time on this machine).

The hybrid's CLASP weight is first chosen for this model on *validation* recordings made of other prompts
(``transcript_search.split_prompts``: disjoint from the test sample) and written to the file ``claspkit search``
reads (``claspkit/search/hybrid_weight.json``); the test recordings are then scored once. Writes
``results/bench/search_modes.json``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


__all__ = ["COLUMNS", "run", "markdown", "main"]


def run(n_test: int = 60, n_val: int = 60, per_file: int = 20, asr: str = "whisper-tiny.en", seed: int = 42) -> dict:
    from claspkit.bench.machine import machine_info
    from claspkit.evaluation import robustness
    from claspkit.evaluation.transcript_search import choose_hybrid_weight, evaluate_modes, split_prompts
    from claspkit.pretrained import default_name, pretrained_dir

    model = pretrained_dir()
    prompts = robustness.real_prompts("en", None, seed)
    test, val = split_prompts(prompts, n_test, n_val, seed)
    with tempfile.TemporaryDirectory(prefix="claspkit-search-modes-") as tmp:
        tmp = Path(tmp)
        val_truth = robustness.long_recordings(val, per_file=per_file, out_dir=tmp / "val")
        chosen = choose_hybrid_weight(val_truth, model, tmp / "val.index", asr,
                                      f"Asterisk en sentence-like prompts (real_prompts('en', None, seed={seed})) "
                                      f"minus notebook 09's test sample of {n_test} (sample_indices(n, {n_test}, "
                                      f"seed + 1)), {n_val} drawn with seed + 2, joined {per_file} per file with 1 s "
                                      f"pauses (long_recordings); checkpoint: the shipped {default_name()} "
                                      "(bench.search_modes)")
        truth = robustness.long_recordings(test, per_file=per_file, out_dir=tmp / "test")
        table, facts = evaluate_modes(truth, model, tmp / "test.index", asr, seed=seed)
    result = {"meta": {**machine_info(), "model": default_name(), "asr": asr, "test_prompts": len(test),
                       "val_prompts": len(val), "per_file": per_file,
                       "hybrid_weight": chosen["clasp_weight"], "chosen_by": chosen["chosen_by"]["criterion"],
                       **{k: v for k, v in facts.items() if k != "checkpoint"}},
              "rows": table.reset_index().to_dict(orient="records")}
    return result


COLUMNS = ("hits@1", "mrr", "timestamps within 0.5 s (words)")


def markdown(result: dict, source: str = "results/bench/search_modes.json") -> str:
    """The docs block: the three modes' HITS@1, MRR and boundaries within 0.5 s, and indexing speed; from ``result``."""
    meta = result["meta"]
    lines = [f"| `--rank` | {' | '.join(COLUMNS)} |", "|---|" + "---|" * len(COLUMNS)]
    lines += [f"| {r['rank']} | " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in result["rows"]]
    speed = "; ".join(f"{k}: {v['x_real_time']}x real time" for k, v in meta["indexing"].items())
    return "\n".join(lines) + (
        f"\n\nFrom `{source}`: `python -m claspkit.bench.search_modes` at commit {meta.get('commit', '?')} on "
        f"{meta.get('cpu', '?')} ({meta.get('cpus', '?')} cores): the shipped `{meta['model']}`, "
        f"{meta['test_prompts']} real English prompts in {meta['files']} long recordings ({meta['segments']} "
        f"segments), `--transcribe {meta['asr']}`, 95% bootstrap CIs; hybrid's CLASP weight {meta['hybrid_weight']:g}, "
        f"chosen by {meta['chosen_by']} on {meta['val_prompts']} other prompts. Indexing: {speed}.")


def main(argv=None) -> int:
    from claspkit.bench.machine import run_and_save
    from claspkit.paths import project_root

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test", type=int, default=60, help="test prompts (notebook 09's sample on small: 3 files of 20)")
    ap.add_argument("--val", type=int, default=60, help="validation prompts that choose the hybrid weight")
    ap.add_argument("--asr", default="whisper-tiny.en", help="the --transcribe ASR (default whisper-tiny.en)")
    ap.add_argument("--out", default=str(project_root() / "results" / "bench" / "search_modes.json"))
    args = ap.parse_args(argv)
    return run_and_save("bench.search_modes", lambda: run(args.test, args.val, asr=args.asr), markdown,
                        args.out)


if __name__ == "__main__":
    sys.exit(main())
