"""Shared fixtures, and the per-lab wall time and peak memory table at the end of a run."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# The fast and full lanes (markers, and prerequisites that fail instead of skipping in CI).
from lanes import pytest_collection_modifyitems, pytest_configure  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "autograder" / "source"
RELEASE = ROOT / "notebooks"
PHASES = ("phase1", "phase2", "phase3")
SOURCE_LABS = sorted(SOURCE.glob("phase*/*.ipynb"))

# (lab, wall seconds, peak MiB), filled by the lab tests and printed at the end.
LAB_TIMINGS: list[tuple[str, float, float]] = []


def venv_env(**extra) -> dict:
    """Environment for nbgrader and jupyter commands: this interpreter's bin/ first on PATH
    (nbgrader runs `alembic` by name when it creates a gradebook), quick mode on."""
    bin_dir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""), LABKIT_QUICK="1", **extra)


def nbgrader(course: Path, *args, check=True) -> subprocess.CompletedProcess:
    """Run an nbgrader command from ``course/autograder``, where it finds its config."""
    result = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), *args], cwd=course / "autograder",
                            env=venv_env(), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"nbgrader {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="session")
def course_copy(tmp_path_factory) -> Path:
    """A throwaway copy of the course's autograder folder, with the student copies regenerated
    into its own notebooks/ beside it, exactly as the instructor's command does."""
    course = tmp_path_factory.mktemp("course")
    (course / "autograder").mkdir()
    for config in (ROOT / "autograder").glob("*.py"):  # nbgrader_config.py and what it imports
        shutil.copy(config, course / "autograder")
    shutil.copytree(SOURCE, course / "autograder" / "source")
    for phase in PHASES:
        if (SOURCE / phase).is_dir():
            nbgrader(course, "generate_assignment", phase, "--force")
    return course


def ran_every_reference(session) -> bool:
    """True when this session autogrades every lab's reference solution (the whole suite, as in CI)."""
    ran = {item.callspec.id for item in session.items if hasattr(item, "callspec")
           and getattr(item, "originalname", "") == "test_reference_runs_clean_and_scores_full_marks"}
    return bool(SOURCE_LABS) and {lab.stem for lab in SOURCE_LABS} <= ran


@pytest.fixture(scope="session")
def built_book(tmp_path_factory, request) -> Path:
    """The book built from scratch into a scratch folder, warnings as errors; returns its html/.
    When this session also ran every lab's reference solution, each lab page must show that run."""
    out = tmp_path_factory.mktemp("book")
    required = {"LABKIT_REFERENCE_RUN_REQUIRED": "1"} if ran_every_reference(request.session) else {}
    result = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT), "--all",
                             "-W", "-n", "--keep-going", "--path-output", str(out)],
                            env=venv_env(**required), capture_output=True, text=True)
    assert result.returncode == 0, "the book does not build clean:\n" + result.stdout[-6000:] + result.stderr[-3000:]
    return out / "_build" / "html"


def pytest_terminal_summary(terminalreporter):
    if LAB_TIMINGS:
        terminalreporter.section("labs: wall time and peak memory (quick mode)")
        for lab, wall, peak in LAB_TIMINGS:
            terminalreporter.write_line(f"{lab:<45} {wall:7.1f} s {peak:8.0f} MiB")
