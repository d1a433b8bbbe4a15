"""`python -m claspkit.bench_retrieval`: CLASP heads against transcribe-then-search, one test set, one run.

Quality is judged on the full gallery (every test utterance against every test transcript, speech ->
text), never on 5 candidates, and always beside the cascade measured on the same items in the same run.
For each system it prints HITS@1 and MRR with seeded bootstrap 95% CIs (and each head's validation MRR,
by which recipes are compared), and the seconds per utterance that turn a waveform into the searched
vector (the text query side is the same for every system and left out), all timed in one alternation
with the cascade on the same utterances (``asr.measure_pipelines``), as ratios.

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

__all__ = ["METRICS", "HEADS", "cascade_similarity", "run", "quality_table", "speed_table", "format_rows", "main"]

METRICS = ("hits@1", "mrr")
# The CLASP heads a run can score, in the order of its table.
HEADS = ("paper", "attention", "stats")


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


def run(preset="small", n_timing: int = 24, attention: dict | None = None, overrides: dict | None = None,
        scaling=(), progress: bool = True, stats: dict | None = None, heads=HEADS,
        scaling_head: str = "attention") -> dict:
    """Train or reuse the heads, transcribe the test split, score them and the cascade and time them.

    ``preset`` is a preset name or loaded ``Params`` (a notebook's); ``overrides`` change its knobs for
    every system, ``attention`` only the attention head's, ``stats`` only the stats head's. ``heads`` picks
    the CLASP heads (default all of ``HEADS``; the attention head alone trains for about an hour on medium).
    ``scaling`` lists training-set sizes at which ``scaling_head`` (a frame head among ``heads``) is also
    trained (nested subsets) and scored on the same gallery: ``rows_scaling``.
    """
    from claspkit.experiments import pipeline
    from claspkit.config import load_params
    from claspkit.encoders.backbones import create_backbone
    from claspkit.evaluation import asr, metrics
    from claspkit.model.clasp import CLASP
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
    text_encoder = create_backbone("text", Q.text_backbone)
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
                             vs_cascade=metrics.versus(sim, sim_cascade, P.bootstrap, P.seed)))
    rows.append(_quality(P, f"ASR cascade ({P.asr_backbone})", sim_cascade, kind="cascade", wer=round(wer, 4)))
    scaling_rows = []
    for n in sorted(set(scaling)):
        st = pipeline.frame_stage(P, scaling_head, "contrastive", progress=progress, train_items=int(n),
                                  **frame_knobs[scaling_head])
        scaling_rows.append(_quality(P, f"{scaling_head}, {n} training pairs", _test_similarity(st), kind="scaling",
                                     train_items=int(n), **_training(st)))
    if scaling:
        full = stages[scaling_head]
        scaling_rows.append({**rows[heads.index(scaling_head)],
                             "system": f"{scaling_head}, {len(full.data['train'])} training pairs",
                             "train_items": len(full.data["train"])})

    # speed: every head and the cascade timed in one alternation, batch by batch, on the same utterances
    waves = pipeline.audio_paths(first.manifest, test.ids[:n_timing])
    models = {key: CLASP.from_pretrained(st.trained.checkpoint) for key, (_, st) in systems.items()}
    lead, *rest = models
    summ = asr.measure_pipelines(models[lead], asr_model, waves, language="en",
                                 others={k: models[k] for k in rest})["summary"].set_index("kind")
    times = {key: float(summ.loc["clasp" if key == lead else key, "s_per_utt"]) for key in models}
    times["cascade"] = float(summ.loc["cascade", "s_per_utt"])
    for r in rows:
        r["s_per_utt"] = times[r["kind"]]
        r["speedup_vs_cascade"] = times["cascade"] / times[r["kind"]]
    meta = {"n_timing": min(n_timing, len(test)), "train_or_reuse_s": round(train_s, 1),
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
    """Seconds per utterance and the ratio to the cascade (wall-clock: varies with the machine)."""
    return pd.DataFrame([{"system": r["system"], "s/utt": round(r["s_per_utt"], 3),
                          "x faster than cascade": round(r["speedup_vs_cascade"], 2)} for r in rows]
                        ).set_index("system")


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
    ap = argparse.ArgumentParser(prog="python -m claspkit.bench_retrieval", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small", help="params/<preset>.yaml (default: small)")
    ap.add_argument("--n-timing", type=int, default=24, help="test utterances timed per pipeline (default: 24)")
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
          f"speed on {out['meta']['n_timing']} utterances")
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
