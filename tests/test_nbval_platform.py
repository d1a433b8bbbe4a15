import json

from nbval_platform import (DEFAULT_VENDOR, LEGACY_SIMD, compares_outputs, cpu_platform, cpu_vendor, outputs_vendor,
                            simd_level, stamp)

INTEL = f"{DEFAULT_VENDOR}/{LEGACY_SIMD}"


def test_outputs_are_compared_on_the_cpu_that_made_them_or_when_asked():
    assert compares_outputs(INTEL, env={})
    assert not compares_outputs("AuthenticAMD/avx512", env={})
    assert compares_outputs("AuthenticAMD/avx2", "AuthenticAMD/avx2", env={})
    assert not compares_outputs("AuthenticAMD/avx2", "AuthenticAMD/avx512", env={})   # same vendor, other kernels
    assert not compares_outputs(INTEL, "AuthenticAMD/avx512", env={})
    assert compares_outputs("AuthenticAMD/avx2", env={"CLASPKIT_NBVAL_COMPARE": "1"})


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
