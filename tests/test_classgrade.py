"""labkit collect and labkit grade-class: an LMS download taken in with a status per file, and
a class graded by parallel nbgrader processes into one gradebook, each learner once.

A one-exercise assignment ("tiny") is built in a scratch folder with the course's own
nbgrader_config.py, as in test_grading.py. The intake cases use nbgrader's zip_collect for
the copying; the grading cases run real `nbgrader autograde` processes, two at a time.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import psutil
import pytest

from conftest import ROOT, nbgrader
from labkit.course import classgrade, cli, grading, sandbox
from test_grading import TINY  # the same one-exercise assignment

ASSIGNMENT = "tiny"
NOTEBOOK = "00_tiny.ipynb"


def make_course(root: Path, extra_config: str = "") -> Path:
    autograder = root / "autograder"
    (autograder / "source" / ASSIGNMENT).mkdir(parents=True)
    for name in ("nbgrader_config.py", "feedback_filters.py"):
        shutil.copy(ROOT / "autograder" / name, autograder / name)
    if extra_config:
        with (autograder / "nbgrader_config.py").open("a") as handle:
            handle.write("\n" + extra_config + "\n")
    (autograder / "source" / ASSIGNMENT / NOTEBOOK).write_text(json.dumps(TINY))
    nbgrader(root, "generate_assignment", ASSIGNMENT, "--force")
    return autograder


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """One generated course; each test works on its own copy (generating takes seconds)."""
    return make_course(tmp_path_factory.mktemp("classgrade-template"))


@pytest.fixture
def course(template, tmp_path) -> Path:
    shutil.copytree(template.parent, tmp_path / "course")
    return tmp_path / "course" / "autograder"


def answer(course: Path, body: str) -> str:
    """The released notebook with the exercise answered by ``body``."""
    nb = json.loads((course.parent / "notebooks" / ASSIGNMENT / NOTEBOOK).read_text())
    nb["cells"][1]["source"] = body
    return json.dumps(nb)


RIGHT = "def double(x):\n    return x + x"
WRONG = "def double(x):\n    return x"


def archive_dir(course: Path) -> Path:
    folder = course / "downloaded" / ASSIGNMENT / "archive"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def by_file(rows) -> dict[str, classgrade.IntakeRow]:
    return {row.file: row for row in rows}


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------
# Intake


def test_names_that_do_not_match_are_reported_and_left_in_place(course):
    archive = archive_dir(course)
    (archive / f"alice_{NOTEBOOK}").write_text(answer(course, RIGHT))
    (archive / "notes.ipynb").write_text(answer(course, RIGHT))  # no <student>_ prefix
    (archive / "bob_00_tiny (1).ipynb").write_text(answer(course, RIGHT))  # an LMS's renamed resubmission
    (archive / "carol_readme.txt").write_text("see my notebook")
    before = tree(archive)

    rows = by_file(classgrade.collect(course, ASSIGNMENT))

    assert rows[f"alice_{NOTEBOOK}"].status == "collected"
    assert rows["notes.ipynb"].status == "not collected: its name does not match the course's pattern"
    assert rows["bob_00_tiny (1).ipynb"].status == "not collected: not a notebook of tiny"
    assert rows["bob_00_tiny (1).ipynb"].student_id == "bob"
    assert rows["carol_readme.txt"].status == "not collected: not a notebook"
    assert tree(archive) == before, "the download is never changed"
    assert (course / "submitted" / "alice" / ASSIGNMENT / NOTEBOOK).read_text() == answer(course, RIGHT)
    assert sorted(p.name for p in (course / "submitted").iterdir()) == ["alice"]
    written = {row["file"]: row["status"] for row in csv.DictReader((archive.parent / "intake.csv").open())}
    assert written == {name: row.status for name, row in rows.items()}


def zip_with(entries: dict[str, str], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, text in entries.items():
            z.writestr(zipfile.ZipInfo(name), text)  # ZipInfo keeps the name as given, ../ included
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # a symbolic link to target
            z.writestr(info, target)
    return buffer.getvalue()


def test_archive_entries_that_climb_out_are_refused_and_nothing_is_written_outside(course, tmp_path):
    archive = archive_dir(course)
    outside = tmp_path / "outside"
    outside.mkdir()
    (archive / "lms.zip").write_bytes(zip_with({
        f"dave_{NOTEBOOK}": answer(course, RIGHT),
        f"../../../../dave_{NOTEBOOK}": answer(course, WRONG),
        f"{outside}/erin_{NOTEBOOK}": answer(course, WRONG),
        f"sub/../../frank_{NOTEBOOK}": answer(course, WRONG),
    }, links={f"link_{NOTEBOOK}": "/etc/passwd"}))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = answer(course, RIGHT).encode()
        info = tarfile.TarInfo(f"gina_{NOTEBOOK}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo(f"henry_{NOTEBOOK}")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside / "planted.ipynb")
        tar.addfile(link)
    (archive / "more.tar.gz").write_bytes(buffer.getvalue())
    (archive / "broken.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    everything_before = {p for p in tmp_path.rglob("*")}

    rows = classgrade.collect(course, ASSIGNMENT)
    statuses = {row.file: row.status for row in rows}

    assert statuses[f"lms.zip:dave_{NOTEBOOK}"] == "collected"
    assert statuses[f"lms.zip:../../../../dave_{NOTEBOOK}"] == "refused: its path climbs out of the folder (..)"
    assert statuses[f"lms.zip:sub/../../frank_{NOTEBOOK}"] == "refused: its path climbs out of the folder (..)"
    assert statuses[f"lms.zip:{outside}/erin_{NOTEBOOK}"] == "refused: its path is absolute"
    assert statuses[f"lms.zip:link_{NOTEBOOK}"] == "refused: it is a symbolic link"
    assert statuses[f"more.tar.gz:henry_{NOTEBOOK}"] == "refused: it is a link or a device, not a plain file"
    assert statuses[f"more.tar.gz:gina_{NOTEBOOK}"] == "collected"
    assert statuses["broken.zip"] == "refused: not a readable archive"
    # The refused dave copy did not replace the good one, and nothing appeared outside the download.
    assert (course / "submitted" / "dave" / ASSIGNMENT / NOTEBOOK).read_text() == answer(course, RIGHT)
    new = {p for p in tmp_path.rglob("*")} - everything_before
    expected = [course / "downloaded", course / "submitted", course / "__pycache__", course / ".nbgrader.log"]
    strays = sorted(str(p) for p in new if not any(p == e or p.is_relative_to(e) for e in expected))
    assert not strays, strays
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in (course / "submitted").iterdir()) == ["dave", "gina"]


def test_nbgrader_zip_collect_alone_stops_on_a_climbing_entry(course):
    """Why the intake unpacks archives itself: zip_collect gives up on the whole download."""
    (archive_dir(course) / "lms.zip").write_bytes(zip_with({
        f"dave_{NOTEBOOK}": answer(course, RIGHT), f"../../dave_{NOTEBOOK}": answer(course, WRONG)}))
    result = nbgrader(course.parent, "zip_collect", ASSIGNMENT, check=False)
    assert result.returncode != 0
    assert not (course / "submitted").exists(), "not even the good entry was collected"


def test_two_submissions_without_timestamps_are_held_and_both_kept(course):
    archive = archive_dir(course)
    (archive / f"ivy_{NOTEBOOK}").write_text(answer(course, RIGHT))
    (archive / "attempt2").mkdir()
    (archive / "attempt2" / f"ivy_{NOTEBOOK}").write_text(answer(course, WRONG))
    (archive / f"jack_{NOTEBOOK}").write_text(answer(course, WRONG))
    with zipfile.ZipFile(archive / "lms.zip", "w") as z, pytest.warns(UserWarning, match="Duplicate name"):
        z.writestr(f"mia_{NOTEBOOK}", answer(course, RIGHT))
        z.writestr(f"mia_{NOTEBOOK}", answer(course, WRONG))  # the same entry twice in one archive

    rows = classgrade.collect(course, ASSIGNMENT)
    held = [row for row in rows if row.student_id == "ivy"]
    assert {row.status for row in rows if row.student_id == "mia"} == {"held: two submissions of one notebook"}
    assert len([row for row in rows if row.student_id == "mia"]) == 2, "neither copy of the entry replaced the other"

    assert {row.file for row in held} == {f"ivy_{NOTEBOOK}", f"attempt2/ivy_{NOTEBOOK}"}
    assert {row.status for row in held} == {"held: two submissions of one notebook"}
    assert all("remove one" in row.detail for row in held)
    assert not (course / "submitted" / "ivy").exists(), "neither is graded until the instructor chooses"
    assert (archive / f"ivy_{NOTEBOOK}").is_file() and (archive / "attempt2" / f"ivy_{NOTEBOOK}").is_file()
    assert (course / "submitted" / "jack" / ASSIGNMENT / NOTEBOOK).is_file(), "the others are collected"
    assert not (course / "submitted" / "mia").exists()
    # nbgrader's own zip_collect refuses the whole download here.
    assert nbgrader(course.parent, "zip_collect", ASSIGNMENT, "--force", check=False).returncode != 0


def test_two_submissions_with_timestamps_grade_the_latest_and_report_the_other(tmp_path):
    stamped = make_course(tmp_path, 'c.FileNameCollectorPlugin.named_regexp = '
                                    r'r"^(?:.*/)?(?P<student_id>[^_/]+)_(?P<timestamp>\d{8}T\d{6})_(?P<file_id>[^/]+\.ipynb)$"')
    archive = archive_dir(stamped)
    (archive / f"kim_20261121T090000_{NOTEBOOK}").write_text(answer(stamped, RIGHT))
    (archive / f"kim_20261120T100000_{NOTEBOOK}").write_text(answer(stamped, WRONG))

    rows = by_file(classgrade.collect(stamped, ASSIGNMENT))

    assert rows[f"kim_20261121T090000_{NOTEBOOK}"].status == "collected"
    older = rows[f"kim_20261120T100000_{NOTEBOOK}"]
    assert older.status == "superseded" and f"kim_20261121T090000_{NOTEBOOK}" in older.detail
    submitted = stamped / "submitted" / "kim" / ASSIGNMENT
    assert (submitted / NOTEBOOK).read_text() == answer(stamped, RIGHT)
    assert (submitted / "timestamp.txt").read_text().startswith("2026-11-21 09:00:00")
    assert (archive / f"kim_20261120T100000_{NOTEBOOK}").is_file(), "the older file is kept"


def test_collecting_again_changes_nothing_and_a_new_submission_needs_force(course):
    archive = archive_dir(course)
    (archive / f"liam_{NOTEBOOK}").write_text(answer(course, WRONG))
    assert {row.status for row in classgrade.collect(course, ASSIGNMENT)} == {"collected"}
    assert {row.status for row in classgrade.collect(course, ASSIGNMENT)} == {"unchanged"}

    (archive / f"liam_{NOTEBOOK}").write_text(answer(course, RIGHT))
    [row] = classgrade.collect(course, ASSIGNMENT)
    assert row.status.startswith("not collected: a different submission") and "--force" in row.detail
    assert (course / "submitted" / "liam" / ASSIGNMENT / NOTEBOOK).read_text() == answer(course, WRONG)
    [row] = classgrade.collect(course, ASSIGNMENT, force=True)
    assert row.status == "collected"
    assert (course / "submitted" / "liam" / ASSIGNMENT / NOTEBOOK).read_text() == answer(course, RIGHT)


def test_a_course_without_a_download_is_refused(course, capsys):
    assert cli.main(["collect", ASSIGNMENT, "--course", str(course)]) == 2
    assert "put the LMS files in" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Grading


def hand_in(course: Path, student: str, text: str) -> None:
    folder = course / "submitted" / student / ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / NOTEBOOK).write_text(text)


def scores(course: Path) -> dict[str, float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        return {s.student.id: s.score for s in gradebook.assignment_submissions(ASSIGNMENT)}


def test_grade_class_grades_each_learner_once_in_parallel(course, capsys):
    hand_in(course, "right", answer(course, RIGHT))
    hand_in(course, "wrong", answer(course, WRONG))
    hand_in(course, "blank", answer(course, "def double(x):\n    raise NotImplementedError()"))
    hand_in(course, "crasher", answer(course, "import os\nos._exit(1)"))
    hand_in(course, "other", answer(course, RIGHT))  # submitted, but not asked for below

    code = cli.main(["grade-class", ASSIGNMENT, "--course", str(course), "--workers", "2",
                     "--students", "right", "wrong", "right", "blank", "crasher", "ghost", "r*"])
    out = capsys.readouterr().out

    assert code == 1, "a learner without a grade makes the command fail"
    assert scores(course) == {"right": 2.0, "wrong": 0.0, "blank": 0.0, "crasher": 0.0}
    logs = sorted(p.name for p in (course / "grade-class" / ASSIGNMENT).iterdir())
    assert logs == ["blank.log", "crasher.log", "right.log", "wrong.log"], "one nbgrader run per learner"
    assert "7 learners" not in out and "6 learners" in out, "a learner named twice is graded once"
    assert "crasher: failed" in out and "ghost: failed" in out and "r*: failed" in out
    rows = {row.student_id: row for row in grading.grade_report(course)}
    assert (rows["right"].status, rows["right"].score) == ("graded", 2.0)
    assert rows["crasher"].status == "not graded", "a crash is never a silent zero"
    assert "other" in rows and not (course / "autograded" / "other").exists()

    # Again without --force: everyone already graded is skipped, nothing is graded twice.
    result = classgrade.grade_class(course, ASSIGNMENT, workers=2, students=["right", "wrong"])
    assert [run.status for run in result.runs] == ["skipped", "skipped"]


def test_a_learner_over_the_time_limit_is_stopped_and_gets_no_score(course):
    hand_in(course, "sleeper", answer(course, "import time\ntime.sleep(600)\n" + RIGHT))
    start = time.perf_counter()
    result = classgrade.grade_class(course, ASSIGNMENT, workers=1, timeout_s=20)
    [run] = result.runs
    assert run.status == "timed out" and time.perf_counter() - start < 120
    assert not (course / "autograded" / "sleeper").exists() or not any((course / "autograded" / "sleeper").rglob("*.ipynb"))
    [row] = grading.grade_report(course)
    assert row.status == "not graded" and row.score is None
    assert not running_in(course), "the kernel and everything it started are gone"


def running_in(folder: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if Path(process.cwd()).is_relative_to(folder):
                found.append(process)
        except (psutil.Error, OSError):
            continue
    return found


def test_a_worker_that_finds_the_gradebook_locked_is_run_again_alone(course, monkeypatch):
    hand_in(course, "right", answer(course, RIGHT))
    real, calls = classgrade.grade_one, []

    def flaky(course_, assignment, student, log, *args, **kwargs):
        calls.append(student)
        if len(calls) == 1:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("sqlite3.OperationalError: database is locked\n")
            return classgrade.StudentRun(student, "failed", 1.0, "database is locked", str(log), 1)
        return real(course_, assignment, student, log, *args, **kwargs)

    monkeypatch.setattr(classgrade, "grade_one", flaky)
    [run] = classgrade.grade_class(course, ASSIGNMENT, workers=2).runs
    assert calls == ["right", "right"] and (run.status, run.attempts) == ("graded", 2)
    assert "second run" in run.detail and scores(course) == {"right": 2.0}


needs_sandbox = pytest.mark.skipif(bool(sandbox.probe()), reason=f"no sandbox here: {sandbox.probe()}")


@needs_sandbox
def test_parallel_workers_grade_in_the_sandbox(course, monkeypatch):
    monkeypatch.setenv("LABKIT_SANDBOX", "on")
    hand_in(course, "right", answer(course, RIGHT))
    hand_in(course, "wrong", answer(course, WRONG))
    hand_in(course, "peeker", answer(course, "import os\nassert not os.path.exists('../../../source')\n" + RIGHT))
    result = classgrade.grade_class(course, ASSIGNMENT, workers=3)
    assert {run.student_id: run.status for run in result.runs} == dict.fromkeys(("peeker", "right", "wrong"), "graded")
    # The peeker's own check passes only where the course's source folder is out of sight.
    assert scores(course) == {"right": 2.0, "wrong": 0.0, "peeker": 2.0}


def test_the_scale_benchmark_runs_on_three_submissions():
    """benchmarks/grading_scale.py end to end on a class of three: its numbers and its grade check."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "grading_scale.py"), "--students", "3",
                             "--workers", "2", "--slices", "3"], capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "s per submission" in out and "speed-up" in out and "load average" in out
    assert "grades identical between the runs: yes" in out
