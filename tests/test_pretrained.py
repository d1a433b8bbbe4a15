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


def _row(system, hits, mrr=None, vs=None):
    r = {"system": system, "hits@1": hits, "hits@1_ci": [hits - 0.05, hits + 0.05], "mrr": mrr or hits,
         "mrr_ci": [0.0, 1.0]}
    if vs is not None:
        r["vs_cascade"] = {"hits@1": [vs, vs - 0.05, vs + 0.05]}
    return r


def test_the_shipped_row_is_chosen_on_validation_only():
    val = {"n": 9, "cascade_wer": None}
    result = {"meta": {"models": {"a": "x", "b": "y", "c": "z"}, "sources": {"train": "t"}},
              "galleries": {
                  "fotaq-val": {**val, "rows": [_row("a", 0.9), _row("b", 0.7), _row("c", 0.5)]},
                  "synthetic-val": {**val, "rows": [_row("a", 0.2), _row("b", 0.6), _row("c", 0.6)]},
                  "asterisk-en": {"n": 9, "cascade_wer": 0.1, "rows": [
                      _row("a", 0.1, vs=-0.8), _row("b", 0.1, vs=-0.8), _row("c", 0.99, vs=0.0),
                      _row("cascade", 0.99)]}}}
    assert export.choose_row(result) == "b"                         # best mean of the two; the test's best is c
    assert export.choose_row(result, ("fotaq-val",)) == "a"
    with pytest.raises(ParamError, match="no \\['missing'\\] gallery"):
        export.choose_row(result, ("missing",))
    cost = {"n": 9, "bytes": 10, "hits@1_fp32": 0.5, "hits@1_fp16": 0.5, "max_abs_cos_diff": 1e-4}
    table = export.card_sections(result, "r.json", "b", cost)["measured results"]
    assert "| asterisk-en | 9 | 0.100 [0.050, 0.150] |" in table and "| fotaq-val | 9 | 0.700" in table
    assert "-0.800 [-0.850, -0.750]" in table
