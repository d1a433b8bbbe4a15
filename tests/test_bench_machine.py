"""bench.machine: every committed benchmark names the CPU kind its kernels ran on."""
import pytest

from claspkit.bench import machine


@pytest.mark.parametrize("vendor, flags, kind", [
    ("GenuineIntel", "fpu sse avx2 avx512f avx512bw", "intel-avx512"),
    ("AuthenticAMD", "fpu sse avx avx2 fma", "amd-avx2"),
    ("AuthenticAMD", "fpu sse2", "amd-other"),
    (None, None, "cpu-other"),
])
def test_cpu_kind_reads_vendor_and_simd_level(monkeypatch, vendor, flags, kind):
    monkeypatch.setattr(machine, "cpuinfo_field", {"vendor_id": vendor, "flags": flags}.get)
    assert machine.cpu_kind() == kind


def test_machine_info_carries_the_cpu_kind():
    info = machine.machine_info()
    assert info["cpu_kind"] == machine.cpu_kind() and info["cpus"] >= 1
