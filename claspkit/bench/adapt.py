"""`python -m claspkit.bench.adapt`: does distillation from the cascade on real untranscribed speech close the gap?

Trains the paper head (Stage 3 fixed: whisper-base + e5-small + gating) on each preset's synthetic corpus, as
``bench.real_speech`` does (same sentences and knobs, only the voices differ), then adapts each head with
``claspkit adapt`` on clips of a real multi-speaker English source that no test uses: the game dialogue of
*Flight of the Amazon Queen* (``claspkit.data.fotaq``; its transcripts are Whisper's, filtered by confidence).
Two head kinds (the paper's pooled ``paper`` head and the frame ``stats`` ensemble), each adapted on nested seeded
samples of the clips (a learning curve) and, at the largest, with replay of its synthetic training pairs. Every
head, before and after, is scored full gallery with 95% bootstrap CIs, each adapted head paired with its start:

- ``fotaq-val``: clips of a tenth of FOTAQ's dialogues, held out of every adaptation, labelled by Whisper's
  confident transcripts (no cascade row: it made the labels), and ``synthetic-val``: the last preset's synthetic
  validation split. Together (mean HITS@1) they choose the recipe: a head that forgets one kind of speech loses;
- ``asterisk-en``: the Asterisk English prompts (one professional speaker; test only), beside the cascade;
- ``synthetic``: the last preset's synthetic test gallery (voices heard in training), beside the cascade: what
  adaptation costs there.

Which source serves what: Brown sentences spoken by TTS voices train and validate the heads (their own splits);
FOTAQ clips adapt them (adapt's own held-out dialogues stop the fine-tuning) and validate the recipe (other
held-out dialogues; Joe, the hero, speaks in all of them, so that gallery is dialogue-disjoint, not
speaker-disjoint); Asterisk only tests. Writes ``results/bench/adapt.json``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time

import numpy as np

from claspkit.errors import ParamError

__all__ = ["SAMPLE_SEED", "VAL_FRACTION", "VALIDATION", "fotaq_split", "validation_gallery", "adapted_head", "heads",
           "run", "reseeded", "seed_summary", "cell", "diff", "markdown", "plot", "table", "main"]

SAMPLE_SEED = 0       # the clips' order: fixed apart from the training seed, so every seed adapts on the same clips
VAL_FRACTION = 0.1    # of FOTAQ's dialogues, never adapted on: the real-speech validation gallery
# The galleries that choose the recipe (and the shipped model): real speech (held-out FOTAQ dialogues) and synthetic
# speech (the last preset's validation split), so a head that forgets one kind of speech is not chosen.
VALIDATION = ("fotaq-val", "synthetic-val")


def fotaq_split(seed: int = SAMPLE_SEED, progress: bool = False) -> tuple:
    """(adaptation pool, validation clips) of FOTAQ, both in one seeded permutation's order. A seeded tenth of the
    dialogues is held out of every adaptation for choosing the recipe; the first ``n`` of the pool nest (1,000
    clips are inside 3,000), so a learning curve adds clips and reuses the transcripts already made."""
    from claspkit.adapt.run import group_split
    from claspkit.data.fotaq import load_fotaq

    df = load_fotaq(progress=progress)
    df = df.iloc[np.random.default_rng(seed).permutation(len(df))].reset_index(drop=True)
    names = sorted(set(df.group))
    held = set(np.asarray(names)[group_split(names, VAL_FRACTION, seed)])
    val = df.group.isin(held).to_numpy()
    return df[~val].reset_index(drop=True), df[val].reset_index(drop=True)


def validation_gallery(val, n: int, teacher, progress: bool = False):
    """The first ``n`` held-out clips whose pseudo-transcripts are confident and distinct: (paths, texts).
    Whisper's text is the label, so the cascade is not scored here; heads are compared with each other."""
    from claspkit.adapt.pseudo import Confidence, transcribe_scored
    from claspkit.adapt.run import dedupe_texts

    clips = val.iloc[:n]
    entries = transcribe_scored(teacher, list(clips.path), language="en", progress=progress)
    keep = np.array([Confidence().reason(e) is None for e in entries])
    texts = [e["text"] for e in entries]
    keep &= dedupe_texts([t if k else "" for t, k in zip(texts, keep)])
    return [p for p, k in zip(clips.path, keep) if k], [t for t, k in zip(texts, keep) if k]


def adapted_head(model_dir, clips, image_runtime: str, seed: int, replay: dict | None = None,
                 progress: bool = False) -> tuple:
    """(folder, report) of ``model_dir`` adapted on ``clips`` under ``<model_dir>-fotaq<n>[-replay]``; a
    finished one made from the same model, clips and seed is reused."""
    from pathlib import Path

    from claspkit.adapt.run import ADAPT_FILE, adapt
    from claspkit.model.clasp import CLASP

    out = Path(f"{model_dir}-fotaq{len(clips)}{'-replay' if replay is not None else ''}")
    made = out / ADAPT_FILE
    if made.is_file():
        report = json.loads(made.read_text())
        same_model = report["adapted_from"]["checkpoint_sha256"] == CLASP.from_pretrained(
            model_dir, image_runtime=image_runtime, local_only=True).identity["checkpoint_sha256"]
        if same_model and report["segments"] == len(clips) and report["seed"] == seed:
            return out, report
    groups = dict(zip(clips.path, clips.group))
    report = adapt(None, model_dir, out, files=list(clips.path), groups=groups, image_runtime=image_runtime,
                   seed=seed, force=True, progress=progress, replay=replay)
    return out, report


def heads(P, kinds, progress: bool = True) -> dict:
    """The preset's trained heads by kind: ``paper`` (Stage 3, pooled features), ``stats`` (the frame ensemble,
    README's best on synthetic speech) and ``stats-speech`` (the stats head without the spectrogram-image branch),
    on the same corpus, splits and backbones."""
    from claspkit.experiments import pipeline

    makers = {"paper": lambda: pipeline.stage3(P, "contrastive", progress=progress),
              "stats": lambda: pipeline.frame_stage(P, "stats", progress=progress),
              # the image-branch ablation: the same stats head on the speech frames alone
              "stats-speech": lambda: pipeline.frame_stage(P, "stats", progress=progress, branches="speech",
                                                           name="stats-speech-contrastive")}
    unknown = [k for k in kinds if k not in makers]
    if unknown:
        raise ParamError(f"unknown head kind(s) {unknown}; known: {sorted(makers)}")
    return {k: makers[k]() for k in kinds}


def reseeded(stage, seed: int, progress: bool = True):
    """The head of ``stage`` trained again with another seed (initialisation and batches; the corpus, its splits
    and its features stay the seed-42 ones), under ``<name>-seed<seed>``."""
    from claspkit.experiments import pipeline

    return pipeline.fit(stage.P, stage.data, f"{stage.trained.name}-seed{seed}", progress=progress, seed=seed)


def run(presets=("small", "voices"), n_sentences: int = 3000, clips=(1000, 2000), kinds=("paper", "stats"),
        val_clips: int = 200, seeds=(), progress: bool = True) -> dict:
    from claspkit.adapt.run import embed_files
    from claspkit.bench.machine import machine_info
    from claspkit.bench.real_speech import preset_params, score_systems
    from claspkit.data.corpus import audio_path
    from claspkit.encoders.backbones import create_backbone
    from claspkit.encoders.features import extract_text
    from claspkit.evaluation import asr as cascade
    from claspkit.evaluation import robustness
    from claspkit.evaluation.metrics import versus
    from claspkit.experiments import pipeline
    from claspkit.model.clasp import CLASP
    from claspkit.paths import display_path

    clips = sorted(set(int(c) for c in clips))
    Ps = preset_params(presets, {"n_sentences": n_sentences})
    P0 = Ps[0]
    t0 = time.perf_counter()
    stages = {P.preset: heads(P, kinds, progress) for P in Ps}
    times = {"train_s": time.perf_counter() - t0}

    t = time.perf_counter()
    pool, val = fotaq_split(progress=progress)
    if not 1 <= max(clips) <= len(pool) or min(clips) < 1:
        raise ParamError(f"clips must be in [1, {len(pool)}], got {clips}")
    sample = pool.iloc[:max(clips)]
    models, reports = {}, {}
    for P in Ps:
        for kind, st in stages[P.preset].items():
            base = f"{kind} {P.preset} ({st.manifest.voice.nunique()} voices)"
            models[base] = st.trained.checkpoint
            for n, replay in [(n, None) for n in clips] + [(max(clips), st.data["train"].arrays)]:
                folder, report = adapted_head(st.trained.checkpoint, sample.iloc[:n], P.image_runtime, P.seed,
                                              replay, progress)
                label = f"{base} + adapt {n}{' + replay' if replay is not None else ''}"
                models[label], reports[label] = folder, {k: report.get(k) for k in (
                    "segments", "pseudo", "train_items", "val_items", "val_groups", "replay_items", "best_epoch",
                    "stage_seconds")}
            if P is not Ps[-1]:
                continue
            for seed in (x for x in seeds if x != P.seed):      # the headline recipe again, other seeds
                trained = reseeded(st, seed, progress)
                label = f"{base} seed {seed}"
                models[label] = trained.checkpoint
                folder, _ = adapted_head(trained.checkpoint, sample.iloc[:max(clips)], P.image_runtime, seed,
                                         st.data["train"].arrays, progress)
                models[f"{label} + adapt {max(clips)} + replay"] = folder
    times["adapt_s"] = time.perf_counter() - t

    t = time.perf_counter()
    text = create_backbone("text", P0.text_backbone)
    teacher = create_backbone("asr", P0.asr_backbone)
    last = next(iter(stages[Ps[-1].preset].values()))
    test = last.manifest[last.manifest.split == "test"].reset_index(drop=True)
    val_synth = last.manifest[last.manifest.split == "val"].reset_index(drop=True)
    real = robustness.real_prompts("en", None, P0.seed, progress=progress)
    galleries = {"fotaq-val": validation_gallery(val, val_clips, teacher, progress),
                 "synthetic-val": ([str(audio_path(p)) for p in val_synth.path], list(val_synth.text)),
                 "asterisk-en": (list(real.path), list(real.text)),
                 "synthetic": ([str(audio_path(p)) for p in test.path], list(test.text))}
    loaded = {label: CLASP.from_pretrained(folder, image_runtime=P0.image_runtime, local_only=True)
              for label, folder in models.items()}
    results = {}
    for name, (paths, texts) in galleries.items():
        gallery = np.asarray(extract_text(text, texts, progress=False), dtype=np.float32)
        sims = {label: pipeline.similarity(embed_files(m, paths, progress), gallery) for label, m in loaded.items()}
        label, wer = None, None
        if name not in VALIDATION:          # validation chooses among heads (fotaq-val: the cascade made its labels)
            transcripts, emb = cascade.cascade_embeddings(teacher, text, paths, language="en", progress=progress)
            label = f"cascade ({P0.asr_backbone} + {P0.text_backbone})"
            sims[label] = pipeline.similarity(emb, gallery)
            wer = round(cascade.wer(texts, transcripts), 4)
        rows = score_systems(sims, label, None, seed=P0.seed)
        for row in rows:                        # an adapted head against the head it started from
            base = row["system"].split(" + adapt")[0]
            if base != row["system"]:
                row["vs_baseline"] = versus(sims[row["system"]], sims[base], seed=P0.seed)
        results[name] = {"n": len(paths), "cascade_wer": wer, "rows": rows}
    times["score_s"] = time.perf_counter() - t
    result = {"meta": {**machine_info(), "presets": list(presets), "n_sentences": n_sentences, "clips": clips,
                       "seeds": [P0.seed, *(x for x in seeds if x != P0.seed)],
                       "stage3": P0.stage3, "image_runtime": P0.image_runtime,
                       "sources": {"train": "Brown sentences by each preset's TTS voices (their train/val splits)",
                                   "adapt": "FOTAQ game dialogue clips (Whisper pseudo-transcripts, confident), "
                                            f"from the dialogues not held out ({len(pool)} clips)",
                                   "validation": f"FOTAQ: {VAL_FRACTION:.0%} of the dialogues, held out of every "
                                                 "adaptation (pseudo-transcripts as labels), and the last preset's "
                                                 "synthetic validation split; their mean HITS@1 chooses the recipe",
                                   "test": "Asterisk English prompts (sentence-like, deduplicated); the last "
                                           "preset's synthetic test split"},
                       "models": {k: display_path(v) for k, v in models.items()}, "adapt": reports,
                       **{k: round(v, 1) for k, v in times.items()}},
              "galleries": results}
    return result


def cell(row: dict | None, metric: str = "hits@1") -> str:
    if row is None:
        return "-"
    lo, hi = row[f"{metric}_ci"]
    return f"{row[metric]:.3f} [{lo:.3f}, {hi:.3f}]"


def diff(row: dict | None, key: str) -> str:
    if row is None or key not in row:
        return ""
    d = row[key]["hits@1"]
    return f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]"


SEED = re.compile(r" seed \d+")


def seed_summary(result: dict) -> dict:
    """``{system: {gallery: "mean ± sd [min, max]"}}`` for every system run with several seeds."""
    out = {}
    for g, data in result["galleries"].items():
        groups: dict = {}
        for r in data["rows"]:
            groups.setdefault(SEED.sub("", r["system"]), []).append(r["hits@1"])
        for label, vals in groups.items():
            if len(vals) > 1:
                out.setdefault(label, {})[g] = (f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1):.3f} "
                                                f"[{min(vals):.3f}, {max(vals):.3f}]")
    return out


def markdown(result: dict, source: str = "results/bench/adapt.json") -> str:
    """The docs block: every system's HITS@1 [95% CI] on each gallery, and on the real test gallery its paired
    difference with the head it was adapted from and with the cascade; all read from ``result``."""
    galleries = list(result["galleries"])
    by = {g: {r["system"]: r for r in result["galleries"][g]["rows"]} for g in galleries}
    systems = list(dict.fromkeys(s for g in galleries for s in by[g]))
    head = " | ".join(f"{g} ({result['galleries'][g]['n']})" for g in galleries)
    lines = [f"| system | {head} | asterisk-en vs its start | asterisk-en vs cascade |",
             "|---|" + "---|" * (len(galleries) + 2)]
    for s_ in systems:
        cells = " | ".join(cell(by[g].get(s_)) for g in galleries)
        real = by.get("asterisk-en", {}).get(s_)
        lines.append(f"| {s_} | {cells} | {diff(real, 'vs_baseline')} | {diff(real, 'vs_cascade')} |")
    summary = seed_summary(result)
    if summary:
        lines += ["", f"Over seeds {', '.join(map(str, result['meta']['seeds']))} (training and adaptation; one "
                  "corpus): HITS@1 mean ± standard deviation [lowest, highest].", "",
                  f"| system | {' | '.join(galleries)} |", "|---|" + "---|" * len(galleries)]
        for label, cells in summary.items():
            lines.append(f"| {label} | " + " | ".join(cells.get(g, "-") for g in galleries) + " |")
    meta = result["meta"]
    wers = ", ".join(f"{g} {result['galleries'][g]['cascade_wer']:.3f}" for g in galleries
                     if result["galleries"][g]["cascade_wer"] is not None)
    note = (f"HITS@1 [95% CI], full galleries (item counts in the header), from `{source}`: "
            f"`python -m claspkit.bench.adapt` at commit {meta.get('commit', '?')} on {meta.get('cpu', '?')} "
            f"({meta.get('cpus', '?')} cores; this run's stages, reused checkpoints costing nothing: training "
            f"{meta['train_s'] / 60:.0f} min, adaptation {meta['adapt_s'] / 60:.0f} min, scoring "
            f"{meta['score_s'] / 60:.0f} min). Cascade WER: {wers}. Paired differences resample the queries "
            "jointly. Seed 42 unless the row names another.")
    return "\n".join(lines) + "\n\n" + note


def plot(result: dict, path) -> None:
    """HITS@1 against FOTAQ clips adapted on, one line per head, the cascade as a line, one panel per gallery."""
    import matplotlib.pyplot as plt

    galleries = list(result["galleries"])
    cols = min(2, len(galleries))
    rows_n = -(-len(galleries) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(5.2 * cols, 3.3 * rows_n + 1.0), sharey=True, squeeze=False)
    for ax in axes.flat[len(galleries):]:
        ax.set_visible(False)
    for ax, g in zip(axes.flat, galleries):
        rows = {r["system"]: r for r in result["galleries"][g]["rows"]}
        bases = [s for s in rows if " + adapt" not in s and not s.startswith("cascade") and not SEED.search(s)]
        for base in bases:
            points = [(0, rows[base])] + [(n, rows[f"{base} + adapt {n}"]) for n in result["meta"]["clips"]
                                          if f"{base} + adapt {n}" in rows]
            xs = [x for x, _ in points]
            line = ax.errorbar(xs, [r["hits@1"] for _, r in points], capsize=2, marker="o", label=base,
                               yerr=np.array([[r["hits@1"] - r["hits@1_ci"][0], r["hits@1_ci"][1] - r["hits@1"]]
                                              for _, r in points]).T)
            n = max(result["meta"]["clips"])
            replay = rows.get(f"{base} + adapt {n} + replay")
            if replay is not None:
                ax.plot([n], [replay["hits@1"]], marker="s", mfc="none", ls="none", color=line[0].get_color(),
                        label=f"{base} + adapt {n} + replay")
        for s_, r in rows.items():
            if s_.startswith("cascade"):
                ax.axhline(r["hits@1"], color="k", ls="--", lw=1, label="cascade")
        ax.set_title(f"{g} ({result['galleries'][g]['n']} items)")
        ax.set_xlabel("real clips adapted on (FOTAQ)")
        ax.set_ylim(0, 1.02)
    for ax in axes[:, 0]:
        ax.set_ylabel("HITS@1 (full gallery)")
    handles, labels = axes.flat[-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.9 / (3.3 * rows_n + 1.0) + 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(result: dict) -> str:
    """What ``main`` prints: each gallery's rows (``bench.real_speech.format_rows``)."""
    from claspkit.bench.real_speech import format_rows

    parts = []
    for name, g in result["galleries"].items():
        wer = "" if g["cascade_wer"] is None else f", cascade WER {g['cascade_wer']:.3f}"
        parts.append(f"\n{name} ({g['n']} items{wer})\n{format_rows(g['rows'])}")
    return "\n".join(parts)


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def main(argv=None) -> int:
    from claspkit.bench.machine import run_and_save
    from claspkit.paths import project_root

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="small,voices", help="comma-separated; the first is the baseline")
    ap.add_argument("--sentences", type=int, default=3000, help="Brown sentences per corpus (the same ones)")
    ap.add_argument("--clips", type=_ints, default=(1000, 2000), help="FOTAQ clips to adapt on (nested samples)")
    ap.add_argument("--heads", default="paper,stats", help="head kinds: paper (Stage 3), stats (frame ensemble)")
    ap.add_argument("--val-clips", type=int, default=200, help="held-out FOTAQ clips in the validation gallery")
    ap.add_argument("--seeds", type=_ints, default=(), help="more seeds for the last preset's heads and their headline "
                                                 "adaptation (e.g. 43,44)")
    ap.add_argument("--out", default=str(project_root() / "results" / "bench" / "adapt.json"))
    args = ap.parse_args(argv)
    return run_and_save("bench.adapt", lambda: run(tuple(args.presets.split(",")), args.sentences,
                                                            args.clips, tuple(args.heads.split(",")),
                                                            args.val_clips, args.seeds), table, args.out)


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
