"""Table 2 regenerated: every stage's result file beside the paper's published numbers.

Each notebook writes its rows with ``claspkit.evaluation.results.write_stage``; this module reads them all,
matches each of our rows to the paper row it stands in for, and puts the paper's numbers and the
deltas (ours - paper) beside ours. Nothing here is typed by hand except the paper's numbers
(``claspkit.evaluation.paper``) and the role mapping below.

How a row of ours finds its paper row (explicit, by role, the same for every preset)
--------------------------------------------------------------------------------------
The offline preset has none of the paper's backbones, so a system maps to the paper row whose
*role* it plays: the stronger speech encoder for HuBERT, the weaker for wav2vec2, the main
multilingual text encoder for LaBSE and the alternative for XLM-R:

=========  =====================================  ===========================================
stage      ours                                   paper row
=========  =====================================  ===========================================
1          branches image / speech / combined     Spectrogram-Based / Self-Supervised Audio /
                                                  Combined Audio-Spectrogram Model
2          speech whisper-base, hubert-large      HuBERT
           speech whisper-tiny.en, wav2vec2-base  Wav2Vec2
           text e5-small-multilingual, labse      LaBSE
           text muse-multilingual, xlmr-para.     XLM-RoBERTa
           fusion concat / gating                 Concatenation / Gating
3          loss contrastive / huber               CLASP (ours) / LASP (ours)
           cascade with asr_backbone X            "<role of X> ASR" (whisper-base: HuBERT ASR)
4          CLASP, text queries in fa/de/fr/zh     Persian / German / French / Chinese
=========  =====================================  ===========================================

A row is described by its fields when it has them (``branches``, ``speech_backbone``,
``text_backbone``, ``fusion``, ``loss``, ``asr_backbone``, ``kind`` = clasp|cascade, ``language``,
``direction``), otherwise by the words of its ``system`` name. The paper's numbers go only beside
rows scored with the paper's protocol for that stage (candidates for stages 1-2, full gallery for
3-4) and, in stage 4, only beside CLASP rows with text queries (the paper's text -> speech
direction). Rows without a counterpart get blanks, never invented numbers; paper rows that no row
of ours matches are listed with blank 'ours' columns; a stage with no result file is listed as
missing.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from claspkit.constants import FRAME_FUSIONS
from claspkit.evaluation import paper
from claspkit.paths import atomic_write_text, display_path, figures_dir
from claspkit.evaluation.results import read_all, results_dir

__all__ = [
    "METRICS", "SPEECH_ROLE", "TEXT_ROLE", "FUSION_ROLE", "BEYOND_FUSIONS", "BRANCH_ROLE", "LOSS_ROLE",
    "LANG_ROLE", "PAPER_DIRECTION", "stage_number", "paper_system", "table2", "markdown_table",
    "table2_markdown", "paper_view", "stage_table", "write_table2", "efficiency_summary", "versus_line", "beyond_paper",
    "readme_results", "ROBUSTNESS_SECTIONS", "robustness_markdown",
]

METRICS = paper.METRICS
SPEECH_ROLE = {"hubert-large-ls960-ft": "HuBERT", "whisper-base": "HuBERT",
               "wav2vec2-base-960h": "Wav2Vec2", "whisper-tiny.en": "Wav2Vec2"}
TEXT_ROLE = {"labse": "LaBSE", "e5-small-multilingual": "LaBSE",
             "xlmr-paraphrase": "XLM-RoBERTa", "muse-multilingual": "XLM-RoBERTa"}
FUSION_ROLE = {"concat": "Concatenation", "gating": "Gating"}
BEYOND_FUSIONS = FRAME_FUSIONS  # heads the paper does not have: reported beside it, never matched to its rows
BRANCH_ROLE = {"image": "Spectrogram-Based Model", "speech": "Self-Supervised Audio Model",
               "combined": "Combined Audio-Spectrogram Model"}
LOSS_ROLE = {"contrastive": "CLASP (ours)", "huber": "LASP (ours)"}
LANG_ROLE = {"fa": "Persian", "de": "German", "fr": "French", "zh": "Chinese"}

_LANG_WORDS = {"persian": "fa", "farsi": "fa", "german": "de", "french": "fr", "chinese": "zh", "mandarin": "zh"}
_STAGE_RE = re.compile(r"stage[\s_-]*(\d)", re.I)
PAPER_DIRECTION = {1: "s2t", 2: "s2t", 3: "s2t", 4: "t2s"}  # speech rows x text columns; stage 4 queries with text
_COLUMNS = ["stage", "system", "protocol", "direction", "paper_system", "n", *METRICS, *(f"paper_{m}" for m in METRICS),
            *(f"delta_{m}" for m in METRICS), "source", "note"]


# ------------------------------------------------------------------------------------- matching
def stage_number(value) -> int | None:
    """1 for 'stage1', 'stage1_modalities' or 1; None for files that are not Table 2 stages."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _STAGE_RE.search(str(value or ""))
    return int(m.group(1)) if m else None


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", str(text).lower()))


def _find(row: dict, field: str, table: dict) -> str | None:
    """The row's value for ``field`` if it is a key of ``table``, else a key named in its system text."""
    value = row.get(field)
    if isinstance(value, str) and value.lower() in table:
        return value.lower()
    system = str(row.get("system", "")).lower()
    hits = [k for k in sorted(table, key=len, reverse=True) if k in system]
    return hits[0] if hits else None


def _is_cascade(row: dict) -> bool:
    kind = str(row.get("kind", "")).lower()
    if kind:
        return kind in ("cascade", "asr")
    return bool(_words(row.get("system", "")) & {"asr", "cascade", "transcripts", "transcript"})


def _direction(row: dict) -> str | None:
    """'t2s' or 's2t' from a direction field like 'text->speech', 'speech2text', 't2s'."""
    d = str(row.get("direction", "")).lower().replace(" ", "")
    if not d:
        return None
    if d in ("t2s", "ts") or re.match(r"text.*speech", d):
        return "t2s"
    if d in ("s2t", "st") or re.match(r"speech.*text", d):
        return "s2t"
    return None


def paper_system(row: dict) -> str | None:
    """The paper's Table 2 row that this result row stands in for (None: no counterpart)."""
    stage = stage_number(row.get("stage"))
    words = _words(row.get("system", ""))
    if stage == 1:
        b = row.get("branches")
        if b not in BRANCH_ROLE:
            if "combined" in words or {"speech", "image"} <= words:
                b = "combined"
            elif words & {"spectrogram", "image"}:
                b = "image"
            elif words & {"speech", "ssl"}:
                b = "speech"
        return BRANCH_ROLE.get(b)
    if stage == 2:
        s, t, f = _find(row, "speech_backbone", SPEECH_ROLE), _find(row, "text_backbone", TEXT_ROLE), \
            _find(row, "fusion", FUSION_ROLE)
        if s and t and f:
            return f"{TEXT_ROLE[t]} + {SPEECH_ROLE[s]} - {FUSION_ROLE[f]}"
        return None
    if stage == 3:
        if row.get("fusion") in BEYOND_FUSIONS:
            return None
        if _is_cascade(row):
            a = _find(row, "asr_backbone", SPEECH_ROLE)
            return f"{SPEECH_ROLE[a]} ASR" if a else None
        loss = row.get("loss")
        if loss not in LOSS_ROLE:
            loss = "contrastive" if words & {"clasp", "contrastive"} else "huber" if words & {"lasp", "huber"} else None
        return LOSS_ROLE.get(loss)
    if stage == 4:
        if _is_cascade(row) or _direction(row) == "s2t":
            return None
        lang = row.get("language", row.get("lang"))
        if lang not in LANG_ROLE:
            found = [LANG_ROLE[w] for w in words if w in LANG_ROLE] + \
                    [LANG_ROLE[_LANG_WORDS[w]] for w in words if w in _LANG_WORDS]
            return found[0] if len(set(found)) == 1 else None
        return LANG_ROLE[lang]
    return None


# ------------------------------------------------------------------------------------- the table
def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _our_rows(preset: str) -> tuple[list[dict], set[int]]:
    rows, stages = [], set()
    for stem, payload in read_all(preset).items():
        for r in payload.get("rows", []):
            st = stage_number(r.get("stage", stem)) or stage_number(stem)
            if st not in paper.PAPER_PROTOCOL or not any(_num(r.get(m)) is not None for m in METRICS):
                continue
            stages.add(st)
            rows.append({**r, "_stage": st, "_source": stem})
    return rows, stages


def table2(preset: str) -> pd.DataFrame:
    """Our results in the layout of the paper's Table 2, with the paper's numbers and deltas beside them.

    One row per result row of ours, in the paper's row order within each stage; paper rows nobody
    matched follow with blank 'ours' columns. ``attrs['missing_stages']`` lists stages with no
    result file; their paper rows appear with the note 'stage N not run'.
    """
    ref = paper.published_table2().to_dict("records")
    order = {(r["stage"], r["system"]): i for i, r in enumerate(ref)}
    ours, stages = _our_rows(preset)
    out, matched = [], set()
    for r in ours:
        st, protocol = r["_stage"], r.get("protocol")
        target = paper_system(r)
        ref_row = ref[order[(st, target)]] if (st, target) in order else None
        note = ""
        if target is None:
            note = "no counterpart in the paper"
        elif ref_row is None:
            note = f"{target!r} is not a row of the paper's table"
        elif protocol != paper.PAPER_PROTOCOL[st]:
            note = f"the paper scored stage {st} with the {paper.PAPER_PROTOCOL[st]} protocol"
            ref_row = None
        elif _direction(r) not in (None, PAPER_DIRECTION[st]):
            note = (f"the paper scored stage {st} "
                    f"{'text -> speech' if PAPER_DIRECTION[st] == 't2s' else 'speech -> text'}")
            ref_row = None
        row = {"stage": st, "system": r.get("system"), "protocol": protocol, "direction": r.get("direction"),
               "paper_system": target if ref_row is not None else None, "n": r.get("n"),
               "source": r["_source"], "note": note}
        for m in METRICS:
            mine = _num(r.get(m))
            theirs = _num(ref_row[m]) if ref_row is not None else None
            row[m], row[f"paper_{m}"] = mine, theirs
            row[f"delta_{m}"] = mine - theirs if mine is not None and theirs is not None else None
        if ref_row is not None:
            matched.add((st, target))
        row["_order"] = (st, order.get((st, target), len(order)), str(r.get("system")), str(protocol))
        out.append(row)
    for (st, name), i in order.items():
        if (st, name) in matched:
            continue
        note = (f"stage {st} not run: no results/stage{st}*.json" if st not in stages
                else "no system of ours in this role")
        row = {"stage": st, "system": None, "protocol": ref[i]["protocol"], "direction": None,
               "paper_system": name, "n": None,
               "source": None, "note": note, "_order": (st, i, "~", "")}
        for m in METRICS:
            row[m], row[f"paper_{m}"], row[f"delta_{m}"] = None, _num(ref[i][m]), None
        out.append(row)
    out.sort(key=lambda r: r["_order"])
    df = pd.DataFrame([{k: v for k, v in r.items() if k != "_order"} for r in out], columns=_COLUMNS)
    df.attrs["missing_stages"] = sorted(set(paper.PAPER_PROTOCOL) - stages)
    df.attrs["preset"] = preset
    return df


# ------------------------------------------------------------------------------------- rendering
def _fmt(v, signed=False, digits=3) -> str:
    f = _num(v)
    if f is None:
        return ""
    return f"{f:+.{digits}f}" if signed else f"{f:.{digits}f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub Markdown table (pipes in cells escaped); no extra dependency."""
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


def _text(v) -> str:
    """A cell's text: blank for None/NaN (pandas turns a missing name into NaN)."""
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def table2_markdown(df: pd.DataFrame) -> str:
    """The full table (ours, paper, delta for each metric) as Markdown."""
    header = ["stage", "system (ours)", "protocol", "paper row"]
    for m in METRICS:
        header += [m, f"paper {m}", f"Δ {m}"]
    header.append("note")
    rows = []
    for d in df.to_dict("records"):
        cells = [str(d["stage"]), _text(d["system"]), _text(d["protocol"]), _text(d["paper_system"])]
        for m in METRICS:
            cells += [_fmt(d[m]), _fmt(d[f"paper_{m}"]), _fmt(d[f"delta_{m}"], signed=True)]
        cells.append(_text(d["note"]))
        rows.append(cells)
    return markdown_table(header, rows)


def paper_view(df: pd.DataFrame) -> pd.DataFrame:
    """Only the rows the paper's Table 2 has: its protocol and direction per stage, plus unmatched paper rows."""
    keep = [(d["protocol"] == paper.PAPER_PROTOCOL[d["stage"]] and _direction(d) in (None, PAPER_DIRECTION[d["stage"]]))
            for d in df.to_dict("records")]
    out = df[keep].reset_index(drop=True)
    out.attrs.update(df.attrs)
    return out


def stage_table(preset: str, stage: int, digits: int = 3) -> pd.DataFrame:
    """One stage of Table 2 for a notebook: ours, the paper's and the delta per metric, rounded."""
    df = paper_view(table2(preset))
    df = df[(df["stage"] == stage) & df["system"].notna()]
    cols = []
    for m in ("hits@1", "mrr", "meanr", "macro_f1"):
        cols += [m, f"paper_{m}", f"delta_{m}"]
    out = df.set_index("system")[["paper_system", *cols]]
    return out.round(digits).astype(object).where(out.notna(), "")


def write_table2(preset: str, out_dir=None) -> dict[str, Path]:
    """Write ``table2.md`` (the paper's rows: its protocol and direction per stage) and ``table2.csv``
    (every row of ours, both protocols and directions) atomically into ``figures/<preset>/`` or ``out_dir``."""
    out_dir = Path(out_dir) if out_dir is not None else figures_dir(preset)
    full = table2(preset)
    df = paper_view(full)
    md = (f"# Table 2, preset `{preset}`, next to the paper\n\n"
          f"Generated by `claspkit.evaluation.report.write_table2` from `{display_path(results_dir(preset))}`. "
          "Δ = ours - paper. Our systems stand in for the paper's by role (see claspkit/evaluation/report.py).\n\n"
          + table2_markdown(df) + "\n")
    if df.attrs["missing_stages"]:
        md += "\nMissing stages (no result file yet): " + ", ".join(map(str, df.attrs["missing_stages"])) + ".\n"
    beyond = beyond_paper(preset)
    if beyond:
        md += "\n## Beyond the paper\n\n" + beyond + "\n"
    paths = {"markdown": out_dir / "table2.md", "csv": out_dir / "table2.csv"}
    atomic_write_text(paths["markdown"], md)
    atomic_write_text(paths["csv"], full.to_csv(index=False))
    return paths


def efficiency_summary(preset: str) -> str | None:
    """One paragraph on the measured size and speed of both pipelines (results/efficiency.json, written
    by notebook 05 from ``claspkit.evaluation.asr.efficiency_rows``), with the paper's claim beside it."""
    payload = read_all(preset).get("efficiency")
    rows = {r.get("kind"): r for r in (payload or {}).get("rows", [])}
    clasp, casc = rows.get("clasp"), rows.get("cascade")
    if not clasp or not casc:
        return None
    c = paper.claims()
    size_ratio = casc["weight_bytes"] / clasp["weight_bytes"]
    saved = 1 - clasp["s_per_utt"] / casc["s_per_utt"]
    return (f"Efficiency, measured on the same {int(clasp['n'])} utterances in one run: CLASP "
            f"{clasp['weight_bytes'] / 1e6:.0f} MB and {clasp['s_per_utt'] * 1e3:.0f} ms per utterance, the cascade "
            f"{casc['weight_bytes'] / 1e6:.0f} MB and {casc['s_per_utt'] * 1e3:.0f} ms: the cascade is "
            f"{size_ratio:.2f}x the size and CLASP takes {abs(saved):.0%} {'less' if saved >= 0 else 'more'} time "
            "per utterance. "
            f"Paper: {c['clasp_size_gb']} GB vs {c['cascade_size_gb']} GB ({c['size_ratio']:.2f}x), "
            f"about {c['speed_gain']:.0%} faster.")


def versus_line(name: str, v: dict) -> str:
    """One line of a ``versus`` result, e.g. for the README and the CLI."""
    def diff(m):
        d, lo, hi = v[m]
        return f"{m} {d:+.3f}" + ("" if lo is None else f" [{lo:+.3f}, {hi:+.3f}]")

    return (f"{name}: {diff('hits@1')}, {diff('mrr')}; first only for {name} {v['only_this_first']}, "
            f"only for the cascade {v['only_ref_first']}")



def beyond_paper(preset: str) -> str | None:
    """The 'beyond the paper' block: the CLASP heads and the cascade on one full gallery, in one run
    (``results/retrieval_bench.json``, written by ``python -m claspkit.bench.retrieval``), as Markdown."""
    payload = read_all(preset).get("retrieval_bench")
    if not payload or not payload.get("rows"):
        return None

    def ci(r, m):
        lo, hi = r[f"{m}_ci"]
        return f"{r[m]:.3f} [{lo:.3f}, {hi:.3f}]"

    def faster(r):
        lo_hi = r.get("speedup_vs_cascade_ci")
        return f"{r['speedup_vs_cascade']:.2f}" + (f" [{lo_hi[0]:.2f}, {lo_hi[1]:.2f}]" if lo_hi else "")

    rows = [[r["system"], str(r["n"]), ci(r, "hits@1"), ci(r, "mrr"), f"{r['s_per_utt'] * 1e3:.0f}", faster(r)]
            for r in payload["rows"]]
    meta = payload.get("meta", {})
    sample = (f"{meta['n_timing']} random test utterances in batches of {meta.get('timing_batch', 8)}"
              if "timing_ids" in meta else f"{meta.get('n_timing', '?')} utterances")
    frame_heads = [r["system"].split(" (")[0].removeprefix("CLASP ") for r in payload["rows"]
                   if r.get("fusion") in BEYOND_FUSIONS]
    heads = " and ".join(f"the {h} head" for h in frame_heads) or "the heads"
    beside = "the paper's best head and the " if any(r.get("kind") == "paper" for r in payload["rows"]) else "the "
    head = (f"Beyond the paper: {heads} over the speech frames beside {beside}"
            f"cascade, on the same full test gallery (speech -> text) in one run of `python -m claspkit.bench.retrieval"
            f"` ({meta.get('speech_backbone', '?')} -> {meta.get('text_backbone', '?')}; 95% bootstrap CIs; speed "
            f"measured on {sample}, waveform to searched vector).")
    table = markdown_table(["system", "n", "HITS@1 [95% CI]", "MRR [95% CI]", "ms / utterance",
                            "x faster than cascade"],
                           rows)
    points = [f"{r['train_items']:,} pairs {ci(r, 'hits@1')}" for r in meta.get("scaling") or []]
    scaled = meta.get("scaling_head", "attention")
    scaling = (f"\n\nData scaling of the {scaled} head (nested subsets of the training split, the same gallery), "
               "HITS@1: " + "; ".join(points) + ".") if points else ""
    paired = [versus_line(r["system"].split(" (")[0], r["vs_cascade"]) for r in payload["rows"] if "vs_cascade" in r]
    versus = ("\n\nPaired with the cascade on the same queries (mean difference, 95% bootstrap CI over queries; "
              "queries that only one of the two ranks first): " + "; ".join(paired) + ".") if paired else ""
    return head + "\n\n" + table + versus + scaling


def readme_results(preset: str) -> str:
    """The results block (docs/reproduction.md): ours (paper) for every Table 2 row, generated, not typed."""
    df = paper_view(table2(preset))
    header = ["stage", "ours", "paper row", "protocol", "HITS@1", "MRR", "meanR", "Macro-F1"]
    rows = []
    missing = df.attrs["missing_stages"]
    for d in df.to_dict("records"):
        if d["stage"] in missing:
            continue  # listed once below instead of as rows of blanks
        cells = [str(d["stage"]), _text(d["system"]) or "—", _text(d["paper_system"]) or "—", _text(d["protocol"])]
        for m in METRICS:
            mine, theirs = _fmt(d[m]), _fmt(d[f"paper_{m}"])
            cells.append(f"{mine or '—'} ({theirs})" if theirs else mine)
        rows.append(cells)
    parts = [f"Results of the `{preset}` preset, each cell *ours (paper)*; regenerated by "
             f"`python -m claspkit.readme --preset {preset}` (run by `make reproduce`). "
             "Our offline systems stand in for the paper's by "
             "role (the stronger Whisper for HuBERT, e5 for LaBSE); our galleries are smaller and the speech "
             "synthetic, so the numbers are comparable in kind, not in value.", "", markdown_table(header, rows)]
    if missing:
        parts += ["", "Not run yet (no result file): stage " + ", ".join(map(str, missing)) + "."]
    eff = efficiency_summary(preset)
    if eff:
        parts += ["", eff]
    beyond = beyond_paper(preset)
    if beyond:
        parts += ["", beyond]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------- robustness
ROBUSTNESS_SECTIONS = {
    "real speech": "Real recorded English (Asterisk prompts, one professional voice)",
    "unseen voice": "A TTS voice never heard in training (Brown test items of that voice)",
    "real parallel": "Real parallel speech in other languages (the same Asterisk prompts in each language)",
    "long recordings": "Long recordings: prompts joined with pauses, indexed with `claspkit index` and searched",
}


def _ci_cell(r: dict, m: str) -> str:
    lo, hi = r[f"{m}_ci"]
    return f"{r[m]:.3f} [{lo:.3f}, {hi:.3f}]"


def _noise_markdown(rows: list[dict]) -> str:
    """Systems x conditions, HITS@1 (speech -> text), the clean items first."""
    conds = list(dict.fromkeys(("clean" if r["noise"] == "clean" else f"{r['noise']} {r['snr_db']:g} dB")
                               for r in rows))
    cells: dict[str, dict[str, str]] = {}
    for r in rows:
        c = "clean" if r["noise"] == "clean" else f"{r['noise']} {r['snr_db']:g} dB"
        cells.setdefault(r["system"], {})[c] = f"{r['hits@1']:.3f}"
    table = markdown_table(["system", *conds], [[s, *(v.get(c, "") for c in conds)] for s, v in cells.items()])
    n = rows[0]["n"]
    return (f"Noise on the Brown test items ({n} utterances, one gallery), HITS@1 speech -> text; babble is 4 other "
            f"test clips; the 95% CIs are in the results file and the figure.\n\n{table}")


def _facts_text(facts: dict | None) -> str | None:
    """The long-recordings facts of ``robustness.long_search`` as a sentence."""
    if not facts:
        return None
    within = next((k for k in facts if k.startswith("prompts with a segment within")), None)
    text = (f"{facts['files']} files, {facts['audio_s'] / 60:.1f} min, {facts['prompts']} prompts, "
            f"{facts['segments']} segments")
    return text + (f"; {facts[within]:.1%} of the prompts have a segment {within[len('prompts with a segment '):]} "
                   "at both edges" if within else "")


def robustness_markdown(preset: str) -> str | None:
    """The robustness tables (docs/robustness.md), from ``results/robustness.json`` (notebook 09)."""
    payload = read_all(preset).get("robustness")
    if not payload or not payload.get("rows"):
        return None
    rows, meta = payload["rows"], payload.get("meta", {})
    parts = [f"Preset `{preset}`, written by notebooks/09_robustness.ipynb; full gallery, 95% bootstrap CIs. "
             f"{meta.get('systems_note', '')}".strip()]
    noise = [r for r in rows if r["section"] == "noise"]
    if noise:
        parts += ["", _noise_markdown(noise)]
    for section, title in ROBUSTNESS_SECTIONS.items():
        sec = [r for r in rows if r["section"] == section]
        if not sec:
            continue
        extra = [k[:-3] for k in sec[0] if k.endswith("_ci") and k[:-3] not in ("hits@1", "mrr", "meanr", "macro_f1")]
        header = [*(["task"] if any(r.get("task") for r in sec) else []), "direction", "system", "n", "HITS@1",
                  "MRR", *extra, "WER"]
        body = [[*([r.get("task") or ""] if header[0] == "task" else []), r["direction"], r["system"], str(r["n"]),
                 _ci_cell(r, "hits@1"), _ci_cell(r, "mrr"), *(_ci_cell(r, m) for m in extra),
                 f"{r['wer']:.3f}" if r.get("wer") is not None else ""] for r in sec]
        note = meta.get(f"{section} note") or _facts_text(meta.get(f"{section} facts"))
        parts += ["", f"{title}{'; ' + note if note else ''}.", "", markdown_table(header, body)]
    return "\n".join(parts) + "\n"
