"""Checkpoint folders of a trained fusion head: write, verify, read back.

A folder: ``model.safetensors`` (best weights), ``config.json`` (everything needed to rebuild and to compare:
fusion config, loss and training knobs, backbone names, history, sha256 of the weight files) and, for a folder
written by ``claspkit.model.train.train``, ``train_state.safetensors`` (current weights, Adam moments, a learnable
logit scale) whose JSON side (optimizer groups, scheduler, counters) is in config.json. No pickled modules
anywhere.
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from claspkit.errors import ChecksumError, DataMissingError, ParamError
from claspkit.model.fusion import build_fusion
from claspkit.paths import atomic_path, atomic_write_text, display_path, sha256_file

__all__ = [
    "FORMAT", "MODEL_FILE", "STATE_FILE", "CONFIG_FILE", "write_checkpoint", "save_checkpoint",
    "read_checkpoint_config", "load_checkpoint",
]

FORMAT = "claspkit-fusion-checkpoint/1"
MODEL_FILE, STATE_FILE, CONFIG_FILE = "model.safetensors", "train_state.safetensors", "config.json"


def _save_tensors(path: Path, tensors: dict) -> str:
    with atomic_path(path, suffix=".safetensors.tmp") as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    return sha256_file(path)


def write_checkpoint(directory, model_state: dict, model_config: dict, config: dict, extra: dict | None,
                      train_state: dict | None) -> Path:
    """Weight files first, config.json (with their sha256) last: a killed save is detected on load. ``train_state``
    (optimizer and loss tensors, for resuming) goes to its own file; without it a stale one is removed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    clash = {k: (config[k], v) for k, v in model_config.items() if k in config and config[k] != v}
    if clash:
        raise ParamError(f"config disagrees with the model on {clash} (config, model); pass the model's own config")
    files = {MODEL_FILE: _save_tensors(directory / MODEL_FILE, model_state)}
    if train_state is not None:
        files[STATE_FILE] = _save_tensors(directory / STATE_FILE, train_state)
    meta = {**{k: v for k, v in config.items() if k != "checkpoint"}, **model_config,
            "checkpoint": {"format": FORMAT, "files": files, **(extra or {})}}
    atomic_write_text(directory / CONFIG_FILE, json.dumps(meta, indent=1, sort_keys=True))
    if train_state is None and (directory / STATE_FILE).exists():
        (directory / STATE_FILE).unlink()  # stale training state of an older save
    return directory


def save_checkpoint(directory, model: nn.Module, config: dict, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` + ``config.json`` (config, the model's fusion config, JSON-able extra)."""
    return write_checkpoint(directory, model.state_dict(), model.config, dict(config), extra, None)


def read_checkpoint_config(directory) -> dict:
    """config.json of a checkpoint folder, with its weight files checked against the recorded sha256."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise DataMissingError(f"no checkpoint at {display_path(directory)} ({CONFIG_FILE} missing); "
                               "train with checkpoint_dir=... or pass the right folder")
    meta = json.loads(path.read_text())
    info = meta.get("checkpoint", {})
    if info.get("format") != FORMAT:
        raise ParamError(f"{display_path(path)} is not a {FORMAT} checkpoint (format {info.get('format')!r})")
    for name, digest in info["files"].items():
        f = directory / name
        if not f.is_file():
            raise DataMissingError(f"checkpoint file {display_path(f)} is missing; restore it or retrain")
        if sha256_file(f) != digest:
            raise ChecksumError(f"{display_path(f)} does not match its config.json (an interrupted save?); "
                                "retrain, or resume from an intact checkpoint")
    return meta


def load_checkpoint(directory) -> tuple[nn.Module, dict]:
    """Rebuild the model from config.json and load its (best) weights; returns (model in eval mode, config)."""
    config = read_checkpoint_config(directory)
    model = build_fusion(config)
    model.load_state_dict(load_file(str(Path(directory) / MODEL_FILE)))
    return model.eval(), config
