"""`python -m claspkit.bench.adapt_speaker`: how much of the gap does adapting to one's own archive close?

A person adapts the shipped model to their own recordings, with no transcripts (``claspkit adapt``), then
searches recordings of the same speaker that adaptation never heard. Here the archive is one speaker's real
prompts in another language (Asterisk Italian: Carlo Flora, one professional voice, human transcripts): a seeded
half adapts the model (Whisper's confident Italian pseudo-transcripts; the human text is never used), the other
half tests, speech -> its Italian text, full gallery, beside the cascade (whisper-base told the language) on the
same items, with 95% bootstrap CIs and paired differences. The two halves share no prompt, so their texts are
disjoint. Reported apart from the English headline (``bench.adapt``); no recipe is chosen here. Writes
``results/bench/adapt_speaker.json``.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


__all__ = ["run", "markdown", "main"]


def run(lang: str = "it", seed: int = 42, progress: bool = True) -> dict:
    from claspkit.adapt.run import adapt, embed_files
    from claspkit.bench.machine import machine_info
    from claspkit.bench.real_speech import score_systems
    from claspkit.encoders.backbones import create_backbone
    from claspkit.evaluation import asr as cascade
    from claspkit.evaluation import robustness
    from claspkit.evaluation.metrics import cosine_matrix
    from claspkit.model.clasp import CLASP
    from claspkit.paths import display_path, run_dir
    from claspkit.pretrained import default_name, pretrained_dir, registry

    prompts = robustness.real_prompts(lang, None, seed, progress=progress)
    order = np.random.default_rng(seed).permutation(len(prompts))
    half = len(prompts) // 2
    own, test = prompts.iloc[order[:half]], prompts.iloc[order[half:]].reset_index(drop=True)
    runtime = registry()["models"][default_name()]["image_runtime"]
    start = pretrained_dir()
    t = time.perf_counter()
    folder = run_dir("adapt_speaker") / f"{default_name()}-asterisk-{lang}"
    report = adapt(None, start, folder, files=list(own.path), language=lang, image_runtime=runtime, seed=seed,
                   force=True, progress=progress)
    adapt_s = time.perf_counter() - t
    t = time.perf_counter()
    models = {"shipped model": CLASP.from_pretrained(start, image_runtime=runtime, local_only=True),
              "shipped model + adapt (own half)": CLASP.from_pretrained(folder, image_runtime=runtime,
                                                                        local_only=True)}
    first = next(iter(models.values()))
    gallery = first.encode_text(list(test.text))
    sims = {label: cosine_matrix(embed_files(m, list(test.path), progress), gallery) for label, m in models.items()}
    teacher = create_backbone("asr", "whisper-base")
    transcripts, emb = cascade.cascade_embeddings(teacher, first.text, list(test.path), language=lang,
                                                  progress=progress)
    label = "cascade (whisper-base + the same text encoder)"
    sims[label] = cosine_matrix(emb, gallery)
    rows = score_systems(sims, label, "shipped model", seed=seed)
    result = {"meta": {**machine_info(), "model": default_name(), "language": lang,
                       "speaker": "Asterisk " + lang, "adapt_items": len(own), "test_items": len(test),
                       "pseudo": report["pseudo"], "train_items": report["train_items"],
                       "val_items": report["val_items"], "cascade_wer": round(cascade.wer(list(test.text),
                                                                                             transcripts), 4),
                       "adapted": display_path(folder), "adapt_s": round(adapt_s, 1),
                       "score_s": round(time.perf_counter() - t, 1)},
              "rows": rows}
    return result


def markdown(result: dict, source: str = "results/bench/adapt_speaker.json") -> str:
    """The docs block: each system's HITS@1 and MRR on the held-out half, and the paired differences."""
    from claspkit.bench.adapt import cell, diff

    meta = result["meta"]
    lines = ["| system | HITS@1 [95% CI] | MRR [95% CI] | vs the shipped model | vs the cascade |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['system']} | {cell(r)} | {cell(r, 'mrr')} | {diff(r, 'vs_baseline')} | "
              f"{diff(r, 'vs_cascade')} |" for r in result["rows"]]
    kept = meta["pseudo"]["kept"] - meta["pseudo"].get("repeated text", 0)
    segments = sum(v for k, v in meta["pseudo"].items() if k != "repeated text")
    return "\n".join(lines) + (
        f"\n\nFrom `{source}`: `python -m claspkit.bench.adapt_speaker` at commit {meta.get('commit', '?')} on "
        f"{meta.get('cpu', '?')}: {meta['speaker']} ({meta['language']}), {meta['adapt_items']} prompts adapted on "
        f"({segments} segments after the VAD cut long ones, {kept} confident distinct pseudo-transcripts), "
        f"{meta['test_items']} other prompts tested; cascade WER {meta['cascade_wer']:.3f}. One seed.")


def main(argv=None) -> int:
    from claspkit.bench.machine import run_and_save
    from claspkit.bench.real_speech import format_rows
    from claspkit.paths import project_root

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lang", default="it", help="the Asterisk language whose speaker is the archive (default it)")
    ap.add_argument("--out", default=str(project_root() / "results" / "bench" / "adapt_speaker.json"))
    args = ap.parse_args(argv)
    return run_and_save("bench.adapt_speaker", lambda: run(args.lang), lambda r: format_rows(r["rows"]),
                        args.out)


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
