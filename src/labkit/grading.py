"""Grades an instructor can trust: every submitted notebook gets a score *and* a status.

``nbgrader export`` writes 0.0 for a submission that could not be graded at all (a file
that is not a notebook, a kernel that died), the same number a learner who answered
nothing gets. ``grade_report`` reads the course folder after ``nbgrader autograde`` and
tells the cases apart:

- ``graded``: autograded; the score is the gradebook's;
- ``graded, timed out``: autograded, but a cell hit the time limit (its checks score 0);
- ``not graded``: submitted, but autograde produced nothing for it: no score is given;
- ``broken file``: the submitted file is not a readable notebook: no score is given;
- ``not submitted``: the learner handed in the assignment without this notebook.
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

FIELDS = ("assignment", "student_id", "notebook", "score", "max_score", "status", "detail")
NEEDS_ACTION = ("not graded", "broken file")


@dataclass
class NotebookGrade:
    assignment: str
    student_id: str
    notebook: str
    score: float | None  # None where no honest score exists
    max_score: float
    status: str
    detail: str = ""


def _readable(path: Path) -> str:
    """'' if ``path`` is a notebook nbformat can read and validate, else why not."""
    import nbformat

    try:
        nbformat.validate(nbformat.read(path, as_version=4))
    except Exception as error:  # nbformat raises several kinds, all meaning "not a notebook"
        return f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return ""


def _timeouts(path: Path) -> list[str]:
    """The cells of an autograded notebook that hit the time limit."""
    cells = json.loads(path.read_text())["cells"]
    return [cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"cell {i}"
            for i, cell in enumerate(cells) for out in cell.get("outputs", [])
            if out.get("output_type") == "error" and "Timeout" in out.get("ename", "")]


def grade_report(course: str | Path) -> list[NotebookGrade]:
    """One row per (assignment, student, notebook) that was handed in, with its status."""
    from nbgrader.api import Gradebook, MissingEntry

    course = Path(course)
    database = course / "gradebook.db"
    if not database.is_file():
        raise ValueError(f"{course} has no gradebook.db: run this in the nbgrader course folder, "
                         "after `nbgrader generate_assignment` and `nbgrader autograde`")
    rows = []
    with Gradebook(f"sqlite:///{database}") as gradebook:
        for source in sorted(p for p in (course / "source").iterdir() if p.is_dir()):
            assignment = source.name
            notebooks = sorted(p.stem for p in source.glob("*.ipynb"))
            students = sorted(p.parent.name for p in (course / "submitted").glob(f"*/{assignment}") if p.is_dir())
            for student in students:
                for name in notebooks:
                    try:
                        max_score = gradebook.find_notebook(name, assignment).max_score
                    except MissingEntry:
                        raise ValueError(f"{assignment}/{name} is not in the gradebook: "
                                         f"run `nbgrader generate_assignment {assignment}` first") from None
                    rows.append(_grade_one(course, gradebook, assignment, student, name, max_score))
    return rows


def _grade_one(course, gradebook, assignment, student, name, max_score) -> NotebookGrade:
    from nbgrader.api import MissingEntry

    row = NotebookGrade(assignment, student, name, None, max_score, "")
    submitted = course / "submitted" / student / assignment / f"{name}.ipynb"
    autograded = course / "autograded" / student / assignment / f"{name}.ipynb"
    if not submitted.is_file():
        row.status, row.score = "not submitted", 0.0
        return row
    problem = _readable(submitted)
    if problem:
        row.status, row.detail = "broken file", f"{submitted}: {problem}"
        return row
    if not autograded.is_file():
        row.status = "not graded"
        row.detail = ("autograde wrote no graded copy: the run stopped (a dead kernel, or an error "
                      "in nbgrader); see its log, fix, and run `nbgrader autograde` for this student again")
        return row
    try:
        row.score = float(gradebook.find_submission_notebook(name, assignment, student).score)
    except MissingEntry:
        row.status, row.detail = "not graded", "graded copy exists but the gradebook has no score for it"
        return row
    late = _timeouts(autograded)
    row.status = "graded, timed out" if late else "graded"
    row.detail = f"time limit hit in {', '.join(late)}" if late else ""
    return row


def write_report(rows: list[NotebookGrade], path: str | Path) -> Path:
    """The rows as CSV; an ungraded notebook's score is left empty, never written as 0."""
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**asdict(row), "score": "" if row.score is None else row.score})
    return path
