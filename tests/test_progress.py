"""``labkit progress``: which visible checks of the learner's labs pass, without touching them."""
from __future__ import annotations

import io

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit.course import cli, progress
from labkit.course.labrun import run_notebook


def _check(source, grade_id):
    """A visible check cell as the student copies carry it."""
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": grade_id, "locked": True, "points": 1,
                                 "solution": False, "schema_version": 3}
    return cell


def _lab(folder, name, *cells):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=list(cells)), path)
    return path


def _mixed_lab(folder, name="phase1/01_demo.ipynb"):
    """One passing check, one failing check, and a check after the failure that still runs."""
    return _lab(folder, name,
                new_markdown_cell("# Demo lab"),
                new_code_cell("import os\nquick = os.environ['LABKIT_QUICK']\ndata = open('data.txt').read()"),
                _check("assert quick == '1' and data == 'local file'", "test_quick_and_cwd"),
                _check("assert 1 + 1 == 3, 'not yet'", "test_not_done"),
                _check("assert data", "test_after_failure"))


def test_counts_checks_and_keeps_the_notebook(tmp_path):
    lab = _mixed_lab(tmp_path / "notebooks")
    (lab.parent / "data.txt").write_text("local file")  # read through a path relative to the notebook
    before = lab.read_bytes()
    result = progress.check_lab(lab, timeout=60, bar=False)
    assert result.checks == ["test_quick_and_cwd", "test_not_done", "test_after_failure"]
    assert result.failing == ["test_not_done"] and result.passed == 2 and not result.ok
    assert lab.read_bytes() == before, "the learner's notebook is never rewritten"
    assert sorted(p.name for p in lab.parent.iterdir()) == ["01_demo.ipynb", "data.txt"], "no copies left beside it"
    line = progress.format_line(result)
    assert "phase1/01_demo   2/3 checks pass  (failing: test_not_done)" == line


def test_report_exit_codes_and_unreadable_lab(tmp_path):
    notebooks = tmp_path / "notebooks"
    _lab(notebooks, "phase1/01_good.ipynb", new_code_cell("x = 2"), _check("assert x == 2", "test_x"))
    broken = notebooks / "phase1" / "02_broken.ipynb"
    broken.write_text('{"cells": [')
    (notebooks / "phase1" / "03_not_a_notebook.ipynb").write_text('{"hello": "world"}')
    _lab(notebooks, "phase2/04_also_good.ipynb", _check("assert True", "test_ok"))
    out = io.StringIO()
    assert progress.report(notebooks, timeout=60, bar=False, out=out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("phase1/01_good") and "1/1 checks pass" in lines[0]
    assert lines[1].startswith("phase1/02_broken") and "unreadable" in lines[1] and "restore it from git" in lines[1]
    assert lines[2].startswith("phase1/03_not_a_notebook") and "unreadable" in lines[2]
    assert "phase2/04_also_good" in lines[3] and "1/1 checks pass" in lines[3], "the others still run"
    assert "2/2 checks pass in 4 labs, 2 unreadable" in lines[4]
    out = io.StringIO()
    assert progress.report(notebooks, lab="01_good", timeout=60, bar=False, out=out) == 0, "all checks pass"
    assert "02_broken" not in out.getvalue()


def test_cli_progress_failing_lab_exits_1(tmp_path, capsys):
    notebooks = tmp_path / "nbs"
    _lab(notebooks, "phase1/01_stub.ipynb", new_code_cell("def f():\n    raise NotImplementedError()"),
         _check("assert f() == 1", "test_f"))
    assert cli.main(["progress", "--notebooks", str(notebooks)]) == 1
    captured = capsys.readouterr()
    assert "phase1/01_stub   0/1 checks pass  (failing: test_f)" in captured.out
    assert "0/1 checks pass in 1 lab" in captured.out
    assert captured.err == "", "no progress bar when stderr is not a terminal"
    assert cli.main(["progress", "--notebooks", str(notebooks), "--bar"]) == 1
    assert "phase1/01_stub" in capsys.readouterr().err, "--bar forces the per-cell bar onto stderr"


def test_empty_folder_and_unknown_lab_are_clear_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["progress", "--notebooks", str(tmp_path / "empty")]) == 2
    assert "no lab notebooks" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no folder"):
        progress.find_labs(tmp_path / "missing")
    _lab(tmp_path / "nb", "phase1/01_a.ipynb", new_code_cell("1"))
    with pytest.raises(ValueError, match="the labs there are: phase1/01_a"):
        progress.find_labs(tmp_path / "nb", lab="07_nothing")
    assert progress.find_labs(tmp_path / "nb", lab="phase1/01_a")[0].name == "01_a.ipynb"


def test_runner_with_errors_allowed_and_a_cell_hook(tmp_path):
    nb = _lab(tmp_path, "lab.ipynb", new_code_cell("1 / 0"), new_markdown_cell("text"), new_code_cell("y = 1"))
    seen = []
    run = run_notebook(nb, tmp_path / "out.ipynb", timeout=60, allow_errors=True, on_cell=lambda i, cell: seen.append(i))
    assert seen == run.executed == [0, 2]
    assert run.errors == {0: "ZeroDivisionError: division by zero"} and run.stopped is None


def test_timeout_ends_the_run_and_fails_the_later_checks(tmp_path):
    lab = _lab(tmp_path / "notebooks", "phase1/01_slow.ipynb", _check("pass", "test_first"),
               new_code_cell("import time\ntime.sleep(30)"), _check("pass", "test_after"))
    result = progress.check_lab(lab, timeout=1, bar=False)
    assert result.failing == ["test_after"] and result.stopped == "cell 1 timed out after 1 s"
