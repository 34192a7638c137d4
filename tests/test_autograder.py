"""Every lab, proven through the instructor's own workflow on generated submissions.

For each lab, three learners hand in that notebook through `nbgrader zip_collect`:
- `reference` hands in the source notebook: it must run top to bottom in quick mode
  without a single error and score full marks on every graded cell;
- `untouched` hands in the student copy as released: every graded cell must score zero,
  which proves each test can fail;
- `tamperer` hands in the student copy with its test cells gutted, one deleted, and answers
  that claim to equal anything: it must still score zero;
- `breakNx` hands in the reference with only its N-th exercise put back to the released stub:
  it must lose exactly the points of the graded cells that check that exercise (its own
  tests, and any end-to-end check declared in SHARED_CHECKS), and keep every other point.
Each is autograded on its own (`nbgrader autograde --student`), timed, and then feedback
and the grade export are checked for the whole course.

The model servers the labs ask for are the run's own: one per configuration, started the
first time a notebook asks, shared by every notebook graded after it and stopped at the end
(`labkit.course.shared_servers`); the submissions of a lab that serves a model are graded
back to back while its servers are up. `LABKIT_SHARED_SERVERS=off` gives every notebook
servers of its own, as plain `nbgrader autograde` does.
"""
from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import LAB_TIMINGS, ROOT, SOURCE_LABS, nbgrader, venv_env
from labkit.bench import watch_memory
from labkit.course import grading, reference_run
from labkit.course.shared_servers import SharedServers

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
LEARNERS = ("reference", "untouched", "tamperer")

# End-to-end checks that rightly depend on more than the exercise just above them:
# {lab: {graded cell: exercises it also runs}}. Every other graded cell checks one exercise.
SHARED_CHECKS: dict[str, dict[str, set[str]]] = {
    "01_embeddings": {"test_top_k": {"cosine_matrix"}, "test_eval_result": {"cosine_matrix", "top_k"}},
    "02_vector_search": {"test_query_uses_index": {"fixed_size_chunks", "recursive_chunks", "pgvector_top_k"}},
    "03_rag_with_eval": {"test_dev_scores": {"retrieval_metrics", "ndcg_at_k"},
                         "test_heldout": {"retrieval_metrics", "reciprocal_rank_fusion"}},
    "04_serve_with_vllm": {"test_run_load": {"measure_request"}},
    "06_agent_with_eval": {"test_run_agent": {"parse_action"}, "test_loop_and_harness_together": {"parse_action", "run_agent"}},
}

# Every broken-exercise submission is a whole quick-mode run of its lab. The labs that start a
# model server or train a model (minutes per run) are proven this way only with
# LABKIT_PROVE_ISOLATION=all, so that CI stays within its time.
HEAVY_LABS = {"04_serve_with_vllm", "05_lora_finetune", "06_agent_with_eval", "07_ship_and_monitor"}


def isolation_labs() -> list[Path]:
    every = os.environ.get("LABKIT_PROVE_ISOLATION", "") == "all"
    return [lab for lab in SOURCE_LABS if every or lab.stem not in HEAVY_LABS]


def exercises(source: dict) -> list[tuple[str, set[str]]]:
    """(exercise id, graded cells that check it) in notebook order. An exercise's own checks are
    the graded cells between it and the next exercise; SHARED_CHECKS adds the end-to-end ones."""
    found: list[tuple[str, set[str]]] = []
    for cell in source["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code":
            found.append((meta["grade_id"], set()))
        elif meta.get("grade") and found:
            found[-1][1].add(meta["grade_id"])
    return found


def broken(source: dict, release: dict, exercise: str) -> dict:
    """The reference notebook with one exercise replaced by the released stub of that exercise."""
    stubs = {c["metadata"]["nbgrader"]["grade_id"]: c for c in release["cells"]
             if c["metadata"].get("nbgrader", {}).get("solution")}
    nb = json.loads(json.dumps(source))
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == exercise:
            cell["source"] = stubs[exercise]["source"]
    return nb


def breakers(lab: Path) -> list[tuple[str, str, set[str]]]:
    """(learner, the exercise it breaks, that exercise's own checks) for each exercise of a lab."""
    if lab not in isolation_labs():
        return []
    return [(f"break{k}x", exercise, own) for k, (exercise, own) in enumerate(exercises(json.loads(lab.read_text())))]


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
            names = re.findall(r"^(?:async )?def (\w+)", "".join(cell["source"]), flags=re.M)
            cell["source"] = ANYTHING + "".join(f"\n{n} = _Anything()\n" for n in names)
    return nb


def student_id(learner: str, lab: Path) -> str:
    return f"{learner}{lab.stem[:2]}"  # e.g. reference01: one learner per lab and role


@pytest.fixture(scope="module")
def collected(course_copy):
    """Every lab's three submissions, collected with zip_collect as from an LMS download."""
    phases = sorted({lab.parent.name for lab in SOURCE_LABS})
    for phase in phases:
        archive = course_copy / "autograder" / "downloaded" / phase / "archive"
        archive.mkdir(parents=True)
        for lab in (lab for lab in SOURCE_LABS if lab.parent.name == phase):
            release = course_copy / "notebooks" / phase / lab.name
            shutil.copy(lab, archive / f"{student_id('reference', lab)}_{lab.name}")
            shutil.copy(release, archive / f"{student_id('untouched', lab)}_{lab.name}")
            student_copy = json.loads(release.read_text())
            cheat = tampered(student_copy)
            (archive / f"{student_id('tamperer', lab)}_{lab.name}").write_text(json.dumps(cheat, indent=1))
            source = json.loads(lab.read_text())
            for learner, exercise, _ in breakers(lab):
                one_broken = broken(source, student_copy, exercise)
                (archive / f"{student_id(learner, lab)}_{lab.name}").write_text(json.dumps(one_broken, indent=1))
        nbgrader(course_copy, "zip_collect", phase, "--force")
    return course_copy


@pytest.fixture(scope="session")
def shared_servers(tmp_path_factory):
    """What the grading commands add to their environment: the run's shared model servers."""
    if os.environ.get("LABKIT_SHARED_SERVERS", "").strip() == "off":
        yield {"LABKIT_SHARED_SERVERS": "off"}
        return
    with SharedServers(tmp_path_factory.mktemp("servers")) as shared:
        yield shared.env()


def autograde(course: Path, lab: Path, learner: str, env: dict | None = None) -> tuple[float, float]:
    """Autograde one learner's submission of one lab; returns (wall seconds, peak MiB)."""
    command = [str(Path(sys.executable).parent / "nbgrader"), "autograde", lab.parent.name,
               "--student", student_id(learner, lab), "--force"]
    start = time.perf_counter()
    with watch_memory() as memory:
        result = subprocess.run(command, cwd=course / "autograder", env=venv_env(**(env or {})),
                                capture_output=True, text=True)
    wall = time.perf_counter() - start
    assert result.returncode == 0, f"autograde failed for {learner}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return wall, memory["peak_mb"]


def cell_scores(course: Path, lab: Path, learner: str) -> dict:
    """{grade_id: (score, max_score)} of one lab's graded cells, from the gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'autograder' / 'gradebook.db'}") as gb:
        submission = gb.find_submission(lab.parent.name, student_id(learner, lab))
        return {grade.name: (grade.score, grade.max_score)
                for nb in submission.notebooks if nb.name == lab.stem for grade in nb.grades}


def errors_in(notebook: Path) -> list[str]:
    """'cell N: Name: message' for every cell of an executed notebook that raised."""
    cells = json.loads(notebook.read_text())["cells"]
    return [f"cell {i}: {o['ename']}: {o['evalue'][:300]}" for i, c in enumerate(cells)
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


@pytest.fixture(scope="module")
def graded(collected, shared_servers):
    """Lazily autograde (lab, learner) pairs once each, recording the reference runs' cost. A lab
    that serves a model has all its submissions graded at its first, while its servers are up."""
    done = {}

    def grade_one(lab: Path, learner: str) -> None:
        try:
            wall, peak = autograde(collected, lab, learner, shared_servers)
            if learner == "reference":
                LAB_TIMINGS.append((f"{lab.parent.name}/{lab.name}", wall, peak))
            done[(lab, learner)] = cell_scores(collected, lab, learner)
        except Exception as error:  # raised again in the test that asks for this learner
            done[(lab, learner)] = error

    def grade(lab: Path, learner: str) -> dict:
        if (lab, learner) not in done:
            together = LEARNERS + tuple(name for name, _, _ in breakers(lab)) if lab.stem in HEAVY_LABS else ()
            for other in (learner, *together):
                if (lab, other) not in done:
                    grade_one(lab, other)
        if isinstance(done[(lab, learner)], Exception):
            raise done[(lab, learner)]
        return done[(lab, learner)]

    return grade


@pytest.mark.parametrize("lab", SOURCE_LABS, ids=lambda p: p.stem)
def test_reference_runs_clean_and_scores_full_marks(collected, graded, lab):
    scores = graded(lab, "reference")
    executed = collected / "autograder" / "autograded" / student_id("reference", lab) / lab.parent.name / lab.name
    problems = errors_in(executed)
    assert not problems, f"{lab.name} does not run clean in quick mode:\n" + "\n".join(problems)
    assert list((executed.parent / "results").glob("*.png")), f"{lab.name} should end with a saved figure"
    assert scores, "no graded cells found"
    short = {k: v for k, v in scores.items() if v[0] != v[1]}
    assert not short, f"the reference solution lost points: {short}"
    # This run's results and figures are what the lab's page on the site shows (book/_ext/reference_run.py).
    reference_run.harvest(lab.stem, executed.parent / "results",
                          (sum(s for s, _ in scores.values()), sum(m for _, m in scores.values())), ROOT)


@pytest.mark.parametrize("lab", SOURCE_LABS, ids=lambda p: p.stem)
def test_untouched_student_copy_scores_zero_everywhere(graded, lab):
    scores = graded(lab, "untouched")
    assert scores and all(max_score > 0 for _, max_score in scores.values())
    passing = {k: v for k, v in scores.items() if v[0] != 0}
    assert not passing, f"these tests pass on the untouched stub, so they prove nothing: {passing}"


@pytest.mark.parametrize("lab", SOURCE_LABS, ids=lambda p: p.stem)
def test_tampering_gains_nothing(graded, lab):
    reference = graded(lab, "reference")
    scores = graded(lab, "tamperer")
    assert scores.keys() == reference.keys(), "a deleted test cell must still be graded"
    gained = {k: v for k, v in scores.items() if v[0] != 0}
    assert not gained, f"edited or deleted tests or always-equal answers earned points: {gained}"


@pytest.mark.parametrize("lab", isolation_labs(), ids=lambda p: p.stem)
def test_breaking_one_exercise_loses_exactly_its_points(graded, lab):
    reference = graded(lab, "reference")
    shared = SHARED_CHECKS.get(lab.stem, {})
    wrong = []
    for learner, exercise, own in breakers(lab):
        expected = own | {check for check, uses in shared.items() if exercise in uses}
        scores = graded(lab, learner)
        lost = {k for k, (score, max_score) in scores.items() if score < max_score}
        partly = {k: v for k, v in scores.items() if k in expected and v[0] != 0}
        if lost != expected or partly:
            wrong.append(f"breaking {exercise} lost {sorted(lost)}, expected {sorted(expected)} "
                         f"(points kept where all should go: {partly})")
        assert scores.keys() == reference.keys()
    assert not wrong, f"{lab.name}: a graded cell's points depend on the wrong exercises:\n" + "\n".join(wrong)


def hidden_lines(source_notebook: Path) -> list[str]:
    """The distinctive lines of a source notebook's hidden tests: the markers, and the long
    lines that appear nowhere else in the notebook (a line also shown to learners is no leak)."""
    markers, hidden_only, shown, hidden = [], [], set(), False
    for cell in json.loads(source_notebook.read_text())["cells"]:
        for line in "".join(cell["source"]).splitlines():
            if "BEGIN HIDDEN TESTS" in line or "END HIDDEN TESTS" in line:
                hidden = "BEGIN" in line
                markers.append(line.strip())
            elif hidden and len(line.strip()) > 25:
                hidden_only.append(line.strip())
            else:
                shown.add(line.strip())
    return markers + [line for line in hidden_only if line not in shown]


def test_feedback_hides_hidden_tests_and_export_has_every_grade(collected, graded):
    autograder = collected / "autograder"
    for lab in SOURCE_LABS:
        for learner in LEARNERS + tuple(learner for learner, _, _ in breakers(lab)):
            graded(lab, learner)
    for phase in sorted({lab.parent.name for lab in SOURCE_LABS}):
        nbgrader(collected, "generate_feedback", phase, "--force")
    for lab in SOURCE_LABS:
        for learner in LEARNERS:
            page = autograder / "feedback" / student_id(learner, lab) / lab.parent.name / f"{lab.stem}.html"
            assert page.is_file(), f"no feedback for {learner} on {lab.name}"
            text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
            leaked = [line for line in hidden_lines(lab) if line in text]
            assert not leaked, f"feedback {page.name} for {learner} reveals hidden tests: {leaked[:3]}"
    nbgrader(collected, "export")
    with open(autograder / "grades.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    totals = {}
    for row in rows:
        totals[row["student_id"]] = totals.get(row["student_id"], 0.0) + float(row["score"])
    for lab in SOURCE_LABS:
        assert totals[student_id("reference", lab)] > 0
        assert totals[student_id("untouched", lab)] == 0 and totals[student_id("tamperer", lab)] == 0
    # Every handed-in lab, the tampered ones included, was really graded: no zero hides a crash.
    handed_in = {(row.student_id, row.notebook): row for row in grading.grade_report(autograder)
                 if row.status != "not submitted"}
    assert {(student_id(learner, lab), lab.stem) for lab in SOURCE_LABS
            for learner in LEARNERS + tuple(learner for learner, _, _ in breakers(lab))} == set(handed_in)
    assert {row.status for row in handed_in.values()} == {"graded"}, \
        [f"{key}: {row.status} {row.detail}" for key, row in handed_in.items() if row.status != "graded"]
