"""The subpackages' public APIs: every name resolves, lazily, and none hides a submodule."""
import importlib
import subprocess
import sys

import pytest

from claspkit.lazy import lazy_api

SUBPACKAGES = ["data", "encoders", "model", "evaluation", "search"]


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_every_public_name_resolves_to_its_submodule(name):
    pkg = importlib.import_module(f"claspkit.{name}")
    assert pkg.__all__, f"claspkit.{name} names no public API"
    for attr in pkg.__all__:
        value = getattr(pkg, attr)
        home = importlib.import_module(f"claspkit.{name}.{pkg._API[attr]}")
        assert value is getattr(home, attr)
        assert attr in home.__all__, f"{attr} is re-exported but not public in its module"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pkg.nope


def test_a_name_that_is_also_a_submodule_is_refused():
    with pytest.raises(ValueError, match="also submodule names"):
        lazy_api("claspkit.model", {"train": "train"})


def test_importing_the_data_layer_does_not_import_torch():
    """``python -m claspkit.fetch`` and the corpus tools stay cheap: the lazy __init__s import nothing heavy."""
    code = "import sys, claspkit.data, claspkit.data.brown, claspkit.fetch; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_top_level_exports_clasp():
    import claspkit
    from claspkit.model.clasp import CLASP

    assert claspkit.CLASP is CLASP and importlib.import_module("claspkit.model").CLASP is CLASP


def test_no_source_file_is_git_ignored():
    """A pattern such as ``data/`` (meant for the top-level data folder) also hid ``claspkit/data/__init__.py``;
    Python then imports the folder as a namespace package, so only a fresh clone would show the loss."""
    from pathlib import Path
    import shutil

    root = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    files = [str(p.relative_to(root)) for d in ("claspkit", "tests") for p in (root / d).rglob("*.py")
             if "__pycache__" not in p.parts]
    out = subprocess.run(["git", "check-ignore", "--no-index", *files], cwd=root, capture_output=True, text=True)
    assert out.stdout.strip() == "", f"ignored by .gitignore: {out.stdout.split()}"
