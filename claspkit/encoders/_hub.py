"""Loading from the model hub or a local folder: fail at once without a network, fingerprint what was loaded.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from claspkit.encoders import weights as W
from claspkit.encoders._registry import _REGISTRY
from claspkit.errors import BackboneError

__all__ = [
    "host_reachable", "is_local", "hf_kwargs", "looks_like_path", "needs_network", "quiet_hf", "hub_model_dir",
    "dir_fingerprint", "dir_weight_bytes",
]

_reachable: dict[str, bool] = {}


def host_reachable(url: str, timeout: float = 3.0) -> bool:
    """Can we open a TCP connection to the host of ``url``? (cached per process)"""
    host = urlparse(url).hostname or url
    if host not in _reachable:
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            _reachable[host] = True
        except OSError:
            _reachable[host] = False
    return _reachable[host]


def is_local(target: str) -> bool:
    return Path(target).expanduser().exists()


def hf_kwargs(target: str) -> dict:
    """``local_files_only`` when the hub cannot be reached, so a cached model loads without the hub
    client's retries and a missing one fails at once."""
    if is_local(target):
        return {}
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return {"local_files_only": True}  # explicit: the hub client reads the variable only at import
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    return {} if host_reachable(endpoint) else {"local_files_only": True}


def looks_like_path(target: str) -> bool:
    return target.startswith(("/", "./", "../", "~", ".\\")) or os.path.isabs(target)


def needs_network(role: str, name: str, target: str, err: Exception) -> BackboneError:
    """The error for a model that would not load: a bad local folder, or a hub id with no network."""
    reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if is_local(target):
        return BackboneError(f"{role} backbone {name!r}: the folder {target!r} does not hold a loadable model "
                             f"({reason}); point at a folder saved with save_pretrained / SentenceTransformer.save")
    if looks_like_path(target):
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
def quiet_hf():
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


def hub_model_dir(target: str) -> Path | None:
    """The folder a hub id or local path was loaded from (the cached snapshot for hub ids)."""
    if is_local(target):
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


def dir_fingerprint(folder: Path | None, fallback: str) -> str:
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


def dir_weight_bytes(folder: Path | None, model=None) -> int:
    if folder is not None and folder.is_dir():
        total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name.endswith(_WEIGHT_EXT))
        if total:
            return int(total)
    if model is not None:
        return int(sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers())))
    return 0
