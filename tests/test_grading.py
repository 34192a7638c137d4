"""labkit grades: after a real `nbgrader autograde`, a crash or a broken file is never a silent zero.

A one-exercise assignment, graded with the course's own nbgrader configuration, is handed in
by six learners: one right, one blank (a true zero), one whose file is not a notebook, one
whose code kills the kernel, one whose code never ends, and one who left the notebook out.
"""
from __future__ import annotations

import csv
import json
import shutil

import pytest

from conftest import ROOT, nbgrader
from labkit.course import cli, grading


def cell(kind, source, **grading_meta):
    meta = {"nbgrader": {"schema_version": 3, "locked": False, "solution": False, "grade": False, "task": False,
                         **grading_meta}} if grading_meta else {}
    extra = {"outputs": [], "execution_count": None} if kind == "code" else {}
    return {"cell_type": kind, "id": grading_meta.get("grade_id", "intro"),
            "metadata": meta, "source": source, **extra}


TINY = {
    "nbformat": 4, "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "cells": [
        cell("markdown", "Write `double(x)`."),
        cell("code", "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
             grade_id="double", solution=True),
        cell("code", "assert double(2) == 4\nassert double(-1) == -2", grade_id="test_double", grade=True,
             locked=True, points=2),
    ],
}


def handed_in(release: dict, body: str) -> str:
    nb = json.loads(json.dumps(release))
    nb["cells"][1]["source"] = body
    return json.dumps(nb)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("grading")
    autograder = root / "autograder"
    (autograder / "source" / "tiny").mkdir(parents=True)
    for name in ("nbgrader_config.py", "feedback_filters.py"):
        shutil.copy(ROOT / "autograder" / name, autograder / name)
    (autograder / "source" / "tiny" / "00_tiny.ipynb").write_text(json.dumps(TINY))
    nbgrader(root, "generate_assignment", "tiny", "--force")
    release = json.loads((root / "notebooks" / "tiny" / "00_tiny.ipynb").read_text())
    submissions = {
        "right": handed_in(release, "def double(x):\n    return x + x"),
        "blank": json.dumps(release),
        "broken": json.dumps(release)[:200],
        "crasher": handed_in(release, "import os\nos._exit(1)"),
        "looper": handed_in(release, "while True:\n    pass"),
    }
    for student, text in submissions.items():
        folder = autograder / "submitted" / student / "tiny"
        folder.mkdir(parents=True)
        (folder / "00_tiny.ipynb").write_text(text)
    (autograder / "submitted" / "absent" / "tiny").mkdir(parents=True)  # handed in without the notebook
    # nbgrader exits non-zero when any submission fails; the report is what must say which.
    nbgrader(root, "autograde", "tiny", "--Execute.timeout=10", check=False)
    return autograder


def test_export_alone_hides_the_failures(course):
    """Why the report exists: nbgrader's own export gives the broken and the crashed a plain 0."""
    nbgrader(course.parent, "export")
    scores = {row["student_id"]: float(row["score"]) for row in csv.DictReader((course / "grades.csv").open())}
    assert {s: scores[s] for s in ("right", "blank", "broken", "crasher", "looper")} == \
        {"right": 2.0, "blank": 0.0, "broken": 0.0, "crasher": 0.0, "looper": 0.0}


def test_each_outcome_gets_its_own_status(course):
    rows = {row.student_id: row for row in grading.grade_report(course)}
    assert (rows["right"].status, rows["right"].score) == ("graded", 2.0)
    assert (rows["blank"].status, rows["blank"].score) == ("graded", 0.0)
    assert (rows["broken"].status, rows["broken"].score) == ("broken file", None)
    assert "JSON" in rows["broken"].detail
    assert (rows["crasher"].status, rows["crasher"].score) == ("not graded", None)
    assert rows["looper"].status == "graded, timed out" and rows["looper"].score == 0.0
    assert "double" in rows["looper"].detail, "names the cell that hit the limit"
    assert (rows["absent"].status, rows["absent"].score) == ("not submitted", 0.0)
    assert all(row.max_score == 2.0 for row in rows.values())


def test_cli_writes_empty_scores_and_fails_while_grades_are_missing(course, capsys):
    assert cli.main(["grades", "--course", str(course)]) == 1
    err = capsys.readouterr().err
    assert "2 handed-in notebooks have no grade" in err
    written = {row["student_id"]: row for row in csv.DictReader((course / "grades-checked.csv").open())}
    assert written["crasher"]["score"] == "" and written["broken"]["score"] == ""
    assert written["right"]["score"] == "2.0" and written["blank"]["score"] == "0.0"


def test_a_folder_without_a_gradebook_is_refused(tmp_path, capsys):
    assert cli.main(["grades", "--course", str(tmp_path)]) == 2
    assert "no gradebook.db" in capsys.readouterr().err


def test_cli_writes_a_page_and_a_class_figure(course):
    assert cli.main(["grades", "--course", str(course)]) == 1
    page = (course / "grades-checked.html").read_text()
    first, rest = page.split("<h2>The class</h2>")
    assert "Needs a look before you publish" in first
    stuck = first.split("Needs a look before you publish")[1]
    assert "crasher" in stuck and "broken" in stuck and "right" not in stuck and "looper" not in stuck
    assert "data:image/png;base64," in rest and "looper" in rest
    assert (course / "grades-checked.png").read_bytes()[:4] == b"\x89PNG"
    cells = {c.student_id: (c.cell, c.score) for c in grading.cell_grades(course, grading.grade_report(course))}
    assert cells["right"] == ("test_double", 2.0) and cells["blank"] == ("test_double", 0.0)
    assert "crasher" not in cells and "broken" not in cells


def test_a_page_with_nothing_to_look_at_says_so(tmp_path):
    rows = [grading.NotebookGrade("phase1", "ada", "01_x", 2.0, 2.0, "graded")]
    cells = [grading.CellGrade("phase1", "ada", "01_x", "test_a", 1.0, 1.0),
             grading.CellGrade("phase1", "ada", "01_x", "test_b", 0.0, 1.0)]
    figure = grading.class_figure(cells, tmp_path / "class.png")
    page = grading.write_html(rows, figure, tmp_path / "grades.html").read_text()
    assert "Needs a look" not in page and "0 without a grade" in page
    assert grading.needs_a_look(rows) == []
