"""`python -m claspkit.bench.retrieval`: CLASP heads against transcribe-then-search, one test set, one run.

Quality is judged on the full gallery (every test utterance against every test transcript, speech ->
text), never on 5 candidates, and always beside the cascade measured on the same items in the same run.
For each system it prints HITS@1 and MRR with seeded bootstrap 95% CIs (and each head's validation MRR,
by which recipes are compared), and the seconds per utterance that turn a waveform into the searched
vector (the text query side is the same for every system and left out), all timed in one alternation
with the cascade on the same utterances (``asr.measure_pipelines``), as ratios. The timed utterances are a
seeded random sample of the test split (the manifest's first ones are all news, longer than most), timed one
at a time and in batches: medians with p10/p90 per utterance and ratios with bootstrap CIs. Each head is
timed with the image CNN runtime its features were scored with, and every head must share the cascade's
text encoder (one text space, or the comparison measures the spaces).

Systems: ``paper`` = Stage 3's CLASP (the best Stage-2 configuration, contrastive loss; notebook 04's
checkpoint, reused or trained), ``attention`` = the attention head over frame features
(``pipeline.attention_stage``), ``stats`` = the frames' mean and std through a wide MLP
(``pipeline.stats_stage``), ``cascade`` = the preset's ASR model, transcripts embedded by the same
text encoder. Results go to ``runs/<preset>/results/retrieval_bench.json``.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd
import yaml

from claspkit.errors import ClaspkitError, ParamError, choices_hint

__all__ = ["METRICS", "HEADS", "N_TIMING", "TIMING_BATCH", "cascade_similarity", "time_systems", "run", "quality_table",
           "speed_table", "format_rows", "main"]

METRICS = ("hits@1", "mrr")
# The CLASP heads a run can score, in the order of its table.
HEADS = ("paper", "attention", "stats")
N_TIMING = 100       # test utterances timed per pipeline (all of them when the split has fewer)
TIMING_BATCH = 8     # the batched timing's batch (measure_pipelines' default); the other timing is one at a time


def _quality(P, system: str, sim: np.ndarray, **fields) -> dict:
    from claspkit.evaluation import metrics

    rep = metrics.retrieval_report(sim, protocol="full", threshold=P.relevance_threshold, n_boot=P.bootstrap,
                                   seed=P.seed)
    return {"system": system, **fields, "n": rep["n"], **{m: rep[m] for m in METRICS},
            **{f"{m}_ci": rep[f"{m}_ci"] for m in METRICS}}


def cascade_similarity(P, stage, asr_model, text_encoder, progress: bool = True) -> tuple[np.ndarray, float]:
    """(test speech x test text cosines, WER) of the cascade on the test split of ``stage``."""
    from claspkit.experiments import pipeline
    from claspkit.evaluation import asr

    test = stage.data["test"]
    paths = pipeline.audio_paths(stage.manifest, test.ids)
    transcripts, emb = asr.cascade_embeddings(asr_model, text_encoder, paths, language="en", progress=progress)
    return pipeline.similarity(emb, test.arrays["text"]), asr.wer(test.texts, transcripts)


def _test_similarity(stage) -> np.ndarray:
    """A trained head's test speech x test text cosines (the full gallery)."""
    from claspkit.experiments import pipeline

    test = stage.data["test"]
    return pipeline.similarity(pipeline.speech_embeddings(stage.trained, test), test.arrays["text"])


def _training(stage) -> dict:
    """What a result row records of a head's training: its budget used and its validation MRR."""
    from claspkit.experiments import pipeline

    return {"best_epoch": stage.trained.best_epoch, "epochs_run": len(stage.trained.history),
            "val_mrr": round(pipeline.validation_mrr(stage.trained, stage.data["val"]), 4)}


def _heads(heads) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(heads))
    unknown = [h for h in chosen if h not in HEADS]
    if unknown or not chosen:
        raise ParamError(f"heads: {choices_hint(unknown[0], HEADS) if unknown else 'name at least one'} "
                         f"(e.g. heads=('stats', 'paper'))")
    return tuple(h for h in HEADS if h in chosen)


def _training_order(heads) -> list[str]:
    """Frame heads first: their pass over the corpus also fills the mean-pooled cache the paper head reads."""
    return sorted(heads, key=lambda h: h == "paper")


def _one_text_space(cascade: str, heads: dict) -> str:
    """``cascade``, the text backbone the cascade embeds its transcripts with, when every head (name -> its text
    backbone) maps speech into that same space; a ParamError naming both backbones otherwise."""
    other = {h: t for h, t in heads.items() if t != cascade}
    if other:
        h, t = next(iter(other.items()))
        raise ParamError(f"the {h} head maps speech into the {t} text space but the cascade embeds its transcripts "
                         f"with {cascade} (Stage 3's text backbone): scores across two text spaces compare the "
                         f"spaces, not the systems. Drop text_backbone={t} from the {h} head's knobs (--{h} / {h}=), "
                         f"or run notebook 03's Stage 2 with {t} so the best pair uses it")
    return cascade


def _timing_sample(n_items: int, n: int, seed: int) -> list[int]:
    """A seeded random sample of ``n`` test positions (all of them, shuffled, when there are fewer): the manifest
    orders items by category, so its first ones are one genre's (news, longer than average)."""
    if n < 1:
        raise ParamError(f"n_timing must be >= 1 (default {N_TIMING}), got {n}")
    return np.random.default_rng(seed).permutation(n_items)[:n].tolist()


def _timed_model(stage):
    """The head as ``claspkit index`` would run it, with the image CNN runtime its scored features came from."""
    from claspkit.model.clasp import CLASP

    return CLASP.from_pretrained(stage.trained.checkpoint, image_runtime=stage.P.image_runtime)


def _spread(seconds: np.ndarray, sizes: np.ndarray, cascade: np.ndarray, n_boot: int, seed: int) -> dict:
    """One pipeline's timing at one batch size, from its per-batch wall times: mean, median and p10/p90 seconds per
    utterance (a batch's time shared by its utterances) and its speed-up over the cascade on the same batches."""
    from claspkit.evaluation.metrics import ratio_ci

    per_utt = np.repeat(seconds / sizes, sizes)
    p10, median, p90 = np.percentile(per_utt, [10, 50, 90])
    return {"s_per_utt": float(seconds.sum() / sizes.sum()), "median_s": float(median), "p10_s": float(p10),
            "p90_s": float(p90), "speedup_vs_cascade": float(cascade.sum() / seconds.sum()),
            "speedup_vs_cascade_ci": list(ratio_ci(cascade, seconds, n_boot, seed))}


def time_systems(models: dict, asr_model, paths, n_boot: int, seed: int) -> dict:
    """``{kind: {"batch_1": spread, "batch_<TIMING_BATCH>": spread}}`` for every head and the cascade, each batch
    size timed in one alternation (``asr.measure_pipelines``) on the same utterances, loaded once beforehand."""
    from claspkit.data.audio import load_audio
    from claspkit.evaluation import asr

    waves = [load_audio(p) for p in paths]
    lead, *rest = models
    out = {kind: {} for kind in (*models, "cascade")}
    for batch in (1, TIMING_BATCH):
        res = asr.measure_pipelines(models[lead], asr_model, waves, batch_size=batch, language="en",
                                    others={k: models[k] for k in rest})
        sizes = np.asarray(res["batch_sizes"])
        secs = {kind: np.asarray(res["batch_seconds"]["clasp" if kind == lead else kind]) for kind in out}
        for kind in out:
            out[kind][f"batch_{batch}"] = _spread(secs[kind], sizes, secs["cascade"], n_boot, seed)
    return out


def run(preset="small", n_timing: int = N_TIMING, attention: dict | None = None, overrides: dict | None = None,
        scaling=(), progress: bool = True, stats: dict | None = None, heads=HEADS,
        scaling_head: str = "attention") -> dict:
    """Train or reuse the heads, transcribe the test split, score them and the cascade and time them.

    ``preset`` is a preset name or loaded ``Params`` (a notebook's); ``overrides`` change its knobs for
    every system, ``attention`` only the attention head's, ``stats`` only the stats head's. ``heads`` picks
    the CLASP heads (default all of ``HEADS``; the attention head alone trains for about an hour on medium).
    ``scaling`` lists training-set sizes at which ``scaling_head`` (a frame head among ``heads``) is also
    trained (nested subsets) and scored on the same gallery: ``rows_scaling``. ``n_timing`` test utterances,
    a seeded random sample, are timed one at a time and in batches of ``TIMING_BATCH``.
    """
    from claspkit.experiments import pipeline
    from claspkit.config import load_params
    from claspkit.encoders.backbones import create_backbone
    from claspkit.evaluation import metrics
    from claspkit.evaluation.results import write_stage

    heads = _heads(heads)
    if scaling and scaling_head not in set(heads) - {"paper"}:
        raise ParamError(f"scaling trains the {scaling_head!r} head at each size; pick a frame head this run scores "
                         f"({', '.join(h for h in heads if h != 'paper') or 'none: add attention or stats'})")
    if isinstance(preset, str):
        P = load_params(preset, overrides or {})
    else:
        P = pipeline.with_overrides(preset, **(overrides or {}))
    t0 = time.perf_counter()
    frame_knobs = {"attention": attention or {}, "stats": stats or {}}
    shared = pipeline.stage3_config(P)["text_backbone"]
    _one_text_space(shared, {h: frame_knobs.get(h, {}).get("text_backbone", shared) for h in heads})  # before training
    stages = {h: (pipeline.stage3(P, "contrastive", progress=progress) if h == "paper" else
                  pipeline.frame_stage(P, h, "contrastive", progress=progress, **frame_knobs[h]))
              for h in _training_order(heads)}
    train_s = time.perf_counter() - t0
    first = stages[_training_order(heads)[0]]
    test = first.data["test"]
    if any(list(test.ids) != list(st.data["test"].ids) for st in stages.values()):
        raise ClaspkitError("the heads were scored on different test items: their corpora differ")
    Q = first.P
    asr_model = create_backbone("asr", P.asr_backbone)
    text_encoder = create_backbone("text", _one_text_space(shared, {h: st.P.text_backbone for h, st in stages.items()}))
    sim_cascade, wer = cascade_similarity(P, first, asr_model, text_encoder, progress=progress)
    labels = {"paper": lambda st: f"CLASP {st.P.fusion} (paper head, mean-pooled)",
              "attention": lambda st: f"CLASP attention ({st.P.attention_layers} layer, frames)",
              "stats": lambda st: (f"CLASP stats (frames' mean + std, {st.P.stats_hidden}-wide MLP"
                                   + (f" x{st.P.stats_members}" if st.P.stats_members > 1 else "")
                                   + (f", smoothing {st.P.label_smoothing:g}" if st.P.label_smoothing else "") + ")")}
    systems = {h: (labels[h](stages[h]), stages[h]) for h in heads}
    rows = []
    for key, (label, st) in systems.items():
        sim = _test_similarity(st)
        rows.append(_quality(P, label, sim, kind=key, fusion=st.P.fusion, branches=st.P.branches, **_training(st),
                             vs_cascade=metrics.versus(sim, sim_cascade, P.bootstrap, P.seed),
                             text_backbone=st.P.text_backbone))
    rows.append(_quality(P, f"ASR cascade ({P.asr_backbone})", sim_cascade, kind="cascade", wer=round(wer, 4),
                         text_backbone=text_encoder.name))
    scaling_rows = []
    for n in sorted(set(scaling)):
        st = pipeline.frame_stage(P, scaling_head, "contrastive", progress=progress, train_items=int(n),
                                  **frame_knobs[scaling_head])
        scaling_rows.append(_quality(P, f"{scaling_head}, {n} training pairs", _test_similarity(st), kind="scaling",
                                     train_items=len(st.data["train"]), **_training(st)))
    if scaling:  # the full-size point: the head trained on the whole split, scored like the others
        full = stages[scaling_head]
        scaling_rows.append(_quality(P, f"{scaling_head}, {len(full.data['train'])} training pairs",
                                     _test_similarity(full), kind="scaling", train_items=len(full.data["train"]),
                                     **_training(full)))

    # speed: every head and the cascade timed in one alternation, batch by batch, on the same random test utterances
    order = _timing_sample(len(test), n_timing, P.seed)
    timing_ids = [test.ids[i] for i in order]
    models = {key: _timed_model(st) for key, (_, st) in systems.items()}
    timing = time_systems(models, asr_model, pipeline.audio_paths(first.manifest, timing_ids), P.bootstrap, P.seed)
    for r in rows:
        batched = timing[r["kind"]][f"batch_{TIMING_BATCH}"]
        r["s_per_utt"] = batched["s_per_utt"]
        r["speedup_vs_cascade"] = batched["speedup_vs_cascade"]
        r["speedup_vs_cascade_ci"] = batched["speedup_vs_cascade_ci"]
        r["timing"] = timing[r["kind"]]
        if r["kind"] in models and "image" in models[r["kind"]].encoders:
            r["timed_image_cache_id"] = models[r["kind"]].encoders["image"].cache_id
    meta = {"n_timing": len(timing_ids), "timing_ids": timing_ids, "timing_batch": TIMING_BATCH,
            "timing_sample": f"seeded random sample of the test split (seed {P.seed})",
            "train_or_reuse_s": round(train_s, 1),
            "heads": list(heads), "attention_overrides": attention or {}, "stats_overrides": stats or {},
            "speech_backbone": Q.speech_backbone, "text_backbone": Q.text_backbone, "chosen_by": first.chosen_by}
    meta["scaling"] = scaling_rows if scaling else []
    if scaling:
        meta["scaling_head"] = scaling_head
    path = write_stage(P.preset, "retrieval_bench", rows, meta=meta)
    return {"rows": rows, "meta": meta, "path": path, "rows_scaling": scaling_rows if scaling else []}


def quality_table(rows: list[dict]) -> pd.DataFrame:
    """HITS@1 and MRR with their CIs, one row per system (deterministic: what nbval checks)."""
    return pd.DataFrame([{"system": r["system"], "n": r["n"],
                          **{m: f"{r[m]:.3f} [{r[f'{m}_ci'][0]:.3f}, {r[f'{m}_ci'][1]:.3f}]" for m in METRICS}}
                         for r in rows]).set_index("system")


def speed_table(rows: list[dict]) -> pd.DataFrame:
    """Seconds per utterance and the ratio to the cascade (wall-clock: varies with the machine); with a row's
    ``timing``, the median [p10, p90] seconds per utterance and the ratio [95% CI], one at a time and batched."""
    def one(r):
        out = {"system": r["system"], "s/utt": round(r["s_per_utt"], 3),
               "x faster than cascade": round(r["speedup_vs_cascade"], 2)}
        for batch, t in r.get("timing", {}).items():
            lo, hi = t["speedup_vs_cascade_ci"]
            out[f"median s/utt [p10, p90], {batch}"] = f"{t['median_s']:.3f} [{t['p10_s']:.3f}, {t['p90_s']:.3f}]"
            out[f"x faster [95% CI], {batch}"] = f"{t['speedup_vs_cascade']:.2f} [{lo:.2f}, {hi:.2f}]"
        return out

    return pd.DataFrame([one(r) for r in rows]).set_index("system")


def format_rows(rows: list[dict]) -> str:
    """The printed table: one line per system, CIs in brackets, speed as a ratio to the cascade."""
    return quality_table(rows).join(speed_table(rows)).to_string()


def _override(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"write KEY=VALUE (e.g. branches=speech), got {text!r}")
    parsed = yaml.safe_load(value)
    if isinstance(parsed, str):  # YAML 1.1 reads 3e-4 as a string
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return key, parsed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m claspkit.bench.retrieval", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small", help="params/<preset>.yaml (default: small)")
    ap.add_argument("--n-timing", type=int, default=N_TIMING,
                    help=f"test utterances timed per pipeline, a seeded random sample (default: {N_TIMING})")
    ap.add_argument("--attention", type=_override, action="append", default=[], metavar="KEY=VALUE",
                    help="a knob for the attention head, e.g. --attention branches=speech --attention lr=3e-4")
    ap.add_argument("--stats", type=_override, action="append", default=[], metavar="KEY=VALUE",
                    help="a knob for the stats head, e.g. --stats stats_hidden=2048")
    ap.add_argument("--scaling", default="", metavar="N,N,...",
                    help="also train a frame head on nested subsets of N training pairs (a data-scaling curve)")
    ap.add_argument("--scaling-head", default="attention", choices=("attention", "stats"),
                    help="the head --scaling trains (default: attention)")
    ap.add_argument("--heads", default=",".join(HEADS), metavar="HEAD,...",
                    help=f"the CLASP heads to train and score (default: {','.join(HEADS)}); the attention head "
                         "alone takes about an hour on medium")
    args = ap.parse_args(argv)
    try:
        scaling = [int(x) for x in args.scaling.split(",") if x.strip()]
    except ValueError:
        print(f"bench_retrieval: --scaling takes comma-separated integers, got {args.scaling!r}", file=sys.stderr)
        return 2
    try:
        out = run(args.preset, args.n_timing, dict(args.attention), scaling=scaling, stats=dict(args.stats),
                  heads=[h.strip() for h in args.heads.split(",") if h.strip()], scaling_head=args.scaling_head)
    except ClaspkitError as e:
        print(f"bench_retrieval: {e}", file=sys.stderr)
        return 2
    print(f"full gallery, speech -> text, {out['rows'][0]['n']} test items of preset {args.preset!r} "
          f"({out['meta']['speech_backbone']} -> {out['meta']['text_backbone']}); 95% bootstrap CIs; "
          f"speed on {out['meta']['n_timing']} random test utterances, batched ({TIMING_BATCH}) and one at a time")
    print(format_rows(out["rows"]))
    print("validation MRR (full validation gallery: what a recipe is chosen by, never the test split): "
          + "; ".join(f"{r['kind']} {r['val_mrr']:.3f}" for r in out["rows"] if "val_mrr" in r))
    from claspkit.evaluation import report

    print("paired with the cascade on the same queries (difference, 95% bootstrap CI over queries; queries only "
          "one of the two ranks first):")
    for r in out["rows"]:
        if "vs_cascade" in r:
            print("  " + report.versus_line(r["kind"], r["vs_cascade"]))
    if out["rows_scaling"]:
        print(f"\ndata scaling of the {args.scaling_head} head (same test gallery):")
        print(quality_table(out["rows_scaling"]).to_string())
    print(f"results: {out['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
