"""Search your own recordings: index a folder of audio with a trained CLASP model, query it with text.

``build_index`` walks a folder, cuts each recording into speech segments (``claspkit.segment``),
embeds every segment the way the model was trained (speech backbone + spectrogram-image backbone ->
fusion head, L2-normalised) and commits them to a persistent index (``claspkit.index``). ``search``
embeds a query with the checkpoint's frozen text backbone -- the space the fusion head was trained to
map speech into -- so a query in any language that text encoder knows finds English (or other) speech
without any transcription.

Choices:

* Each segment is peak-normalised on its own before encoding, as every training clip was
  (``claspkit.audio`` normalises whole files; a segment of a long recording is the training unit here).
* Segments of several short files are batched together (``batch_size``) so a folder of short clips
  encodes as fast as one long recording; each file is staged as soon as its batch is done, so a crash
  loses at most one batch.
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

Speed (``python -m claspkit.bench_search``, 2 cores at load average 1.4-1.9, 4.2 min of espeak-ng
lectures cut into 68 segments of 3.55 s, median of 3 runs): whisper-tiny.en + efficientnet-lite0 +
concat head 64x real time (runs 52/64/67x; 46.9x with the branches one after the other, 13x with the
CNN in torch on a loaded machine); a speech-only head 73.5x. In the same run the CNN took 0.91 s in
ONNX Runtime vs 3.01 s in torch, and drawing the spectrograms 0.59 s. Decoding and VAD are ~20 % of
the speech-only time.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ClaspkitError, DataMissingError, ParamError, choices_hint
from .index import Hit, Index, IndexWriter, load_index
from .paths import display_path, sha256_file
from .segment import SAMPLE_RATE, SegmentParams, segment

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a")
ROLES = ("speech", "image", "text")
NEEDS = {"combined": ("speech", "image"), "speech": ("speech",), "image": ("image",)}
_LANG = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


def create_encoder(role: str, name: str, **options):
    """The one place backbones are created (tests replace it with fakes)."""
    from .backbones import create_backbone

    return create_backbone(role, name, **options)


# ---------------------------------------------------------------------- the model
def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # not on Linux
        return os.cpu_count() or 1


def _create_sharing(role: str, name: str, options: dict):
    """``create_encoder`` with a thread budget; backbones without a ``threads`` option get none."""
    try:
        return create_encoder(role, name, **options)
    except ParamError:
        if "threads" not in options:
            raise
        return create_encoder(role, name, **{k: v for k, v in options.items() if k != "threads"})


def checkpoint_backbones(config: dict) -> dict:
    """Backbone names a checkpoint config names: ``{"backbones": {...}}`` or ``<role>_backbone`` keys."""
    names = dict(config.get("backbones") or {})
    for role in ROLES:
        names.setdefault(role, config.get(f"{role}_backbone"))
    return names


class SegmentEmbedder:
    """A checkpoint's fusion head with the backbones it was trained on: waveforms -> unit vectors."""

    def __init__(self, checkpoint_dir, image_runtime: str = "onnx"):
        from .frames import FRAME_POOL
        from .fusion import config_keys
        from .train import MODEL_FILE, load_checkpoint

        checkpoint_dir = Path(checkpoint_dir)
        self.model, self.config = load_checkpoint(checkpoint_dir)
        names = checkpoint_backbones(self.config)
        self.branches = self.config.get("branches", "combined")
        self.needs = NEEDS.get(self.branches, ("speech", "image"))
        missing = [r for r in (*self.needs, "text") if not names.get(r)]
        if missing:
            raise ClaspkitError(f"the checkpoint {display_path(checkpoint_dir)} does not name its "
                                f"{', '.join(missing)} backbone(s) (config.json keys "
                                f"{', '.join(r + '_backbone' for r in missing)}); retrain it with the backbone names "
                                "in the training config")
        from .config import IMAGE_RUNTIMES

        if image_runtime not in IMAGE_RUNTIMES:
            raise ParamError(f"unknown image runtime {choices_hint(image_runtime, IMAGE_RUNTIMES)}")
        # the branches run concurrently (see embed), so each gets its share of the cores
        share = {"threads": max(1, _cpus() // len(self.needs))}
        self.frames = self.config.get("fusion") == "attention"
        pool = {"frame_pool": int(self.config.get("frame_pool", FRAME_POOL))} if self.frames else {}
        options = {"speech": {**share, **pool},
                   "image": {**share, "runtime": image_runtime} if image_runtime != "torch" else {}}
        self.encoders = {r: _create_sharing(r, names[r], options[r]) for r in self.needs}
        if self.frames and not hasattr(self.encoders["speech"], "encode_frames"):
            raise ClaspkitError(f"the checkpoint {display_path(checkpoint_dir)} is an attention head, which needs "
                                f"frame features, but speech backbone {names['speech']} has no encode_frames; "
                                "use a speech backbone from claspkit.backbones")
        text = create_encoder("text", names["text"])
        self.dim = int(self.config["out_dim"])
        for role, key in (("speech", "speech_dim"), ("image", "image_dim")):
            enc = self.encoders.get(role)
            if enc is not None and int(enc.dim) != int(self.config[key]):
                raise ClaspkitError(f"backbone {enc.name} gives {enc.dim}-d {role} features but the checkpoint's "
                                    f"{key} is {self.config[key]}; use the checkpoint trained on {enc.name}")
        if int(text.dim) != self.dim:
            raise ClaspkitError(f"text backbone {text.name} is {text.dim}-d but the checkpoint maps speech to "
                                f"{self.dim}-d; use the checkpoint trained against {text.name}")
        weights = sha256_file(checkpoint_dir / MODEL_FILE)
        fusion = {k: self.config.get(k) for k in config_keys(self.config)}
        digest = hashlib.sha256(json.dumps({"weights": weights, "fusion": fusion}, sort_keys=True).encode())
        self.identity_model = {
            "checkpoint": checkpoint_dir.resolve().name,
            "checkpoint_sha256": digest.hexdigest(),
            "backbones": {r: (names[r] if r in (*self.needs, "text") else None) for r in ROLES},
            "cache_ids": {**{r: str(self._cache_id(r, e)) for r, e in self.encoders.items()}, "text": str(text.cache_id)},
        }

    def _cache_id(self, role: str, enc) -> str:
        """What the features of ``role`` are: the frames' id for an attention head's speech branch."""
        return enc.frames_cache_id if role == "speech" and self.frames else enc.cache_id

    def embed(self, waves: list[np.ndarray], batch_size: int = 16, timings: dict | None = None) -> np.ndarray:
        """(n, dim) float32 unit vectors for n 16 kHz segments."""
        from .train import embed_speech

        timings = timings if timings is not None else {}

        def run(role, enc):
            if role == "speech" and self.frames:
                return frames(enc)
            t = time.perf_counter()
            parts = [np.asarray(enc.encode(waves[a:a + batch_size]), dtype=np.float32)
                     for a in range(0, len(waves), batch_size)]
            x = np.concatenate(parts)
            if x.shape != (len(waves), int(enc.dim)):
                raise ClaspkitError(f"backbone {enc.name} returned shape {x.shape} for {len(waves)} "
                                    f"segments, expected ({len(waves)}, {enc.dim}); the backbone is broken")
            return x, time.perf_counter() - t

        def frames(enc):
            t = time.perf_counter()
            x = [f for a in range(0, len(waves), batch_size) for f in enc.encode_frames(waves[a:a + batch_size])]
            shapes = {np.shape(f)[1:] for f in x}
            if len(x) != len(waves) or shapes - {(int(enc.dim),)}:
                raise ClaspkitError(f"backbone {enc.name} returned {len(x)} frame sequences of widths {sorted(shapes)} "
                                    f"for {len(waves)} segments, expected {len(waves)} of width {enc.dim}; "
                                    "the backbone is broken")
            return x, time.perf_counter() - t

        if len(self.encoders) > 1:
            # CTranslate2 and ONNX Runtime release the GIL, so the branches overlap (on 2 cores, 64 clips:
            # 4.9 s instead of 5.8 s one after the other); their timings overlap too.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(self.encoders), thread_name_prefix="claspkit-branch") as pool:
                futures = {role: pool.submit(run, role, enc) for role, enc in self.encoders.items()}
                done = {role: f.result() for role, f in futures.items()}
        else:
            done = {role: run(role, enc) for role, enc in self.encoders.items()}
        feats = {role: x for role, (x, _) in done.items()}
        for role, (_, seconds) in done.items():
            timings[role] = timings.get(role, 0.0) + seconds
        t = time.perf_counter()
        out = embed_speech(self.model, feats.get("speech"), feats.get("image"))
        timings["fusion"] = timings.get("fusion", 0.0) + time.perf_counter() - t
        return out


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

    @property
    def rtf(self) -> float:
        busy = self.wall_seconds - self.timings.get("load", 0.0)
        return self.audio_seconds / busy if busy > 0 else 0.0

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "index"}
        return {"index": display_path(self.index), **d, "rtf": round(self.rtf, 2)}

    def __str__(self) -> str:
        lines = [f"index {display_path(self.index)}: {self.files_indexed} files, {self.segments} segments",
                 f"this run: {self.files_embedded} embedded ({self.segments_embedded} segments, "
                 f"{self.audio_seconds / 60:.1f} min of audio, {self.rtf:.1f}x real time), "
                 f"{self.files_reused} reused (content already indexed), {self.files_resumed} resumed, "
                 f"{self.files_removed} removed, {len(self.skipped)} skipped"]
        lines += [f"  skipped {s['path']}: {s['reason']}" for s in self.skipped]
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


def _read(path: Path) -> np.ndarray:
    from .audio import load_audio

    return load_audio(path, SAMPLE_RATE)


def _cut(audio: np.ndarray, spans) -> list[np.ndarray]:
    """Segments, each peak-normalised like a training clip."""
    out = []
    for s, e in spans:
        w = audio[int(round(s * SAMPLE_RATE)):int(round(e * SAMPLE_RATE))]
        out.append((w / max(float(np.abs(w).max(initial=0.0)), 1e-4)).astype(np.float32))
    return out


def build_index(audio_dir, checkpoint_dir, out, progress: bool = True, *, rebuild: bool = False,
                batch_size: int = 16, segment_params: SegmentParams | None = None,
                image_runtime: str = "onnx") -> BuildSummary:
    """Index every audio file under ``audio_dir`` into the folder ``out``; see the module docstring."""
    from .progress import progress_bar

    t0 = time.perf_counter()
    audio_dir, out = Path(audio_dir), Path(out)
    if not audio_dir.is_dir():
        raise DataMissingError(f"audio folder {display_path(audio_dir)} does not exist; pass the folder to index")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ParamError(f"batch_size must be a positive int, got {batch_size!r}")
    params = segment_params or SegmentParams()
    embedder = SegmentEmbedder(checkpoint_dir, image_runtime)
    identity = {"model": embedder.identity_model, "segmentation": params.key(), "dim": embedder.dim}
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
            waves = [w for _, audio, spans in pending for w in _cut(audio, spans)]
            vecs = embedder.embed(waves, batch_size, tm) if waves else np.zeros((0, embedder.dim), np.float32)
            row = 0
            for entry, _, spans in pending:
                writer.stage(entry["sha256"], vecs[row:row + len(spans)], spans, entry["duration_s"])
                row += len(spans)
                how[entry["path"]] = "embedded"
                summary.segments_embedded += len(spans)
                summary.audio_seconds += entry["duration_s"]
            bar.update(len(pending))
            wall = time.perf_counter() - t0 - tm["load"]
            bar.set_postfix(segments=summary.segments_embedded, audio=f"{summary.audio_seconds / 60:.1f}min",
                            speed=f"{summary.audio_seconds / wall:.0f}x")
            pending.clear()

        try:
            for path, entry in todo:
                sha = entry["sha256"]
                if sha in staged_now or writer.is_staged(sha):
                    # a second copy of a file embedded in this run, or resumed from an interrupted run
                    if sha in staged_now:
                        entry["duration_s"] = staged_now[sha]
                        how[entry["path"]] = "reused"
                    else:
                        entry["duration_s"] = writer.staged_duration(sha)
                        how[entry["path"]] = "resumed"
                    entries.append(entry)
                    bar.update(1)
                    continue
                if entry["size"] == 0:
                    summary.skipped.append({"path": entry["path"], "reason": "zero-length file (0 bytes)"})
                    bar.update(1)
                    continue
                t = time.perf_counter()
                try:
                    audio = _read(path)
                except (ClaspkitError, OSError, ValueError, RuntimeError) as e:
                    summary.skipped.append({"path": entry["path"], "reason": _reason(e, path)})
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
    summary.skipped = sorted(summary.skipped + no_speech, key=lambda s: s["path"])
    summary.files_indexed = sum(1 for f in index.files.values() if f["n_segments"] > 0)
    summary.segments = len(index)
    summary.wall_seconds = time.perf_counter() - t0
    summary.timings = {k: round(v, 3) for k, v in tm.items()}
    return summary


def _reason(e: Exception, path: Path) -> str:
    """The decoder's message without the path prefix (the listing already names the file)."""
    msg = str(e)
    for p in (display_path(path), str(path)):
        msg = msg.replace(p, "the file")
    return msg.replace("from the manifest", "from the folder")


# ---------------------------------------------------------------------- searching
_TEXT_ENCODERS: dict = {}
_INDEXES: dict = {}


def clear_caches() -> None:
    """Forget loaded text encoders and indexes (e.g. after rebuilding an index in the same process)."""
    _TEXT_ENCODERS.clear()
    _INDEXES.clear()


def open_index(path) -> Index:
    """``load_index`` with a cache keyed by the manifest's mtime, so repeated queries reuse the mmap."""
    path = Path(path)
    manifest = path / "index.json"
    key = (str(path.resolve()), manifest.stat().st_mtime_ns if manifest.is_file() else None)
    if key not in _INDEXES:
        _INDEXES.clear()
        _INDEXES[key] = load_index(path)
    return _INDEXES[key]


def text_encoder(index: Index):
    """The index's text backbone, checked to be the same (cache_id) as when the index was built."""
    model = index.identity["model"]
    name = model["backbones"]["text"]
    if name not in _TEXT_ENCODERS:
        _TEXT_ENCODERS[name] = create_encoder("text", name)
    enc = _TEXT_ENCODERS[name]
    want = model["cache_ids"]["text"]
    if str(enc.cache_id) != want:
        raise ClaspkitError(f"text backbone {name} is now {enc.cache_id!r} but the index was built against "
                            f"{want!r} (its weights or preprocessing changed); rebuild the index with "
                            "`claspkit index ... --rebuild`")
    return enc


def check_lang(lang: str | None) -> str | None:
    if lang is None:
        return None
    if not isinstance(lang, str) or not _LANG.match(lang):
        raise ParamError(f"lang must be a language code such as 'en', 'fr', 'zh' or 'pt-BR', got {lang!r}")
    return lang


def search(index, query: str, k: int = 10, lang: str | None = None) -> list[Hit]:
    """Top-k segments for a text query, best first: ``Hit(file, start_s, end_s, score, path)``.

    ``index`` is an index folder or a loaded ``Index``. ``lang`` names the query's language for the
    record only: the offline text encoders embed every language the same way (e5 prefixes every text
    with "query: "), so it never changes the scores.
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
    return idx.search(q, int(k))
