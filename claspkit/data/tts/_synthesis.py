"""Resumable parallel synthesis of a corpus: voice assignment, file validity, locking, worker pools."""
from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import time
from pathlib import Path

from claspkit.constants import SAMPLE_RATE
from claspkit.data.tts._spec import parse_voice
from claspkit.errors import ClaspkitError, ParamError
from claspkit.paths import data_dir, display_path

__all__ = ["LOCK_NAME", "assign_voices", "wav_duration", "Durations", "synthesize_corpus"]

LOCK_NAME = ".claspkit-synth.lock"


# --------------------------------------------------------------------------- voice assignment
def assign_voices(ids, voices, seed: int = 0) -> list[str]:
    """One voice per id, by rendezvous hashing of (seed, id, voice).

    Deterministic per id: independent of the order of ``ids`` and of how many there are, and
    of the order of ``voices``. Adding a voice moves only the sentences it wins (~1/n), so
    most synthesized audio stays valid. Each voice gets about the same share.
    """
    pool = list(dict.fromkeys(voices))
    if not pool:
        raise ParamError("no voices given: pass at least one voice spec, e.g. ['espeak:en-us', 'espeak:en-gb']")

    def score(i, v):
        h = hashlib.blake2b(f"{seed}\0{i}\0{v}".encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(h, "big")

    return [max(pool, key=lambda v: (score(i, v), v)) for i in ids]


# --------------------------------------------------------------------------- validity of files
def wav_duration(path) -> float | None:
    """Duration of a complete 16 kHz mono wav, or None if missing, truncated, corrupt or empty."""
    import soundfile as sf

    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        if struct.unpack("<I", head[4:8])[0] + 8 > size:  # header promises more than the file holds
            return None
        info = sf.info(str(p))
    except (OSError, RuntimeError, ValueError):
        return None
    if info.frames <= 0 or info.samplerate != SAMPLE_RATE or info.channels != 1:
        return None
    return info.frames / info.samplerate


# --------------------------------------------------------------------------- corpus synthesis
class Durations(list):
    """Per-item durations in seconds, plus what the run did (reused, synthesized, timing)."""
    n_reused = n_synthesized = n_stale_removed = 0
    elapsed_s = synthesized_audio_s = 0.0

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio synthesized per second of wall time (0 when nothing was synthesized)."""
        return self.synthesized_audio_s / self.elapsed_s if self.elapsed_s and self.n_synthesized else 0.0


def _field(item, key):
    try:
        return item[key]
    except (TypeError, KeyError, IndexError):
        return getattr(item, key)


def _resolve(path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else data_dir() / p


@contextlib.contextmanager
def _single_threaded_children():
    """Workers inherit these at start: one process per core, so no BLAS/OpenMP thread pools on top."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    added = [n for n in names if n not in os.environ]
    os.environ.update({n: "1" for n in added})
    try:
        yield
    finally:
        for n in added:
            os.environ.pop(n, None)


def _synthesize_one(text: str, voice: str, path: str):
    try:
        from claspkit.data.tts._registry import get_synthesizer  # not the package: it imports this module

        vs = parse_voice(voice)
        return get_synthesizer(vs.engine).synthesize(text, vs, path), None
    except Exception as e:  # reported per item by the parent; never swallowed
        return None, f"{type(e).__name__}: {e}"


@contextlib.contextmanager
def _locked(folders):
    """Exclusive locks on the output folders: while held, any temp file in them is stale."""
    import fcntl

    handles = []
    try:
        for d in sorted(folders):
            fh = open(d / LOCK_NAME, "a")
            handles.append(fh)
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ClaspkitError(
                    f"another process is synthesizing into {display_path(d)}: wait for it to finish, "
                    "or point CLASPKIT_DATA at a different data folder."
                ) from None
        yield
    finally:
        for fh in handles:
            fh.close()


def _prepare_folders(folders) -> None:
    for d in folders:
        try:
            d.mkdir(parents=True, exist_ok=True)
            with open(d / LOCK_NAME, "a"):
                pass
        except OSError as e:
            raise ClaspkitError(
                f"cannot write synthesized audio to {d} ({e.strerror or e}): make that folder writable, "
                f"or set CLASPKIT_DATA to a writable folder (the data folder is now {data_dir()})."
            ) from e


def _remove_stale(folder: Path) -> int:
    """Temp files ``.<name>.wav.<random>.wav`` left by killed workers (never valid results)."""
    n = 0
    for f in folder.iterdir():
        if f.name.startswith(".") and f.name.endswith(".wav") and f.is_file():
            f.unlink(missing_ok=True)
            n += 1
    return n


def synthesize_corpus(items, workers: int = 2, progress: bool = True) -> Durations:
    """Synthesize every item (``id``, ``text``, ``voice``, ``path``) that has no valid file yet.

    ``path`` is relative to ``data_dir()`` (or absolute). Valid existing files are kept;
    truncated, corrupt or empty ones are remade; temp files of killed workers are removed.
    Items run in ``workers`` processes with a progress bar. If some items fail, the others
    still finish and stay on disk, then a ClaspkitError names the failed ids and voices.
    Returns the duration of every item, in order.
    """
    from claspkit.data.tts._registry import check_voice

    if hasattr(items, "to_dict"):
        items = items.to_dict("records")
    items = [dict(id=str(_field(it, "id")), text=str(_field(it, "text")), voice=str(_field(it, "voice")),
                  path=_resolve(_field(it, "path"))) for it in items]
    for spec in sorted({it["voice"] for it in items}):
        check_voice(spec)
    t0 = time.perf_counter()
    result = Durations([None] * len(items))
    folders = {it["path"].parent for it in items}
    _prepare_folders(folders)
    by_path: dict[Path, list[int]] = {}
    for i, it in enumerate(items):
        by_path.setdefault(it["path"], []).append(i)
    failures: list[tuple[str, str, str]] = []
    with _locked(folders):
        result.n_stale_removed = sum(_remove_stale(d) for d in folders)
        todo = []
        for path, idx in by_path.items():
            dur = wav_duration(path)
            if dur is None:
                path.unlink(missing_ok=True)  # a bad file must never be taken for a good one
                todo.append(path)
            else:
                for i in idx:
                    result[i] = dur
        result.n_reused = len(by_path) - len(todo)
        bar = _progress_bar(len(by_path), result.n_reused, progress)

        def done(path, dur, err):
            idx = by_path[path]
            if err is None:
                for i in idx:
                    result[i] = dur
                result.n_synthesized += 1
                result.synthesized_audio_s += dur
            else:
                failures.append((items[idx[0]]["id"], items[idx[0]]["voice"], err))
            bar.update(1)

        jobs = [(items[by_path[p][0]]["text"], items[by_path[p][0]]["voice"], str(p)) for p in todo]
        try:
            if workers <= 1 or len(jobs) <= 1:
                for p, job in zip(todo, jobs):
                    done(p, *_synthesize_one(*job))
            else:
                _run_pool(todo, jobs, workers, done)
        finally:
            bar.close()
    result.elapsed_s = time.perf_counter() - t0
    if failures:
        ok = len(by_path) - len(failures)
        shown = "; ".join(f"id {i!r} (voice {v!r}): {e}" for i, v, e in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        hint = ""
        if any("BrokenProcessPool" in e for _, _, e in failures):
            hint = (" Worker processes died: if this runs from a script, put the call under "
                    "`if __name__ == '__main__':` (workers start by importing the main script), "
                    "or use workers=1.")
        raise ClaspkitError(
            f"{len(failures)} of {len(by_path)} audio files could not be synthesized: {shown}{more}. "
            f"The other {ok} files are complete and kept; fix the cause (or drop those sentences) and "
            f"run again: only the missing files are made.{hint}"
        )
    return result


def _run_pool(todo, jobs, workers, done) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: the parent may hold threads (torch, Jupyter) that a fork would copy mid-state.
    ex = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=mp.get_context("spawn"))
    try:
        with _single_threaded_children():  # workers start on the first submissions
            futures = {ex.submit(_synthesize_one, *job): p for p, job in zip(todo, jobs)}
        for fut in as_completed(futures):
            try:
                dur, err = fut.result()
            except Exception as e:  # a worker died (BrokenProcessPool): the item is reported, others kept
                dur, err = None, f"worker process died: {type(e).__name__}: {e}"
            done(futures[fut], dur, err)
    except BaseException:
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)


def _progress_bar(total, initial, enabled):
    from claspkit.progress import progress_bar

    return progress_bar(total=total, initial=initial, desc="synthesizing", unit="file", disable=not enabled,
                        dynamic_ncols=True)
