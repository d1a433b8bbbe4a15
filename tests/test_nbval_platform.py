"""The notebook checks compare on every CPU: exactly where the outputs were computed, within tolerance elsewhere."""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbval_platform import DEFAULT_VENDOR, LEGACY_SIMD, cpu_platform, cpu_vendor, outputs_vendor, simd_level, stamp
from nbval_tolerance import EXACT, TOLERANCES, difference, split_numbers, tolerance_of

INTEL = f"{DEFAULT_VENDOR}/{LEGACY_SIMD}"
TESTS = Path(__file__).resolve().parent
NOTEBOOKS = sorted((TESTS.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_a_stamp_records_the_cpu_and_keeps_the_rest_of_the_notebook(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": "1 + 1", "metadata": {}, "outputs": []}],
          "metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb, indent=1))
    assert outputs_vendor(path) == INTEL  # unstamped: the first committed outputs' machine
    legacy = {**nb, "metadata": {**nb["metadata"], "claspkit": {"outputs_cpu_vendor": "AuthenticAMD"}}}
    path.write_text(json.dumps(legacy, indent=1))
    assert outputs_vendor(path) == "AuthenticAMD/avx512"     # a vendor-only stamp came from an AVX-512 machine
    stamp(path, "AuthenticAMD/avx2")
    assert outputs_vendor(path) == "AuthenticAMD/avx2"
    again = json.loads(path.read_text())
    assert again["cells"] == nb["cells"] and again["metadata"]["kernelspec"] == nb["metadata"]["kernelspec"]
    assert "outputs_cpu_vendor" not in again["metadata"]["claspkit"]
    stamp(path)
    assert outputs_vendor(path) == cpu_platform()


def test_cpu_is_named_with_its_simd_level():
    assert cpu_vendor().strip() and cpu_platform().startswith(cpu_vendor() + "/")
    assert simd_level("flags\t: fpu sse2 avx avx2 fma") == "avx2"
    assert simd_level("flags\t: fpu avx2 avx512f avx512bw") == "avx512"


def test_numbers_are_read_as_printed():
    words, numbers = split_numbers("read 57,340 sentences; delta -0.204, hits@1 0.200 [0.075, 0.326] e5-small fig4")
    assert numbers == ["57,340", "-0.204", "1", "0.200", "0.075", "0.326"]
    assert words[-1] == "] e5-small fig4"


def test_words_exactly_numbers_within_their_class():
    trained = TOLERANCES["trained"]
    row = "speech->text  combined   0.200  0.525  8.275     40"
    assert difference(row, "speech->text combined 0.225 0.525 8.6 40", trained) is None   # alignment, noise
    assert "committed 0.200, now 0.600" in difference(row, "speech->text combined 0.600 0.525 8.275 40", trained)
    assert "committed 40, now 39" in difference(row, "speech->text combined 0.200 0.525 8.275 39", trained)
    assert "text differs" in difference(row, "text->speech combined 0.200 0.525 8.275 40", trained)
    assert "numbers where" in difference(row, "speech->text combined 0.200 0.525 40", trained)
    assert difference(row, "speech->text combined 0.225 0.525 8.275 40", EXACT) is not None
    assert difference(row, row, EXACT) is None


def test_a_choice_may_flip_only_where_its_class_says_so():
    choice = "Stage 3 will use: {'text_backbone': 'e5-small-multilingual', 'fusion': 'gating', 'mrr': 0.499}"
    flipped = choice.replace("gating", "concat").replace("0.499", "0.512")
    assert difference(choice, flipped, TOLERANCES["stage2-choice"]) is None
    assert difference(choice, flipped, TOLERANCES["trained"]) is not None
    assert difference(choice, choice.replace("gating", "attention"), TOLERANCES["stage2-choice"]) is not None


def test_a_cell_names_its_class_or_is_exact():
    assert tolerance_of("# NBVAL_CHECK_OUTPUT\nx") is EXACT
    assert tolerance_of("# NBVAL_CHECK_OUTPUT\n# NBVAL_TOLERANCE asr\nx") is TOLERANCES["asr"]
    with pytest.raises(ValueError, match="trained"):
        tolerance_of("# NBVAL_TOLERANCE loose\nx")


def _checked_cells():
    for path in NOTEBOOKS:
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in cell.source:
                yield path.name, i, cell


def test_committed_tolerance_markers_name_classes_on_checked_cells():
    for path in NOTEBOOKS:
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if "NBVAL_TOLERANCE" in cell.source:
                assert "NBVAL_CHECK_OUTPUT" in cell.source, f"{path.name} cell {i}: a tolerance on an unchecked cell"
                tolerance_of(cell.source)                           # raises on an unknown class
    assert any(tolerance_of(c.source) is not EXACT for *_, c in _checked_cells())


def _texts(cell):
    for out in cell.outputs:
        data = out.get("data", {})
        yield data.get("text/html") or data.get("text/plain") or out.get("text", "")


def test_a_corrupted_committed_metric_is_caught_and_kernel_noise_is_not():
    """On the committed outputs themselves: every metric moved past its bound fails, moved within it passes."""
    checked = 0
    for name, i, cell in _checked_cells():
        tol = tolerance_of(cell.source)
        if tol is EXACT:
            continue
        for text in _texts(cell):
            words, numbers = split_numbers(text)
            for k, n in enumerate(numbers):
                if "." not in n:
                    continue
                v = float(n.replace(",", ""))
                for delta, ok in ((0.5 * tol.bound(n), True), (2 * tol.bound(n) + 0.01, False)):
                    moved = numbers[:k] + [f"{v + delta:.3f}"] + numbers[k + 1:]
                    fresh = "".join(w + " " + m + " " for w, m in zip(words, moved)) + words[-1]
                    assert (difference(text, fresh, tol) is None) == ok, (name, i, n, delta)
                    checked += 1
    assert checked > 50


def _notebook(path, committed_text, cpu, source):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(source, execution_count=1,
                                     outputs=[nbformat.v4.new_output("stream", name="stdout", text=committed_text)])
    nb.cells = [cell]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["claspkit"] = {"outputs_cpu": cpu}
    nbformat.write(nb, path)
    return path


def _nbval(path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-m", "pytest", str(path), "--nbval-lax", "--nbval-current-env",
                          "-p", "nbval_platform", "-p", "no:cacheprovider", "-q", "--rootdir", str(path.parent)],
                         capture_output=True, text=True, env=env, cwd=path.parent, timeout=300)
    return run.returncode, run.stdout + run.stderr


@pytest.mark.parametrize("committed, cpu, passes", [
    ("hits@1 0.225 over 40\n", "OtherVendor/avx2", True),       # kernel noise on another CPU: within tolerance
    ("hits@1 0.700 over 40\n", "OtherVendor/avx2", False),      # a corrupted metric: beyond it
    ("hits@1 0.200 over 41\n", "OtherVendor/avx2", False),      # a count: exact everywhere
    ("hits@1 0.225 over 40\n", None, False),                    # on the stamping CPU: byte for byte
    ("hits@1 0.200 over 40\n", None, True),
])
def test_make_test_fails_on_a_corrupted_metric_on_any_cpu(tmp_path, committed, cpu, passes):
    source = "# NBVAL_CHECK_OUTPUT\n# NBVAL_TOLERANCE trained\nprint('hits@1 0.200 over 40')"
    path = _notebook(tmp_path / "nb.ipynb", committed, cpu or cpu_platform(), source)
    code, out = _nbval(path)
    assert (code == 0) == passes, out
    if not passes and cpu:
        assert "Compared within tolerance" in out and "OtherVendor/avx2" in out
