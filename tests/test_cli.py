import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from claspkit.cli import fmt_time, main
from search_fixtures import make_checkpoint


def test_fmt_time():
    assert fmt_time(0) == "00:00.0"
    assert fmt_time(75.26) == "01:15.3"
    assert fmt_time(599.96) == "10:00.0"
    assert fmt_time(3725.5) == "1:02:05.5"


def test_params_and_backbones(capsys):
    assert main(["params"]) == 0
    assert "| `seed` |" in capsys.readouterr().out
    pytest.importorskip("claspkit.encoders.backbones")
    assert main(["backbones", "--role", "text"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["role", "name", "dim"]
    assert any(line.split()[:3] == ["text", "e5-small-multilingual", "384"] for line in out)
    assert all(line.startswith("text") for line in out[1:])


def test_index_then_search_table_and_json(library, ckpt, fakes, tmp_path, capsys):
    out = tmp_path / "idx"
    assert main(["index", str(library), "--model", str(ckpt), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "3 files, 4 segments" in text and "skipped broken.mp3" in text

    assert main(["search", str(out), "steam engine", "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "score", "time", "file"] and len(lines) == 4
    assert re.match(r"^\s*1\s+-?\d\.\d{3}\s+\d\d:\d\d\.\d-\d\d:\d\d\.\d\s+\S+", lines[1])

    assert main(["search", str(out), "la machine à vapeur", "--lang", "fr", "-k", "2", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["query"] == "la machine à vapeur" and payload["lang"] == "fr"
    assert [h["rank"] for h in payload["hits"]] == [1, 2]
    assert set(payload["hits"][0]) == {"rank", "file", "start_s", "end_s", "score", "rank_mode", "segment", "scores"}
    assert payload["rank"] == "clasp" and payload["hits"][0]["scores"]["transcript"] is None   # no --transcribe
    assert payload["hits"][0]["score"] >= payload["hits"][1]["score"]

    assert main(["index", str(library), "--model", str(ckpt), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["files_embedded"] == 0 and summary["files_reused"] == 3 and summary["index"]  # + tone.ogg skipped


def one_error_line(capsys, command):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"claspkit {command}: error: ")
    return lines[0]


def test_errors_are_one_line_with_exit_code_2(library, ckpt, fakes, tmp_path, capsys):
    assert main(["search", str(tmp_path / "nowhere"), "q"]) == 2
    assert "claspkit index AUDIO_DIR" in one_error_line(capsys, "search")
    assert main(["index", str(tmp_path / "missing"), "--model", str(ckpt), "--out", str(tmp_path / "i")]) == 2
    one_error_line(capsys, "index")

    out = tmp_path / "idx"
    assert main(["index", str(library), "--model", str(ckpt), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    other = make_checkpoint(tmp_path / "model-b", seed=1)
    assert main(["index", str(library), "--model", str(other), "--out", str(out), "--quiet"]) == 2
    line = one_error_line(capsys, "index")
    assert "model-a" in line and "model-b" in line
    assert main(["search", str(out), "q", "--lang", "fr!"]) == 2
    one_error_line(capsys, "search")


def test_usage_errors_exit_2_and_help_exits_0(capsys):
    assert main(["index", "somewhere"]) == 2                   # --model and --out missing
    assert "required" in capsys.readouterr().err
    assert main(["search", "idx", "q", "-k", "0"]) == 2
    assert main(["frobnicate"]) == 2
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert "index" in capsys.readouterr().out


def test_console_script_entry_point(tmp_path):
    exe = shutil.which("claspkit", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the claspkit console script is not installed (pip install -e . --no-deps)")
    r = subprocess.run([exe, "search", str(tmp_path / "nowhere"), "q"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("claspkit search: error:")
