"""Where embedding runs: in this process (``local``, the default) or on a Ray cluster (``ray``).

``claspkit index DIR --engine ray [--address ADDR]`` and the notebooks' feature stage (``engine: ray``)
hand the backbones' work to Ray Data; everything else (hashing, the caches, the fusion head, the index
commit) stays on the driver, in the code the local engine runs. Why it is built this way:

* **The same bytes as local.** Workers build the same backbones by name (``backbone_spec``, recorded by
  ``create_backbone``) rather than receiving a pickled model, and get exactly the encoder batches the
  local engine forms (same items, same order, same chunks of ``batch_size``): the efficientnet CNN in
  torch rounds differently with another thread count (and the backbone tests only promise "float
  rounding" across batches), so batches are never re-cut and every actor takes the driver's torch
  thread count. CTranslate2 (whisper) and ONNX Runtime run that count too (``backbones.cpu_threads``):
  on Intel Xeon they gave identical bits at 1 and 2 threads, but whisper on an AMD EPYC did not. An actor
  reserves at most one CPU for scheduling while it runs the driver's threads: bits before throughput.
  The head runs on the driver, on the same groups as the local engine.
* **An actor pool per backbone** (``map_batches`` with ``ActorPoolStrategy``), one model load per actor;
  decoding and the VAD are plain Ray tasks. One actor call takes whole encoder batches adding up to about
  ``target_seconds`` of audio, so short and long clips cost a call of similar length.
* **Resumable.** Results are written as each batch comes back, through the local engine's own stores
  (content-addressed feature-cache entries; staged files of the index's ``work/``), so a killed job
  keeps them and a restart computes only what is missing.
* Arrays cross Ray as pickled bytes, not Arrow tensors: Ray Data's numpy conversion of ragged columns
  turned float32 into float64 in a test, which would break bit-identity.
* The index's loop on Ray (decoding, the VAD, the groups of segments) is ``claspkit.search.ray_index``; this
  module holds the set-up, the actors and the feature stage.
* Workers open the audio at the driver's paths (on a cluster: a shared file system mounted at the same
  path) and import claspkit from the driver's checkout (``PYTHONPATH`` in the runtime env) or their own
  install of the same version.
"""
from __future__ import annotations

import contextlib
import logging
import os
import pickle
import time
from pathlib import Path

import numpy as np

from claspkit.constants import ENGINES
from claspkit.encoders.batches import FrameView, branch_features, encode_batch, named
from claspkit.errors import ClaspkitError, ParamError, ToolMissingError, choices_hint

__all__ = [
    "ENGINES", "INSTALL_HINT", "TARGET_SECONDS", "check_engine", "import_ray", "runtime_env", "openmp_threads",
    "check_address", "session",
    "rows_per_call", "spec_of", "driver_env", "apply_env", "quiet_data", "pools", "map_batches", "blobs",
    "BackboneActor", "encode_file_batches",
]

INSTALL_HINT = "pip install 'claspkit[ray]'"
TARGET_SECONDS = 120.0          # audio per actor call: long enough to hide Ray's per-call overhead


# ---------------------------------------------------------------------- set-up
def check_engine(engine) -> str:
    if engine not in ENGINES:
        raise ParamError(f"unknown engine {choices_hint(engine, ENGINES)}; 'local' runs here, 'ray' on a Ray "
                         f"cluster ({INSTALL_HINT})")
    return engine


def import_ray():
    """The ``ray`` module with Ray Data, or a ToolMissingError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ToolMissingError(f"engine 'ray' needs Ray Data, which is not installed ({e}); install it with "
                               f"`{INSTALL_HINT}` (on every worker node too), or use engine 'local'") from None
    return ray


def openmp_threads() -> str:
    """The driver's OpenMP thread count: OMP_NUM_THREADS, else OpenMP's default (the usable cores)."""
    return os.environ.get("OMP_NUM_THREADS") or str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                                     else os.cpu_count() or 1)


def runtime_env() -> dict:
    """Workers import claspkit from the driver's checkout first (an editable install is a path on the driver),
    and run OpenMP with the driver's thread count: Ray starts workers with OMP_NUM_THREADS=1, and on an AVX2-only
    AMD EPYC CTranslate2's Whisper features then differed from the driver's by up to 0.027 (with 2 they are
    bit-identical), whatever ``intra_threads`` says."""
    src = str(Path(__file__).resolve().parent.parent)
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join([src, *rest]), "OMP_NUM_THREADS": openmp_threads()}}


def driver_env() -> dict:
    """What a worker must share with the driver to find the same data and models (CLASPKIT_DATA, ...)."""
    import torch

    return {"vars": {k: v for k, v in os.environ.items() if k.startswith("CLASPKIT_")},
            "torch_threads": torch.get_num_threads()}


def apply_env(env: dict) -> None:
    import torch

    os.environ.update(env["vars"])
    if torch.get_num_threads() != env["torch_threads"]:
        torch.set_num_threads(env["torch_threads"])


@contextlib.contextmanager
def session(address: str | None = None):
    """Ray, initialised here (and shut down after) unless the caller already did; ``address`` None starts a
    local instance (or joins ``RAY_ADDRESS``), ``auto`` or ``HOST:PORT`` joins a running cluster."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    check_address(address)
    try:
        ray.init(address=address, include_dashboard=False, runtime_env=runtime_env(), log_to_driver=False,
                 logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ClaspkitError(f"cannot reach Ray at {address or 'a new local instance'} ({type(e).__name__}: {e}); "
                            "start a cluster with `ray start --head` and pass its address (--address HOST:6379), "
                            "or leave --address out for a local instance") from e
    try:
        yield ray
    finally:
        ray.shutdown()


def check_address(address: str | None, timeout_s: float = 5.0) -> None:
    """A ``HOST:PORT`` that nothing answers on is an error now: Ray itself retries for minutes."""
    if address is None or address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ParamError(f"--address must be HOST:PORT (the head's `ray start --head --port` port, e.g. "
                         f"10.0.0.5:6379) or auto, got {address!r}")
    import socket

    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ClaspkitError(f"no Ray head answers at {address} ({e.strerror or e}); start one there with "
                            f"`ray start --head --port {port}`, or leave --address out for a local instance") from None


def quiet_data(ray) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def rows_per_call(seconds, target_s: float = TARGET_SECONDS) -> int:
    """Rows (whole encoder batches) per actor call so that a call holds about ``target_s`` of audio."""
    seconds = [float(s) for s in seconds]
    if not isinstance(target_s, (int, float)) or target_s <= 0:
        raise ParamError(f"target_seconds must be a positive number of audio seconds, got {target_s!r}")
    mean = sum(seconds) / len(seconds) if seconds else 0.0
    return max(1, int(target_s // mean)) if mean > 0 else 1


def spec_of(encoder) -> tuple:
    """How a worker rebuilds ``encoder``: the ``backbone_spec`` ``create_backbone`` recorded."""
    spec = getattr(encoder, "backbone_spec", None)
    if spec is None:
        raise ParamError(f"engine 'ray' rebuilds each backbone on the workers by name, but {encoder!r} was not "
                         "made by claspkit.encoders.backbones.create_backbone; create it that way or use engine "
                         "'local'")
    return spec


def pools(ray, n_pools: int, workers: int | None) -> tuple[int, float]:
    """Actors per backbone and CPUs per actor: by default the cluster's CPUs shared out, one spare for tasks."""
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise ParamError(f"workers must be a positive int (actors per backbone), got {workers!r}")
    size = workers or max(1, int(cpus) // n_pools)
    return size, min(1.0, cpus / (size * n_pools + 1))


def map_batches(ds, ray, fn, rows: int, cpus: float, size: int | None = None, **kw):
    """``map_batches`` as every stage here uses it (numpy batches of pickled bytes, this module's runtime env)."""
    compute = ray.data.ActorPoolStrategy(size=size) if size else None
    return ds.map_batches(fn, batch_size=rows, batch_format="numpy", num_cpus=cpus, compute=compute,
                          runtime_env=runtime_env(), **kw)


def blobs(values) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = [pickle.dumps(v, protocol=5) for v in values]
    return out


# ---------------------------------------------------------------------- the workers
class BackboneActor:
    """A Ray actor holding one backbone (loaded once), applied to whole encoder batches.

    ``mode="files"``: each row's ``job`` is a list of audio paths, loaded here and encoded in one call
    (the feature cache's batches). ``mode="waves"``: each row's ``waves`` are one index group's segments,
    encoded in chunks of ``batch_size`` (``claspkit.encoders.batches.branch_features``) into column ``out``.
    """

    def __init__(self, spec, env, frames: bool, mode: str, batch_size: int):
        from claspkit.encoders.backbones import create_backbone

        apply_env(env)                     # torch's thread count first: threads=0 options resolve to it
        role, name, options = spec
        self.encoder = create_backbone(role, name, **options)
        self.frames, self.mode, self.batch_size, self.env = frames, mode, batch_size, env
        if frames and mode == "files":
            self.encoder = FrameView(self.encoder)

    def __call__(self, batch: dict) -> dict:
        apply_env(self.env)
        if self.mode == "files":
            return {"b": batch["b"], "result": blobs([self._files(pickle.loads(j)) for j in batch["job"]])}
        return {**batch, "out": blobs([self._waves(pickle.loads(w)) for w in batch["waves"]])}

    def _files(self, paths: list[str]) -> dict:
        from claspkit.data.audio import load_audio
        from claspkit.paths import display_path

        t = time.perf_counter()
        ok, inputs, failures, audio_s = [], [], [], 0.0
        for i, p in enumerate(paths):
            try:
                x = load_audio(Path(p), self.encoder.sample_rate)
            except ClaspkitError as e:
                failures.append((i, named(display_path(p), str(e))))
                continue
            except Exception as e:  # a loader bug or an unforeseen format: still name the file
                failures.append((i, named(display_path(p), f"{type(e).__name__}: {e}")))
                continue
            ok.append(i)
            inputs.append(x)
            audio_s += len(x) / self.encoder.sample_rate
        load_s, Y, error = time.perf_counter() - t, None, None
        if inputs:
            try:
                Y = encode_batch(self.encoder, inputs, [display_path(paths[i]) for i in ok], self.frames)
            except ClaspkitError as e:     # re-raised on the driver, after the batches before it are cached
                error = str(e)
        return {"ok": ok, "Y": Y, "failures": failures, "error": error, "audio_s": audio_s,
                "load_s": load_s, "encode_s": time.perf_counter() - t - load_s}

    def _waves(self, waves: list) -> dict:
        t = time.perf_counter()
        x = branch_features(self.encoder, waves, self.batch_size, self.frames) if waves else None
        return {"x": x, "seconds": time.perf_counter() - t}


# ---------------------------------------------------------------------- the feature stage
def encode_file_batches(encoder, batches: list[list[str]], seconds: list[float], frames: bool = False,
                        address: str | None = None, workers: int | None = None,
                        target_seconds: float = TARGET_SECONDS):
    """Yield ``(batch number, result)`` as Ray workers finish the feature cache's encoder batches.

    ``result`` = {"ok": positions loaded, "Y": their outputs, "failures": [(position, message)], "error":
    a BackboneError message or None, "audio_s", "load_s", "encode_s"}; ``seconds`` is each batch's audio.
    """
    spec = spec_of(encoder)
    rows = rows_per_call(seconds, target_seconds)
    with session(address) as ray:
        quiet_data(ray)
        size, cpus = pools(ray, 1, workers)
        ds = ray.data.from_items([{"b": i, "job": pickle.dumps(list(map(str, b)))} for i, b in enumerate(batches)],
                                 override_num_blocks=max(1, min(len(batches), 8 * size)))
        ds = map_batches(ds, ray, BackboneActor, rows, cpus, size, fn_constructor_kwargs={
            "spec": spec, "env": driver_env(), "frames": frames, "mode": "files",
            "batch_size": max(1, max(map(len, batches), default=1))})
        for row in ds.iter_rows():
            yield int(row["b"]), pickle.loads(row["result"])
