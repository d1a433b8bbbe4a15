"""nbval compares every checked notebook cell on every CPU: exactly on the CPU that computed the outputs, and
within measured tolerances on any other.

torch's MKL, oneDNN and CTranslate2 pick kernels by CPU *vendor* and instruction set. On an AVX-512 AMD EPYC
against an AVX-512 Intel Xeon (2026-12-02), CTranslate2 does not use MKL on AMD, so Whisper's features differ,
and MKL's sgemm takes another path, so a tiny Stage-1 head trained on byte-identical spectrogram features
scores 5-candidate HITS@1 0.625 where the Intel run has 0.600. An AVX2-only EPYC differs again (2026-12-05).
Training amplifies such last-bit differences, so no sanitiser can absorb them.

Each notebook therefore records the CPU its outputs came from, as vendor and widest SIMD level
(``metadata.claspkit.outputs_cpu``, e.g. ``GenuineIntel/avx512``, written by ``make notebooks`` through
``python tests/nbval_platform.py stamp NB...``; older stamps name only the vendor and came from AVX-512
machines). On that CPU nbval compares byte for byte. On any other, each checked cell is compared by
``nbval_tolerance.difference``: words exactly, numbers within the tolerance class the cell names
(``# NBVAL_TOLERANCE <class>``), exactly where it names none. The tolerances were measured on the three CPU
kinds these machines come in (``MEASURED``); on a kind outside them the comparison still runs, and a failure
says that the kind was never measured.
"""
from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

from nbval_tolerance import difference, tolerance_of

DEFAULT_VENDOR = "GenuineIntel"   # the reference machine kind that computed the first committed outputs
LEGACY_SIMD = "avx512"            # the SIMD level of the machines whose stamps name only a vendor
MEASURED = ("AuthenticAMD/avx2", "AuthenticAMD/avx512", "GenuineIntel/avx512")   # where tolerances come from
_TOLERANT: list[tuple[str, str]] = []


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


def _flatten(item, outputs, skip) -> dict[str, list]:
    """nbval's view of a cell's outputs ({mime or stream name: [sanitised text]}), tables through their HTML."""
    from nbval.plugin import transform_streams_for_comparison

    flat: dict[str, list] = {}
    for out in transform_streams_for_comparison(outputs):
        fields = dict(out.get("data", {}), **{k: v for k, v in out.items() if k != "data"})
        if "text/html" in fields:
            fields.pop("text/plain", None)
        for key, value in fields.items():
            if key not in skip:
                flat.setdefault(key, []).append(item.sanitize(value))
    return flat


def tolerant_compare(item, test, ref, skip_compare=None) -> bool:
    """IPyNbCell.compare_outputs for a CPU other than the stamping one (see the module docstring)."""
    tol = tolerance_of(item.cell.source)
    skip = skip_compare or item.parent.skip_compare
    fresh, committed = _flatten(item, test, skip), _flatten(item, ref, skip)
    item.comparison_traceback = []
    problems = []
    if set(fresh) != set(committed):
        problems.append(f"output fields {sorted(fresh)} where the committed outputs have {sorted(committed)}")
    for key in sorted(set(fresh) & set(committed)):
        if len(fresh[key]) != len(committed[key]):
            problems.append(f"{key}: {len(fresh[key])} outputs where the committed cell has {len(committed[key])}")
        for a, b in zip(committed[key], fresh[key]):
            why = difference(str(a), str(b), tol)
            if why:
                problems.append(f"{key}: {why}")
    if not problems:
        return True
    cpu, made_on = cpu_platform(), item.claspkit_outputs_cpu
    item.comparison_traceback = [
        f"Compared within tolerance ({tol.why}) because this CPU is {cpu} and the outputs come from {made_on}:",
        *problems]
    if cpu not in MEASURED:
        item.comparison_traceback.append(
            f"{cpu} is not one of the CPU kinds the tolerances were measured on ({', '.join(MEASURED)}): if this "
            "is kernel noise, re-execute the notebooks here (make notebooks) and compare with the committed ones "
            "to measure it (tests/nbval_tolerance.py).")
    return False


def pytest_collection_modifyitems(config, items):
    cpu, made_on = cpu_platform(), {}
    for item in items:
        options = getattr(item, "options", None)
        path = str(getattr(item, "path", ""))
        if not (path.endswith(".ipynb") and isinstance(options, dict) and options.get("check")):
            continue
        if path not in made_on:
            made_on[path] = outputs_vendor(path)
        if cpu != made_on[path]:
            item.claspkit_outputs_cpu = made_on[path]
            item.compare_outputs = tolerant_compare.__get__(item)
            _TOLERANT.append((item.nodeid, made_on[path]))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _TOLERANT:
        made_on = sorted({v for _, v in _TOLERANT})
        notebooks = sorted({nodeid.split("::")[0] for nodeid, _ in _TOLERANT})
        terminalreporter.write_sep("=", "nbval: outputs compared within tolerances")
        terminalreporter.write_line(
            f"{len(_TOLERANT)} checked cells of {', '.join(notebooks)} were compared word for word and with numbers "
            f"within their tolerance classes (tests/nbval_tolerance.py): this CPU is {cpu_platform()}, their "
            f"committed outputs come from {', '.join(made_on)}.")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "stamp":
        sys.exit("usage: python tests/nbval_platform.py stamp NOTEBOOK.ipynb ...")
    for nb_path in sys.argv[2:]:
        stamp(nb_path)
        print(f"{nb_path}: outputs from {cpu_platform()}")
