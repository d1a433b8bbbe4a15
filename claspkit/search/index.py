"""A persistent, incremental, crash-safe index of segment embeddings, searched exactly or with FAISS.

Layout of an index folder (everything but ``index.json`` is named by a *generation* number)::

    index.json            manifest, written last: identity, files table, generation, skipped files
    vectors.<g>.npy       float32 (n_segments, dim), L2-normalised, rows grouped by file in path order
    segments.<g>.npy      per row: file number (int32), start_s, end_s (float32), a structured array
    ivf.<g>.faiss         only for large indexes: FAISS IVF-Flat (from 200K segments) or IVF-PQ (from 1M),
                          as the manifest's ``ann.kind`` says, with its byte size and calibrated settings
    work/<key>.npz        embeddings of single files staged during a run (resume points)
    .lock                 held (flock) by the one run allowed to write

Why this way:

* **Crash safety.** A run stages each embedded file in ``work/`` as soon as it is done, writes the
  next generation's files next to the current ones, and only then replaces ``index.json`` (atomic
  rename). A killed run leaves the previous generation and manifest untouched, so the old index keeps
  working; the next run finds the staged files and embeds only what is still missing.
* **Incremental.** Each file is recorded with its size, mtime and sha256 (content). Unchanged size and
  mtime: reused without reading; otherwise re-hashed, and reused when the content is the same (a
  ``touch`` or a rename costs nothing). Removed files drop out at the next commit.
* **One model per index.** The manifest's identity (checkpoint hash, backbone names and ``cache_id``s,
  segmentation settings) must match the run's, else a ``ClaspkitError`` names both.
* **Movable.** File paths are stored relative to the indexed folder, and the folder relative to the
  index, so moving both together keeps every hit resolvable.
* **Deterministic.** No timestamps or random state are stored: the same folder and model give
  byte-identical files.

Search: the exact inner product (``_exact``) below ``ANN_MIN_SEGMENTS``, an IVF-Flat file from there (``_ivf``), a
compressed IVF-PQ re-ranked against the vectors from ``PQ_MIN_SEGMENTS`` (``_pq``, with the measurements and the
scaling projection), each calibrated on probe queries from the index itself (``_calibration``). Their names are
re-exported here.

Memory: 1,548 bytes per segment (1,536 for a 384-d float32 vector, 12 for its row of the segment table)
plus the manifest's ~200 bytes per file; the IVF-Flat adds ~1,550 bytes per segment (its own copy of the
vectors and an 8-byte id) and is held in RAM, while the exact path only memory-maps the vector file.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from claspkit.errors import ClaspkitError, DataMissingError, ParamError
from claspkit.paths import atomic_path, atomic_write_text, display_path
from claspkit.search._calibration import (
    ANN_PROBES, ANN_TARGET_RECALL, calibration_probes, probe_queries, recall_at_k, without_self,
)
from claspkit.search._exact import EXACT_BLOCK, normalize_rows, search_exact, top_k
from claspkit.search._ivf import PQ_KINDS, TRAIN_PER_LIST, ann_class, build_ann, reusable, search_ann
from claspkit.search._pq import (
    KMEANS_ITERATIONS, NPROBE_MAX, PARALLEL_SCAN_MS, PQ_BITS, PQ_DIMS_PER_SUBQUANTIZER, PQ_LISTS_PER_SQRT,
    PQ_RECALL_MARGIN, PQ_SEARCH_IMPLEM, PQ_TRAIN, RERANK_MAX, RERANK_STEPS, RERANK_US, SCAN_NS_PER_BYTE, build_pq,
    calibrate_pq, exact_scores, parallel_scan, pq_candidates, pq_cost, pq_lists, pq_subquantizers, scanned_rows,
    search_pq, set_nprobe, single_threaded_faiss, train_pq,
)
from claspkit.search.manifest import read_manifest

__all__ = [
    "FORMAT", "MANIFEST", "ANN_MIN_SEGMENTS", "ANN_TARGET_RECALL", "ANN_PROBES", "TRAIN_PER_LIST",
    "SEGMENT_DTYPE", "identity_key", "describe_model", "normalize_rows", "Hit", "Index", "EXACT_BLOCK",
    "search_exact", "search_ann", "build_ann", "probe_queries", "calibration_probes", "without_self",
    "recall_at_k", "read_index_manifest", "top_k",
    "load_index", "IndexWriter", "PQ_MIN_SEGMENTS", "PQ_DIMS_PER_SUBQUANTIZER", "PQ_TRAIN", "KMEANS_ITERATIONS",
    "NPROBE_MAX", "RERANK_STEPS", "RERANK_MAX", "SCAN_NS_PER_BYTE", "RERANK_US",
    "ann_kind", "reusable", "pq_subquantizers", "set_nprobe", "train_pq", "exact_scores", "search_pq", "pq_cost",
    "calibrate_pq", "build_pq", "pq_candidates", "PQ_SEARCH_IMPLEM", "PARALLEL_SCAN_MS",
    "scanned_rows", "parallel_scan", "ANN_FILE", "read_ann", "single_threaded_faiss",
    "PQ_LISTS_PER_SQRT",
    "pq_lists", "PQ_BITS", "PQ_KINDS", "ann_class", "PQ_RECALL_MARGIN",
]

FORMAT = 1
MANIFEST = "index.json"
ANN_MIN_SEGMENTS = 200_000      # exact search below, FAISS IVF at and above (see claspkit.bench.search)
PQ_MIN_SEGMENTS = 1_000_000     # IVF-PQ + exact re-ranking from here on (IVF-Flat would hold 1.5 GB+ in RAM)
SEGMENT_DTYPE = np.dtype([("file", "<i4"), ("start_s", "<f4"), ("end_s", "<f4")])


def identity_key(identity: dict) -> str:
    """Short stable hash of an identity dict (used to key staged work so runs of other models never mix)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def describe_model(identity: dict) -> str:
    """One line naming a model for error messages: checkpoint, its hash, the backbones."""
    m = identity.get("model", {})
    bb = ", ".join(f"{r}={n}" for r, n in sorted((m.get("backbones") or {}).items()) if n)
    return f"{m.get('checkpoint', '?')} (sha256 {str(m.get('checkpoint_sha256', '?'))[:12]}; {bb})"


def _same_model(a: dict, b: dict) -> bool:
    keys = ("checkpoint_sha256", "backbones", "cache_ids")
    return all(a.get("model", {}).get(k) == b.get("model", {}).get(k) for k in keys)


def _check_identity(stored: dict, wanted: dict, where: Path) -> None:
    ids_a = stored.get("model", {}).get("cache_ids") or {}
    ids_b = wanted.get("model", {}).get("cache_ids") or {}
    same_but_ids = _same_model(stored, {"model": {**wanted.get("model", {}), "cache_ids": ids_a}})
    if same_but_ids and ids_a != ids_b:
        roles = sorted(r for r in set(ids_a) | set(ids_b) if ids_a.get(r) != ids_b.get(r))
        diff = "; ".join(f"{r}: {ids_a.get(r)} vs {ids_b.get(r)}" for r in roles)
        raise ClaspkitError(
            f"the index {display_path(where)} was built with the same model {describe_model(stored)}, but its "
            f"{', '.join(roles)} features were computed differently ({diff}: another runtime, preprocessing or "
            "weights version); pass the same --image-runtime as before, another --out folder, or --rebuild")
    if not _same_model(stored, wanted):
        raise ClaspkitError(
            f"the index {display_path(where)} was built with model {describe_model(stored)}, but this run uses "
            f"{describe_model(wanted)}; an index holds one model's vectors only: pass another --out folder, "
            "or --rebuild to replace this index")
    for key in ("segmentation", "dim"):
        if stored.get(key) != wanted.get(key):
            raise ClaspkitError(
                f"the index {display_path(where)} was built with {key} {stored.get(key)!r}, this run uses "
                f"{wanted.get(key)!r}; pass another --out folder, or --rebuild to replace this index")


def _save_npz(path: Path, **arrays) -> None:
    with atomic_path(path, suffix=".npz.tmp") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)



@dataclass(frozen=True)
class Hit:
    """One search result: a segment of a file (relative to the indexed folder) and its cosine score."""

    file: str
    start_s: float
    end_s: float
    score: float
    path: Path | None = None     # the file resolved on this machine (None when the folder is not found)

    def as_dict(self) -> dict:
        return {"file": self.file, "start_s": self.start_s, "end_s": self.end_s, "score": self.score}


class Index:
    """A committed index, read-only. Vectors are memory-mapped, so opening a large index is instant."""

    def __init__(self, root, manifest: dict, vectors: np.ndarray, table: dict, ann=None):
        self.root = Path(root)
        self.manifest = manifest
        self.vectors = vectors
        self.file_of_row = table["file"]
        self.start_s = table["start_s"]
        self.end_s = table["end_s"]
        self.ann = ann
        self.files = {f["path"]: f for f in manifest["files"]}
        self._paths = [f["path"] for f in manifest["files"]]

    # ------------------------------------------------------------------ reading
    @property
    def identity(self) -> dict:
        return self.manifest["identity"]

    @property
    def dim(self) -> int:
        return int(self.manifest["identity"]["dim"])

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def audio_root(self) -> Path | None:
        """The indexed folder: relative to the index first (so a moved pair works), then the old absolute path."""
        rel = self.root / self.manifest["audio_root"]["relative"]
        if rel.is_dir():
            return rel.resolve()
        absolute = Path(self.manifest["audio_root"]["absolute"])
        return absolute if absolute.is_dir() else None

    def file_rows(self, relpath: str) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, spans) of one file as stored."""
        f = self.files[relpath]
        rows = slice(f["first_row"], f["first_row"] + f["n_segments"])
        return (np.asarray(self.vectors[rows], dtype=np.float32),
                np.stack([self.start_s[rows], self.end_s[rows]], axis=1).astype(np.float32))

    def nbytes(self) -> dict:
        """Bytes on disk of each part, and per segment; ``ram_per_segment`` counts what is held in memory
        (ANN, segment table, manifest), the vectors being memory-mapped (paged in on demand, evictable)."""
        g = self.manifest["generation"]
        parts = {"vectors": self.root / f"vectors.{g}.npy", "segments": self.root / f"segments.{g}.npy",
                 "ann": self.root / ANN_FILE.format(g=g), "manifest": self.root / MANIFEST}
        sizes = {k: (p.stat().st_size if p.is_file() else 0) for k, p in parts.items()}
        sizes["total"] = sum(sizes.values())
        sizes["per_segment"] = sizes["total"] / max(1, len(self))
        sizes["ram_per_segment"] = (sizes["ann"] + sizes["segments"] + sizes["manifest"]) / max(1, len(self))
        return sizes

    # ------------------------------------------------------------------ search
    def search_vectors(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows and scores (inner product = cosine) for each query row; exact or IVF (see module doc)."""
        q = normalize_rows(np.atleast_2d(queries))
        if q.shape[1] != self.dim:
            raise ParamError(f"query vectors have dim {q.shape[1]}, the index has {self.dim}; "
                             "embed queries with the index's text backbone")
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ParamError(f"k must be a positive integer, got {k!r}")
        n = len(self)
        k = min(int(k), n)
        if k == 0:
            return np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.float32)
        info = self.manifest.get("ann") or {}
        if self.ann is not None and info.get("kind") in PQ_KINDS:
            return search_pq(self.ann, self.vectors, q, k, info["nprobe"], info["candidates"])
        if self.ann is not None:
            return search_ann(self.ann, q, k, info["nprobe"])
        return search_exact(self.vectors, q, k)

    def hits(self, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
        root = self.audio_root
        out = []
        for r, s in zip(rows, scores):
            if r < 0:
                continue
            rel = self._paths[self.file_of_row[r]]
            out.append(Hit(rel, round(float(self.start_s[r]), 3), round(float(self.end_s[r]), 3), float(s),
                           (root / rel) if root is not None else None))
        return out

    def search(self, query_vector: np.ndarray, k: int = 10) -> list[Hit]:
        rows, scores = self.search_vectors(query_vector, k)
        return self.hits(rows[0], scores[0])


def ann_kind(n: int) -> str | None:
    """What ``commit`` builds for ``n`` segments: nothing (exact search), IVF-Flat, or IVF-PQ (see module doc).

    ``ivf-pq4`` is the 4-bit fast-scan IVF-PQ; ``ivf-pq`` (8-bit codes, built before it) still loads and
    searches, and is retrained as ``ivf-pq4`` at its index's next commit.
    """
    if n < ANN_MIN_SEGMENTS:
        return None
    return "ivf-flat" if n < PQ_MIN_SEGMENTS else "ivf-pq4"



# ---------------------------------------------------------------------- loading
def read_index_manifest(root) -> dict | None:
    return read_manifest(Path(root) / MANIFEST, "index", FORMAT,
                         "rebuild the index with `claspkit index ... --rebuild`")


ANN_FILE = "ivf.{g}.faiss"      # IVF-Flat or IVF-PQ, as the manifest's ann.kind says


def _rerun_hint(root: Path) -> str:
    return (f"run the same `claspkit index AUDIO_DIR --model CHECKPOINT --out {display_path(root)}` again "
            "(no --rebuild needed: it rebuilds the ANN file from the stored vectors, without re-embedding)")


def read_ann(root, manifest: dict):
    """The manifest's FAISS index, checked against it (size, kind, rows, dim); a clear error when it is not."""
    import faiss

    root = Path(root)
    info = manifest["ann"]
    path = root / ANN_FILE.format(g=manifest["generation"])
    if not path.is_file():
        raise DataMissingError(f"index {display_path(root)} is missing its {info['kind']} file {path.name}; "
                               + _rerun_hint(root))
    size = path.stat().st_size
    if "bytes" in info and size != info["bytes"]:
        raise ClaspkitError(f"{display_path(path)} has {size:,} bytes, the manifest says {info['bytes']:,} "
                            f"(truncated or overwritten); {_rerun_hint(root)}")
    try:
        ann = faiss.read_index(str(path))
    except RuntimeError as e:
        raise ClaspkitError(f"{display_path(path)} is not a readable FAISS index ({str(e).strip()[-200:]}); "
                            + _rerun_hint(root)) from e
    want = ann_class(info["kind"])
    if not isinstance(ann, want) or ann.ntotal != manifest["n_segments"] or ann.d != manifest["identity"]["dim"]:
        raise ClaspkitError(f"{display_path(path)} does not match the manifest (a {type(ann).__name__} of "
                            f"{ann.ntotal} {ann.d}-d rows, expected {info['kind']} of {manifest['n_segments']} "
                            f"{manifest['identity']['dim']}-d rows); {_rerun_hint(root)}")
    return ann


def load_index(root, ann: bool = True) -> Index:
    """Open a committed index folder (the ``--out`` of ``claspkit index``); ``ann=False`` skips its FAISS file
    (a writer only reads the previous generation's rows)."""
    root = Path(root)
    for attempt in range(2):       # a writer may commit between reading the manifest and the files
        manifest = read_index_manifest(root)
        if manifest is None:
            raise DataMissingError(f"{display_path(root)} is not a claspkit index (no {MANIFEST}); "
                                   "build one with `claspkit index AUDIO_DIR --model CHECKPOINT --out INDEX`")
        g = manifest["generation"]
        try:
            vectors = np.load(root / f"vectors.{g}.npy", mmap_mode="r") if manifest["n_segments"] else \
                np.zeros((0, manifest["identity"]["dim"]), np.float32)
            rows = np.load(root / f"segments.{g}.npy")
            table = {k: rows[k] for k in ("file", "start_s", "end_s")}
            faiss_index = read_ann(root, manifest) if ann and manifest.get("ann") else None
        except FileNotFoundError as e:
            if attempt == 0:
                continue
            if isinstance(e, DataMissingError):
                raise
            raise ClaspkitError(f"index {display_path(root)} is missing {Path(e.filename).name}; "
                                "rebuild it with `claspkit index ... --rebuild`") from e
        if vectors.shape != (manifest["n_segments"], manifest["identity"]["dim"]) or len(table["file"]) != len(vectors):
            raise ClaspkitError(f"index {display_path(root)} is inconsistent (vectors {vectors.shape}, "
                                f"{len(table['file'])} segment rows); rebuild it with `claspkit index ... --rebuild`")
        return Index(root, manifest, vectors, table, faiss_index)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------- writing
class IndexWriter:
    """Stages per-file embeddings and commits a new generation; use as a context manager (holds the lock).

    ``identity`` = {"model": {...}, "segmentation": str, "dim": int}. An existing index with another
    identity is refused unless ``rebuild`` (then it is replaced at commit; until then it stays usable).
    """

    def __init__(self, root, identity: dict, audio_root, rebuild: bool = False):
        self.root = Path(root)
        self.identity = identity
        self.audio_root = Path(audio_root).resolve()
        self.rebuild = rebuild
        self.work = self.root / "work" / identity_key(identity)
        self._lock_fh = None
        self.previous: Index | None = None
        self._prev_by_sha: dict[str, str] = {}

    def __enter__(self):
        if self.root.exists() and not self.root.is_dir():
            raise ClaspkitError(f"{display_path(self.root)} is a file, not an index folder; pass a folder to --out")
        self.root.mkdir(parents=True, exist_ok=True)
        fh = open(self.root / ".lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            fh.close()
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise ClaspkitError(f"another `claspkit index` run is writing {display_path(self.root)}; "
                                    "wait for it to finish (or stop it) and run again") from e
            raise
        self._lock_fh = fh
        try:
            if not self.rebuild and read_index_manifest(self.root) is not None:
                prev = load_index(self.root, ann=False)       # the ANN is read at commit, if reusable
                _check_identity(prev.identity, self.identity, self.root)
                self.previous = prev
                self._prev_by_sha = {f["sha256"]: p for p, f in prev.files.items()}
            self.work.mkdir(parents=True, exist_ok=True)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        if self._lock_fh is not None:
            fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None
        return False

    # ------------------------------------------------------------------ staging
    def _stage_path(self, sha256: str) -> Path:
        return self.work / f"{sha256}.npz"

    def stage(self, sha256: str, vectors: np.ndarray, spans, duration_s: float) -> None:
        """Keep one file's embeddings (atomically) until the commit; a later run resumes from them."""
        vectors = normalize_rows(vectors) if len(vectors) else np.zeros((0, self.identity["dim"]), np.float32)
        if vectors.shape[1] != self.identity["dim"]:
            raise ClaspkitError(f"the model gives {vectors.shape[1]}-d vectors, the index expects "
                                f"{self.identity['dim']}; the checkpoint config's out_dim is wrong: retrain or fix it")
        spans = np.asarray(spans, np.float32).reshape(-1, 2)
        if len(spans) != len(vectors):
            raise ClaspkitError(f"{len(vectors)} vectors for {len(spans)} segments; the embedder dropped items")
        _save_npz(self._stage_path(sha256), vectors=vectors, spans=spans,
                  duration_s=np.array(float(duration_s), np.float64))

    def is_staged(self, sha256: str) -> bool:
        return self._stage_path(sha256).is_file()

    def staged_duration(self, sha256: str) -> float:
        with np.load(self._stage_path(sha256)) as z:
            return round(float(z["duration_s"]), 3)

    def segments_of(self, entry: dict) -> int:
        """Segments an entry will have at commit (staged, else from the previous index by content)."""
        return self._count_for(entry, self._prev_by_sha)

    def _rows_for(self, entry: dict, prev_by_sha: dict) -> tuple[np.ndarray, np.ndarray]:
        staged = self._stage_path(entry["sha256"])
        if staged.is_file():
            with np.load(staged) as z:
                return z["vectors"], z["spans"]
        if entry["sha256"] in prev_by_sha:
            return self.previous.file_rows(prev_by_sha[entry["sha256"]])
        raise ClaspkitError(f"no embeddings for {entry['path']} (neither staged nor in the previous index); "
                            "this is a bug in the caller: embed the file before committing")

    def _count_for(self, entry: dict, prev_by_sha: dict) -> int:
        staged = self._stage_path(entry["sha256"])
        if staged.is_file():
            with np.load(staged) as z:
                return len(z["spans"])
        if entry["sha256"] in prev_by_sha:
            return int(self.previous.files[prev_by_sha[entry["sha256"]]]["n_segments"])
        return len(self._rows_for(entry, prev_by_sha)[0])     # raises the clear error

    # ------------------------------------------------------------------ commit
    def commit(self, entries: list[dict], skipped: list[dict] | None = None) -> Index:
        """Write the next generation with ``entries`` (dicts with path, sha256, size, mtime_ns, duration_s).

        Files are ordered by path. The manifest is replaced last; then the old generation and the staged
        work are deleted. Returns the new, loaded index.
        """
        entries = sorted(entries, key=lambda e: e["path"])
        if len({e["path"] for e in entries}) != len(entries):
            raise ParamError("duplicate file paths in the index entries")
        prev_by_sha = self._prev_by_sha
        old = read_index_manifest(self.root)
        gen = (old["generation"] + 1) if old else 1
        dim = self.identity["dim"]

        counts = [self._count_for(e, prev_by_sha) for e in entries]
        n = int(sum(counts))
        files, row = [], 0
        file_idx = np.zeros(n, np.int32)
        start = np.zeros(n, np.float32)
        end = np.zeros(n, np.float32)
        vec_path = self.root / f"vectors.{gen}.npy"
        with atomic_path(vec_path, suffix=".npy.tmp") as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim)) if n else None
            for i, (e, c) in enumerate(zip(entries, counts)):
                v, spans = self._rows_for(e, prev_by_sha)
                if c:
                    out[row:row + c] = v
                    start[row:row + c], end[row:row + c] = spans[:, 0], spans[:, 1]
                    file_idx[row:row + c] = i
                files.append({**{k: e[k] for k in ("path", "sha256", "size", "mtime_ns", "duration_s")},
                              "first_row": row, "n_segments": c})
                row += c
            if out is not None:
                out.flush()
                del out
            else:
                np.save(tmp, np.zeros((0, dim), np.float32))
        table = np.zeros(n, dtype=SEGMENT_DTYPE)
        table["file"], table["start_s"], table["end_s"] = file_idx, start, end
        with atomic_path(self.root / f"segments.{gen}.npy", suffix=".npy.tmp") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, table)
        ann_info = self._write_ann(gen, np.load(vec_path, mmap_mode="r"))
        manifest = {
            "format": FORMAT, "generation": gen, "identity": self.identity, "n_segments": n,
            "audio_root": {"relative": Path(os.path.relpath(self.audio_root, self.root.resolve())).as_posix(),
                           "absolute": str(self.audio_root)},
            "ann": ann_info, "files": files,
            "skipped": sorted(skipped or [], key=lambda s: s["path"]),
        }
        atomic_write_text(self.root / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        self.previous = load_index(self.root)
        self._prev_by_sha = {f["sha256"]: p for p, f in self.previous.files.items()}
        self._cleanup(gen)
        return self.previous

    def _previous_ann(self, kind: str, n: int, dim: int):
        """The previous generation's trained ANN when the 2x rule allows reusing it; None (retrain) when not,
        or when its file is missing or unreadable (a re-run then repairs the index)."""
        prev = self.previous
        if prev is None or not reusable(prev.manifest.get("ann"), kind, n, dim):
            return None
        try:
            return read_ann(prev.root, prev.manifest)
        except ClaspkitError:
            return None

    def _write_ann(self, gen: int, vectors: np.ndarray) -> dict | None:
        """Build this generation's ANN file (before the manifest, so a crash leaves the old one in use)."""
        import faiss

        n, dim = vectors.shape
        kind = ann_kind(n)
        if kind is None:
            return None
        build = build_pq if kind in PQ_KINDS else build_ann
        prev = self.previous.manifest.get("ann") if self.previous is not None else None
        ann, info = build(vectors, previous=self._previous_ann(kind, n, dim), previous_info=prev)
        with atomic_path(self.root / ANN_FILE.format(g=gen), suffix=".faiss.tmp") as tmp:
            faiss.write_index(ann, str(tmp))
            info["bytes"] = tmp.stat().st_size
        return info

    def _cleanup(self, gen: int) -> None:
        keep = {f"vectors.{gen}.npy", f"segments.{gen}.npy", ANN_FILE.format(g=gen)}
        for pattern in ("vectors.*.npy", "segments.*.npy", "ivf.*.faiss"):
            for p in self.root.glob(pattern):
                if p.name not in keep:
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
        shutil.rmtree(self.root / "work", ignore_errors=True)
