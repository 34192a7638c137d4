"""Run-time settings shared by every lab: quick mode, cache folder, hardware.

Each lab reads these once at the top, so the same code paths run in a short
CI-sized form (``LABKIT_QUICK=1``) and in the longer student form.
"""
from __future__ import annotations

import os
from pathlib import Path


def quick_mode() -> bool:
    """True when labs should run on less data and fewer steps.

    Set by CI with ``LABKIT_QUICK=1``; nbgrader's ``NBGRADER_EXECUTION`` (set while it
    autogrades) turns it on as well, so grading stays short.
    """
    flag = os.environ.get("LABKIT_QUICK", "").strip().lower()
    if flag in {"1", "true", "yes", "on"}:
        return True
    if flag in {"0", "false", "no", "off"}:
        return False
    return bool(os.environ.get("NBGRADER_EXECUTION"))


QUICK = quick_mode()


def pick(full, quick):
    """Return ``quick`` in quick mode and ``full`` otherwise."""
    return quick if QUICK else full


def cache_dir() -> Path:
    """Folder for converted models and other one-off artefacts (``LABKIT_CACHE``)."""
    root = os.environ.get("LABKIT_CACHE")
    if root:
        path = Path(root).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base) / "labkit"
    path.mkdir(parents=True, exist_ok=True)
    return path


def has_gpu() -> bool:
    """True when torch sees a CUDA device; the labs scale up there."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def describe_hardware() -> str:
    """One line naming the device the lab runs on (the CPU's model and flags of note), for every measurement."""
    from .hardware import cpu

    cores = f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} cores"
    if has_gpu():
        import torch

        return f"GPU: {torch.cuda.get_device_name(0)}; CPU: {cores}, {cpu().describe()}"
    return f"CPU: {cores}, {cpu().describe()}"


def results_dir() -> Path:
    """Folder where labs save their figures and numbers (``LABKIT_RESULTS``, else ./results)."""
    path = Path(os.environ.get("LABKIT_RESULTS", "results")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
