"""labkit.hardware: reading the CPU, and the one precision choice every lab and server uses."""
from __future__ import annotations

import pytest

from labkit import hardware
from labkit.hardware import CpuInfo, PrecisionError, choose_precision, read_cpu

INTEL_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
AMD_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma
"""
ARM_BF16 = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics sve bf16 i8mm
CPU implementer\t: 0x41
"""


def cpu_from(tmp_path, text: str) -> CpuInfo:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return read_cpu(path)


def test_reads_model_and_flags_on_x86_and_arm(tmp_path):
    intel = cpu_from(tmp_path, INTEL_AMX)
    assert intel.readable and intel.model == "Intel(R) Xeon(R) Platinum 8488C"
    assert intel.bf16_flags == ("amx_bf16", "avx512_bf16")
    assert "amx_bf16" in intel.describe() and "avx2" in intel.describe()
    arm = cpu_from(tmp_path, ARM_BF16)
    assert arm.readable and arm.bf16_flags == ("bf16",)
    assert cpu_from(tmp_path, AMD_AVX2).bf16_flags == ()


@pytest.mark.parametrize("text, expected", [(INTEL_AMX, "bfloat16"), (ARM_BF16, "bfloat16"), (AMD_AVX2, "float32")])
def test_auto_follows_the_cpu(tmp_path, text, expected):
    chosen = choose_precision(None, cpu_from(tmp_path, text))
    assert chosen.dtype == expected and chosen.device == "cpu"
    assert chosen.vllm_dtype == expected


def test_unreadable_cpu_falls_back_to_float32_and_says_why(tmp_path):
    missing = read_cpu(tmp_path / "absent")
    assert not missing.readable and "cannot be read" in missing.problem
    chosen = choose_precision("auto", missing)
    assert chosen.dtype == "float32" and "could not be read" in chosen.reason
    assert choose_precision(None, cpu_from(tmp_path, "processor : 0\n")).dtype == "float32"
    # Asked for explicitly, bf16 is allowed on a CPU that cannot be checked, and says so.
    assert "not checked" in choose_precision("bfloat16", missing).reason


def test_impossible_requests_are_refused_with_the_flags_and_what_works(tmp_path):
    amd = cpu_from(tmp_path, AMD_AVX2)
    with pytest.raises(PrecisionError, match=r"AMD EPYC 7B13.*avx2.*Choices that work here: float32"):
        choose_precision("bfloat16", amd)
    with pytest.raises(PrecisionError, match="GPU only"):
        choose_precision("float16", cpu_from(tmp_path, INTEL_AMX))
    with pytest.raises(PrecisionError, match="not a precision"):
        choose_precision("fp8", amd)
    assert choose_precision(" Float32 ", cpu_from(tmp_path, INTEL_AMX)).dtype == "float32"


def test_gpu_choice():
    assert choose_precision(None, gpu=("NVIDIA H100", True)).dtype == "bfloat16"
    t4 = choose_precision(None, gpu=("Tesla T4", False))
    assert t4.dtype == "float16" and t4.device == "cuda" and t4.vllm_dtype == "float16"
    with pytest.raises(PrecisionError, match="Tesla T4"):
        choose_precision("bfloat16", gpu=("Tesla T4", False))


def test_environment_variable_is_read_once_per_process(monkeypatch):
    monkeypatch.setenv(hardware.PRECISION_ENV, "float32")
    hardware.precision.cache_clear()
    try:
        chosen = hardware.precision()
        assert chosen.dtype == "float32" and hardware.PRECISION_ENV in chosen.reason
        assert str(chosen).startswith("precision float32 on the ")
    finally:
        hardware.precision.cache_clear()


def test_autocast_runs_in_the_chosen_precision():
    import torch

    with choose_precision("bfloat16", CpuInfo("x", "x86_64", frozenset({"avx512_bf16"}), True)).autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with choose_precision("float32", CpuInfo("x", "x86_64", frozenset(), True)).autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_cli_names_the_hardware_and_refuses_an_impossible_precision(monkeypatch, capsys):
    from labkit.course import cli

    hardware.precision.cache_clear()
    try:
        assert cli.main(["hardware"]) == 0
        assert "precision " in capsys.readouterr().out
        monkeypatch.setenv(hardware.PRECISION_ENV, "fp8")
        hardware.precision.cache_clear()
        assert cli.main(["hardware"]) == 2
        assert "not a precision" in capsys.readouterr().err
    finally:
        hardware.precision.cache_clear()
