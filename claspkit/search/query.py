"""Search your own recordings: index a folder of audio with a trained CLASP model, query it with text.

``build_index`` walks a folder, cuts each recording into speech segments (``claspkit.search.segment``),
embeds every segment with the checkpoint's ``claspkit.CLASP`` model, the way it was trained (speech
backbone + spectrogram-image backbone -> fusion head, L2-normalised) and commits them to a persistent
index (``claspkit.search.index``). ``search``
embeds a query with the checkpoint's frozen text backbone -- the space the fusion head was trained to
map speech into -- so a query in any language that text encoder knows finds English (or other) speech
without any transcription.

Choices:

* Each segment is peak-normalised on its own before encoding, as every training clip was
  (``claspkit.data.audio`` normalises whole files; a segment of a long recording is the training unit here).
* Segments of several short files are batched together (``batch_size``) so a folder of short clips
  encodes as fast as one long recording; each file is staged as soon as its batch is done, so a crash
  loses at most one batch.
* ``engine="ray"`` (``claspkit.search.ray_index``) runs decoding, the VAD and each backbone on Ray, on the same
  groups and batches as this loop, and stages the results here: the same index, byte for byte.
* A file that cannot be decoded (corrupt, zero-length, silent, unsupported format) is skipped with the
  decoder's reason and listed in the summary; the run goes on. A file with no speech is recorded with
  zero segments (and listed), so later runs do not decode it again.
* Only the branches the fusion model uses are computed (a ``branches='speech'`` model never draws
  spectrograms). An ``attention`` head gets the speech encoder's frames (``encode_frames``, pooled as
  in training: the checkpoint's ``frame_pool``) instead of their mean.
* The image CNN runs in ONNX Runtime (``image_runtime="onnx"``, the default here; ``"torch"`` gives
  the training features bit for bit, ORT differs by ~1e-6 relative), and the speech and image
  branches run concurrently, each with half the cores (both runtimes release the GIL; results are
  bit-identical whatever the thread count).

Speed (``python -m claspkit.bench.search``, 2 cores at load average 1.4-1.9, 4.2 min of espeak-ng
lectures cut into 68 segments of 3.55 s, median of 3 runs): whisper-tiny.en + efficientnet-lite0 +
concat head 64x real time (runs 52/64/67x; 46.9x with the branches one after the other, 13x with the
CNN in torch on a loaded machine); a speech-only head 73.5x. In the same run the CNN took 0.91 s in
ONNX Runtime vs 3.01 s in torch, and drawing the spectrograms 0.59 s. Decoding and VAD are ~20 % of
the speech-only time.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from claspkit.errors import ClaspkitError, DataMissingError, ParamError
from claspkit.search.index import Hit, Index, IndexWriter, load_index
from claspkit.model.clasp import CLASP
from claspkit.paths import display_path, sha256_file
from claspkit.search.segment import SAMPLE_RATE, SegmentParams, segment
from claspkit.search.text import clear_text_encoders, text_encoder
from claspkit.search.staging import (
    cut_segments, read_audio as _read, settled_without_embedding, skip_reason, stage_embedded,
)

__all__ = [
    "AUDIO_EXTENSIONS", "BuildSummary", "audio_files", "cut_segments", "stage_embedded", "build_index", "skip_reason",
    "clear_caches", "open_index", "text_encoder", "check_lang", "search",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a")
_LANG = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


# ---------------------------------------------------------------------- indexing
@dataclass
class BuildSummary:
    """What one ``build_index`` run did.

    ``rtf`` is audio seconds embedded per wall second (x real time), not counting the one-time model
    load (``timings["load"]``): the rate at which a long run goes.
    """

    index: Path
    files_indexed: int = 0          # files in the index with at least one segment
    files_embedded: int = 0         # decoded and embedded in this run (with speech: no-speech files are skipped)
    files_reused: int = 0           # not embedded: content already in the index (unchanged, renamed, copies)
    files_resumed: int = 0          # embedded by an interrupted earlier run
    files_removed: int = 0          # gone from the folder, dropped from the index
    skipped: list = field(default_factory=list)   # {"path", "reason"}
    segments: int = 0               # in the index
    segments_embedded: int = 0      # in this run
    audio_seconds: float = 0.0      # embedded in this run
    wall_seconds: float = 0.0
    timings: dict = field(default_factory=dict)   # seconds per stage: hash, decode, vad, speech, image, fusion, commit
    transcripts: object = None      # a TranscribeSummary when run with transcribe=

    @property
    def rtf(self) -> float:
        busy = self.wall_seconds - self.timings.get("load", 0.0)
        return self.audio_seconds / busy if busy > 0 else 0.0

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("index", "transcripts")}
        extra = {"transcripts": self.transcripts.as_dict()} if self.transcripts is not None else {}
        return {"index": display_path(self.index), **d, "rtf": round(self.rtf, 2), **extra}

    def __str__(self) -> str:
        lines = [f"index {display_path(self.index)}: {self.files_indexed} files, {self.segments} segments",
                 f"this run: {self.files_embedded} embedded ({self.segments_embedded} segments, "
                 f"{self.audio_seconds / 60:.1f} min of audio, {self.rtf:.1f}x real time), "
                 f"{self.files_reused} reused (content already indexed), {self.files_resumed} resumed, "
                 f"{self.files_removed} removed, {len(self.skipped)} skipped"]
        lines += [f"  skipped {s['path']}: {s['reason']}" for s in self.skipped]
        lines += [str(self.transcripts)] if self.transcripts is not None else []
        return "\n".join(lines)


def audio_files(audio_dir: Path, exclude: Path | None = None) -> list[Path]:
    """Audio files under ``audio_dir`` by extension, sorted; hidden entries and ``exclude`` are left out."""
    exclude = exclude.resolve() if exclude is not None else None
    out = []
    for dirpath, dirnames, filenames in os.walk(audio_dir):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (exclude is None or (here / d).resolve() != exclude))
        out += [here / f for f in filenames if not f.startswith(".") and f.lower().endswith(AUDIO_EXTENSIONS)]
    return sorted(out, key=lambda p: p.relative_to(audio_dir).as_posix())


def build_index(audio_dir, checkpoint_dir=None, out=None, progress: bool = True, *,
                rebuild: bool = False,
                batch_size: int = 16, segment_params: SegmentParams | None = None,
                image_runtime: str = "onnx", engine: str = "local", address: str | None = None,
                workers: int | None = None, transcribe: str | None = None,
                asr_language: str | None = None) -> BuildSummary:
    """Index every audio file under ``audio_dir`` into the folder ``out``; see the module docstring.

    ``checkpoint_dir``: a checkpoint folder or shipped model name; None uses the model that ships with claspkit.

    ``engine="ray"`` runs decoding, the VAD and the backbones on Ray (``claspkit.search.ray_index``; ``address`` of a
    running cluster, ``workers`` actors per backbone) and writes the same index, byte for byte.
    ``transcribe`` (an ASR backbone name) then stores every segment's transcript that the index lacks
    (``claspkit.search.transcripts``, here on this machine, under the same lock)."""
    from claspkit.encoders.engine import check_address, check_engine, import_ray
    from claspkit.progress import progress_bar

    if check_engine(engine) == "ray":
        import_ray()                    # fail before the model loads
        check_address(address)

    t0 = time.perf_counter()
    if out is None:
        raise ParamError("name the index folder to write (out=...)")
    audio_dir, out = Path(audio_dir), Path(out)
    if not audio_dir.is_dir():
        raise DataMissingError(f"audio folder {display_path(audio_dir)} does not exist; pass the folder to index")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ParamError(f"batch_size must be a positive int, got {batch_size!r}")
    params = segment_params or SegmentParams()
    embedder = CLASP.from_pretrained(checkpoint_dir, image_runtime=image_runtime, local_only=True)
    if transcribe:
        from claspkit.search.transcripts import create_asr, transcribe_index

        transcribe = create_asr(transcribe, asr_language)     # a bad name fails before any work
    identity = {"model": embedder.identity, "segmentation": params.key(), "dim": embedder.dim}
    summary = BuildSummary(index=out)
    tm = summary.timings
    for k in ("hash", "decode", "vad", *embedder.encoders, "fusion", "commit"):
        tm[k] = 0.0
    tm["load"] = time.perf_counter() - t0

    with IndexWriter(out, identity, audio_dir, rebuild=rebuild) as writer:
        prev = writer.previous
        prev_by_sha = {f["sha256"]: f for f in prev.files.values()} if prev is not None else {}
        entries, todo = [], []
        how: dict[str, str] = {}  # path -> embedded | reused | resumed: counted once, after the VAD has spoken
        paths = audio_files(audio_dir, exclude=out)
        for path in paths:
            rel = path.relative_to(audio_dir).as_posix()
            try:
                st = path.stat()
                old = prev.files.get(rel) if prev is not None else None
                if old is not None and old["size"] == st.st_size and old["mtime_ns"] == st.st_mtime_ns:
                    sha = old["sha256"]
                else:
                    t = time.perf_counter()
                    sha = sha256_file(path)
                    tm["hash"] += time.perf_counter() - t
            except OSError as e:
                summary.skipped.append({"path": rel, "reason": f"cannot read the file ({e.strerror or e})"})
                continue
            entry = {"path": rel, "sha256": sha, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
            if sha in prev_by_sha:
                entry["duration_s"] = prev_by_sha[sha]["duration_s"]
                how[rel] = "reused"
                entries.append(entry)
            else:
                todo.append((path, entry))
        if prev is not None:
            summary.files_removed = len(set(prev.files) - {p.relative_to(audio_dir).as_posix() for p in paths})

        bar = progress_bar(total=len(todo), unit="file", desc="indexing", disable=not progress, dynamic_ncols=True)
        pending: list[tuple[dict, np.ndarray, list]] = []
        staged_now: dict[str, float] = {}

        def flush():
            waves = [w for _, audio, spans in pending for w in cut_segments(audio, spans)]
            vecs = embedder.encode_waves(waves, batch_size, tm) if waves else np.zeros((0, embedder.dim), np.float32)
            stage_embedded(writer, pending, vecs, summary, how)
            bar.update(len(pending))
            wall = time.perf_counter() - t0 - tm["load"]
            bar.set_postfix(segments=summary.segments_embedded, audio=f"{summary.audio_seconds / 60:.1f}min",
                            speed=f"{summary.audio_seconds / wall:.0f}x")
            pending.clear()

        try:
            if engine == "ray":
                from claspkit.search.ray_index import index_todo

                index_todo(embedder, writer, todo, params, batch_size, summary, entries, how, bar,
                           address=address, workers=workers)
                todo = []               # embedded and staged: the local loop below has nothing left
            for path, entry in todo:
                sha = entry["sha256"]
                if settled_without_embedding(entry, writer, staged_now, summary, entries, how, bar):
                    continue
                t = time.perf_counter()
                try:
                    audio = _read(path)
                except (ClaspkitError, OSError, ValueError, RuntimeError) as e:
                    summary.skipped.append({"path": entry["path"], "reason": skip_reason(e, path)})
                    tm["decode"] += time.perf_counter() - t
                    bar.update(1)
                    continue
                tm["decode"] += time.perf_counter() - t
                t = time.perf_counter()
                spans = segment(audio, SAMPLE_RATE, params)
                tm["vad"] += time.perf_counter() - t
                entry["duration_s"] = round(len(audio) / SAMPLE_RATE, 3)
                entries.append(entry)
                pending.append((entry, audio, spans))
                staged_now[sha] = entry["duration_s"]      # staged at the next flush, before the commit
                if sum(len(s) for _, _, s in pending) >= batch_size:
                    flush()
            if pending:
                flush()
        finally:
            bar.close()

        t = time.perf_counter()
        no_speech = [{"path": e["path"], "reason": "no speech found by the voice-activity detector"}
                     for e in entries if writer.segments_of(e) == 0]
        silent = {e["path"] for e in no_speech}  # listed as skipped, so not counted as embedded or reused too
        for kind in ("embedded", "reused", "resumed"):
            setattr(summary, f"files_{kind}", sum(1 for p, k in how.items() if k == kind and p not in silent))
        index = writer.commit(entries, summary.skipped + no_speech)
        tm["commit"] += time.perf_counter() - t
        if transcribe:
            summary.transcripts = transcribe_index(index, transcribe, progress=progress, batch_size=batch_size)
    summary.skipped = sorted(summary.skipped + no_speech, key=lambda s: s["path"])
    summary.files_indexed = sum(1 for f in index.files.values() if f["n_segments"] > 0)
    summary.segments = len(index)
    summary.wall_seconds = time.perf_counter() - t0
    summary.timings = {k: round(v, 3) for k, v in tm.items()}
    return summary


# ---------------------------------------------------------------------- searching
_INDEXES: dict = {}


def clear_caches() -> None:
    """Forget loaded text encoders and indexes (e.g. after rebuilding an index in the same process)."""
    from claspkit.search.rank import clear_cache

    clear_text_encoders()
    _INDEXES.clear()
    clear_cache()


def open_index(path) -> Index:
    """``load_index`` with a cache keyed by the manifest's mtime, so repeated queries reuse the mmap."""
    path = Path(path)
    manifest = path / "index.json"
    key = (str(path.resolve()), manifest.stat().st_mtime_ns if manifest.is_file() else None)
    if key not in _INDEXES:
        _INDEXES.clear()
        _INDEXES[key] = load_index(path)
    return _INDEXES[key]


def check_lang(lang: str | None) -> str | None:
    if lang is None:
        return None
    if not isinstance(lang, str) or not _LANG.match(lang):
        raise ParamError(f"lang must be a language code such as 'en', 'fr', 'zh' or 'pt-BR', got {lang!r}")
    return lang


def search(index, query: str, k: int = 10, lang: str | None = None, rank: str | None = None,
           refine: bool = True) -> list[Hit]:
    """Top-k segments for a text query, best first: ``RankedHit(file, start_s, end_s, score, path, ...)``.

    ``index`` is an index folder or a loaded ``Index``. ``lang`` names the query's language for the
    record only: the offline text encoders embed every language the same way (e5 prefixes every text
    with "query: "), so it never changes the scores. ``rank`` is clasp, transcript or hybrid (None: hybrid
    when every segment has a transcript, else clasp); ``refine`` narrows each hit to its words or, without
    transcripts, to a finer VAD cut (``claspkit.search.rank``).
    """
    check_lang(lang)
    if not isinstance(query, str) or not query.strip():
        raise ParamError(f"query must be a non-empty string, got {query!r}")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ParamError(f"k must be a positive integer, got {k!r}")
    idx = index if isinstance(index, Index) else open_index(index)
    if len(idx) == 0:
        return []
    q = np.asarray(text_encoder(idx).encode([query.strip()]), dtype=np.float32)
    from claspkit.search.rank import search_ranked

    return search_ranked(idx, q, int(k), rank, refine)
