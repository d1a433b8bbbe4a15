"""Where things live: one root, generated artefacts under ignored folders, atomic writes.

The root is the repository (the folder holding ``params/``) so notebooks find the same
folders whatever the kernel's working directory is; ``CLASPKIT_ROOT`` overrides it.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

__all__ = [
    "project_root", "data_dir", "run_dir", "figures_dir", "display_path", "atomic_path", "sha256_file",
    "atomic_write_bytes", "atomic_write_text",
]


def project_root() -> Path:
    env = os.environ.get("CLASPKIT_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "params").is_dir():
        return here
    return Path.cwd().resolve()


def data_dir() -> Path:
    """Shared across presets: raw corpora, synthesized audio and feature caches (content-addressed)."""
    return Path(os.environ.get("CLASPKIT_DATA", project_root() / "data")).resolve()


def run_dir(preset: str) -> Path:
    """Per-preset results: manifests, checkpoints, stage metrics."""
    d = Path(os.environ.get("CLASPKIT_RUNS", project_root() / "runs")).resolve() / preset
    d.mkdir(parents=True, exist_ok=True)
    return d


def figures_dir(preset: str) -> Path:
    d = project_root() / "figures" / preset
    d.mkdir(parents=True, exist_ok=True)
    return d


def display_path(path) -> str:
    """A path as a user should see it in outputs: relative to the project root when inside it."""
    p = Path(path).resolve()
    for base, label in ((data_dir(), "data"), (project_root(), "")):
        try:
            rel = p.relative_to(base)
        except ValueError:
            continue
        return str(Path(label) / rel) if label else str(rel)
    return str(p)


def _file_mode() -> int:
    """What a plain open() would give a new file: mkstemp's 0600 is right for secrets, not for results."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _file_mode()


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path next to ``path``; it replaces ``path`` only if the block succeeds.

    A killed process leaves a ``*.tmp`` file behind, never a half-written ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or ".tmp")
    os.close(fd)
    os.chmod(tmp, _MODE)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """The one content hash of files: cache keys, checksums, checkpoint integrity."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
