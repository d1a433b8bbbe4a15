"""Transcripts of an index's segments, with word timestamps and their text embeddings (``claspkit index --transcribe``).

On long real recordings the transcribe-then-embed cascade finds the right segment far more often than CLASP
(``claspkit.evaluation.robustness.long_search``), so ``--transcribe ASR`` stores what an ASR model hears in each
segment beside the vectors: ``claspkit search`` prints it, ranks by it or fuses both rankings
(``claspkit.search.rank``), and narrows a hit to its words.

Layout, in the folder ``transcripts/`` of the index (its own generations, so the vectors' files are untouched)::

    manifest.json        written last: identity (ASR, language, text encoder), generation, files by sha256
    rows.<g>.npy         per transcript row: the segment's start_s/end_s and its line's offset/length in text.<g>.jsonl
    text.<g>.jsonl       one JSON line per row: {"text": str, "words": [[word, start_s, end_s], ...]}, times in the file
    vectors.<g>.npy      float32 (rows, dim): each transcript embedded by the index's text encoder, unit length
    work/<key>/<sha>.npz one file's transcripts staged during a run (resume points)

Why this way:

* **Keyed by content, matched when read.** A file's transcripts are stored once per sha256 with its segments'
  spans, and matched to the index's rows by (sha256, spans) when the index is opened (``TranscriptStore.align``):
  a renamed or copied file reuses them, a changed file (another sha256) or another segmentation (other spans)
  has none until the next ``--transcribe`` run, and a removed file's are dropped at the next commit.
* **Crash safety, as the vectors.** The pass runs after the vectors' commit, under the index's lock; each file
  is staged as soon as it is transcribed and embedded, and the manifest is replaced last (atomic rename). A
  killed run keeps the committed vectors and every staged file; the next ``--transcribe`` run does only what is
  missing.
* **Nothing new without --transcribe.** A run without it never opens this folder (the store keeps serving
  the files it covers); another ASR or language re-transcribes everything (staged work is keyed by identity,
  so two never mix) and replaces the store at its commit.
* Segments are cut from the decoded file as they are, without the per-segment peak normalisation of the
  CLASP branch, exactly as the cascade in ``claspkit.evaluation.robustness.long_search`` transcribes them.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from claspkit.constants import SAMPLE_RATE
from claspkit.errors import BackboneError, ClaspkitError, ParamError
from claspkit.paths import atomic_path, atomic_write_text, display_path
from claspkit.search.index import identity_key, normalize_rows
from claspkit.search.manifest import read_manifest

__all__ = ["FOLDER", "FORMAT", "MANIFEST", "ROW_DTYPE", "SPAN_TOLERANCE_S", "TranscribeSummary", "TranscriptStore",
           "TranscriptWriter", "open_transcripts", "transcript_identity", "transcribe_index", "create_asr"]

FOLDER = "transcripts"
FORMAT = 1
MANIFEST = "manifest.json"
ROW_DTYPE = np.dtype([("start_s", "<f4"), ("end_s", "<f4"), ("offset", "<i8"), ("length", "<i8")])
SPAN_TOLERANCE_S = 2e-3     # spans are stored as float32 seconds on both sides: equal up to rounding


def _spans_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.all(np.abs(np.asarray(a, np.float64) - b) <= SPAN_TOLERANCE_S))


def _entry_line(text: str, words) -> bytes:
    words = [[str(w), round(float(s), 3), round(float(e), 3)] for w, s, e in words]
    return (json.dumps({"text": text, "words": words}, ensure_ascii=False) + "\n").encode("utf-8")


# ---------------------------------------------------------------------- reading
class TranscriptStore:
    """A committed transcript store, read-only: text vectors memory-mapped, one JSON line read per hit."""

    def __init__(self, root: Path, manifest: dict):
        self.root = Path(root)
        self.manifest = manifest
        g = manifest["generation"]
        n = manifest["n_segments"]
        self.rows = np.load(self.root / f"rows.{g}.npy")
        self.vectors = (np.load(self.root / f"vectors.{g}.npy", mmap_mode="r") if n
                        else np.zeros((0, manifest["dim"]), np.float32))
        self.text_path = self.root / f"text.{g}.jsonl"
        if len(self.rows) != n or len(self.vectors) != n:
            raise ClaspkitError(f"transcript store {display_path(self.root)} is inconsistent ({len(self.rows)} rows, "
                                f"{len(self.vectors)} vectors, manifest {n}); re-index with --transcribe")
        self.by_sha = {f["sha256"]: f for f in manifest["files"]}

    @property
    def identity(self) -> dict:
        return self.manifest["identity"]

    def file_spans(self, sha256: str) -> np.ndarray:
        f = self.by_sha[sha256]
        rows = self.rows[f["first_row"]:f["first_row"] + f["n_segments"]]
        return np.stack([rows["start_s"], rows["end_s"]], axis=1).astype(np.float32)

    def covers(self, sha256: str, spans: np.ndarray) -> bool:
        return sha256 in self.by_sha and _spans_equal(self.file_spans(sha256), spans)

    def lines(self, trows) -> list[bytes]:
        """The JSON lines of transcript rows, read by offset (never the whole file)."""
        out = []
        with open(self.text_path, "rb") as fh:
            for r in trows:
                fh.seek(int(self.rows["offset"][r]))
                out.append(fh.read(int(self.rows["length"][r])))
        return out

    def entries(self, trows) -> list[dict]:
        """``{"text", "words"}`` of transcript rows; ``words`` are ``[word, start_s, end_s]`` in the file."""
        return [json.loads(line.decode("utf-8")) for line in self.lines(trows)]

    def align(self, index) -> np.ndarray:
        """Per index row, its transcript row, or -1 where the store has none for that file's content and spans
        (every row, when the store's vectors come from another text encoder than the index's)."""
        out = np.full(len(index), -1, np.int64)
        text = self.identity.get("text", {})
        model = index.identity.get("model", {})
        if (text.get("name"), text.get("cache_id")) != (model.get("backbones", {}).get("text"),
                                                          model.get("cache_ids", {}).get("text")):
            return out
        for f in index.manifest["files"]:
            n = f["n_segments"]
            t = self.by_sha.get(f["sha256"])
            if not n or t is None or t["n_segments"] != n:
                continue
            rows = slice(f["first_row"], f["first_row"] + n)
            spans = np.stack([index.start_s[rows], index.end_s[rows]], axis=1)
            if _spans_equal(self.file_spans(f["sha256"]), spans):
                out[rows] = np.arange(t["first_row"], t["first_row"] + n)
        return out


def _read_manifest(folder: Path) -> dict | None:
    return read_manifest(folder / MANIFEST, "transcript", FORMAT, "re-index with `claspkit index ... --transcribe`")


def open_transcripts(index_root) -> TranscriptStore | None:
    """The index's transcript store, or None when it was never transcribed."""
    folder = Path(index_root) / FOLDER
    for attempt in range(2):        # a writer may commit between reading the manifest and the files
        manifest = _read_manifest(folder)
        if manifest is None:
            return None
        try:
            return TranscriptStore(folder, manifest)
        except FileNotFoundError as e:
            if attempt:
                raise ClaspkitError(f"transcript store {display_path(folder)} is missing {Path(e.filename).name}; "
                                    "re-index with `claspkit index ... --transcribe`") from e
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------- writing
def create_asr(name: str, language: str | None = None):
    """The ASR backbone ``name`` (through the model's one factory, which tests replace); it must give word times."""
    from claspkit.model import clasp as _model

    asr = _model.create_encoder("asr", name, **({"language": language} if language else {}))
    if not callable(getattr(asr, "transcribe_words", None)):
        raise ParamError(f"ASR backbone {name!r} gives no word timestamps; pass --transcribe whisper-tiny.en or "
                         "--transcribe whisper-base (see `claspkit backbones --role asr`)")
    return asr


def transcript_identity(asr, text) -> dict:
    """What a store's transcripts and vectors depend on: the ASR (weights, decoding, language) and the text encoder."""
    cid = getattr(asr, "words_cache_id", None) or getattr(asr, "cache_id", None)
    if not cid:
        raise BackboneError(f"ASR {getattr(asr, 'name', asr)!r} has no cache_id; create it with create_backbone")
    return {"asr": {"name": asr.name, "cache_id": str(cid), "language": getattr(asr, "language", None)},
            "text": {"name": text.name, "cache_id": str(text.cache_id)}}


class TranscriptWriter:
    """Stages per-file transcripts and commits a new generation of the store (the caller holds the index's lock)."""

    def __init__(self, index_root, identity: dict, dim: int):
        self.folder = Path(index_root) / FOLDER
        self.identity, self.dim = identity, int(dim)
        old = _read_manifest(self.folder)
        self.previous = open_transcripts(index_root) if old is not None and old["identity"] == identity else None
        self.work = self.folder / "work" / identity_key(identity)

    def _stage_path(self, sha256: str) -> Path:
        return self.work / f"{sha256}.npz"

    def stage(self, sha256: str, spans, texts: list[str], words: list, vectors: np.ndarray) -> None:
        lines = b"".join(_entry_line(t, w) for t, w in zip(texts, words))
        vectors = normalize_rows(vectors) if len(vectors) else np.zeros((0, self.dim), np.float32)
        if vectors.shape[1] != self.dim or not len(vectors) == len(texts) == len(words) == len(spans):
            raise ClaspkitError(f"{len(vectors)} {vectors.shape[1]}-d transcript vectors for {len(spans)} segments; "
                                f"the index's text encoder gives {self.dim}-d vectors: this is a bug, report it")
        self.work.mkdir(parents=True, exist_ok=True)
        with atomic_path(self._stage_path(sha256), suffix=".npz.tmp") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, spans=np.asarray(spans, np.float32).reshape(-1, 2), vectors=vectors,
                         lines=np.frombuffer(lines, np.uint8))

    def staged(self, sha256: str, spans: np.ndarray) -> bool:
        p = self._stage_path(sha256)
        if not p.is_file():
            return False
        with np.load(p) as z:
            return _spans_equal(z["spans"], spans)

    def _rows_for(self, sha256: str) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
        """(spans, vectors, JSON lines) of one file: staged, else from the previous store."""
        p = self._stage_path(sha256)
        if p.is_file():
            with np.load(p) as z:
                lines = z["lines"].tobytes().splitlines(keepends=True)
                return z["spans"], z["vectors"], lines
        prev = self.previous
        f = prev.by_sha[sha256]
        rows = range(f["first_row"], f["first_row"] + f["n_segments"])
        return prev.file_spans(sha256), np.asarray(prev.vectors[rows.start:rows.stop]), prev.lines(rows)

    def commit(self, shas: list[str]) -> TranscriptStore:
        """Write the next generation with the files ``shas`` (each staged or in the previous store), manifest last."""
        shas = sorted(set(shas))
        old = _read_manifest(self.folder)
        gen = (old["generation"] + 1) if old else 1
        parts = [self._rows_for(s) for s in shas]
        n = sum(len(p[0]) for p in parts)
        rows = np.zeros(n, ROW_DTYPE)
        vectors = np.zeros((n, self.dim), np.float32)
        files, r, offset = [], 0, 0
        with atomic_path(self.folder / f"text.{gen}.jsonl", suffix=".jsonl.tmp") as tmp:
            with open(tmp, "wb") as fh:
                for sha, (spans, vecs, lines) in zip(shas, parts):
                    files.append({"sha256": sha, "first_row": r, "n_segments": len(spans)})
                    for (s, e), v, line in zip(spans, vecs, lines):
                        rows[r] = (s, e, offset, len(line))
                        vectors[r] = v
                        fh.write(line)
                        offset += len(line)
                        r += 1
        for name, arr in ((f"rows.{gen}.npy", rows), (f"vectors.{gen}.npy", vectors)):
            with atomic_path(self.folder / name, suffix=".npy.tmp") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, arr)
        manifest = {"format": FORMAT, "generation": gen, "identity": self.identity, "dim": self.dim,
                    "n_segments": n, "files": files}
        atomic_write_text(self.folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        keep = {f"{p}.{gen}.{x}" for p, x in (("rows", "npy"), ("vectors", "npy"), ("text", "jsonl"))}
        for p in self.folder.iterdir():
            if p.is_file() and p.name != MANIFEST and p.name not in keep and not p.name.startswith("."):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        shutil.rmtree(self.folder / "work", ignore_errors=True)
        self.previous = TranscriptStore(self.folder, manifest)
        return self.previous


# ---------------------------------------------------------------------- the pass
@dataclass
class TranscribeSummary:
    """What one transcription pass did; ``rtf`` is audio seconds transcribed per second of the pass."""

    asr: str
    files_transcribed: int = 0
    files_reused: int = 0          # transcripts already stored for that content and those spans
    files_resumed: int = 0         # staged by an interrupted earlier run
    segments: int = 0              # in the store
    segments_transcribed: int = 0
    audio_seconds: float = 0.0     # of segments transcribed in this run
    skipped: list = field(default_factory=list)     # {"path", "reason"}: files that could not be read again
    timings: dict = field(default_factory=dict)     # load, decode, asr, text, commit

    @property
    def rtf(self) -> float:
        busy = sum(v for k, v in self.timings.items() if k != "load")
        return self.audio_seconds / busy if busy > 0 else 0.0

    def as_dict(self) -> dict:
        return {**self.__dict__, "rtf": round(self.rtf, 2)}

    def __str__(self) -> str:
        lines = [f"transcripts ({self.asr}): {self.segments} segments; this run: {self.files_transcribed} files "
                 f"transcribed ({self.segments_transcribed} segments, {self.audio_seconds / 60:.1f} min of speech, "
                 f"{self.rtf:.1f}x real time), {self.files_reused} reused, {self.files_resumed} resumed"]
        return "\n".join(lines + [f"  not transcribed {s['path']}: {s['reason']}" for s in self.skipped])


def transcribe_index(index, asr, language: str | None = None, progress: bool = False,
                     batch_size: int = 16) -> TranscribeSummary:
    """Transcribe (with word times) and embed every segment of the committed ``index`` that the store lacks, then
    commit the store; ``asr`` is a backbone name or a ``create_asr`` encoder. The caller holds the index's lock
    (``build_index`` runs this inside its writer)."""
    from claspkit.data.audio import load_audio
    from claspkit.progress import progress_bar
    from claspkit.search.text import text_encoder

    t0 = time.perf_counter()
    asr = create_asr(asr, language) if isinstance(asr, str) else asr
    text = text_encoder(index)
    summary = TranscribeSummary(asr=asr.name, timings={"load": time.perf_counter() - t0, "decode": 0.0, "asr": 0.0,
                                                       "text": 0.0, "commit": 0.0})
    tm = summary.timings
    writer = TranscriptWriter(index.root, transcript_identity(asr, text), index.dim)
    root = index.audio_root
    todo, keep = [], set()
    for path, f in index.files.items():
        if not f["n_segments"] or f["sha256"] in keep:
            continue
        spans = index.file_rows(path)[1]
        if writer.previous is not None and writer.previous.covers(f["sha256"], spans):
            summary.files_reused += 1
        elif writer.staged(f["sha256"], spans):
            summary.files_resumed += 1
        elif root is None:
            summary.skipped.append({"path": path, "reason": "the indexed folder is not found from the index"})
            continue
        else:
            todo.append((path, f["sha256"], spans))
        keep.add(f["sha256"])

    def embed(texts: list[str]) -> np.ndarray:
        t = time.perf_counter()
        vecs = [np.asarray(text.encode(texts[i:i + batch_size]), np.float32) for i in range(0, len(texts), batch_size)]
        tm["text"] += time.perf_counter() - t
        return np.concatenate(vecs) if vecs else np.zeros((0, index.dim), np.float32)

    for path, sha, spans in progress_bar(todo, desc="transcribing", unit="file", disable=not progress):
        t = time.perf_counter()
        try:
            audio = load_audio(root / path, SAMPLE_RATE)
        except (ClaspkitError, OSError, ValueError, RuntimeError) as e:
            from claspkit.search.staging import skip_reason

            summary.skipped.append({"path": path, "reason": skip_reason(e, root / path)})
            keep.discard(sha)
            continue
        finally:
            tm["decode"] += time.perf_counter() - t
        waves = [audio[int(round(s * SAMPLE_RATE)):int(round(e * SAMPLE_RATE))] for s, e in spans]
        t = time.perf_counter()
        out = asr.transcribe_words(waves)
        tm["asr"] += time.perf_counter() - t
        if len(out) != len(waves):
            raise BackboneError(f"ASR {asr.name!r} returned {len(out)} transcripts for {len(waves)} segments: "
                                "the backbone is broken, report it")
        texts = [str(o["text"]).strip() for o in out]
        words = [[(w, s0 + ws, s0 + we) for w, ws, we in o["words"]] for o, (s0, _) in zip(out, spans)]
        writer.stage(sha, spans, texts, words, embed(texts))  # at once: the ASR is costly, a crash must not lose it
        summary.files_transcribed += 1
        summary.segments_transcribed += len(spans)
        summary.audio_seconds += float(np.sum(spans[:, 1] - spans[:, 0]))
    t = time.perf_counter()
    store = writer.commit(sorted(keep))
    tm["commit"] += time.perf_counter() - t
    summary.segments = int(store.manifest["n_segments"])
    summary.timings = {k: round(v, 3) for k, v in tm.items()}
    return summary
