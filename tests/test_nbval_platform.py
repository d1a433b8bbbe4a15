from nbval_platform import OUTPUTS_CPU_VENDOR, compares_outputs, cpu_vendor


def test_outputs_are_compared_on_the_reference_vendor_or_when_asked():
    assert compares_outputs(OUTPUTS_CPU_VENDOR, env={})
    assert not compares_outputs("AuthenticAMD", env={})
    assert compares_outputs("AuthenticAMD", env={"CLASPKIT_NBVAL_COMPARE": "1"})


def test_cpu_vendor_is_named():
    assert cpu_vendor().strip()
