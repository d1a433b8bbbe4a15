"""``claspkit embed AUDIO_DIR --model M --out vectors.parquet``: vectors for people who want vectors.

One row per file (or per speech segment with ``segment=True``): ``id``, ``path`` (relative to the
folder), ``sha256`` of the file, ``start_s``/``end_s`` (NaN for whole files), ``vector`` (float32,
L2-normalised). The model's identity (``CLASP.identity``) and the segmentation settings are stored in
the Parquet metadata under ``claspkit``.

Resumable: each batch of files is written to ``<out>.parts/`` as soon as it is embedded, and a rerun
(after a crash, or with new files) reuses every file whose content is already in the parts or in an
existing ``out`` made by the same model and settings; the parts are removed once ``out`` is written
(atomically). Files that cannot be decoded are skipped with the decoder's reason, like ``claspkit index``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from claspkit.errors import ClaspkitError, DataMissingError, ParamError
from claspkit.paths import atomic_path, display_path, sha256_file

__all__ = ["embed_folder", "read_vectors", "EmbedSummary", "COLUMNS"]

COLUMNS = ("id", "path", "sha256", "start_s", "end_s", "vector")
META_KEY = b"claspkit"


@dataclass
class EmbedSummary:
    out: Path
    files: int = 0
    embedded: int = 0
    reused: int = 0
    rows: int = 0
    skipped: list = field(default_factory=list)
    wall_seconds: float = 0.0

    def __str__(self) -> str:
        lines = [f"{display_path(self.out)}: {self.rows} vectors from {self.files} files "
                 f"({self.embedded} embedded, {self.reused} reused, {len(self.skipped)} skipped) "
                 f"in {self.wall_seconds:.1f} s"]
        return "\n".join(lines + [f"  skipped {s['path']}: {s['reason']}" for s in self.skipped])


def _settings(clasp, segment: bool, params) -> dict:
    return {"format": "claspkit-vectors/1", "model": clasp.identity, "dim": clasp.dim,
            "segmentation": params.key() if segment else None}


def _write(path: Path, df: pd.DataFrame, settings: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(settings).encode()})
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def read_vectors(path) -> tuple[pd.DataFrame, dict]:
    """(rows, settings) of a file written by :func:`embed_folder`; ``rows.vector`` holds float32 arrays."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataMissingError(f"no vectors file at {display_path(path)}; run `claspkit embed` first")
    table = pq.read_table(path)
    meta = (table.schema.metadata or {}).get(META_KEY)
    if meta is None:
        raise ClaspkitError(f"{display_path(path)} was not written by claspkit embed (no '{META_KEY.decode()}' "
                            "metadata); pass another --out")
    df = table.to_pandas()
    df["vector"] = [np.asarray(v, dtype=np.float32) for v in df["vector"]]
    return df, json.loads(meta)


def _known(out: Path, parts: Path, settings: dict) -> dict[str, pd.DataFrame]:
    """Rows already computed with these settings, by file sha256: from ``out`` and the parts."""
    frames = []
    if out.is_file():
        df, old = read_vectors(out)
        if old == settings:
            frames.append(df)
    if parts.is_dir():
        stamp = parts / "settings.json"
        if stamp.is_file() and json.loads(stamp.read_text()) == settings:
            frames += [read_vectors(p)[0] for p in sorted(parts.glob("part-*.parquet"))]
    if not frames:
        return {}
    return {sha: grp for sha, grp in pd.concat(frames, ignore_index=True).groupby("sha256", sort=False)}


def embed_folder(audio_dir, model, out, *, segment: bool = False, batch_size: int = 16, progress: bool = True,
                 segment_params=None, image_runtime: str = "onnx") -> EmbedSummary:
    """Embed every audio file under ``audio_dir`` with ``model`` (a ``CLASP`` or what ``from_pretrained``
    takes) into the Parquet file ``out``; see the module docstring."""
    from claspkit.data.audio import load_audio
    from claspkit.model.clasp import CLASP
    from claspkit.progress import progress_bar
    from claspkit.search.query import audio_files, cut_segments, skip_reason
    from claspkit.search.segment import SAMPLE_RATE, SegmentParams
    from claspkit.search.segment import segment as vad_segments

    t0 = time.perf_counter()
    audio_dir, out = Path(audio_dir), Path(out)
    if not audio_dir.is_dir():
        raise DataMissingError(f"audio folder {display_path(audio_dir)} does not exist; pass the folder to embed")
    if out.suffix != ".parquet":
        raise ParamError(f"--out must name a .parquet file, got {display_path(out)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ParamError(f"batch_size must be a positive int, got {batch_size!r}")
    clasp = model if isinstance(model, CLASP) else CLASP.from_pretrained(model, image_runtime=image_runtime)
    params = segment_params or SegmentParams()
    settings = _settings(clasp, segment, params)
    parts = out.with_name(out.name + ".parts")
    stamp = parts / "settings.json"
    if parts.is_dir() and (not stamp.is_file() or json.loads(stamp.read_text()) != settings):
        for p in parts.iterdir():          # parts of another model or settings: never mixed in
            p.unlink()
    known = _known(out, parts, settings)
    parts.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(settings))
    summary = EmbedSummary(out)
    rows, pending, copies, in_run = [], [], [], set()
    n_parts = len(list(parts.glob("part-*.parquet")))

    def flush():
        nonlocal n_parts
        waves = [w for _, _, _, ws in pending for w in ws]
        vecs = clasp.encode_waves(waves, batch_size) if waves else np.zeros((0, clasp.dim), np.float32)
        new, row = [], 0
        for rel, sha, spans, ws in pending:
            for k, (s, e) in enumerate(spans):
                new.append({"id": f"{rel}#{k}" if segment else rel, "path": rel, "sha256": sha,
                            "start_s": s, "end_s": e, "vector": vecs[row]})
                row += 1
        if new:
            _write(parts / f"part-{n_parts:06d}.parquet", pd.DataFrame(new, columns=list(COLUMNS)), settings)
            n_parts += 1
        rows.extend(new)
        summary.embedded += len(pending)
        pending.clear()

    files = audio_files(audio_dir, exclude=parts)
    summary.files = len(files)
    for path in progress_bar(files, desc="embedding", unit="file", disable=not progress):
        rel = path.relative_to(audio_dir).as_posix()
        try:
            sha = sha256_file(path)
        except OSError as e:
            summary.skipped.append({"path": rel, "reason": f"cannot read the file ({e.strerror or e})"})
            continue
        if sha in known or sha in in_run:
            copies.append((rel, sha))
            continue
        try:
            audio = load_audio(path)
        except (ClaspkitError, OSError, ValueError, RuntimeError) as e:
            summary.skipped.append({"path": rel, "reason": skip_reason(e, path)})
            continue
        spans = vad_segments(audio, SAMPLE_RATE, params) if segment else [(float("nan"), float("nan"))]
        if segment and not spans:
            summary.skipped.append({"path": rel, "reason": "no speech found by the voice-activity detector"})
            continue
        waves = cut_segments(audio, spans) if segment else [audio]
        in_run.add(sha)
        pending.append((rel, sha, spans, waves))
        if sum(len(w) for *_, w in pending) >= batch_size:
            flush()
    if pending:
        flush()
    by_sha = {**known, **{sha: grp for sha, grp in pd.DataFrame(rows, columns=list(COLUMNS)).groupby("sha256")}}
    for rel, sha in copies:      # unchanged or renamed files, and second copies: the rows of that content
        old = by_sha[sha].copy()
        old["path"] = rel
        old["id"] = [f"{rel}#{k}" if segment else rel for k in range(len(old))]
        rows.extend(old.to_dict("records"))
        summary.reused += 1
    df = pd.DataFrame(rows, columns=list(COLUMNS)).sort_values(["path", "start_s"], kind="stable", ignore_index=True)
    _write(out, df, settings)
    for p in parts.iterdir():
        p.unlink()
    parts.rmdir()
    summary.rows = len(df)
    summary.wall_seconds = time.perf_counter() - t0
    return summary
