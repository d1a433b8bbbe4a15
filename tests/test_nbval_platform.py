import json

from nbval_platform import DEFAULT_VENDOR, compares_outputs, cpu_vendor, outputs_vendor, stamp


def test_outputs_are_compared_on_the_vendor_that_made_them_or_when_asked():
    assert compares_outputs(DEFAULT_VENDOR, env={})
    assert not compares_outputs("AuthenticAMD", env={})
    assert compares_outputs("AuthenticAMD", "AuthenticAMD", env={})
    assert not compares_outputs(DEFAULT_VENDOR, "AuthenticAMD", env={})
    assert compares_outputs("AuthenticAMD", env={"CLASPKIT_NBVAL_COMPARE": "1"})


def test_a_stamp_records_the_vendor_and_keeps_the_rest_of_the_notebook(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": "1 + 1", "metadata": {}, "outputs": []}],
          "metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb, indent=1))
    assert outputs_vendor(path) == DEFAULT_VENDOR  # unstamped: the first committed outputs' vendor
    stamp(path, "AuthenticAMD")
    assert outputs_vendor(path) == "AuthenticAMD"
    again = json.loads(path.read_text())
    assert again["cells"] == nb["cells"] and again["metadata"]["kernelspec"] == nb["metadata"]["kernelspec"]
    stamp(path)
    assert outputs_vendor(path) == cpu_vendor()


def test_cpu_vendor_is_named():
    assert cpu_vendor().strip()
