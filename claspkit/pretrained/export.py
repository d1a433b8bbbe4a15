"""`python -m claspkit.pretrained.export`: ship a trained head as claspkit's default model.

Takes a checkpoint folder and the committed result file that measured it (``results/bench/adapt.json``, the row
``--row``), and writes ``claspkit/pretrained/<name>/``: the head in float16 safetensors (half the bytes; what
that costs is measured here on the Asterisk English prompts, float32 against float16 on the same features),
config.json, and a model card (README.md) whose numbers are copied from the result file, never typed. The
registry gets the sha256 of every file; ``claspkit.pretrained.pretrained_dir`` checks them on load.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from claspkit.errors import ClaspkitError, DataMissingError, ParamError
from claspkit.pretrained import REGISTRY_FILE, registry

__all__ = ["MAX_BYTES", "DEFAULT_NAME", "choose_row", "result_rows", "card_sections", "precision_cost", "export",
           "main"]

MAX_BYTES = 25 * 1024 * 1024          # issue 28: a model in the repository, at most 25 MB
DEFAULT_NAME = "clasp-en-whisper-base"


def result_rows(result: dict, label: str) -> dict:
    """``{gallery: (row of label, cascade row or None, n, cascade WER)}`` from a bench.adapt result."""
    out = {}
    for gallery, g in result["galleries"].items():
        rows = {r["system"]: r for r in g["rows"]}
        if label not in rows:
            raise ParamError(f"no row {label!r} in the result's {gallery} gallery; rows: {sorted(rows)}")
        cascade = next((r for r in g["rows"] if r["system"].startswith("cascade")), None)
        out[gallery] = (rows[label], cascade, g["n"], g.get("cascade_wer"))
    return out


def choose_row(result: dict, galleries=("fotaq-val", "synthetic-val")) -> str:
    """The system with the highest mean HITS@1 over the validation ``galleries`` (then mean MRR; then the first
    listed): the shipped model is chosen on validation data, real and synthetic, never on a test gallery."""
    missing = [g for g in galleries if g not in result["galleries"]]
    if missing:
        raise ParamError(f"the result has no {missing} gallery to choose on; it has {sorted(result['galleries'])}")
    by = [{r["system"]: r for r in result["galleries"][g]["rows"]} for g in galleries]
    systems = [s for s in by[0] if s in result["meta"]["models"] and all(s in b for b in by)]
    if not systems:
        raise ParamError(f"no model is scored on every validation gallery {list(galleries)}")
    score = {s: (np.mean([b[s]["hits@1"] for b in by]), np.mean([b[s]["mrr"] for b in by])) for s in systems}
    return max(enumerate(systems), key=lambda t: (*score[t[1]], -t[0]))[1]


def card_sections(result: dict, result_path: str, label: str, cost: dict) -> dict:
    """The card's measured sections, every number read from ``result`` (or measured by :func:`precision_cost`)."""
    from claspkit.bench.adapt import cell, diff

    meta = result["meta"]
    lines = ["| gallery | items | HITS@1 [95% CI] | MRR [95% CI] | cascade HITS@1 | paired difference (HITS@1) |",
             "|---|---|---|---|---|---|"]
    for gallery, (row, cascade, n, wer) in result_rows(result, label).items():
        # a validation gallery has no cascade row: the cascade labelled it
        cascade_cell = "-" if cascade is None else f"{cell(cascade)} (WER {wer:.3f})"
        lines.append(f"| {gallery} | {n} | {cell(row)} | {cell(row, 'mrr')} | {cascade_cell} | "
                     f"{diff(row, 'vs_cascade') or '-'} |")
    return {
        "measured results": "\n".join([
            f"From `{result_path}` (row `{label}`), computed by `python -m claspkit.bench.adapt` at commit "
            f"{meta.get('commit', '?')} on {meta.get('cpu', '?')}. Full galleries, speech -> text, 95% bootstrap "
            "CIs; the cascade (Whisper transcripts embedded by the same text encoder) on the same items in the same "
            "run, and the paired difference with it.", "", *lines]),
        "data": "\n".join([f"- {k}: {v}" for k, v in meta["sources"].items()]),
        "precision": (f"Stored in float16 ({cost['bytes']:,} bytes of weights). On the {cost['n']} Asterisk English "
                      f"prompts, HITS@1 float32 {cost['hits@1_fp32']:.3f}, float16 {cost['hits@1_fp16']:.3f}; "
                      f"largest cosine difference between the two models' vectors {cost['max_abs_cos_diff']:.2e}."),
        "limits": ("Trained on synthetic speech and adapted on one game's voice actors. On real recordings it is "
                   "well below transcribe-then-search (the table above): for search, build the index with "
                   "`--transcribe` and rank `hybrid` or `transcript`; adapt it to your own archive with "
                   "`claspkit adapt`."),
    }


def precision_cost(src, image_runtime: str, progress: bool = False) -> dict:
    """float32 against float16 weights of one head on the Asterisk English prompts (the same cached features)."""
    import torch

    from claspkit.adapt.run import file_features
    from claspkit.evaluation import robustness
    from claspkit.evaluation.metrics import cosine_matrix, retrieval_report
    from claspkit.model.clasp import CLASP

    m = CLASP.from_pretrained(src, image_runtime=image_runtime, local_only=True)
    prompts = robustness.real_prompts("en", None, 42, progress=progress)
    feats = file_features(m, list(prompts.path), progress)
    gallery = m.encode_text(list(prompts.text))
    full = m.fuse(feats)
    state = {k: v.clone() for k, v in m.head.state_dict().items()}
    m.head.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in state.items()})
    with torch.no_grad():
        half = m.fuse(feats)
    n_bytes = sum(v.numel() * (2 if v.is_floating_point() else v.element_size()) for v in state.values())
    return {"n": len(prompts), "bytes": int(n_bytes),
            "hits@1_fp32": retrieval_report(cosine_matrix(full, gallery), n_boot=0)["hits@1"],
            "hits@1_fp16": retrieval_report(cosine_matrix(half, gallery), n_boot=0)["hits@1"],
            "max_abs_cos_diff": float(np.abs(np.sum(full * half, axis=1) - 1).max())}


def export(name: str = DEFAULT_NAME, result_path="results/bench/adapt.json", label: str | None = None,
           src=None, default: bool = True, progress: bool = False) -> Path:
    """Write ``claspkit/pretrained/<name>/`` and register it; returns the folder. ``label``: the result row to ship
    (default :func:`choose_row`, on validation); ``src``: its checkpoint (default the folder the result names)."""
    import torch

    from claspkit.model.clasp import CLASP
    from claspkit.paths import atomic_write_text, project_root, sha256_file

    result_path = Path(result_path)
    if not result_path.is_absolute():
        result_path = project_root() / result_path
    if not result_path.is_file():
        raise DataMissingError(f"{result_path} does not exist: run `python -m claspkit.bench.adapt` first")
    result = json.loads(result_path.read_text())
    label = label or choose_row(result)
    src = Path(src or project_root() / result["meta"]["models"][label])
    image_runtime = result["meta"]["image_runtime"]
    cost = precision_cost(src, image_runtime, progress)
    rel = result_path.resolve().relative_to(project_root()).as_posix() if result_path.is_absolute() \
        else result_path.as_posix()
    sections = card_sections(result, rel, label, cost)
    m = CLASP.from_pretrained(src, image_runtime=image_runtime, local_only=True)
    m.head.half()
    out = REGISTRY_FILE.parent / name
    with torch.no_grad():
        m.save_pretrained(out, card=sections)
    files = {f.name: sha256_file(f) for f in sorted(out.iterdir()) if f.is_file()}
    size = sum((out / f).stat().st_size for f in files)
    if size > MAX_BYTES:
        raise ClaspkitError(f"{out} holds {size:,} bytes, above the {MAX_BYTES:,} a shipped model may take")
    reg = registry()
    reg["models"][name] = {"files": files, "bytes": size, "result": rel, "row": label, "image_runtime": image_runtime,
                           "chosen_on": "mean HITS@1 of fotaq-val and synthetic-val", "precision": cost}
    if default:
        reg["default"] = name
    atomic_write_text(REGISTRY_FILE, json.dumps(reg, indent=1, sort_keys=True) + "\n")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default=DEFAULT_NAME, help=f"the shipped model's name (default {DEFAULT_NAME})")
    ap.add_argument("--result", default="results/bench/adapt.json", help="the committed result that measured it")
    ap.add_argument("--row", default=None, help="the result row to ship (default: the best on validation)")
    ap.add_argument("--from", dest="src", default=None, help="its checkpoint (default: the folder the result names)")
    ap.add_argument("--not-default", action="store_true", help="register it without making it the default")
    args = ap.parse_args(argv)
    try:
        out = export(args.name, args.result, args.row, args.src, default=not args.not_default, progress=True)
    except ClaspkitError as e:
        print(f"claspkit pretrained.export: {e}", file=sys.stderr)
        return 2
    entry = json.loads(REGISTRY_FILE.read_text())["models"][args.name]
    print(f"shipped {entry['row']!r} as {out} ({entry['bytes']:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
