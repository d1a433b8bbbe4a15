"""Stage results as small JSON files: each notebook writes its rows, the report notebook and README read them.

A row is a flat dict: ``stage``, ``system`` and ``protocol`` plus metric names (``hits@1``, ``mrr``,
``meanr``, ``macro_f1``...) and optional ``*_ci`` pairs. Keeping it flat keeps it diffable and CSV-able.
"""
from __future__ import annotations

import json
from pathlib import Path

from claspkit.paths import atomic_write_text, run_dir

__all__ = ["results_dir", "write_stage", "read_stage", "read_all"]


def results_dir(preset: str) -> Path:
    d = run_dir(preset) / "results"
    d.mkdir(parents=True, exist_ok=True)
    return d


def write_stage(preset: str, stage: str, rows: list[dict], meta: dict | None = None) -> Path:
    """Replace the rows of one stage (e.g. 'stage1', 'stage3_contrastive') atomically."""
    path = results_dir(preset) / f"{stage}.json"
    payload = {"stage": stage, "meta": meta or {}, "rows": rows}
    atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True, default=float))
    return path


def read_stage(preset: str, stage: str) -> dict | None:
    path = results_dir(preset) / f"{stage}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def read_all(preset: str) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(results_dir(preset).glob("*.json"))}
