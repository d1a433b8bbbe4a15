"""The backbone registry: names (with their source and pooling) -> factories, and the lookups on it.

Its names are also data in ``claspkit.constants.BACKBONES``, which the parameters are checked against
(``claspkit.config.backbone_key`` is the one matching rule); a test keeps the two equal.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from claspkit.config import backbone_key
from claspkit.constants import BACKBONE_PATTERN as PATTERN, BACKBONE_ROLES as ROLES
from claspkit.errors import BackboneError, ParamError, choices_hint

__all__ = ["PATTERN", "Entry", "register", "list_backbones", "check_backbone", "is_multilingual", "create_backbone"]


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
    key, args = backbone_key(role, name, {n: e.source for (r, n), e in _REGISTRY.items() if r == role})
    return _REGISTRY[(role, key)], args


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

    The encoder keeps ``backbone_spec = (role, name, options)``, so a distributed run (``claspkit.encoders.engine``)
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
                             f"see its factory in claspkit/encoders/_{entry.role}.py for the options") from e
        raise
