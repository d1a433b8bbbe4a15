"""Models that ship inside claspkit: a registry of folders with the sha256 of every file (open_clip's pretrained
registry, offline). ``CLASP.from_pretrained()``, ``claspkit index`` and ``claspkit embed`` use ``default_name()``
when no model is named, so search works right after set-up with no training. ``make model`` regenerates the
default from pinned data (``python -m claspkit.pretrained.export``); its card quotes a committed result file.
"""
from __future__ import annotations

import json
from pathlib import Path

from claspkit.errors import ChecksumError, DataMissingError, ParamError, choices_hint

__all__ = ["REGISTRY_FILE", "registry", "list_pretrained", "default_name", "pretrained_dir", "is_pretrained_name"]

REGISTRY_FILE = Path(__file__).with_name("registry.json")


def registry() -> dict:
    """``{"default": name, "models": {name: {"files": {file: sha256}, ...}}}`` (empty when none ships)."""
    if not REGISTRY_FILE.is_file():
        return {"default": None, "models": {}}
    return json.loads(REGISTRY_FILE.read_text(encoding="utf-8"))


def list_pretrained() -> list[str]:
    return sorted(registry()["models"])


def default_name() -> str:
    name = registry().get("default")
    if not name:
        raise DataMissingError("no model ships with this copy of claspkit: run `make model` to build the default, "
                               "or pass --model with a checkpoint folder")
    return name


def is_pretrained_name(name) -> bool:
    return isinstance(name, str) and name in registry()["models"]


def pretrained_dir(name: str | None = None, verify: bool = True) -> Path:
    """The folder of shipped model ``name`` (default: the default model), its files checked against the registry."""
    name = default_name() if name is None else name
    models = registry()["models"]
    if name not in models:
        raise ParamError(f"unknown shipped model {choices_hint(name, models)}")
    folder = REGISTRY_FILE.parent / name
    if verify:
        from claspkit.paths import sha256_file

        for file, sha in models[name]["files"].items():
            path = folder / file
            if not path.is_file():
                raise DataMissingError(f"shipped model {name} lacks {file}: restore it from git "
                                       f"(`git checkout -- {path}`) or run `make model`")
            if sha256_file(path) != sha:
                raise ChecksumError(f"shipped model {name}: {file} is not the registered file (sha256 differs); "
                                    f"restore it from git or run `make model` to rebuild and re-register it")
    return folder
