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

from . import nbmeta

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
    return [nbmeta.name(cell, i)
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


@dataclass
class CellGrade:
    """One graded cell of one learner's graded notebook, from the gradebook."""
    assignment: str
    student_id: str
    notebook: str
    cell: str
    score: float
    max_score: float


def cell_grades(course: str | Path, rows: list[NotebookGrade]) -> list[CellGrade]:
    """The per-cell scores behind every row that was really graded (not the missing or broken)."""
    from nbgrader.api import Gradebook, MissingEntry

    found = []
    with Gradebook(f"sqlite:///{Path(course) / 'gradebook.db'}") as gradebook:
        for row in rows:
            if not row.status.startswith("graded"):
                continue
            try:
                notebook = gradebook.find_submission_notebook(row.notebook, row.assignment, row.student_id)
            except MissingEntry:
                continue
            found += [CellGrade(row.assignment, row.student_id, row.notebook, grade.name, float(grade.score or 0.0),
                                float(grade.max_score)) for grade in notebook.grades]
    return found


def needs_a_look(rows: list[NotebookGrade]) -> list[NotebookGrade]:
    """Rows without an honest grade: fix them and autograde again before publishing."""
    return [row for row in rows if row.status in NEEDS_ACTION]


def class_figure(cells: list[CellGrade], path: str | Path, most_failed: int = 10) -> Path:
    """Two panels: how each graded cell's scores spread over the class (full, partial, none),
    and the cells that most learners failed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({(c.assignment, c.notebook, c.cell) for c in cells})
    labels = [f"{notebook}: {cell}" for _, notebook, cell in names]
    counts = {name: [0, 0, 0] for name in names}  # full, partial, none
    for c in cells:
        bucket = 0 if c.score >= c.max_score else (1 if c.score > 0 else 2)
        counts[(c.assignment, c.notebook, c.cell)][bucket] += 1
    height = max(2.5, 0.32 * len(names) + 1.2)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, height + 0.4), dpi=110, layout="constrained")
    start = [0] * len(names)
    for i, (label, colour) in enumerate((("full marks", "#2e7d32"), ("partly", "#f9a825"), ("none", "#c62828"))):
        widths = [counts[name][i] for name in names]
        left.barh(labels, widths, left=start, color=colour, label=label)
        start = [s + w for s, w in zip(start, widths)]
    left.invert_yaxis()
    left.set_xlabel("learners")
    left.set_title("score per graded cell")
    left.legend(loc="lower center", bbox_to_anchor=(0.5, 1.08), ncol=3, fontsize=8, frameon=False)
    failed = sorted(((counts[n][1] + counts[n][2]) / max(1, sum(counts[n])), label)
                    for n, label in zip(names, labels))[::-1][:most_failed]
    right.barh([label for _, label in failed], [100 * share for share, _ in failed], color="#c62828")
    right.invert_yaxis()
    right.set_xlim(0, 100)
    right.set_xlabel("% of graded learners without full marks")
    right.set_title(f"most often failed (top {len(failed)})")
    for axis in (left, right):
        axis.tick_params(axis="y", labelsize=8)
        axis.grid(axis="x", alpha=0.3)
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_html(rows: list[NotebookGrade], figure: Path | None, path: str | Path) -> Path:
    """A self-contained page: what needs a look first, the class figure, then every row."""
    import base64
    import html

    stuck = needs_a_look(rows)
    late = [row for row in rows if row.status == "graded, timed out"]

    def table(selected: list[NotebookGrade]) -> str:
        lines = ["<table><tr>" + "".join(f"<th>{name}</th>" for name in FIELDS) + "</tr>"]
        for row in selected:
            values = {**asdict(row), "score": "" if row.score is None else f"{row.score:g}",
                      "max_score": f"{row.max_score:g}"}
            css = "stuck" if row in stuck else ("late" if row in late else "")
            lines.append(f'<tr class="{css}">' + "".join(f"<td>{html.escape(str(values[name]))}</td>"
                                                        for name in FIELDS) + "</tr>")
        return "\n".join(lines + ["</table>"])

    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>Grades</title><style>",
             "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:2px 6px;font-size:90%}.stuck{background:#fdd}.late{background:#ffd}</style></head><body>",
             "<h1>Grades</h1>",
             f"<p>{len(rows)} notebooks; {len(stuck)} without a grade; {len(late)} graded with a cell over its "
             "time limit.</p>"]
    if stuck:
        parts += ["<h2>Needs a look before you publish</h2>",
                  "<p>No score is given for these: fix the cause and run <code>nbgrader autograde</code> "
                  "for the learner again.</p>", table(stuck)]
    if figure is not None and Path(figure).is_file():
        data = base64.b64encode(Path(figure).read_bytes()).decode()
        parts += ["<h2>The class</h2>", f'<img alt="scores per graded cell" src="data:image/png;base64,{data}">']
    parts += ["<h2>Every notebook</h2>", table(rows), "</body></html>"]
    path = Path(path)
    path.write_text("\n".join(parts))
    return path
