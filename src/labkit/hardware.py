"""What this machine computes fast, and the one numeric precision every lab uses because of it.

bfloat16 halves memory traffic, but it is only fast where the hardware has bf16
instructions. Measured on two 2-core CPUs with the same LoRA training step: an AMD EPYC
with AVX-512 BF16 ran 2x faster in bf16 than in float32, an AMD EPYC with AVX2 only ran
28x slower. So the choice follows the hardware, not a default:

- a GPU: bfloat16 where it supports it (A100, L4, H100), else float16 (T4);
- a CPU with bf16 instructions (x86 ``avx512_bf16`` or ``amx_bf16``, Arm ``bf16``): bfloat16;
- any other CPU, or one whose flags cannot be read (macOS, some containers): float32.

``LABKIT_PRECISION`` (``auto``, ``float32``, ``bfloat16``, ``float16``) overrides it; a
choice the hardware cannot run is refused with the flags that were found. vLLM serving,
LoRA training and in-process generation all take the precision from ``precision()``.
"""
from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PRECISION_ENV = "LABKIT_PRECISION"
CHOICES = ("float32", "bfloat16", "float16")
# CPU flags that mean native bf16 arithmetic: x86 (Linux names) and Arm (the Features line).
BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")
# Flags worth naming beside a measurement: they decide how fast matrix code runs.
NOTABLE_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "asimd", "sve", "bf16")


class PrecisionError(ValueError):
    """A precision was asked for that this hardware cannot run; the message lists what works."""


@dataclass(frozen=True)
class CpuInfo:
    model: str
    arch: str
    flags: frozenset[str]
    readable: bool  # False: the flags could not be read, and ``problem`` says why
    problem: str = ""

    @property
    def bf16_flags(self) -> tuple[str, ...]:
        return tuple(f for f in BF16_FLAGS if f in self.flags)

    @property
    def notable_flags(self) -> tuple[str, ...]:
        return tuple(f for f in NOTABLE_FLAGS if f in self.flags)

    def describe(self) -> str:
        """``AMD EPYC, x86_64, flags avx2 avx512f avx512_bf16``: the CPU as every measurement names it."""
        if not self.readable:
            return f"{self.model}, {self.arch}, flags unknown ({self.problem})"
        return f"{self.model}, {self.arch}, flags {' '.join(self.notable_flags) or 'none of note'}"


def read_cpu(cpuinfo: str | Path = "/proc/cpuinfo") -> CpuInfo:
    """Model name and instruction-set flags of this CPU, from ``/proc/cpuinfo`` (Linux)."""
    arch = platform.machine() or "unknown"
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError as error:
        return CpuInfo(platform.processor() or "unknown CPU", arch, frozenset(), False,
                       f"{cpuinfo} cannot be read: {error.strerror or error}")
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:  # x86 says flags, Arm says Features
            flags = set(value.split())
    if not flags:
        return CpuInfo(model or "unknown CPU", arch, frozenset(), False, f"{cpuinfo} lists no CPU flags")
    return CpuInfo(model or "unknown CPU", arch, frozenset(flags), True)


@dataclass(frozen=True)
class Precision:
    """The precision chosen for this machine, and why."""

    dtype: str  # "float32", "bfloat16" or "float16"
    device: str  # "cpu" or "cuda"
    reason: str

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    @property
    def vllm_dtype(self) -> str:
        """What vLLM's ``--dtype`` takes."""
        return self.dtype

    def autocast(self):
        """A context in which forward passes run in this precision (nothing to do for float32)."""
        if self.dtype == "float32":
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device, dtype=self.torch_dtype)

    def __str__(self) -> str:
        return f"precision {self.dtype} on the {'GPU' if self.device == 'cuda' else 'CPU'}: {self.reason}"


def choose_precision(requested: str | None = None, cpu: CpuInfo | None = None,
                     gpu: tuple[str, bool] | None = None) -> Precision:
    """The precision for this hardware; ``requested`` (a name from ``CHOICES``, or auto) overrides it.

    ``gpu`` is ``(name, supports_bf16)`` of the GPU in use, or None without one. Raises
    ``PrecisionError`` when ``requested`` is unknown or cannot run here.
    """
    wanted = (requested or "auto").strip().lower()
    if wanted not in ("auto", *CHOICES):
        raise PrecisionError(f"{PRECISION_ENV}={requested!r} is not a precision; choose auto, {', '.join(CHOICES)}")
    if gpu is not None:
        name, has_bf16 = gpu
        works = ["float32", "float16"] + (["bfloat16"] if has_bf16 else [])
        if wanted == "auto":
            if has_bf16:
                return Precision("bfloat16", "cuda", f"the GPU ({name}) supports bfloat16")
            return Precision("float16", "cuda", f"the GPU ({name}) has no bfloat16, so float16")
        if wanted not in works:
            raise PrecisionError(f"{PRECISION_ENV}={wanted}: the GPU {name} cannot run it; choices that work "
                                 f"here: {', '.join(works)}")
        return Precision(wanted, "cuda", f"{PRECISION_ENV}={wanted} asked for it (GPU {name})")

    cpu = cpu or read_cpu()
    found = cpu.bf16_flags
    if wanted == "auto":
        if not cpu.readable:
            return Precision("float32", "cpu", f"the CPU's flags could not be read ({cpu.problem}), so the safe "
                             "choice, float32; set LABKIT_PRECISION=bfloat16 if you know it has bf16 instructions")
        if found:
            return Precision("bfloat16", "cpu", f"{cpu.model} has bf16 instructions ({' '.join(found)})")
        return Precision("float32", "cpu", f"{cpu.model} has no bf16 instructions (flags "
                         f"{' '.join(cpu.notable_flags) or 'none of note'}), where bf16 runs many times slower")
    works = ["float32"] + (["bfloat16"] if found or not cpu.readable else [])
    if wanted not in works:
        why = ("float16 runs on a GPU only" if wanted == "float16" else
               f"{cpu.model} has none of the bf16 flags {', '.join(BF16_FLAGS)} "
               f"(its flags of note: {' '.join(cpu.notable_flags) or 'none'})")
        raise PrecisionError(f"{PRECISION_ENV}={wanted} cannot run on this CPU: {why}. "
                             f"Choices that work here: {', '.join(works)} (or unset {PRECISION_ENV})")
    unchecked = "" if cpu.readable else f"; the CPU's flags could not be read ({cpu.problem}), so it is not checked"
    return Precision(wanted, "cpu", f"{PRECISION_ENV}={wanted} asked for it{unchecked}")


def _gpu() -> tuple[str, bool] | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    # Native bfloat16 only: torch counts emulation by default, and a T4 emulates it, slowly.
    return torch.cuda.get_device_name(0), bool(torch.cuda.is_bf16_supported(including_emulation=False))


@lru_cache(maxsize=1)
def cpu() -> CpuInfo:
    """This machine's CPU, read once."""
    return read_cpu()


@lru_cache(maxsize=1)
def precision() -> Precision:
    """The course's precision on this machine (read once): ``LABKIT_PRECISION``, else the hardware's best."""
    return choose_precision(os.environ.get(PRECISION_ENV), cpu(), _gpu())
