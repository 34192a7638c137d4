"""A whole class on one machine: take in an LMS download, then grade learners in parallel.

``collect`` brings a bulk download into nbgrader's ``submitted/`` folder. nbgrader's own
``zip_collect`` does the copying (with the course's ``FileNameCollectorPlugin`` pattern);
before it runs, this module unpacks the archives itself and decides what reaches it, because
``zip_collect`` drops a file whose name does not match with a log line, and gives up on the
whole download, collecting nothing, at a zip entry whose path climbs out of the folder or at
two submissions of one notebook that carry no timestamps. Here every file found
gets a status (``intake.csv`` beside the archive), and nothing is deleted:

- ``collected``: copied into ``submitted/<student>/<assignment>/``;
- ``unchanged``: that learner's submission is already there, byte for byte;
- ``not collected: ...``: its name does not match the pattern, it is not one of the
  assignment's notebooks, or a different submission of that learner is already collected
  (``--force`` replaces it); the file stays where it was;
- ``refused: ...``: an archive entry whose path is absolute or climbs out with ``..``, a link,
  or an archive that cannot be read; nothing of it is written;
- ``superseded``: an older submission of the same notebook, when the pattern gives
  timestamps; the latest one is graded;
- ``held: ...``: two submissions of one notebook and no timestamp to choose between them;
  none of that learner's files are collected until one is removed from the download.

``grade_class`` runs one ``nbgrader autograde ASSIGNMENT --student S`` process per learner,
``workers`` at a time, each under its own wall-clock limit; the sandbox is whatever
``nbgrader_config.py`` decides (``LABKIT_SANDBOX``). All workers write to the one gradebook:
nbgrader opens it for short transactions only (the learner's record before the run, one
commit per graded cell after it), SQLite serialises those writes, and each worker waits up to
two minutes for the lock instead of SQLite's 5 seconds. A worker that still finds the
gradebook locked leaves nothing behind (nbgrader removes that learner's graded copy) and is
run once more after the others. Every learner ends with a status: graded, failed (with the
tail of its log) or timed out (its graded copy removed, so no score is given); none is graded
twice in one run.
"""
from __future__ import annotations

import csv
import filecmp
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from .. import serving
from .shared_servers import SharedServers

# Student ids go to `nbgrader autograde --student`, which reads them as glob patterns: an id
# with *, ? or [ could grade other learners too.
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.@+\-]*$")
GRADEBOOK_LOCKED = "database is locked"
LOG_TAIL_LINES = 15


# ---------------------------------------------------------------------------------------------
# The course's nbgrader configuration, read the way nbgrader reads it


@dataclass
class Course:
    folder: Path  # where nbgrader_config.py is: nbgrader runs from here to find it
    root: Path
    db_url: str
    submitted: str  # folder names, relative to root
    autograded: str
    release: str
    downloaded: str
    archive: str
    collector: object  # the configured collector plugin, e.g. FileNameCollectorPlugin
    archive_ext: list[str]

    def submitted_dir(self, student: str, assignment: str) -> Path:
        return self.root / self.submitted / student / assignment

    def autograded_dir(self, student: str, assignment: str) -> Path:
        return self.root / self.autograded / student / assignment

    def download_dir(self, assignment: str) -> Path:
        return self.root / self.downloaded / assignment


def load_course(course: str | Path) -> Course:
    """The course folder's nbgrader_config.py, loaded with traitlets as nbgrader loads it."""
    from nbgrader.plugins.zipcollect import ExtractorPlugin
    from traitlets.config.loader import PyFileConfigLoader
    from traitlets.utils.importstring import import_item

    course = Path(course).resolve()
    if not (course / "nbgrader_config.py").is_file():
        raise ValueError(f"{course} has no nbgrader_config.py: run this in the nbgrader course folder (autograder/)")
    environ, path = dict(os.environ), list(sys.path)
    try:  # the file sets environment variables and sys.path for nbgrader's process, not for this one
        cfg = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    finally:
        os.environ.clear()
        os.environ.update(environ)
        sys.path[:] = path
    directory = cfg.CourseDirectory
    zipcollect = cfg.ZipCollectApp
    plugin = zipcollect.get("collector_plugin", "nbgrader.plugins.zipcollect.FileNameCollectorPlugin")
    plugin = import_item(plugin) if isinstance(plugin, str) else plugin
    return Course(
        folder=course,
        root=Path(directory.get("root", str(course))),
        db_url=directory.get("db_url", f"sqlite:///{course / 'gradebook.db'}"),
        submitted=directory.get("submitted_directory", "submitted"),
        autograded=directory.get("autograded_directory", "autograded"),
        release=directory.get("release_directory", "release"),
        downloaded=zipcollect.get("downloaded_directory", "downloaded"),
        archive=zipcollect.get("archive_directory", "archive"),
        collector=plugin(config=cfg),
        archive_ext=list(ExtractorPlugin(config=cfg).zip_ext) + [".tgz", ".tar"],
    )


def venv_env(**extra: str) -> dict:
    """This interpreter's bin/ first on PATH: nbgrader runs `alembic` by name."""
    bin_dir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""), **extra)


def nbgrader_command() -> str:
    beside = Path(sys.executable).parent / "nbgrader"
    found = str(beside) if beside.exists() else shutil.which("nbgrader")
    if not found:
        raise RuntimeError("nbgrader is not installed in this environment (the course extra installs it)")
    return found


# ---------------------------------------------------------------------------------------------
# Intake of a bulk download


@dataclass
class IntakeRow:
    file: str  # where it was found, relative to the archive folder; archive.zip:inner/path for an archive's entry
    student_id: str
    notebook: str
    status: str
    detail: str = ""


INTAKE_FIELDS = ("file", "student_id", "notebook", "status", "detail")


def _is_archive(name: str, extensions: list[str]) -> bool:
    lower = name.lower()
    return any(lower.endswith(ext) for ext in extensions + [".tar.gz"])


def _archive_folder(name: str) -> str:
    for ext in (".tar.gz", ".tgz", ".tar", ".zip", ".gz"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _unsafe(name: str) -> str:
    """'' when an archive entry's name stays inside the folder it is unpacked to, else why not."""
    if name.startswith(("/", "\\")) or "\\" in name or re.match(r"^[A-Za-z]:", name):
        return "its path is absolute"
    if ".." in PurePosixPath(name).parts:
        return "its path climbs out of the folder (..)"
    return ""


def _entries(archive: Path):
    """(name, is_dir, problem, read) for each entry; read() gives the bytes of a safe file."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                problem = _unsafe(info.filename)
                if not problem and stat.S_ISLNK(info.external_attr >> 16):
                    problem = "it is a symbolic link"
                yield info.filename, info.is_dir(), problem, (lambda info=info: z.read(info))
        return
    with tarfile.open(archive) as t:  # raises tarfile.TarError where it is no tar either
        for member in t:
            problem = _unsafe(member.name)
            if not problem and not (member.isfile() or member.isdir()):
                problem = "it is a link or a device, not a plain file"
            yield member.name, member.isdir(), problem, (lambda member=member: t.extractfile(member).read())


def _free(target: Path) -> Path:
    """``target``, or where a second file of the same path goes, so that neither replaces the other."""
    k = 1
    while target.exists():
        target, k = target.parent.parent / f"{target.parent.name}.copy{k}" / target.name, k + 1
    return target


def _unpack(archive: Path, label: str, into: Path, extensions: list[str], rows: list[IntakeRow],
            origins: dict[Path, str], depth: int = 0) -> None:
    """Write the safe entries of ``archive`` under ``into`` and note where each came from in
    ``origins``; refused entries become rows. Archives inside are unpacked the same way."""
    try:
        for name, is_dir, problem, read in _entries(archive):
            where = f"{label}:{name}"
            if problem:
                rows.append(IntakeRow(where, "", "", "refused: " + problem, "not extracted; nothing was written for it"))
                continue
            target = into.joinpath(*PurePosixPath(name).parts)
            if not target.resolve().is_relative_to(into.resolve()):  # a link already planted on the way
                rows.append(IntakeRow(where, "", "", "refused: its path leads out of the folder", "not extracted"))
                continue
            if is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            if target.exists():
                target, where = _free(target), f"{where} (a second entry of this name)"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(read())
            if _is_archive(target.name, extensions) and depth < 3:
                _unpack(target, where, target.parent / _archive_folder(target.name), extensions, rows, origins, depth + 1)
                target.unlink()
            else:
                origins[target] = where
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as error:
        rows.append(IntakeRow(label, "", "", "refused: not a readable archive", f"{type(error).__name__}: {error}"[:300]))


def _released_notebooks(course: Course, assignment: str) -> set[str]:
    release = (course.root / course.release / assignment).resolve()
    return {p.name for p in release.glob("*.ipynb")}


def _same_files(folder: Path, chosen: dict[str, Path]) -> bool:
    present = {p.name for p in folder.iterdir() if p.is_file() and p.name != "timestamp.txt"} if folder.is_dir() else set()
    return present == set(chosen) and all(filecmp.cmp(folder / name, src, shallow=False) for name, src in chosen.items())


def collect(course_dir: str | Path, assignment: str, force: bool = False) -> list[IntakeRow]:
    """Take in ``downloaded/<assignment>/archive/`` (files and .zip/.tar.gz archives) and hand
    what may be graded to ``nbgrader zip_collect``; one row per file or refused entry."""
    from nbgrader.utils import parse_utc

    course = load_course(course_dir)
    download = course.download_dir(assignment)
    archive = download / course.archive
    if not archive.is_dir():
        raise ValueError(f"no download to collect: put the LMS files in {archive}")
    staged, accepted = download / "intake", download / "accepted"
    for folder in (staged, accepted):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)

    rows: list[IntakeRow] = []
    origins: dict[Path, str] = {}  # staged copy -> where it was found: a file, or archive.zip:entry
    for source in sorted(p for p in archive.rglob("*") if p.is_file()):
        relative = source.relative_to(archive)
        if _is_archive(source.name, course.archive_ext):
            _unpack(source, str(relative), staged / relative.parent / _archive_folder(source.name), course.archive_ext,
                    rows, origins)
        else:
            target = _free(staged / relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            origins[target] = str(relative)
    # (label, staged copy, its path as zip_collect will see it, in extracted/)
    found = [(origins[path], path, download / "extracted" / path.relative_to(staged)) for path in sorted(origins)]

    released = _released_notebooks(course, assignment)
    candidates: dict[tuple[str, str], list[tuple[str, Path, object]]] = {}
    for label, path, seen_as in found:
        if path.suffix != ".ipynb":
            rows.append(IntakeRow(label, "", "", "not collected: not a notebook", "left in place"))
            continue
        info = course.collector.collect(str(seen_as))
        if not info or "student_id" not in info or "file_id" not in info:
            rows.append(IntakeRow(label, "", "", "not collected: its name does not match the course's pattern",
                                  "left in place; rename it <student-id>_<notebook>.ipynb and collect again"))
            continue
        student, notebook = info["student_id"], PurePosixPath(info["file_id"]).name
        if notebook not in released:
            rows.append(IntakeRow(label, student, notebook, f"not collected: not a notebook of {assignment}",
                                  f"left in place; expected one of {', '.join(sorted(released))}"))
            continue
        if not SAFE_ID.match(student):
            rows.append(IntakeRow(label, student, notebook, "not collected: the student id has characters nbgrader "
                                  "would read as a pattern", "left in place; rename it with letters, digits, . @ + -"))
            continue
        try:
            stamp = parse_utc(info["timestamp"]) if info.get("timestamp") else None
        except ValueError:
            rows.append(IntakeRow(label, student, notebook, "not collected: its timestamp cannot be read",
                                  f"left in place; {info['timestamp']!r} is no date"))
            continue
        candidates.setdefault((student, notebook), []).append((label, path, stamp))

    chosen: dict[str, dict[str, tuple[str, Path]]] = {}
    held: set[str] = set()
    for (student, notebook), copies in sorted(candidates.items()):
        if len(copies) == 1:
            chosen.setdefault(student, {})[notebook] = copies[0][:2]
            continue
        stamps = [stamp for _, _, stamp in copies]
        latest = max(stamps) if None not in stamps else None
        if latest is None or stamps.count(latest) > 1:
            held.add(student)
            for label, _, _ in copies:
                others = ", ".join(other for other, _, _ in copies if other != label)
                rows.append(IntakeRow(label, student, notebook, "held: two submissions of one notebook",
                                      f"no timestamp tells them apart (also: {others}); remove one from the download "
                                      "and collect again"))
            continue
        winner = next(copy for copy in copies if copy[2] == latest)
        chosen.setdefault(student, {})[notebook] = winner[:2]
        for label, _, stamp in copies:
            if label != winner[0]:
                rows.append(IntakeRow(label, student, notebook, "superseded",
                                      f"submitted {stamp}; the later {winner[0]} ({latest}) is graded; this file is kept"))

    handed_over = 0
    for student, notebooks in sorted(chosen.items()):
        if student in held:
            for notebook, (label, _) in sorted(notebooks.items()):
                rows.append(IntakeRow(label, student, notebook, "held: two submissions of one notebook",
                                      "another notebook of this learner has two submissions; none is collected yet"))
            continue
        target = course.submitted_dir(student, assignment)
        files = {notebook: path for notebook, (_, path) in notebooks.items()}
        if _same_files(target, files):
            status, detail = "unchanged", f"already in {target.relative_to(course.root)}"
        elif target.is_dir() and any(target.iterdir()) and not force:
            status, detail = ("not collected: a different submission of this learner is already collected",
                              f"{target.relative_to(course.root)} is kept; --force replaces it")
        else:
            status, detail = "collected", f"to {target.relative_to(course.root)}"
            for _, path in notebooks.values():
                destination = accepted / path.relative_to(staged)
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, destination)
                handed_over += 1
        rows.extend(IntakeRow(label, student, notebook, status, detail) for notebook, (label, _) in sorted(notebooks.items()))

    if handed_over:
        # nbgrader's own zip_collect copies them, writes timestamp.txt and records nothing else;
        # --force lets it clear extracted/ and the folders of the learners collected now.
        result = subprocess.run([nbgrader_command(), "zip_collect", assignment, "--force",
                                 f"--ZipCollectApp.archive_directory={accepted.name}"],
                                cwd=course.folder, env=venv_env(), capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-LOG_TAIL_LINES:])
            raise RuntimeError(f"nbgrader zip_collect failed ({result.returncode}):\n{tail}")
        for row in rows:
            if row.status == "collected" and not (course.submitted_dir(row.student_id, assignment) / row.notebook).is_file():
                row.status, row.detail = "not collected: zip_collect did not copy it", "left in place; see its log"
    write_intake(rows, download / "intake.csv")
    return rows


def write_intake(rows: list[IntakeRow], path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=INTAKE_FIELDS)
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    return path


# ---------------------------------------------------------------------------------------------
# Grading in parallel


@dataclass
class StudentRun:
    student_id: str
    status: str  # graded | failed | timed out | skipped
    wall_s: float = 0.0
    detail: str = ""
    log: str = ""
    attempts: int = 0


@dataclass
class ClassRun:
    assignment: str
    workers: int
    wall_s: float
    runs: list[StudentRun] = field(default_factory=list)

    @property
    def graded(self) -> list[StudentRun]:
        return [run for run in self.runs if run.status == "graded"]

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for run in self.runs:
            found[run.status] = found.get(run.status, 0) + 1
        return found


def submitted_students(course: Course, assignment: str) -> list[str]:
    root = course.root / course.submitted
    return sorted(p.parent.name for p in root.glob(f"*/{assignment}") if p.is_dir() and any(p.glob("*.ipynb")))


def _busy_url(db_url: str, seconds: int) -> str:
    """The gradebook URL with SQLite's wait for a lock raised from its default 5 s."""
    if not db_url.startswith("sqlite") or "timeout=" in db_url:
        return db_url
    return f"{db_url}{'&' if '?' in db_url else '?'}timeout={seconds}"


def _stop(process: subprocess.Popen, grace_s: float = 20.0) -> None:
    """Interrupt nbgrader (it then shuts its kernel down and removes the partial graded copy);
    kill it and everything it started if it has not stopped within ``grace_s``."""
    import psutil

    try:
        family = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    try:
        process.send_signal(signal.SIGINT)
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        pass
    for proc in [*family, psutil.Process(process.pid) if process.poll() is None else None]:
        if proc is None:
            continue
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    process.wait()


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last exception a log names (what went wrong), then its last lines (where)."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    raised = [line.strip() for line in text if re.match(r"^\s*[\w.]+(Error|Exception|Interrupt|Exit)\b", line)]
    return "\n".join(([f"cause: {raised[-1][:300]}"] if raised else []) + text[-lines:])


def grade_one(course: Course, assignment: str, student: str, log: Path, timeout_s: float, force: bool,
              busy_timeout_s: int = 120, env: dict | None = None) -> StudentRun:
    """``nbgrader autograde ASSIGNMENT --student S`` in a process of its own, under a wall-clock limit."""
    command = [nbgrader_command(), "autograde", assignment, "--student", student,
               f"--CourseDirectory.db_url={_busy_url(course.db_url, busy_timeout_s)}"]
    if force:
        command.append("--force")
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as handle:
        process = subprocess.Popen(command, cwd=course.folder, env=env or venv_env(), stdout=handle,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            code = process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            _stop(process)
            code = None
    run = StudentRun(student, "", time.perf_counter() - start, log=str(log), attempts=1)
    graded = course.autograded_dir(student, assignment)
    if code is None:
        # A graded copy left by a stopped run holds no honest score: without it `labkit grades`
        # reports the notebook as not graded instead of a zero.
        shutil.rmtree(graded, ignore_errors=True)
        run.status, run.detail = "timed out", f"stopped after {timeout_s:g} s; its graded copy is removed, so no score is given"
    elif code != 0:
        run.status, run.detail = "failed", _tail(log)
    else:
        run.status = "graded"
    return run


def grade_class(course_dir: str | Path, assignment: str, workers: int = 2, students: list[str] | None = None,
                timeout_s: float = 1800, force: bool = False, log_dir: str | Path | None = None,
                threads_per_worker: int | None = None, progress=None) -> ClassRun:
    """Autograde every learner of ``assignment`` (or only ``students``), ``workers`` at a time."""
    course = load_course(course_dir)
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    everyone = submitted_students(course, assignment)
    wanted = list(dict.fromkeys(students)) if students else everyone  # each learner once, in the order given
    log_dir = Path(log_dir) if log_dir else course.root / "grade-class" / assignment
    threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
    # Each worker's kernel gets its share of the cores, unless the grading shell already says.
    env = venv_env(**{name: os.environ.get(name, str(threads)) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})

    runs: dict[str, StudentRun] = {}
    queue = []
    for student in wanted:
        if not SAFE_ID.match(student):
            runs[student] = StudentRun(student, "failed", detail="the id has characters nbgrader reads as a pattern; "
                                       "not graded, so that no other learner is graded with it")
        elif student not in everyone:
            runs[student] = StudentRun(student, "failed", detail=f"nothing submitted in {course.submitted}/{student}/{assignment}")
        elif course.autograded_dir(student, assignment).is_dir() and not force:
            runs[student] = StudentRun(student, "skipped", detail="already graded; --force grades again")
        else:
            queue.append(student)

    done = 0
    lock = threading.Lock()

    def report(run: StudentRun) -> None:
        nonlocal done
        with lock:
            done += 1
            if progress:
                progress(f"[{done}/{len(queue)}] {run.student_id:<20} {run.status:<10} {run.wall_s:6.1f} s")

    start = time.perf_counter()
    retry = []
    with ExitStack() as servers:
        if queue and not os.environ.get(serving.SHARED_SERVERS_ENV):
            # One model server per configuration for the whole class, started when a notebook first asks.
            shared = servers.enter_context(SharedServers(Path(tempfile.mkdtemp(prefix="labkit-servers-"))))
            env.update(shared.env())
        _grade_queue(course, assignment, queue, workers, log_dir, timeout_s, force, env, runs, retry, report)
        for first in retry:  # after the others, alone, so that nothing else holds the gradebook
            run = grade_one(course, assignment, first.student_id, log_dir / f"{first.student_id}.log", timeout_s, True,
                            env=env)
            run.attempts, run.wall_s = 2, first.wall_s + run.wall_s
            if run.status == "graded":
                run.detail = "graded on a second run: the first found the gradebook locked"
            runs[run.student_id] = run
            report(run)
    return ClassRun(assignment, workers, time.perf_counter() - start, [runs[s] for s in wanted])


def _grade_queue(course, assignment, queue, workers, log_dir, timeout_s, force, env, runs, retry, report) -> None:
    """Grade ``queue`` with ``workers`` processes at a time; a run that met a locked gradebook goes to ``retry``."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(grade_one, course, assignment, s, log_dir / f"{s}.log", timeout_s, force, env=env): s
                   for s in queue}
        for future in as_completed(futures):
            run = future.result()
            if run.status == "failed" and GRADEBOOK_LOCKED in Path(run.log).read_text(errors="replace"):
                retry.append(run)  # nbgrader removed what it had written for this learner
                continue
            runs[run.student_id] = run
            report(run)


def summary(result: ClassRun) -> str:
    """What an instructor reads at the end: counts, pace, and every learner without a grade."""
    counts = ", ".join(f"{n} {status}" for status, n in sorted(result.counts().items()))
    ran = [run for run in result.runs if run.attempts]
    pace = f"; {result.wall_s / len(ran):.1f} s per learner graded" if ran else ""
    lines = [f"{result.assignment}: {len(result.runs)} learners ({counts}) in {result.wall_s:.1f} s "
             f"with {result.workers} worker{'s' if result.workers != 1 else ''}{pace}"]
    skipped = [run.student_id for run in result.runs if run.status == "skipped"]
    if skipped:
        lines.append(f"skipped, already graded (--force grades them again): {', '.join(skipped)}")
    for run in result.runs:
        if run.status in ("failed", "timed out"):
            lines.append(f"\n{run.student_id}: {run.status} (log: {run.log or '-'})")
            lines += ["    " + line for line in run.detail.splitlines()]
        elif run.detail and run.status != "skipped":
            lines.append(f"{run.student_id}: {run.status}: {run.detail}")
    return "\n".join(lines)
