"""``build_index`` on Ray (``engine="ray"``): decoding and the VAD as Ray tasks, each backbone in its own pool of
actors (``claspkit.encoders.engine``), the fusion head and the staging here, on the same groups and batches as the
local loop, so the index is the same byte for byte (see ``claspkit.encoders.engine`` for why it is built this way).
"""
from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np

from claspkit.encoders.engine import (
    TARGET_SECONDS, BackboneActor, apply_env, blobs, driver_env, map_batches, pools, quiet_data, rows_per_call,
    session, spec_of,
)
from claspkit.errors import ClaspkitError
from claspkit.search.segment import SAMPLE_RATE, segment
from claspkit.search.staging import (
    cut_segments, read_audio, settled_without_embedding, skip_reason, stage_embedded,
)

__all__ = ["index_todo"]


def _vad_rows(batch: dict, params, env) -> dict:
    """Decode + VAD of index files (a Ray task): duration and spans, or the reason a file is skipped."""
    apply_env(env)
    out = []
    for job in batch["job"]:
        path = Path(pickle.loads(job))
        t = time.perf_counter()
        try:
            audio = read_audio(path)
        except (ClaspkitError, OSError, ValueError, RuntimeError) as e:
            out.append({"skip": skip_reason(e, path), "decode": time.perf_counter() - t, "vad": 0.0})
            continue
        t1 = time.perf_counter()
        spans = segment(audio, SAMPLE_RATE, params)
        out.append({"duration_s": round(len(audio) / SAMPLE_RATE, 3), "spans": spans,
                    "decode": t1 - t, "vad": time.perf_counter() - t1})
    return {"i": batch["i"], "result": blobs(out)}


def _cut_rows(batch: dict, env) -> dict:
    """Decode one index group's files again and cut their segments (a Ray task), as ``build_index`` does."""
    apply_env(env)
    waves, seconds = [], []
    for job in batch["job"]:
        t = time.perf_counter()
        waves.append([w for path, spans in pickle.loads(job) for w in cut_segments(read_audio(Path(path)),
                                                                                         spans)])
        seconds.append(time.perf_counter() - t)
    return {"g": batch["g"], "waves": blobs(waves), "decode": np.asarray(seconds)}




def _vad_all(ray, paths: list[Path], params, env, cpus: float) -> list[dict]:
    ds = ray.data.from_items([{"i": i, "job": pickle.dumps(str(p))} for i, p in enumerate(paths)],
                             override_num_blocks=max(1, len(paths)))
    ds = map_batches(ds, ray, _vad_rows, 1, cpus, fn_kwargs={"params": params, "env": env})
    out = [None] * len(paths)
    for row in ds.iter_rows():
        out[int(row["i"])] = pickle.loads(row["result"])
    return out


def _plan(todo, vad: dict, writer, batch_size: int, summary, entries: list, how: dict, bar) -> list[list]:
    """The local engine's loop over the files to embed, without the embedding: the same decisions (resumed,
    duplicate, zero-length, undecodable) and the same groups of files, closed once ``batch_size`` segments
    are pending. Returns the groups: lists of (entry, path, spans)."""
    groups, pending, staged_now = [], [], {}
    for path, entry in todo:
        if settled_without_embedding(entry, writer, staged_now, summary, entries, how, bar):
            continue
        sha = entry["sha256"]
        res = vad[sha]
        if "skip" in res:
            summary.skipped.append({"path": entry["path"], "reason": res["skip"]})
            bar.update(1)
            continue
        entry["duration_s"] = res["duration_s"]
        entries.append(entry)
        pending.append((entry, path, res["spans"]))
        staged_now[sha] = entry["duration_s"]
        if sum(len(s) for _, _, s in pending) >= batch_size:
            groups.append(pending)
            pending = []
    if pending:
        groups.append(pending)
    return groups


def index_todo(embedder, writer, todo: list, params, batch_size: int, summary, entries: list, how: dict, bar,
               address: str | None = None, workers: int | None = None,
               target_seconds: float = TARGET_SECONDS) -> None:
    """``build_index``'s embedding loop on Ray: VAD as tasks, one actor pool per backbone, the head and the
    staging here; fills ``entries``, ``how`` and ``summary`` exactly as the local loop does."""
    specs = {role: spec_of(enc) for role, enc in embedder.encoders.items()}
    tm, env = summary.timings, driver_env()
    with session(address) as ray:
        quiet_data(ray)
        size, cpus = pools(ray, len(specs), workers)
        first = {}                              # sha -> the first path that reaches decoding
        for path, entry in todo:
            if entry["size"] > 0 and not writer.is_staged(entry["sha256"]):
                first.setdefault(entry["sha256"], path)
        shas = list(first)
        results = _vad_all(ray, [first[s] for s in shas], params, env, cpus) if shas else []
        for r in results:
            tm["decode"] += r["decode"]
            tm["vad"] += r["vad"]
        groups = _plan(todo, dict(zip(shas, results)), writer, batch_size, summary, entries, how, bar)
        if not groups:
            return
        seconds = [sum(e - s for _, _, spans in g for s, e in spans) for g in groups]
        ds = ray.data.from_items([{"g": i, "job": pickle.dumps([(str(p), spans) for _, p, spans in g])}
                                  for i, g in enumerate(groups)], override_num_blocks=max(1, len(groups)))
        ds = map_batches(ds, ray, _cut_rows, 1, cpus, fn_kwargs={"env": env})
        rows = rows_per_call(seconds, target_seconds)
        for role, spec in specs.items():
            ds = map_batches(ds, ray, BackboneActor, rows, cpus, size, fn_constructor_kwargs={
                "spec": spec, "env": env, "mode": "waves", "batch_size": batch_size,
                "frames": role == "speech" and embedder.frames})
            ds = ds.rename_columns({"out": role})
        for row in ds.iter_rows():
            _stage_group(embedder, writer, groups[int(row["g"])], row, summary, how, bar)


def _stage_group(embedder, writer, group: list, row: dict, summary, how: dict, bar) -> None:
    """Fuse one group's branch features with the head and stage its files, as ``build_index``'s flush does."""
    tm = summary.timings
    tm["decode"] += float(row["decode"])
    feats = {}
    for role in embedder.encoders:
        out = pickle.loads(row[role])
        tm[role] += out["seconds"]
        feats[role] = out["x"]
    t = time.perf_counter()
    if any(x is None for x in feats.values()):
        vecs = np.zeros((0, embedder.dim), np.float32)
    else:
        vecs = embedder.fuse(feats)
    tm["fusion"] += time.perf_counter() - t
    stage_embedded(writer, group, vecs, summary, how)
    bar.update(len(group))
