import os

import pytest

from claspkit import paths


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "a.txt"
    paths.atomic_write_text(target, "first")
    with pytest.raises(RuntimeError):
        with paths.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "first"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_display_path_is_relative_inside_root(monkeypatch, tmp_path):
    monkeypatch.setenv("CLASPKIT_ROOT", str(tmp_path))
    monkeypatch.setenv("CLASPKIT_DATA", str(tmp_path / "data"))
    assert paths.display_path(tmp_path / "figures" / "x.png") == "figures/x.png"
    assert paths.display_path(tmp_path / "data" / "audio" / "y.wav") == "data/audio/y.wav"


def test_atomic_files_get_the_usual_permissions(tmp_path):
    target = tmp_path / "b.txt"
    paths.atomic_write_text(target, "x")
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
