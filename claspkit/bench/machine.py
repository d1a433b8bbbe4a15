"""What a committed benchmark figure was measured on: CPU model, date, commit, load, and a one-thread limit.

Speed figures only mean something next to the machine and the load they were taken under, and a per-core figure
only when every library (torch, the BLAS/OpenMP pools numpy and scipy use) is held to one thread.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Callable

__all__ = ["load_average", "cpuinfo_field", "cpu_model", "cpu_kind", "git_commit", "machine_info", "one_thread",
           "run_and_save"]


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def cpuinfo_field(name: str) -> str | None:
    """The first CPU's ``name`` line of /proc/cpuinfo, or None."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.split(":", 1)[0].strip() == name:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's marketing name (/proc/cpuinfo's ``model name``), else what ``platform`` knows."""
    return cpuinfo_field("model name") or platform.processor() or platform.machine() or "unknown"


def cpu_kind() -> str:
    """``<vendor>-<avx512|avx2|other>``: the CPU kinds here, whose kernels (and timings) differ."""
    vendor = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(cpuinfo_field("vendor_id") or "", "cpu")
    flags = set((cpuinfo_field("flags") or "").split())
    return f"{vendor}-{'avx512' if 'avx512f' in flags else 'avx2' if 'avx2' in flags else 'other'}"


def git_commit() -> str | None:
    """The checkout's commit (``+dirty`` when tracked files differ from it), or None outside a git checkout."""
    from claspkit.paths import project_root

    def git(*args):
        return subprocess.run(["git", "-C", str(project_root()), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def machine_info() -> dict:
    """The fields every committed benchmark JSON carries."""
    return {"cpu": cpu_model(), "cpu_kind": cpu_kind(), "cpus": os.cpu_count(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "commit": git_commit(),
            "python": platform.python_version(), "load_average": load_average()}


@contextlib.contextmanager
def one_thread():
    """torch and the native thread pools (threadpoolctl, when installed) limited to one thread inside."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(limits=1)
    except ImportError:
        limits = contextlib.nullcontext()
    try:
        with limits:
            yield
    finally:
        torch.set_num_threads(before)


def run_and_save(prog: str, measure: Callable[[], dict], table: Callable[[dict], str], out: str) -> int:
    """A benchmark's main after parsing: measure, print the table, write the JSON to ``out`` (unless empty);
    a ClaspkitError is a bad argument or missing input: its message, exit status 2."""
    import json

    from claspkit.errors import ClaspkitError
    from claspkit.paths import atomic_write_text, display_path

    try:
        result = measure()
    except ClaspkitError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    print(table(result))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(result, indent=1, default=float) + "\n")    # numpy scalars as floats
        print(f"results: {display_path(out)}")
    return 0
