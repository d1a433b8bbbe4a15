"""The manifest: one table per corpus build, the only thing later stages read about the data.

Columns (exactly): id, source, text, category, voice, path, duration_s, sample_rate, split.
``path`` is relative to ``data_dir()`` for synthesized audio and may be absolute for imported
corpora. Reading validates the schema, so a hand-edited or stale file fails with a message
that says what is wrong, not with a KeyError three notebooks later.
"""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from claspkit.errors import ClaspkitError, DataMissingError
from claspkit.paths import atomic_write_text, display_path
from claspkit.data.splits import SPLITS

__all__ = ["MANIFEST_COLUMNS", "ManifestError", "validate_manifest", "write_manifest", "read_manifest"]

MANIFEST_COLUMNS = ("id", "source", "text", "category", "voice", "path", "duration_s", "sample_rate", "split")
_STR_COLUMNS = ("id", "source", "text", "category", "voice", "path", "split")


class ManifestError(ClaspkitError, ValueError):
    """A manifest that does not follow the schema."""


def validate_manifest(df: pd.DataFrame, where: str = "manifest") -> pd.DataFrame:
    """Check the schema and return a copy with the columns in order and clean dtypes."""
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{where} is missing columns {missing} (has {list(df.columns)}); a manifest needs exactly "
            f"{list(MANIFEST_COLUMNS)}: rebuild it with claspkit.data.corpus.build_corpus (notebook 01)."
        )
    out = df.loc[:, list(MANIFEST_COLUMNS)].copy()
    for c in _STR_COLUMNS:
        out[c] = out[c].fillna("").astype(str)
    bad = sorted(set(out["split"]) - set(SPLITS))
    if bad:
        n = int((~out["split"].isin(SPLITS)).sum())
        raise ManifestError(f"{where}: {n} rows have split values {bad}; split must be one of {list(SPLITS)}")
    if (out["id"] == "").any():
        raise ManifestError(f"{where}: {int((out['id'] == '').sum())} rows have an empty id; "
                            "every row needs a unique id")
    dup = out["id"][out["id"].duplicated()]
    if len(dup):
        raise ManifestError(f"{where}: ids must be unique, but {sorted(set(dup))[:5]} appear more than once")
    if (out["path"] == "").any():
        raise ManifestError(f"{where}: {int((out['path'] == '').sum())} rows have no audio path")
    for c, kind in (("duration_s", float), ("sample_rate", int)):
        vals = pd.to_numeric(out[c], errors="coerce")
        if vals.isna().any() or (vals < 0).any():
            raise ManifestError(f"{where}: column {c} must hold non-negative numbers "
                                f"({int(vals.isna().sum())} are not numbers)")
        out[c] = vals.astype(kind)
    return out.reset_index(drop=True)


def write_manifest(df: pd.DataFrame, path) -> Path:
    """Validate and write the manifest as CSV, atomically."""
    path = Path(path)
    out = validate_manifest(df, where=f"manifest for {path.name}")
    buf = io.StringIO()
    out.to_csv(buf, index=False)
    atomic_write_text(path, buf.getvalue())
    return path


def read_manifest(path) -> pd.DataFrame:
    """Read and validate a manifest CSV (empty voice/category stay empty strings, not NaN)."""
    path = Path(path)
    if not path.is_file():
        raise DataMissingError(
            f"no manifest at {display_path(path)}: build the corpus first (notebook 01_data, or "
            "claspkit.data.corpus.build_corpus(P))."
        )
    try:
        df = pd.read_csv(path, dtype={c: str for c in _STR_COLUMNS}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ManifestError(f"{display_path(path)} is not a readable CSV ({e}): rebuild it with build_corpus") from e
    return validate_manifest(df, where=display_path(path))
