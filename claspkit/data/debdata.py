"""Data that ships as Debian packages (the Asterisk prompt recordings), fetched without apt, dpkg or root.

The exact pinned ``.deb`` is downloaded over HTTPS from a Debian mirror (``CLASPKIT_DEBIAN_MIRROR``
or deb.debian.org); a copy placed by hand at ``data/raw/debian/<file>.deb`` is used first, for
machines with no network. Its size and sha256 are compared with the pin *before* anything is
unpacked. A ``.deb`` is an ``ar`` archive whose ``data.tar.*`` member holds the files; that member
is unpacked in pure Python with the safe extractor of ``claspkit.data.archives`` (regular files and folders only, no
absolute or ``..`` names) into a hidden temporary folder, marked complete with the sha256, and only
then renamed into place, so a killed process never leaves a folder that looks finished.
"""
from __future__ import annotations

import lzma
import os
import shutil
import tarfile
import zlib
from pathlib import Path

from claspkit.data.archives import download, install_pinned, safe_extract
from claspkit.errors import ChecksumError, ClaspkitError, DataMissingError, ParamError, choices_hint
from claspkit.paths import data_dir, display_path

__all__ = [
    "POOL", "PINNED", "DEFAULT_MIRROR", "MIRROR_ENV", "AR_MAGIC", "AR_HEADER", "DATA_MEMBERS", "mirror_url",
    "debian_dir", "deb_url", "unpacked_dir", "fetch_deb", "ar_members", "unpack_deb",
]

POOL = "pool/main/a/asterisk-core-sounds/"
# package -> (file under the mirror, size in bytes, sha256). From the Debian archive's Packages index.
PINNED: dict[str, tuple[str, int, str]] = {
    "asterisk-core-sounds-en": (POOL + "asterisk-core-sounds-en_1.6.1-1_all.deb", 22844,
                                "973e797d28e37fa6ca3c0a9d6fa717e77cf1268ae916bf09fd3503113cdffa50"),
    "asterisk-core-sounds-en-g722": (POOL + "asterisk-core-sounds-en-g722_1.6.1-1_all.deb", 10565860,
                                     "38c5261820b406dcb0ecb37675720da2b0864850690690352ca52707eb623806"),
    "asterisk-core-sounds-fr": (POOL + "asterisk-core-sounds-fr_1.6.1-1_all.deb", 23152,
                                "04c82c78c570c43a7136cbc5e2488d0c470b775468dff9fbce4a131b18cf1056"),
    "asterisk-core-sounds-fr-g722": (POOL + "asterisk-core-sounds-fr-g722_1.6.1-1_all.deb", 10822860,
                                     "7add61d5e42279ecff1bbdf842a5a946ac3644fac9a0fe44384731aa7270c8e0"),
    "asterisk-core-sounds-es": (POOL + "asterisk-core-sounds-es_1.6.1-1_all.deb", 22012,
                                "9afdab7f559f036649fb406e625899306ca1004df8ebe39c30bfbd5912d66f74"),
    "asterisk-core-sounds-es-g722": (POOL + "asterisk-core-sounds-es-g722_1.6.1-1_all.deb", 13048380,
                                     "e4e3b4281057d3b81b779298fd6be705f57411513955c518eed1bcaabbd615b8"),
    "asterisk-core-sounds-it": (POOL + "asterisk-core-sounds-it_1.6.1-1_all.deb", 23972,
                                "3884d9457e12f21caa018c18f0d587df5d53ebea14b673d8453a134c5941ab3b"),
    "asterisk-core-sounds-it-g722": (POOL + "asterisk-core-sounds-it-g722_1.6.1-1_all.deb", 10087176,
                                     "46b4cf7afc508a5fcfc051b7ea233251c0d195dd4ef83cc4b7facb4c6429b016"),
    "asterisk-core-sounds-ru": (POOL + "asterisk-core-sounds-ru_1.6.1-1_all.deb", 25592,
                                "28a61616bb0cd3345a7ea532dec4df9f071e5d0fa9f8c1a563ea9669002f39ab"),
    "asterisk-core-sounds-ru-g722": (POOL + "asterisk-core-sounds-ru-g722_1.6.1-1_all.deb", 10579440,
                                     "673b4238a6b8269960f055d868c6a11083f7a0d00979167cb01554046b48ed9b"),
}

DEFAULT_MIRROR = "https://deb.debian.org/debian/"
MIRROR_ENV = "CLASPKIT_DEBIAN_MIRROR"
AR_MAGIC = b"!<arch>\n"
AR_HEADER = 60
# data.tar compressions tarfile reads with the standard library alone (zstd needs Python 3.14+).
DATA_MEMBERS = ("data.tar.xz", "data.tar.gz", "data.tar.bz2", "data.tar")


def mirror_url() -> str:
    """The Debian mirror to download from: ``CLASPKIT_DEBIAN_MIRROR`` or deb.debian.org."""
    return (os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR).rstrip("/") + "/"


def debian_dir() -> Path:
    """Where .deb files are picked up by hand and unpacked: ``data/raw/debian``."""
    return data_dir() / "raw" / "debian"


def _pin(package: str) -> tuple[str, int, str]:
    if package not in PINNED:
        raise ParamError(f"unknown Debian package: {choices_hint(package, PINNED)}")
    return PINNED[package]


def deb_url(package: str) -> str:
    return mirror_url() + _pin(package)[0]


def unpacked_dir(package: str, dest_dir=None) -> Path:
    """Where ``fetch_deb`` unpacks ``package``: ``<dest_dir>/<package>_<version>_<arch>``."""
    return Path(dest_dir or debian_dir()) / Path(_pin(package)[0]).stem


def fetch_deb(package: str, dest_dir=None, pin: tuple[str, int, str] | None = None,
              programs: bool = False) -> Path:
    """Fetch the pinned ``package``, verify it, unpack it; reuse an earlier complete unpack.

    ``pin`` is (file under the mirror, size, sha256) for a package not in ``PINNED`` (the TTS engines pin
    their own); ``programs`` keeps a shared library's same-folder symbolic links. Returns the folder
    holding the package's files (``usr/...``).
    """
    pool_path, size, sha256 = pin or _pin(package)
    parent = Path(dest_dir or debian_dir())
    placed = parent / Path(pool_path).name
    url = mirror_url() + pool_path

    def fetch(work: Path) -> tuple[Path, str]:
        if placed.is_file():
            return placed, display_path(placed)
        try:
            return download(url, work / placed.name, "Debian package"), url
        except OSError as e:
            raise DataMissingError(
                f"could not fetch the Debian package {package}: downloading {url} failed "
                f"({getattr(e, 'reason', None) or e}). Fix one of: allow HTTPS access to {mirror_url()}, or set "
                f"{MIRROR_ENV} to a reachable Debian mirror; or download {url} on another machine and put it at "
                f"{display_path(placed)} (sha256 {sha256}). No apt-get, dpkg or root is needed.") from e

    def unpack(deb: Path, staged: Path) -> Path:
        try:
            unpack_deb(deb, staged, programs)
        except ClaspkitError as e:
            raise type(e)(
                f"Debian package {package}: {e}. Nothing was unpacked. Delete {display_path(placed)} if you "
                f"placed it by hand and download {url} again (or set {MIRROR_ENV} to another mirror); if a "
                "fresh copy fails the same way, the pin is wrong: report it."
            ) from e
        return staged

    def mismatch(got: str, source: str) -> str:
        return (f"Debian package {package} from {source}: sha256 {got} does not match the pinned {sha256} "
                f"({size} bytes); a different file was served. Nothing was unpacked. Delete {display_path(placed)} "
                f"if you placed it by hand, check {MIRROR_ENV} (now {mirror_url()}), or download "
                f"{DEFAULT_MIRROR}{pool_path} again.")

    return install_pinned(parent / Path(pool_path).stem, sha256, fetch, unpack, mismatch)


def ar_members(deb: Path) -> dict[str, tuple[int, int]]:
    """``{name: (offset, size)}`` of an ``ar`` archive (a .deb's outer layer), checking its framing."""
    members, total = {}, deb.stat().st_size
    with open(deb, "rb") as fh:
        if fh.read(len(AR_MAGIC)) != AR_MAGIC:
            raise ValueError("no '!<arch>' magic: not an ar archive")
        pos = len(AR_MAGIC)
        while pos < total:
            head = fh.read(AR_HEADER)
            if len(head) < AR_HEADER or head[58:60] != b"`\n":
                raise ValueError(f"truncated or bad ar member header at byte {pos}")
            name = head[:16].decode("ascii", "replace").rstrip(" ").rstrip("/")
            try:
                size = int(head[48:58].decode("ascii").strip())
            except ValueError:
                raise ValueError(f"bad ar member size at byte {pos}") from None
            start = pos + AR_HEADER
            if start + size > total:
                raise ValueError(f"ar member {name!r} runs past the end of the file (truncated download?)")
            members[name] = (start, size)
            pos = start + size + (size & 1)  # members are padded to an even length
            fh.seek(pos)
    return members


def unpack_deb(deb, target, programs: bool = False) -> None:
    """Unpack a .deb's ``data.tar.*`` into the new folder ``target``, in pure Python (no dpkg, no ar).

    Raises ``ClaspkitError`` for a file that is not a .deb, a corrupt or unsupported ``data.tar``,
    and ``ChecksumError`` for a member with an absolute or ``..`` name.
    """
    deb, target = Path(deb), Path(target)
    try:
        members = ar_members(deb)
    except (OSError, ValueError) as e:
        raise ClaspkitError(f"{deb.name} is not a valid .deb ({e})") from e
    if "debian-binary" not in members:
        raise ClaspkitError(f"{deb.name} is not a .deb (no debian-binary member; has {sorted(members)})")
    data = [n for n in members if n.startswith("data.tar")]
    if not data:
        raise ClaspkitError(f"{deb.name} has no data.tar member (has {sorted(members)})")
    if data[0] not in DATA_MEMBERS:
        raise ClaspkitError(
            f"{deb.name} stores its files as {data[0]}, which claspkit cannot unpack with the standard "
            f"library (it reads {', '.join(DATA_MEMBERS)}); pin a build of the package compressed with xz or "
            "gzip (every package pinned here is), or unpack this one with `dpkg-deb -x`")
    offset, size = members[data[0]]
    inner = target.parent / f".{target.name}.{data[0]}"
    try:
        with open(deb, "rb") as src, open(inner, "wb") as out:
            src.seek(offset)
            shutil.copyfileobj(_Limited(src, size), out)
        safe_extract(inner, target, programs)
    except ChecksumError as e:
        raise ChecksumError(f"{deb.name}: {e}") from e
    except (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError, OSError) as e:
        raise ClaspkitError(f"the {data[0]} inside {deb.name} is corrupt ({e})") from e
    finally:
        inner.unlink(missing_ok=True)


class _Limited:
    """Read at most ``n`` bytes of a file object (one ar member)."""

    def __init__(self, fh, n: int):
        self.fh, self.left = fh, n

    def read(self, k: int = -1) -> bytes:
        k = self.left if k < 0 else min(k, self.left)
        data = self.fh.read(k)
        self.left -= len(data)
        return data
