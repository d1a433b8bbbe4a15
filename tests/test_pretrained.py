"""The shipped model: registered files with their sha256, a card whose numbers come from the committed result,
and the commands that use it when no model is named."""
import json
import shutil

import pytest

from claspkit import pretrained
from claspkit.errors import ChecksumError, DataMissingError, ParamError
from claspkit.paths import project_root
from claspkit.pretrained import export

REG = pretrained.registry()
SHIPPED = sorted(REG["models"])
needs_model = pytest.mark.skipif(not SHIPPED, reason="no model ships yet (make model)")


@needs_model
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_files_are_the_registered_ones(name):
    folder = pretrained.pretrained_dir(name)
    entry = REG["models"][name]
    assert sorted(p.name for p in folder.iterdir()) == sorted(entry["files"])       # nothing unregistered
    assert sum((folder / f).stat().st_size for f in entry["files"]) == entry["bytes"] <= export.MAX_BYTES


@needs_model
@pytest.mark.parametrize("name", SHIPPED)
def test_card_numbers_are_the_result_files(name):
    entry = REG["models"][name]
    result = json.loads((project_root() / entry["result"]).read_text())
    card = (pretrained.pretrained_dir(name) / "README.md").read_text()
    for title, body in export.card_sections(result, entry["result"], entry["row"], entry["precision"]).items():
        assert body in card, f"the card's {title!r} section is not what {entry['result']} says"
    assert REG["default"] in SHIPPED


def test_a_changed_file_is_refused(tmp_path, monkeypatch):
    if not SHIPPED:
        pytest.skip("no model ships yet (make model)")
    name = SHIPPED[0]
    copy = tmp_path / "pretrained"
    shutil.copytree(pretrained.REGISTRY_FILE.parent / name, copy / name)
    shutil.copy(pretrained.REGISTRY_FILE, copy / "registry.json")
    monkeypatch.setattr(pretrained, "REGISTRY_FILE", copy / "registry.json")
    assert pretrained.pretrained_dir(name) == copy / name
    config = copy / name / "config.json"
    config.write_text(config.read_text().replace('"seed"', '"seed" ', 1))
    with pytest.raises(ChecksumError, match="make model"):
        pretrained.pretrained_dir(name)
    (copy / name / "config.json").unlink()
    with pytest.raises(DataMissingError, match="lacks config.json"):
        pretrained.pretrained_dir(name)
    with pytest.raises(ParamError, match="unknown shipped model"):
        pretrained.pretrained_dir("no-such-model")


def test_no_registry_says_how_to_get_a_model(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "REGISTRY_FILE", tmp_path / "registry.json")
    with pytest.raises(DataMissingError, match="make model"):
        pretrained.default_name()


def test_unnamed_model_is_the_shipped_one(monkeypatch, fakes, ckpt, tmp_path, library):
    """index and embed without --model load what pretrained_dir returns."""
    from claspkit.cli import main

    asked = []
    monkeypatch.setattr(pretrained, "pretrained_dir", lambda name=None, verify=True: asked.append(name) or ckpt)
    monkeypatch.setattr(pretrained, "is_pretrained_name", lambda name: False)
    assert main(["index", str(library), "--out", str(tmp_path / "idx"), "--quiet"]) == 0
    assert main(["embed", str(library), "--out", str(tmp_path / "v.parquet"), "--quiet"]) == 0
    assert asked == [None, None]


@needs_model
def test_default_model_loads_and_embeds():
    from claspkit.model.clasp import CLASP

    m = CLASP.from_pretrained()
    assert m.source == pretrained.pretrained_dir() and m.dim == m.encode_text(["hello"]).shape[1]
