"""Grading a class on one machine: seconds per submission, and the speed-up from 1 to N workers.

Generates a class of submissions of one fast lab (lab 08 by default) from its source and
its student copy: correct (the reference), partly wrong (the reference with one exercise put
back to its stub, a different one each time), untouched (the student copy: zero), broken (not
a notebook) and crashing (the kernel exits in the first exercise). The class is graded with
`labkit grade-class` with 1 worker and with N, each in a fresh copy of the course; with
--slices K the settings take turns, slice by slice of the class, so that both meet the same
load on a shared machine. The script prints the wall time, seconds per submission, speed-up
and load average of each setting, and fails unless every learner got the expected status and
the same per-cell grades in every run.

    .venv/bin/python benchmarks/grading_scale.py [--students 30] [--workers 2] [--slices 3] [--repeat 1]

The sandbox is on unless LABKIT_SANDBOX=off is set, as for `nbgrader autograde`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _reference import lab_source  # noqa: E402

# One submission of each kind per ten learners, in this order: mostly right or partly right.
KINDS = ("correct", "partly wrong", "correct", "partly wrong", "untouched", "correct", "partly wrong", "broken",
         "correct", "crashing")
SMALL_CLASS = ("correct", "partly wrong", "crashing")  # what a class of three holds
EXPECTED_STATUS = {"broken": "failed", "crashing": "failed"}  # every other kind must be graded


def venv_env() -> dict:
    bin_dir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""), LABKIT_QUICK="1")


def course_for(lab: Path, folder: Path) -> Path:
    """A course folder holding the lab's phase, with the student copies generated as the instructor does."""
    autograder = folder / "autograder"
    autograder.mkdir(parents=True)
    for config in (ROOT / "autograder").glob("*.py"):
        shutil.copy(config, autograder)
    shutil.copytree(lab.parent, autograder / "source" / lab.parent.name,
                    ignore=shutil.ignore_patterns("results", ".ipynb_checkpoints"))
    result = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "generate_assignment", lab.parent.name,
                             "--force"], cwd=autograder, env=venv_env(), capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"generate_assignment failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return autograder


def exercises(notebook: dict) -> list[str]:
    return [c["metadata"]["nbgrader"]["grade_id"] for c in notebook["cells"]
            if c["cell_type"] == "code" and c["metadata"].get("nbgrader", {}).get("solution")]


def submission(kind: str, index: int, source: dict, release: dict) -> str:
    """The text of one learner's notebook of the given kind."""
    if kind == "untouched":
        return json.dumps(release, indent=1)
    if kind == "broken":
        return json.dumps(release, indent=1)[:500]  # a download cut short: not JSON
    nb = json.loads(json.dumps(source))
    solutions = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("solution") and c["cell_type"] == "code"]
    if kind == "partly wrong":
        stubs = {c["metadata"]["nbgrader"]["grade_id"]: c["source"] for c in release["cells"]
                 if c["metadata"].get("nbgrader", {}).get("solution")}
        cell = solutions[index % len(solutions)]
        cell["source"] = stubs[cell["metadata"]["nbgrader"]["grade_id"]]
    elif kind == "crashing":
        solutions[0]["source"] = "import os\nos._exit(1)\n" + "".join(solutions[0]["source"])
    return json.dumps(nb, indent=1)


def grades(course: Path, assignment: str) -> dict:
    """{student: {notebook: (status, score, max score, {(notebook, cell): score})}} from `labkit grades`' report
    and the gradebook."""
    from nbgrader.api import Gradebook

    from labkit.course import grading

    rows = grading.grade_report(course)
    found = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for row in rows:
            cells = {}
            if row.status.startswith("graded"):
                notebook = gradebook.find_submission_notebook(row.notebook, assignment, row.student_id)
                cells = {(row.notebook, grade.name): grade.score for grade in notebook.grades}
            found.setdefault(row.student_id, {})[row.notebook] = (row.status, row.score, row.max_score, cells)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="08_portfolio_writeup", help="the lab every learner hands in")
    parser.add_argument("--students", type=int, default=30, help="learners in the class (at least 3)")
    parser.add_argument("--workers", type=int, default=2, help="workers of the parallel run")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each setting, interleaved (1, N, 1, N, ...)")
    parser.add_argument("--slices", type=int, default=1, help="grade the class in this many slices, the settings taking turns")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per learner")
    parser.add_argument("--keep", metavar="DIR", help="keep the graded courses in this folder")
    args = parser.parse_args()
    if args.students < 3 or not 1 <= args.slices <= args.students:
        parser.error("--students must be at least 3, and --slices between 1 and --students")

    from labkit.config import describe_hardware
    from labkit.course import classgrade

    lab = lab_source(args.lab)
    assignment = lab.parent.name
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="grading-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    template = course_for(lab, work / "template")
    source = json.loads(lab.read_text())
    release = json.loads((template.parent / "notebooks" / assignment / lab.name).read_text())
    kinds = SMALL_CLASS if args.students == 3 else tuple(KINDS[i % len(KINDS)] for i in range(args.students))
    learners = {f"learner{i:03d}": kind for i, kind in enumerate(kinds)}
    for i, (student, kind) in enumerate(learners.items()):
        folder = template / "submitted" / student / assignment
        folder.mkdir(parents=True)
        (folder / lab.name).write_text(submission(kind, i, source, release))
    counts = {kind: list(learners.values()).count(kind) for kind in dict.fromkeys(kinds)}
    sandboxed = os.environ.get("LABKIT_SANDBOX", "on").strip().lower() != "off"  # as nbgrader_config.py reads it
    print(f"{args.students} submissions of {lab.stem} ({', '.join(f'{n} {k}' for k, n in counts.items())}); "
          f"sandbox {'on' if sandboxed else 'off'}; {describe_hardware()}", flush=True)

    # Each run grades the whole class in its own copy of the course. With --slices K the class is
    # graded in K slices of learners, the settings taking turns slice by slice, so that both see
    # the same load on a shared machine; a run's wall time is the sum over its slices.
    runs = []  # (workers, wall, load before, load after, statuses, grades)
    settings = [w for _ in range(args.repeat) for w in (1, args.workers)]
    courses = []
    for k, workers in enumerate(settings):
        courses.append(work / f"run{k}-{workers}w" / "autograder")
        shutil.copytree(template.parent, courses[-1].parent)
    names = list(learners)
    slices = [names[i::args.slices] for i in range(args.slices)]
    walls, statuses, loads = [0.0] * len(settings), [{} for _ in settings], [[] for _ in settings]
    for part in slices:
        for k, workers in enumerate(settings):
            loads[k].append(os.getloadavg()[0])
            result = classgrade.grade_class(courses[k], assignment, workers=workers, students=part, timeout_s=args.timeout)
            loads[k].append(os.getloadavg()[0])
            walls[k] += result.wall_s
            statuses[k].update({run.student_id: run.status for run in result.runs})
            print(f"  {workers} worker{'s' if workers > 1 else ' '}, {len(part)} learners: {result.wall_s:6.1f} s, "
                  f"{result.counts()}, load average {loads[k][-2]:.1f} -> {loads[k][-1]:.1f}", flush=True)
    for k, workers in enumerate(settings):
        runs.append((workers, walls[k], min(loads[k]), max(loads[k]), statuses[k], grades(courses[k], assignment)))
        print(f"{workers} worker{'s' if workers > 1 else ' '}: {walls[k]:7.1f} s for {args.students} submissions, "
              f"{walls[k] / args.students:5.2f} s per submission, load average {min(loads[k]):.1f} to {max(loads[k]):.1f}")

    problems = []
    for student, kind in learners.items():
        for workers, _, _, _, statuses, _ in runs:
            expected = EXPECTED_STATUS.get(kind, "graded")
            if statuses[student] != expected:
                problems.append(f"{student} ({kind}) was {statuses[student]} with {workers} worker(s), expected {expected}")
    first = runs[0][5]
    identical = all(run[5] == first for run in runs[1:])
    if not identical:
        for workers, *_, found in runs[1:]:
            differ = sorted(s for s in first if found.get(s) != first[s])
            problems.append(f"grades with {workers} worker(s) differ for {differ}")
    for student, kind in learners.items():  # each kind scores as it should
        status, score, max_score, _ = first[student][lab.stem]
        wrong = {"correct": score != max_score, "untouched": score != 0,
                 "partly wrong": score is None or not 0 < score < max_score}.get(kind, score is not None)
        if wrong:
            problems.append(f"{student} ({kind}) scored {score} of {max_score} ({status})")

    serial = [wall for workers, wall, *_ in runs if workers == 1]
    parallel = [wall for workers, wall, *_ in runs if workers == args.workers]
    mean_serial, mean_parallel = sum(serial) / len(serial), sum(parallel) / len(parallel)
    print(f"\nseconds per submission: {mean_serial / args.students:.2f} s with 1 worker, "
          f"{mean_parallel / args.students:.2f} s with {args.workers} (wall {mean_serial:.1f} s and {mean_parallel:.1f} s)")
    print(f"speed-up from 1 to {args.workers} workers: {mean_serial / mean_parallel:.2f}x")
    print(f"load average (1 min) during the runs: {min(r[2] for r in runs):.1f} to {max(r[3] for r in runs):.1f} "
          f"on {os.cpu_count()} cores")
    print(f"grades identical between the runs: {'yes' if identical else 'NO'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    for problem in problems:
        print("PROBLEM:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
