"""nbval compares a committed notebook's numbers only on the CPU vendor that computed them.

torch's MKL and CTranslate2 pick kernels by CPU *vendor*, not only by instruction set. On an AVX-512
AMD EPYC against an AVX-512 Intel Xeon (measured 2026-12-02):

* CTranslate2 does not use MKL on AMD (``CT2_USE_MKL`` defaults by vendor), so the Whisper features differ;
* MKL's sgemm takes another path, so a tiny Stage-1 head trained on byte-identical spectrogram
  features scores 5-candidate HITS@1 0.625 / MRR 0.770, where the Intel run has 0.600 / 0.751.

The instruction set matters too: on an AMD EPYC that has AVX2 but no AVX-512 (2026-12-05), the notebooks
stamped on the AVX-512 EPYC failed their comparison at the first CTranslate2 number (notebook 05's WER of
whisper-tiny.en) and the Ray byte-identity tests' local reference differed the same way.

Training amplifies such last-bit differences into other metrics, so no sanitiser can absorb them. Each
notebook therefore records the CPU its outputs came from, as vendor and widest SIMD level
(``metadata.claspkit.outputs_cpu``, e.g. ``AuthenticAMD/avx2``, written by ``make notebooks`` through
``python tests/nbval_platform.py stamp NB...``). Older stamps name only the vendor
(``outputs_cpu_vendor``): they were made on the AVX-512 machines above, so they read as ``<vendor>/avx512``;
unstamped notebooks come from ``DEFAULT_VENDOR`` on AVX-512. On another CPU every notebook still runs cell by
cell (an exception fails the test), but its outputs are not compared, and the run says so at the end.
``CLASPKIT_NBVAL_COMPARE=1`` compares them anyway.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

DEFAULT_VENDOR = "GenuineIntel"   # the reference machine kind that computed the first committed outputs
LEGACY_SIMD = "avx512"            # the SIMD level of the machines whose stamps name only a vendor
_UNCOMPARED: list[tuple[str, str]] = []


def cpu_vendor() -> str:
    """/proc/cpuinfo's vendor_id (GenuineIntel, AuthenticAMD ...), else the machine architecture."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine() or "unknown"


def simd_level(flags: str | None = None) -> str:
    """The widest vector instruction set the kernels can pick: avx512, avx2, or the architecture's name."""
    if flags is None:
        try:
            with open("/proc/cpuinfo") as f:
                flags = next((line for line in f if line.startswith("flags")), "")
        except OSError:
            flags = ""
    words = set(flags.split(":", 1)[-1].split())
    return "avx512" if "avx512f" in words else "avx2" if "avx2" in words else (platform.machine() or "unknown")


def cpu_platform() -> str:
    """This CPU as a notebook stamp names it: vendor/SIMD level."""
    return f"{cpu_vendor()}/{simd_level()}"


def outputs_vendor(notebook) -> str:
    """The CPU a committed notebook's outputs were computed on (vendor/SIMD level; see the module docstring)."""
    meta = json.loads(Path(notebook).read_text()).get("metadata", {}).get("claspkit", {})
    if "outputs_cpu" in meta:
        return meta["outputs_cpu"]
    return f"{meta.get('outputs_cpu_vendor', DEFAULT_VENDOR)}/{LEGACY_SIMD}"


def stamp(notebook, cpu: str | None = None) -> None:
    """Record this machine's CPU in a notebook just re-executed here (the file's JSON layout kept)."""
    path = Path(notebook)
    nb = json.loads(path.read_text())
    meta = nb.setdefault("metadata", {}).setdefault("claspkit", {})
    meta.pop("outputs_cpu_vendor", None)
    meta["outputs_cpu"] = cpu or cpu_platform()
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False))


def compares_outputs(cpu: str, outputs_from: str = f"{DEFAULT_VENDOR}/{LEGACY_SIMD}", env=os.environ) -> bool:
    return cpu == outputs_from or env.get("CLASPKIT_NBVAL_COMPARE") == "1"


def pytest_collection_modifyitems(config, items):
    vendor, made_on = cpu_platform(), {}
    for item in items:
        options = getattr(item, "options", None)
        path = str(getattr(item, "path", ""))
        if not (path.endswith(".ipynb") and isinstance(options, dict) and options.get("check")):
            continue
        if path not in made_on:
            made_on[path] = outputs_vendor(path)
        if not compares_outputs(vendor, made_on[path]):
            options["check"] = False
            _UNCOMPARED.append((item.nodeid, made_on[path]))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _UNCOMPARED:
        vendors = sorted({v for _, v in _UNCOMPARED})
        notebooks = sorted({nodeid.split("::")[0] for nodeid, _ in _UNCOMPARED})
        terminalreporter.write_sep("=", "nbval: outputs not compared", yellow=True)
        terminalreporter.write_line(
            f"{len(_UNCOMPARED)} checked cells of {', '.join(notebooks)} ran but were not compared: this CPU is "
            f"{cpu_platform()}, their committed outputs come from {', '.join(vendors)} (torch's MKL and CTranslate2 "
            "choose kernels by vendor and instruction set; see tests/nbval_platform.py). CLASPKIT_NBVAL_COMPARE=1 "
            "compares them anyway.")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "stamp":
        sys.exit("usage: python tests/nbval_platform.py stamp NOTEBOOK.ipynb ...")
    for nb_path in sys.argv[2:]:
        stamp(nb_path)
        print(f"{nb_path}: outputs from {cpu_platform()}")
