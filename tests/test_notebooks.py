"""The notebooks as papermill runs them: parameters reach them, bad ones fail at once.

nbval (``make test``) re-executes every committed notebook and compares the marked cells;
these tests cover what nbval cannot: papermill's ``-p`` injection and its failure modes.
"""
from pathlib import Path

import papermill as pm
import pytest

NB = Path(__file__).resolve().parent.parent / "notebooks"
ALL = sorted(NB.glob("[0-9][0-9]_*.ipynb"))


def _run(name, tmp_path, **params):
    return pm.execute_notebook(str(NB / name), str(tmp_path / name), parameters=params,
                               cwd=str(NB), kernel_name="python3", progress_bar=False)


def test_every_notebook_has_a_parameters_cell_and_no_definitions():
    import nbformat

    assert ALL, "no notebooks found"
    for path in ALL:
        nb = nbformat.read(path, as_version=4)
        tags = [c.metadata.get("tags", []) for c in nb.cells]
        assert any("parameters" in t for t in tags), f"{path.name}: no 'parameters' cell"
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "\ndef " not in "\n" + code and "\nclass " not in "\n" + code, \
            f"{path.name}: logic belongs in claspkit, not in the notebook"


@pytest.mark.parametrize("name", [p.name for p in ALL])
def test_unknown_preset_fails_at_once_naming_the_valid_ones(name, tmp_path):
    with pytest.raises(pm.PapermillExecutionError) as err:
        _run(name, tmp_path, preset="nonexistent")
    assert "unknown preset" in str(err.value) and "tiny" in str(err.value)


def test_unknown_loss_fails_at_once_with_the_valid_choices(tmp_path):
    with pytest.raises(pm.PapermillExecutionError) as err:
        _run("04_loss.ipynb", tmp_path, loss="triplet")
    assert "contrastive, huber" in str(err.value)


def test_unknown_backbone_lists_the_known_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASPKIT_RUNS", str(tmp_path / "runs"))  # leave the tiny run's results alone
    with pytest.raises(pm.PapermillExecutionError) as err:
        _run("02_features.ipynb", tmp_path, speech_backbone="whisper-huge")
    assert "whisper-tiny.en" in str(err.value) and "whisper-base" in str(err.value)


def test_committed_notebooks_stay_small():
    """Every regeneration adds a notebook's bytes to git history: audio is a short MP3 preview, figures are files."""
    for path in ALL:
        assert path.stat().st_size < 200_000, f"{path.name}: {path.stat().st_size:,} bytes committed (limit 200 KB)"
