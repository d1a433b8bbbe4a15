"""The three ranking modes of ``claspkit search`` (clasp, transcript, hybrid) on the same long real recordings.

Notebook 09's long-recording test (``robustness.long_recordings``: Asterisk prompts joined with pauses) is indexed
with ``claspkit index --transcribe`` and every prompt's text is searched under each mode: HITS@1 and MRR of the
segment that overlaps the prompt most, and whether the top hit is that segment with both edges within
``tolerance_s`` of the prompt's boundaries, for the segment's own edges and the refined ones
(``claspkit.search.rank``). Indexing is timed with and without the transcription pass (x real time).

The hybrid's CLASP weight is chosen by ``choose_hybrid_weight`` on *validation* recordings: prompts disjoint
from the test sample notebook 09 draws (``split_prompts``), never on the recordings it is then scored on; the
choice is written with the data that made it to ``claspkit/search/hybrid_weight.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from claspkit.errors import ParamError
from claspkit.paths import atomic_write_text, display_path

__all__ = ["pick_weight", "WEIGHT_GRID", "split_prompts", "mode_scores", "evaluate_modes", "choose_hybrid_weight",
           "index_speed"]

WEIGHT_GRID = (0.0, 0.02, 0.05, *(round(0.1 * i, 1) for i in range(1, 11)))   # finer near 0: a weak CLASP


def split_prompts(all_real: pd.DataFrame, n_test: int, n_val: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(test, validation) prompts: the test sample is notebook 09's (``sample_indices(.., seed + 1)``), the
    validation sample is drawn from the rest (``seed + 2``), so no validation prompt is a test prompt."""
    from claspkit.experiments.pipeline import sample_indices

    test_idx = sample_indices(len(all_real), n_test, seed + 1)
    test = all_real.iloc[test_idx]
    rest = all_real.drop(index=all_real.index[test_idx])
    if len(rest) < n_val:
        raise ParamError(f"only {len(rest)} prompts are left for validation, {n_val} asked")
    return test, rest.iloc[sample_indices(len(rest), n_val, seed + 2)]


def _gold(index, truth: pd.DataFrame) -> np.ndarray:
    """Per prompt, the index row that overlaps it most (-1: none)."""
    files = np.array([index._paths[i] for i in index.file_of_row])
    s0, s1 = np.asarray(index.start_s, np.float64), np.asarray(index.end_s, np.float64)
    gold = np.full(len(truth), -1)
    for q, r in enumerate(truth.itertuples()):
        ov = np.where(files == r.file, np.clip(np.minimum(s1, r.end_s) - np.maximum(s0, r.start_s), 0, None), 0.0)
        if ov.max(initial=0) > 0:
            gold[q] = int(np.argmax(ov))
    return gold


def mode_scores(index, truth: pd.DataFrame, modes=("clasp", "transcript", "hybrid"), weight: float | None = None,
                tolerance_s: float = 0.5, bounds: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Per mode, per prompt: reciprocal rank and hit@1 of its gold segment, and (``bounds``) whether the top hit is
    gold with both edges within ``tolerance_s``, and its mean edge error in seconds (NaN when the top hit is wrong),
    for each way of drawing the edges (the segment's, its words', a finer VAD cut's)."""
    from claspkit.search.text import text_encoder
    from claspkit.search.rank import rank_rows, transcripts_of, vad_bounds, word_bounds

    store, row_map = transcripts_of(index)
    gold = _gold(index, truth)
    q_all = np.asarray(text_encoder(index).encode(list(truth["text"])), np.float32)
    q_all /= np.linalg.norm(q_all, axis=1, keepdims=True)
    edges = truth[["start_s", "end_s"]].to_numpy()
    root = index.audio_root
    out = {}
    for mode in modes:
        res = {k: np.zeros(len(truth)) for k in ("mrr", "hits@1")}
        if bounds:
            for how in ("segment", "words", "finer VAD"):
                res[f"timestamps within {tolerance_s:g} s ({how})"] = np.zeros(len(truth))
                res[f"median edge error s ({how})"] = np.full(len(truth), np.nan)
        for i, g in enumerate(gold):
            if g < 0:
                continue
            rows, _ = rank_rows(index, q_all[i:i + 1], len(index), mode, store, row_map, weight)
            rank = 1 + int(np.flatnonzero(rows == g)[0])
            res["mrr"][i], res["hits@1"][i] = 1.0 / rank, float(rank == 1)
            if not bounds or rank != 1:
                continue
            seg = (float(index.start_s[g]), float(index.end_s[g]))
            ways = {"segment": seg,
                    "finer VAD": vad_bounds(root / index._paths[index.file_of_row[g]] if root else None, *seg)}
            if row_map is not None and row_map[g] >= 0:
                ways["words"] = word_bounds(store.entries([row_map[g]])[0]["words"], *seg)
            for how, (lo, hi) in ways.items():
                err = (abs(lo - edges[i, 0]), abs(hi - edges[i, 1]))
                res[f"timestamps within {tolerance_s:g} s ({how})"][i] = float(max(err) <= tolerance_s)
                res[f"median edge error s ({how})"][i] = float(np.mean(err))
        out[mode] = res
    return out


def index_speed(folder, checkpoint, index_dir, asr: str) -> dict:
    """Index ``folder`` twice from scratch, without and then with ``--transcribe asr``: x real time of each
    (audio seconds per wall second, model loading excluded as in ``BuildSummary.rtf``)."""
    import shutil

    from claspkit.search.query import build_index

    index_dir = Path(index_dir)
    speeds = {}
    for label, transcribe in (("without --transcribe", None), (f"with --transcribe {asr}", asr)):
        shutil.rmtree(index_dir, ignore_errors=True)
        s = build_index(folder, checkpoint, index_dir, progress=False, transcribe=transcribe)
        speeds[label] = {"x_real_time": round(s.rtf, 1), "audio_s": round(s.audio_seconds, 1),
                         "wall_s": round(s.wall_seconds - s.timings["load"], 1)}
        if s.transcripts is not None:
            speeds[label]["transcription_pass_x_real_time"] = round(s.transcripts.rtf, 1)
    return speeds


def evaluate_modes(truth: pd.DataFrame, checkpoint, index_dir, asr: str, weight: float | None = None,
                   tolerance_s: float = 0.5, bootstrap: int = 200, seed: int = 42, time_it: bool = True
                   ) -> tuple[pd.DataFrame, dict]:
    """Index ``truth.attrs['folder']`` with ``--transcribe asr`` (timed with and without it when ``time_it``) and
    score the three modes on the same prompts: (table with 95% bootstrap CIs, facts)."""
    from claspkit.evaluation.metrics import bootstrap_ci
    from claspkit.search.index import load_index
    from claspkit.search.query import build_index, clear_caches

    folder = Path(truth.attrs["folder"])
    clear_caches()
    speed = index_speed(folder, checkpoint, index_dir, asr) if time_it else {}
    if not time_it:
        build_index(folder, checkpoint, index_dir, progress=False, transcribe=asr)
    index = load_index(index_dir)
    scores = mode_scores(index, truth, weight=weight, tolerance_s=tolerance_s)
    rows = []
    for mode, res in scores.items():
        row = {"rank": mode, "n": len(truth)}
        for metric, vals in res.items():
            if metric.startswith("median edge error"):         # median over the prompts whose top hit is right
                row[metric] = f"{np.nanmedian(vals):.3f}" if np.isfinite(vals).any() else "-"
                continue
            lo, hi = bootstrap_ci(vals, n=bootstrap, seed=seed)
            row[metric] = f"{vals.mean():.3f} [{lo:.3f}, {hi:.3f}]"
        rows.append(row)
    from claspkit.search.rank import hybrid_weight

    facts = {"prompts": len(truth), "segments": len(index), "files": len(index.files), "asr": asr,
             "checkpoint": display_path(checkpoint), "indexing": speed,
             "clasp_weight": weight if weight is not None else hybrid_weight()["clasp_weight"]}
    return pd.DataFrame(rows).set_index("rank"), facts


def pick_weight(by_weight: dict) -> float:
    """The weight with the best validation MRR, then HITS@1; among ties the smallest: the transcripts find real
    speech far more often than CLASP, so CLASP's votes count only where validation shows they help (with the tiny
    head, 0, 0.02 and 0.05 tied at MRR 1.0 on validation, and 0.05 then cost 0.033 HITS@1 on notebook 09's test)."""
    return min(map(float, by_weight), key=lambda w: (-by_weight[f"{w:g}"]["mrr"], -by_weight[f"{w:g}"]["hits@1"], w))


def choose_hybrid_weight(val_truth: pd.DataFrame, checkpoint, index_dir, asr: str, data_note: str,
                         out: Path | None = None, grid=WEIGHT_GRID) -> dict:
    """The CLASP weight of ``hybrid`` with the best MRR on the validation recordings ``val_truth`` (``pick_weight``),
    written with the data that chose it to ``out`` (default: the file ``claspkit.search.rank`` reads)."""
    from claspkit.search.index import load_index
    from claspkit.search.query import build_index, clear_caches
    from claspkit.search.rank import RRF_K, WEIGHT_FILE

    clear_caches()
    build_index(Path(val_truth.attrs["folder"]), checkpoint, index_dir, progress=False, transcribe=asr)
    index = load_index(index_dir)
    table = {}
    for w in grid:
        res = mode_scores(index, val_truth, modes=("hybrid",), weight=w, bounds=False)["hybrid"]
        table[f"{w:g}"] = {"mrr": round(float(res["mrr"].mean()), 4), "hits@1": round(float(res["hits@1"].mean()), 4)}
    info = {"clasp_weight": pick_weight(table), "rrf_k": RRF_K,
            "chosen_by": {"function": "claspkit.evaluation.transcript_search.choose_hybrid_weight",
                          "data": data_note, "prompts": len(val_truth), "segments": len(index),
                          "checkpoint": display_path(checkpoint), "asr": asr, "criterion": "validation MRR",
                          "by_weight": table}}
    out = Path(out) if out is not None else Path(__file__).resolve().parents[1] / "search" / WEIGHT_FILE
    atomic_write_text(out, json.dumps(info, indent=1, sort_keys=True) + "\n")
    return info
