"""Every lab's reference solution runs top to bottom in quick mode with every test passing."""
from __future__ import annotations

import pytest

from conftest import LAB_TIMINGS, ROOT, SOURCE_LABS
from labkit.labrun import run_notebook


@pytest.mark.parametrize("path", SOURCE_LABS, ids=lambda p: p.name)
def test_reference_solution_runs_clean(path, tmp_path, monkeypatch):
    # Figures and numbers go to a scratch folder, not into the repository.
    monkeypatch.setenv("LABKIT_RESULTS", str(tmp_path / "results"))
    run = run_notebook(path, ROOT / "_build" / "executed" / path.parent.name / path.name, timeout=600)
    LAB_TIMINGS.append((str(path.relative_to(ROOT / "autograder")), run.wall_s, run.peak_mb))
    assert (tmp_path / "results").is_dir() and any((tmp_path / "results").iterdir()), "a lab ends with a saved figure"
