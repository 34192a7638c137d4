"""The instructor's workflow end to end, on generated submissions.

For each phase that has labs: collect three submissions per notebook with
`nbgrader zip_collect`, autograde, generate feedback and export, then check that
- the reference solution scores full marks on every graded cell,
- the untouched student copy scores zero on every graded cell (every test can fail),
- a copy whose test cells were edited or deleted, and whose answers return objects that
  claim to equal anything, still scores zero.
"""
from __future__ import annotations

import csv
import html
import json
import re
import shutil

import pytest

from conftest import PHASES, SOURCE, nbgrader

PHASES_WITH_LABS = [p for p in PHASES if any((SOURCE / p).glob("*.ipynb"))]

# Stands in for every answer: equal to anything, greater and smaller than anything.
ANYTHING = """
class _Anything:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __le__ = __ge__ = __lt__ = __gt__ = __eq__
    def __getattr__(self, name): return _Anything()
    def __call__(self, *args, **kwargs): return _Anything()
    def __getitem__(self, key): return _Anything()
    def __iter__(self): return iter([])
    def __len__(self): return 0
    def __bool__(self): return True
"""


def tampered(student_copy: dict) -> dict:
    """The student copy with every test cell gutted, one deleted, and cheating answers."""
    nb = json.loads(json.dumps(student_copy))
    graded = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade")]
    for cell in graded:
        cell["source"] = "print('all tests passed')\n"
        cell["metadata"]["nbgrader"]["locked"] = False
        cell["metadata"]["nbgrader"].pop("checksum", None)
    nb["cells"].remove(graded[-1])
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("solution") and cell["cell_type"] == "code":
            names = re.findall(r"^def (\w+)", "".join(cell["source"]), flags=re.M)
            cell["source"] = ANYTHING + "".join(f"\n{n} = _Anything()\n" for n in names)
    return nb


@pytest.fixture(scope="module")
def graded_course(course_copy):
    course = course_copy
    for phase in PHASES_WITH_LABS:
        archive = course / "autograder" / "downloaded" / phase / "archive"
        archive.mkdir(parents=True)
        for source in sorted((SOURCE / phase).glob("*.ipynb")):
            release = course / "notebooks" / phase / source.name
            shutil.copy(source, archive / f"reference_{source.name}")
            shutil.copy(release, archive / f"untouched_{source.name}")
            cheat = tampered(json.loads(release.read_text()))
            (archive / f"tamperer_{source.name}").write_text(json.dumps(cheat, indent=1))
        nbgrader(course, "zip_collect", phase, "--force")
        nbgrader(course, "autograde", phase, "--force")
        nbgrader(course, "generate_feedback", phase, "--force")
    nbgrader(course, "export")
    return course


def hidden_lines(source_notebook):
    """The distinctive lines of a source notebook's hidden tests."""
    lines, hidden = [], False
    for cell in json.loads(source_notebook.read_text())["cells"]:
        for line in "".join(cell["source"]).splitlines():
            if "BEGIN HIDDEN TESTS" in line or "END HIDDEN TESTS" in line:
                hidden = "BEGIN" in line
                lines.append(line.strip())
            elif hidden and len(line.strip()) > 25:
                lines.append(line.strip())
    return lines


def cell_scores(course, phase, student):
    """{(notebook, grade_id): (score, max_score)} from the gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'autograder' / 'gradebook.db'}") as gb:
        submission = gb.find_submission(phase, student)
        return {(nb.name, grade.name): (grade.score, grade.max_score)
                for nb in submission.notebooks for grade in nb.grades}


@pytest.mark.parametrize("phase", PHASES_WITH_LABS)
def test_reference_solution_scores_full_marks(graded_course, phase):
    scores = cell_scores(graded_course, phase, "reference")
    assert scores, "no graded cells found"
    short = {k: v for k, v in scores.items() if v[0] != v[1]}
    assert not short, f"the reference solution lost points: {short}"


@pytest.mark.parametrize("phase", PHASES_WITH_LABS)
def test_untouched_student_copy_scores_zero_everywhere(graded_course, phase):
    scores = cell_scores(graded_course, phase, "untouched")
    assert scores and all(max_score > 0 for _, max_score in scores.values())
    passing = {k: v for k, v in scores.items() if v[0] != 0}
    assert not passing, f"these tests pass on the untouched stub, so they prove nothing: {passing}"


@pytest.mark.parametrize("phase", PHASES_WITH_LABS)
def test_tampering_gains_nothing(graded_course, phase):
    reference = cell_scores(graded_course, phase, "reference")
    scores = cell_scores(graded_course, phase, "tamperer")
    assert scores.keys() == reference.keys(), "a deleted test cell must still be graded"
    gained = {k: v for k, v in scores.items() if v[0] != 0}
    assert not gained, f"edited or deleted tests or always-equal answers earned points: {gained}"


def test_feedback_and_export(graded_course):
    autograder = graded_course / "autograder"
    for phase in PHASES_WITH_LABS:
        for student in ("reference", "untouched", "tamperer"):
            pages = list((autograder / "feedback" / student / phase).glob("*.html"))
            assert pages, f"no feedback for {student} in {phase}"
            for page in pages:
                text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
                leaked = [line for line in hidden_lines(SOURCE / phase / f"{page.stem}.ipynb") if line in text]
                assert not leaked, f"feedback {student}/{page.name} reveals hidden tests: {leaked[:3]}"
    with open(autograder / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_student = {}
    for row in rows:
        by_student.setdefault(row["student_id"], 0.0)
        by_student[row["student_id"]] += float(row["score"])
    assert by_student["reference"] > 0 and by_student["untouched"] == 0 and by_student["tamperer"] == 0
