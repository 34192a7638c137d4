"""Binder's configuration (binder/), checked offline, and the labs that are too big for it.

repo2docker turns the repository into Binder's image. Its `--no-build` mode writes the
Dockerfile it would build without Docker or a network, so the test renders it with the pinned
repo2docker (installed once per machine into labkit's cache, in its own environment) and
checks that it picks this Python, the CPU build of torch and the postBuild step.
"""
from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import RELEASE, ROOT, SOURCE_LABS
from labkit import launch
from labkit.config import cache_dir

BINDER = ROOT / "binder"
REPO2DOCKER = "jupyter-repo2docker==2026.4.0"
# Labs whose peak memory is above what a Binder session has: the requirement each one states.
TOO_BIG_FOR_BINDER = {"04_serve_with_vllm": 4, "05_lora_finetune": 3, "06_agent_with_eval": 4,
                      "07_ship_and_monitor": 4}


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_binder_uses_the_oldest_supported_python():
    oldest = re.fullmatch(r">=\s*(3\.\d+)", project()["requires-python"]).group(1)
    assert (BINDER / "runtime.txt").read_text().strip() == f"python-{oldest}"


def test_binder_installs_the_cpu_torch_the_course_pins():
    lines = [line.split("#")[0].strip() for line in (BINDER / "requirements.txt").read_text().splitlines()]
    lines = [line for line in lines if line]
    pinned = project()["optional-dependencies"]["cpu"]
    assert [line for line in lines if not line.startswith("--")] == pinned
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines, "without the CPU index pip takes the CUDA build"


def test_post_build_installs_the_course_and_prepares_the_models():
    post_build = BINDER / "postBuild"
    assert post_build.stat().st_mode & stat.S_IXUSR, "repo2docker runs postBuild only if it is executable"
    text = post_build.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    assert 'pip install --no-cache-dir -e ".[course]"' in text
    assert re.search(r"^labkit prepare --install$", text, flags=re.M)
    assert "pip install labkit" not in text


def repo2docker() -> Path:
    """repo2docker in an environment of its own (its dependencies stay out of the course's)."""
    home = cache_dir() / "tools" / REPO2DOCKER.replace("==", "-")
    command = home / "bin" / "repo2docker"
    if not command.exists():
        shutil.rmtree(home, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(home)], check=True)
        done = subprocess.run([str(home / "bin" / "python"), "-m", "pip", "install", "--quiet", REPO2DOCKER],
                              capture_output=True, text=True)
        if done.returncode:
            shutil.rmtree(home, ignore_errors=True)
            pytest.fail(f"could not install {REPO2DOCKER}:\n{done.stderr[-2000:]}")
    return command


def test_repo2docker_accepts_the_configuration(tmp_path):
    repository = tmp_path / "repository"
    repository.mkdir()
    shutil.copytree(BINDER, repository / "binder")
    shutil.copy2(ROOT / "pyproject.toml", repository)
    done = subprocess.run([str(repo2docker()), "--no-build", "--debug", str(repository)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    dockerfile = done.stdout + done.stderr
    oldest = re.fullmatch(r">=\s*(3\.\d+)", project()["requires-python"]).group(1)
    assert f"python={oldest}" in dockerfile
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in dockerfile
    assert "RUN ./binder/postBuild" in dockerfile


def test_labs_too_big_for_binder_say_so_and_stop_early():
    for path in SOURCE_LABS + sorted(RELEASE.glob("phase*/*.ipynb")):
        need = TOO_BIG_FOR_BINDER.get(path.stem)
        if need is None:
            continue
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        first_markdown = "".join(cells[0]["source"])
        assert "Binder" in first_markdown and "Where it runs" in first_markdown, f"{path.name}: say where it runs"
        setup = "".join(launch.first_code_cell({"cells": cells})["source"])
        assert re.search(rf"^require_memory\({need}, ", setup, flags=re.M), f"{path.name}: call require_memory({need}, ...)"


def test_a_runtime_short_of_memory_stops_with_the_fix(monkeypatch):
    monkeypatch.setenv("MEM_LIMIT", str(2 * 2**30))  # what mybinder.org sets: 2 GiB
    assert launch.memory_limit_gib() <= 2
    with pytest.raises(launch.MemoryShortage, match=r"needs about 4 GiB .* has 2\.0 GiB .*Binder.*Colab.*edits"):
        launch.require_memory(4, "a vLLM server")
    launch.require_memory(1, "a small lab")
    monkeypatch.delenv("MEM_LIMIT")
    assert launch.memory_limit_gib() > 2  # this machine: no limit below its own memory
