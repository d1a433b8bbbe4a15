import json

import numpy as np
import pytest

from claspkit.bench import channels as CH
from claspkit.data.augment.recipe import CHANNELS, RECIPES


def _clips(n=5, seconds=0.4):
    rng = np.random.default_rng(0)
    t = np.arange(int(16000 * seconds)) / 16000
    return [{"id": f"clip{i}", "sha256": f"{i:064x}", "seconds": seconds,
             "audio": (0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.01 * rng.standard_normal(len(t)))
             .astype(np.float32)} for i in range(n)]


@pytest.mark.parametrize("argv, message", [(["--items", "0"], "at least 1"), (["--repeats", "0"], "at least 1"),
                                           (["--items", "3"], "babble noise needs 4 other clips")])
def test_argument_errors_exit_2_before_loading_audio(argv, message, monkeypatch, capsys):
    monkeypatch.setattr(CH, "load_prompts", lambda n, seed: pytest.fail("loaded audio for bad arguments"))
    assert CH.main([*argv, "--out", ""]) == 2
    assert message in capsys.readouterr().err


def test_every_channel_and_recipe_is_a_unit():
    names = CH.units()
    assert {"noise (white)", "noise (babble)"} <= set(names) and "noise" not in names
    assert set(CHANNELS) - {"noise"} <= set(names)
    assert {f"recipe {r}" for r in RECIPES} <= set(names)


def test_json_has_the_machine_and_one_row_per_unit(tmp_path, monkeypatch):
    monkeypatch.setattr(CH, "load_prompts", lambda n, seed: _clips(n))
    out = tmp_path / "bench" / "channels.json"
    assert CH.main(["--items", "5", "--repeats", "2", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    for key in ("cpu", "date", "commit", "load_average", "load_average_end", "python"):
        assert key in d
    assert d["cpu"] and d["items"] == 5 and d["repeats"] == 2 and d["audio_s"] == pytest.approx(2.0)
    assert list(d["rows"]) == list(CH.units())
    for name, r in d["rows"].items():
        assert len(r["cpu_s"]) == len(r["wall_s"]) == 2
        assert 0 <= r["min"] <= r["cpu_s_per_audio_s"] <= r["max"]
        assert r["x_real_time"] > 0 and r["channels"]
    assert d["rows"]["noise (babble)"]["channels"]["noise"]["kinds"] == ["babble"]
    assert "recipe real" in CH.format_table(d)
