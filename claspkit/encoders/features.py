"""Feature extraction into a content-addressed, resumable cache.

CLASP trains a small head on *frozen* encoders, so each (backbone, input) pair needs computing once
and every later notebook, preset or re-run reads it back. Why this layout:

* **Key** = ``sha256(encoder.cache_id + content_sha256)``, where the content hash is that of the audio
  file's bytes or of the UTF-8 text. Editing one sentence or replacing one wav recomputes exactly that
  item; another backbone (or new weights/preprocessing, which change ``cache_id``) never collides.
* **One ``.npy`` per item** under ``root/<slug(cache_id)>/<key[:2]>/<key>.npy``, written atomically
  (temporary file, fsync, ``os.replace``; a batch's files are written by a few threads at once so
  their fsyncs share journal commits). A killed run leaves whole entries or none; each batch is
  written as soon as it is encoded, so Ctrl-C or SIGKILL loses at most the batch in flight. Reading
  checks the exact byte length and the ``.npy`` header for the expected dimension and that every value
  is finite; anything else is deleted and recomputed, never returned. (Measured against append-only
  shard files: loading 5000 entries takes about 0.2 s either way, so the simpler per-item layout wins.)
* **Frame features** (``extract_frames``, for the attention head) use the same cache, keys and atomic
  writes under the encoder's ``frames_cache_id``: one ``.npy`` per item holding a (T, dim) float16
  array of its valid frames, checked on reading for dtype, dim, exact length and finite values
  (``claspkit.encoders.frames`` says why float16 and 4x time pooling).
* Speech batches are **length-bucketed** (longest first) so padding stays small and an
  out-of-memory batch shows up at once rather than at the end.
* **Engines.** ``engine="ray"`` loads and encodes the very same batches on Ray workers
  (``claspkit.encoders.engine``) and writes them here as they return: the same entries, bit for bit.
* A file that cannot be used, or an encoder output that is not finite, is an error naming the file,
  raised after the usable items are computed and cached, so one run reports every bad file and the
  next run computes only what is still missing. No random or zero vector ever stands in for an item.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import re
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from claspkit.constants import ROLES
from claspkit.encoders.batches import MAX_LISTED, FrameView, encode_batch, listing, named
from claspkit.encoders.frames import DTYPE as FRAME_DTYPE
from claspkit.encoders.frames import FRAME_POOL, Frames
from claspkit.errors import AudioError, BackboneError, ClaspkitError, DataMissingError, ParamError, choices_hint
from claspkit.paths import atomic_path, atomic_write_text, data_dir, display_path, sha256_file

__all__ = [
    "sha256_text", "FeatureCache", "ExtractStats", "extract_audio", "extract_frames", "extract_text",
    "ManifestFeatures", "encoder_options", "extract_manifest_features",
]

_MEMO_NAME = "file-sha256.json"


# --------------------------------------------------------------------------- hashing
def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=64)
def _slug(cache_id: str) -> str:
    """Readable folder name per backbone; the short hash keeps distinct ids apart after slugging."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", cache_id).strip("-.")[:60] or "encoder"
    return f"{readable}-{hashlib.sha256(cache_id.encode('utf-8')).hexdigest()[:8]}"


@functools.lru_cache(maxsize=None)
def _npy_header(dim: int) -> bytes:
    """The exact .npy header of a little-endian float32 vector of length ``dim``."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.zeros(dim, dtype="<f4"), version=(1, 0))
    return buf.getvalue()[: -4 * dim]


# --------------------------------------------------------------------------- the cache
class FeatureCache:
    """Content-addressed store of float32 feature vectors (one atomic ``.npy`` per item).

    ``root`` defaults to ``data_dir()/features``: shared by presets, since the key already says
    which backbone and which content a vector belongs to.
    """

    def __init__(self, root=None):
        self.root = Path(root) if root is not None else data_dir() / "features"
        self._memo: dict | None = None
        self.n_repaired = 0  # damaged entries deleted by get() since the last reset

    def __repr__(self) -> str:
        return f"FeatureCache({display_path(self.root)!r})"

    # -- addressing
    @staticmethod
    def key(cache_id: str, content_sha256: str) -> str:
        return hashlib.sha256((cache_id + content_sha256).encode("utf-8")).hexdigest()

    def folder(self, cache_id: str) -> Path:
        return self.root / _slug(cache_id)

    def path(self, cache_id: str, key: str) -> Path:
        return self.folder(cache_id) / key[:2] / f"{key}.npy"

    # -- entries
    def get(self, cache_id: str, key: str, dim: int, frames: bool = False) -> np.ndarray | None:
        """The stored vector (a (T, dim) float16 array with ``frames``), or None when absent. A damaged
        entry is deleted and reported as absent."""
        p = os.path.join(self.root, _slug(cache_id), key[:2], key + ".npy")  # str: 5000 reads in ~0.2 s
        try:
            with open(p, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return None
        except OSError:
            data = b""
        vec = _decode_frames(data, dim) if frames else _decode(data, dim)
        if vec is None:
            Path(p).unlink(missing_ok=True)
            self.n_repaired += 1
        return vec

    def put(self, cache_id: str, key: str, vector: np.ndarray, frames: bool = False) -> None:
        if frames:
            self._put_frames(cache_id, key, vector)
            return
        vec = np.ascontiguousarray(vector, dtype="<f4")
        if vec.ndim != 1 or not np.isfinite(vec).all():
            raise ClaspkitError(f"refusing to cache a feature vector of shape {vec.shape} with non-finite "
                                "values; this is a bug in the caller (outputs are validated before caching)")
        with atomic_path(self.path(cache_id, key)) as tmp:
            tmp.write_bytes(_npy_header(vec.shape[0]) + vec.tobytes())

    def _put_frames(self, cache_id: str, key: str, frames: np.ndarray) -> None:
        with np.errstate(over="ignore"):  # out of float16's range -> inf, refused below
            x = np.ascontiguousarray(frames, dtype=FRAME_DTYPE)
        if x.ndim != 2 or len(x) == 0 or not np.isfinite(x).all():
            raise ClaspkitError(f"refusing to cache frame features of shape {x.shape} that are empty or not "
                                "finite in float16; this is a bug in the caller (outputs are validated before caching)")
        buf = io.BytesIO()
        np.lib.format.write_array(buf, x, version=(1, 0))
        with atomic_path(self.path(cache_id, key)) as tmp:
            tmp.write_bytes(buf.getvalue())

    def verify(self, cache_id: str, dim: int, min_tmp_age_s: float = 3600.0, frames: bool = False) -> dict:
        """Walk one backbone's entries: delete damaged ones and stale temporary files; count both.

        Extraction already repairs entries it reads; this is for auditing a whole cache. Temporary
        files younger than ``min_tmp_age_s`` are kept (they may belong to a run still writing).
        ``frames``: the folder holds frame features (a ``frames_cache_id``).
        """
        decode = _decode_frames if frames else _decode
        counts = {"ok": 0, "removed_bad": 0, "removed_tmp": 0}
        folder = self.folder(cache_id)
        if not folder.is_dir():
            return counts
        now = time.time()
        for sub in sorted(folder.iterdir()):
            if not sub.is_dir():
                continue
            for p in sorted(sub.iterdir()):
                if p.name.startswith("."):
                    if now - p.stat().st_mtime >= min_tmp_age_s:
                        p.unlink(missing_ok=True)
                        counts["removed_tmp"] += 1
                elif p.suffix == ".npy":
                    if decode(p.read_bytes(), dim) is None:
                        p.unlink(missing_ok=True)
                        counts["removed_bad"] += 1
                    else:
                        counts["ok"] += 1
        return counts

    # -- file hashes, remembered by (path, size, mtime_ns) so re-runs do not re-read every file
    def file_hashes(self, paths: Sequence[Path], persist: bool = True) -> list[str]:
        """sha256 of each file's bytes; each distinct file is read at most once per call.

        The memo (``root/file-sha256.json``) trusts a file whose size and nanosecond mtime are
        unchanged; a tool that rewrites a file *and* restores its mtime defeats it (delete the memo).
        """
        memo = self._load_memo() if persist else {}
        stats, missing = {}, []
        for p in dict.fromkeys(paths):
            try:
                st = os.stat(p)
            except (FileNotFoundError, NotADirectoryError):
                st = None
            if st is None or not stat.S_ISREG(st.st_mode):
                missing.append(p)
            stats[p] = st
        if missing:
            raise DataMissingError(
                f"{len(missing)} audio file(s) not found: {listing(map(display_path, missing))}; "
                "build the corpus first (notebook 01) or fix the paths in the manifest")
        changed, seen = False, {}
        for p, st in stats.items():
            name = str(p)
            hit = memo.get(name)
            if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
                seen[p] = hit[2]
            else:
                seen[p] = sha256_file(p)
                memo[name] = [st.st_size, st.st_mtime_ns, seen[p]]
                changed = True
        out = [seen[p] for p in paths]
        if changed and persist:
            atomic_write_text(self.root / _MEMO_NAME, json.dumps(memo, separators=(",", ":")))
        return out

    def _load_memo(self) -> dict:
        if self._memo is None:
            try:
                self._memo = json.loads((self.root / _MEMO_NAME).read_text("utf-8"))
            except (OSError, ValueError):
                self._memo = {}
        return self._memo


class _NoCache(FeatureCache):
    """Reads nothing, writes nothing: for benchmarks that must measure compute."""

    def __init__(self):
        super().__init__(root=Path(os.devnull))

    def get(self, cache_id, key, dim, frames=False):
        return None

    def put(self, cache_id, key, vector, frames=False):
        pass

    def file_hashes(self, paths, persist=False):
        return super().file_hashes(paths, persist=False)


def _decode(data: bytes, dim: int) -> np.ndarray | None:
    header = _npy_header(dim)
    if len(data) != len(header) + 4 * dim or not data.startswith(header):
        return None
    vec = np.frombuffer(data, dtype="<f4", offset=len(header))
    return vec if np.isfinite(vec).all() else None


def _decode_frames(data: bytes, dim: int) -> np.ndarray | None:
    """A (T, dim) little-endian float16 .npy, exact length, all finite; anything else is None."""
    f = io.BytesIO(data)
    try:
        if np.lib.format.read_magic(f) != (1, 0):
            return None
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    except ValueError:
        return None
    if dtype != FRAME_DTYPE or fortran or len(shape) != 2 or shape[0] < 1 or shape[1] != dim:
        return None
    if len(data) != f.tell() + shape[0] * dim * FRAME_DTYPE.itemsize:
        return None
    x = np.frombuffer(data, dtype=FRAME_DTYPE, offset=f.tell()).reshape(shape)
    return x if np.isfinite(x).all() else None


def _as_cache(cache) -> FeatureCache:
    if cache is None:
        return FeatureCache()
    if cache is False:
        return _NoCache()
    if isinstance(cache, FeatureCache):
        return cache
    if isinstance(cache, (str, os.PathLike)):
        return FeatureCache(cache)
    raise ParamError(f"cache must be a FeatureCache, a folder, None (default cache) or False (no cache), "
                     f"got {type(cache).__name__}")


# --------------------------------------------------------------------------- statistics
@dataclass
class ExtractStats:
    """What one extraction call did, for the throughput table of notebook 02.

    ``items_per_s`` and ``rtf`` cover the items actually computed (loading + encoding), not reused
    ones; ``rtf`` is compute time over audio duration, so below 1 is faster than real time.
    """

    backbone: str
    role: str
    dim: int
    n_items: int
    n_computed: int = 0
    n_reused: int = 0
    n_repaired: int = 0
    n_failed: int = 0
    hash_seconds: float = 0.0
    load_seconds: float = 0.0
    encode_seconds: float = 0.0
    seconds: float = 0.0
    audio_seconds: float | None = None

    @property
    def compute_seconds(self) -> float:
        return self.load_seconds + self.encode_seconds

    @property
    def items_per_s(self) -> float:
        return self.n_computed / self.compute_seconds if self.n_computed and self.compute_seconds > 0 else math.nan

    @property
    def rtf(self) -> float:
        if not self.audio_seconds or not self.n_computed:
            return math.nan
        return self.compute_seconds / self.audio_seconds

    def as_dict(self) -> dict:
        return {**asdict(self), "compute_seconds": self.compute_seconds,
                "items_per_s": self.items_per_s, "rtf": self.rtf}

    def __str__(self) -> str:
        s = (f"{self.backbone} ({self.role}, {self.dim}-d): {self.n_items} items, {self.n_computed} computed, "
             f"{self.n_reused} reused")
        if self.n_computed:
            s += f", {self.items_per_s:.1f} items/s"
            if self.audio_seconds:
                s += f", RTF {self.rtf:.3f}"
        return s + f", {self.seconds:.1f} s"


# --------------------------------------------------------------------------- extraction
def extract_audio(encoder, paths, cache=None, batch_size: int = 16, progress: bool = True,
                  desc: str | None = None, return_stats: bool = False, engine: str = "local",
                  address: str | None = None):
    """Features of audio files, in the input order: cached ones read back, the rest computed.

    ``encoder`` is a speech or image backbone (``encode(list of 16 kHz waveforms) -> (n, dim)``);
    files are loaded with ``claspkit.data.audio.load_audio`` at ``encoder.sample_rate``. ``cache`` is a
    FeatureCache, a folder, None (``data_dir()/features``) or False (compute everything, store
    nothing). Returns ``(n, dim)`` float32, or ``(array, ExtractStats)`` with ``return_stats``.
    Raises AudioError listing every unusable file after caching all the usable ones.

    ``engine="ray"`` loads and encodes the batches on Ray workers (``claspkit.encoders.engine``; ``address`` of a
    running cluster, None for a local instance): the same batches, the same cache entries bit for bit.
    The encoder must come from ``create_backbone`` (workers rebuild it by name).
    """
    return _extract_files(encoder, paths, cache, batch_size, progress, desc, return_stats, frames=False,
                          engine=engine, address=address)


def extract_frames(encoder, paths, cache=None, batch_size: int = 16, progress: bool = True,
                   desc: str | None = None, return_stats: bool = False, engine: str = "local",
                   address: str | None = None):
    """Frame features of audio files (``claspkit.encoders.frames.Frames``, input order), for the attention head.

    ``encoder`` is a speech backbone with ``encode_frames`` and ``frames_cache_id`` (every speech
    backbone has them; its ``frame_pool`` sets the time pooling). Same cache, resumption and error
    rules as ``extract_audio``; entries are (T, dim) float16 arrays under the ``frames_cache_id``.
    """
    lacking = [a for a in ("encode_frames", "frames_cache_id") if not hasattr(encoder, a)]
    if lacking:
        raise BackboneError(f"{encoder!r} has no {' / '.join(lacking)}: it cannot give frame features; use a "
                            "speech backbone (claspkit.encoders.backbones.create_backbone('speech', name))")
    out = _extract_files(FrameView(encoder), paths, cache, batch_size, progress, desc, return_stats=True, frames=True,
                         engine=engine, address=address)
    frames = Frames(out[0], int(encoder.dim), getattr(encoder, "frame_pool", None))
    return (frames, out[1]) if return_stats else frames


def _extract_files(encoder, paths, cache, batch_size, progress, desc, return_stats, frames: bool,
                   engine: str = "local", address: str | None = None):
    from claspkit.data.audio import load_audio  # lazy: keeps `import claspkit.encoders.features` light
    from claspkit.encoders.engine import check_engine, import_ray, spec_of

    _check_encoder(encoder, audio=True)
    if check_engine(engine) == "ray":
        import_ray()
        spec_of(encoder)
    paths = [Path(os.path.abspath(os.path.expanduser(p))) for p in paths]  # not resolve(): 5x cheaper
    store = _as_cache(cache)
    t0 = time.perf_counter()
    hashes = store.file_hashes(paths)
    hash_s = time.perf_counter() - t0

    def size(p: Path) -> float:
        try:
            import soundfile

            return float(soundfile.info(str(p)).duration)
        except Exception:  # unreadable: load_audio will report it properly
            return 0.0

    def load(p: Path) -> np.ndarray:
        return load_audio(p, encoder.sample_rate)

    X, stats = _extract(encoder, paths, hashes, store, batch_size, progress, desc, size, load,
                        name=display_path, unit="clip", t0=t0, frames=frames, engine=engine, address=address)
    stats.hash_seconds = hash_s
    return (X, stats) if return_stats else X


def extract_text(encoder, texts, cache=None, batch_size: int = 64, progress: bool = True,
                 desc: str | None = None, return_stats: bool = False):
    """Features of strings, in the input order; same cache and error rules as ``extract_audio``."""
    _check_encoder(encoder, audio=False)
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        shown = ", ".join(f"#{i} ({texts[i]!r})" for i in bad[:MAX_LISTED])
        raise ParamError(f"{len(bad)} text item(s) are empty or not strings: {shown}; "
                         "drop or fill them (a missing manifest text reads as NaN) and run again")
    store = _as_cache(cache)
    t0 = time.perf_counter()
    hashes = [sha256_text(t) for t in texts]
    hash_s = time.perf_counter() - t0
    X, stats = _extract(encoder, texts, hashes, store, batch_size, progress, desc, size=len,
                        load=lambda t: t, name=lambda t: repr(t[:60] + ("..." if len(t) > 60 else "")),
                        unit="text", t0=t0)
    stats.hash_seconds = hash_s
    return (X, stats) if return_stats else X


def _check_encoder(encoder, audio: bool) -> None:
    need = ["name", "dim", "cache_id", "encode"] + (["sample_rate"] if audio else [])
    lacking = [a for a in need if not hasattr(encoder, a)]
    if lacking:
        raise BackboneError(f"{encoder!r} lacks {', '.join(lacking)}; create encoders with "
                            "claspkit.encoders.backbones.create_backbone(role, name)")
    if not isinstance(encoder.cache_id, str) or not encoder.cache_id:
        raise BackboneError(f"encoder {encoder.name!r} has no cache_id; it must be a non-empty string that "
                            "changes whenever its weights or preprocessing change")


def _extract(encoder, items: list, hashes: list[str], store: FeatureCache, batch_size: int,
             progress: bool, desc: str | None, size: Callable, load: Callable, name: Callable,
             unit: str, t0: float, frames: bool = False, engine: str = "local", address: str | None = None):
    from claspkit.progress import progress_bar

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ParamError(f"batch_size must be a positive integer, got {batch_size!r}")
    dim, cid = int(encoder.dim), encoder.cache_id
    role = getattr(encoder, "role", "?")
    stats = ExtractStats(backbone=encoder.name, role=role, dim=dim, n_items=len(items),
                         audio_seconds=0.0 if unit == "clip" else None)
    out = [None] * len(items) if frames else np.empty((len(items), dim), dtype=np.float32)

    def place(idx: list[int], value) -> None:
        if frames:
            for i in idx:
                out[i] = value
        else:
            out[idx] = value

    # group identical content: computed once, copied to every position it appears in
    groups: dict[str, list[int]] = {}
    for i, h in enumerate(hashes):
        groups.setdefault(store.key(cid, h), []).append(i)
    store.n_repaired = 0
    missing = []
    for key, idx in groups.items():
        vec = store.get(cid, key, dim, frames=frames)
        if vec is None:
            missing.append(key)
        else:
            place(idx, vec)
    stats.n_repaired = store.n_repaired
    stats.n_reused = len(groups) - len(missing)

    # length buckets, longest first (ties keep input order)
    sizes = {key: size(items[groups[key][0]]) for key in missing}
    missing.sort(key=lambda k: -sizes[k])

    failures: list[str] = []
    bad_output = False  # an encoder produced NaN/inf: a ClaspkitError, not an AudioError
    bar = progress_bar(total=len(groups), initial=stats.n_reused, desc=desc or f"{encoder.name} ({role})",
                       unit=unit, disable=not progress or not missing, leave=False)
    writers = ThreadPoolExecutor(max_workers=min(16, batch_size), thread_name_prefix="feature-cache")
    if engine == "ray" and missing:
        runs = _ray_batches(encoder, items, groups, missing, sizes, batch_size, frames, stats, failures, address)
    else:
        runs = _local_batches(encoder, items, groups, missing, batch_size, load, name, frames, stats, failures)
    try:
        for chunk, batch, Y in runs:
            if batch:
                good = []
                for key, row in zip(batch, Y):
                    if np.isfinite(row).all():
                        good.append((key, row))
                    else:
                        bad_output = True
                        failures.append(named(name(items[groups[key][0]]),
                                               f"encoder {encoder.name} returned non-finite values"
                                               + (" (or values beyond float16's range)" if frames else "")))
                # concurrent fsyncs share journal commits: ~5x faster than one file after another
                list(writers.map(lambda kr: store.put(cid, *kr, frames=frames), good))
                _put_companion(encoder, store, writers, [hashes[groups[k][0]] for k in batch])
                for key, row in good:
                    place(groups[key], row)
                stats.n_computed += len(good)
            bar.update(len(chunk))
    finally:
        writers.shutdown(wait=True)  # on Ctrl-C too: started writes finish (each is atomic anyway)
        runs.close()                 # a Ray run stops here (and shuts down a Ray it started)
        bar.close()
        stats.seconds = time.perf_counter() - t0
    stats.n_failed = len(failures)
    if failures:
        _raise_failures(failures, encoder, stats, bad_output)
    return out, stats


def _put_companion(encoder, store: FeatureCache, writers, content_hashes: list[str]) -> None:
    """Cache the mean-pooled features a frames pass computed on the way (``FrameView``), where missing."""
    companion = getattr(encoder, "companion_cache_id", None)
    means = encoder.take_means() if companion else None
    if means is None:
        return
    todo = [(k, m) for k, m in ((store.key(companion, h), m) for h, m in zip(content_hashes, means))
            if np.isfinite(m).all() and not store.path(companion, k).is_file()]
    list(writers.map(lambda km: store.put(companion, *km), todo))


def _local_batches(encoder, items, groups, missing, batch_size, load, name, frames, stats, failures):
    """Load and encode ``missing`` in batches here: yields (keys of the batch, keys loaded, their outputs)."""
    for start in range(0, len(missing), batch_size):
        batch, inputs = [], []
        ta = time.perf_counter()
        for key in missing[start:start + batch_size]:
            item = items[groups[key][0]]
            try:
                x = load(item)
            except ClaspkitError as e:
                failures.append(named(name(item), str(e)))
                continue
            except Exception as e:  # a loader bug or an unforeseen format: still name the file
                failures.append(named(name(item), f"{type(e).__name__}: {e}"))
                continue
            batch.append(key)
            inputs.append(x)
            if stats.audio_seconds is not None:
                stats.audio_seconds += len(x) / encoder.sample_rate
        tb = time.perf_counter()
        stats.load_seconds += tb - ta
        Y = None
        if batch:
            Y = encode_batch(encoder, inputs, [name(items[groups[k][0]]) for k in batch], frames)
            stats.encode_seconds += time.perf_counter() - tb
        yield missing[start:start + batch_size], batch, Y


def _ray_batches(encoder, items, groups, missing, sizes, batch_size, frames, stats, failures, address):
    """The same batches loaded and encoded on Ray workers, yielded as they come back. ``encode_seconds``
    is the wall time of the distributed run (loading included), so ``rtf`` is its throughput."""
    from claspkit.encoders.engine import encode_file_batches

    chunks = [missing[a:a + batch_size] for a in range(0, len(missing), batch_size)]
    t = time.perf_counter()
    runs = encode_file_batches(encoder, [[items[groups[k][0]] for k in c] for c in chunks],
                               [sum(sizes[k] for k in c) for c in chunks], frames=frames, address=address)
    for b, res in runs:
        chunk = chunks[b]
        failures += [message for _, message in res["failures"]]
        stats.audio_seconds += res["audio_s"]
        stats.encode_seconds = time.perf_counter() - t
        if res["error"] is not None:
            raise BackboneError(res["error"])
        yield chunk, [chunk[i] for i in res["ok"]], res["Y"]


def _raise_failures(failures: list[str], encoder, stats: ExtractStats, bad_output: bool):
    listed = "; ".join(failures[:MAX_LISTED])
    more = f" (and {len(failures) - MAX_LISTED} more)" if len(failures) > MAX_LISTED else ""
    done = stats.n_computed + stats.n_reused
    msg = (f"{len(failures)} item(s) could not be encoded by {encoder.name}: {listed}{more}. "
           f"The other {done} item(s) are cached; fix or remove the items named above "
           "(e.g. drop their rows from the manifest) and run again: only what is missing is computed")
    raise (ClaspkitError if bad_output else AudioError)(msg)


# --------------------------------------------------------------------------- notebook convenience
class ManifestFeatures(dict):
    """``{role: (n, dim) array}`` in manifest row order (speech as ``Frames`` with ``frames=True``),
    plus ``.stats`` (one ExtractStats per role)."""

    def __init__(self, features: dict, stats: list[ExtractStats]):
        super().__init__(features)
        self.stats = stats

    def stats_table(self):
        import pandas as pd

        cols = ["role", "backbone", "dim", "n_items", "n_computed", "n_reused", "items_per_s", "rtf", "seconds"]
        return pd.DataFrame([s.as_dict() for s in self.stats], columns=cols)


def encoder_options(P, role: str) -> dict:
    """The options ``extract_manifest_features`` creates ``role``'s backbone with: the image runtime, whose
    features (and cache entries) differ from torch's, so a pipeline timed beside scored features can match them."""
    runtime = getattr(P, "image_runtime", "torch")
    return {"runtime": runtime} if role == "image" and runtime != "torch" else {}


def extract_manifest_features(P, manifest, roles=ROLES, progress: bool = True, cache=None,
                              encoders: dict | None = None, frames: bool = False) -> ManifestFeatures:
    """Features of a corpus manifest for the backbones named in ``P`` (speech/image/text_backbone).

    Audio comes from ``claspkit.data.corpus.audio_path(manifest.path)``, text from ``manifest.text``;
    rows stay in manifest order. ``encoders`` ({role: encoder}) reuses encoders already created.
    Backbones are created one at a time and dropped after use, so peak memory is one model's.
    ``frames``: the speech role gives frame features (``Frames``, pooled ``P.frame_pool``) instead of
    the mean-pooled vectors, for the attention head. ``P.engine`` ``ray`` computes the audio roles on Ray
    (``P.ray_address``); text is cheap and stays here.
    """
    roles = tuple(roles)
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ParamError(f"unknown role {choices_hint(unknown[0], ROLES)}")
    encoders = dict(encoders or {})
    names = {"speech": P.speech_backbone, "image": P.image_backbone, "text": P.text_backbone}
    batch = int(P.batch_size_features)
    paths = None
    if any(r != "text" for r in roles):
        from claspkit.data.corpus import audio_path

        paths = [audio_path(p) for p in manifest["path"]]
    feats, stats = {}, []
    pool = getattr(P, "frame_pool", FRAME_POOL)
    on = {"engine": getattr(P, "engine", "local"), "address": getattr(P, "ray_address", None)}
    for role in roles:
        enc = encoders.get(role)
        as_frames = frames and role == "speech"
        if enc is None:
            from claspkit.encoders.backbones import create_backbone

            enc = create_backbone(role, names[role], **encoder_options(P, role),
                                  **({"frame_pool": pool} if as_frames else {}))
        if as_frames and getattr(enc, "frame_pool", pool) != pool:
            raise ParamError(f"the speech encoder given pools {enc.frame_pool} frames per step but frame_pool is "
                             f"{pool}; create it with create_backbone('speech', {names[role]!r}, frame_pool={pool})")
        if getattr(enc, "role", role) != role:
            raise BackboneError(f"the encoder given for role {role!r} is a {enc.role} encoder ({enc.name}); "
                                f"pass a {role} encoder, e.g. create_backbone({role!r}, {names[role]!r})")
        if role == "text":
            X, st = extract_text(enc, list(manifest["text"]), cache=cache, batch_size=batch,
                                 progress=progress, return_stats=True)
        elif as_frames:
            X, st = extract_frames(enc, paths, cache=cache, batch_size=batch, progress=progress, return_stats=True,
                                   **on)
        else:
            X, st = extract_audio(enc, paths, cache=cache, batch_size=batch, progress=progress,
                                  return_stats=True, **on)
        feats[role] = X
        stats.append(st)
        del enc
    return ManifestFeatures(feats, stats)
