"""Submissions that attack the grader, each graded through nbgrader's own autograde, in the sandbox.

A tiny course (one assignment, two exercises, two graded test cells) is built in a scratch
folder with the course's own nbgrader_config.py and short limits. Every learner below hands
in one attack; all are graded by one `nbgrader autograde` run, and each case asserts what
must come of it: the points it may keep, the status `labkit grades` gives it, and what its
attack saw from inside the sandbox. Afterwards every original submission is byte-for-byte
unchanged, the gradebook is consistent and nothing started by the grading still runs.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, venv_env
from labkit.config import cache_dir
from labkit.course import grading, sandbox
from lanes import require

needs_sandbox = pytest.mark.usefixtures("sandbox_available")


@pytest.fixture
def sandbox_available():
    problem = sandbox.probe()
    require(not problem, "a sandbox (bubblewrap with user namespaces)", problem or "")

ASSIGNMENT = "adv"
SECRET = "the-listener-was-reached"  # what the host's listener sends to whoever connects

ANSWER_AREA = "import math\n\ndef circle_area(r):\n    ### BEGIN SOLUTION\n    return math.pi * r * r\n    ### END SOLUTION\n"
ANSWER_WORDS = "def word_count(text):\n    ### BEGIN SOLUTION\n    return len(text.split())\n    ### END SOLUTION\n"
TEST_AREA = """import math
import numpy as np
assert type(circle_area(2.0)) is float, "circle_area should return a float"
assert round(circle_area(2.0), 4) == 12.5664
assert math.isclose(circle_area(2.0), 12.566370614359172)
assert np.allclose([circle_area(1.0), circle_area(3.0)], [3.141592653589793, 28.274333882308138])
### BEGIN HIDDEN TESTS
assert math.isclose(circle_area(0.5), 0.7853981633974483)
### END HIDDEN TESTS
"""
TEST_WORDS = """assert type(word_count("a b")) is int
assert word_count("one two  three") == 3
### BEGIN HIDDEN TESTS
assert word_count("") == 0
### END HIDDEN TESTS
"""
RIGHT_AREA = "import math\ndef circle_area(r):\n    return math.pi * r * r\n"
RIGHT_WORDS = "def word_count(text):\n    return len(text.split())\n"
WRONG_AREA = "def circle_area(r):\n    return 1.0\n"
ANYTHING = """class Anything:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __le__ = __ge__ = __lt__ = __gt__ = __eq__
    def __float__(self): return 0.0
def circle_area(r):
    return Anything()
"""

# Each attack is the code a learner puts in place of the first answer (the second is answered
# right, so a case also shows that an attack costs only the points it aims at).
ATTACKS = {
    "isclose": WRONG_AREA + "import math, numpy\nmath.isclose = lambda *a, **k: True\n"
               "numpy.allclose = lambda *a, **k: True\nnumpy.isclose = lambda *a, **k: True\n",
    "builtins": WRONG_AREA + "import builtins, math, numpy\nbuiltins.round = lambda *a, **k: 12.5664\n"
                "math.isclose = lambda *a, **k: True\nnumpy.allclose = lambda *a, **k: True\n",
    "hooks": WRONG_AREA + "ip = get_ipython()\n"
             "ip.input_transformers_cleanup.append(lambda lines: ['pass\\n'] if 'assert' in ''.join(lines) else lines)\n"
             "ip.showtraceback = lambda *a, **k: None\n",
    "loop": "while True:\n    pass\n",
    "sigint": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n",
    # A classic fork bomb, started beside the kernel; it stops by itself after 15 s at most.
    "forkbomb": "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import os, time\\nend = time.time() + 15\\n"
                "while time.time() < end:\\n    try:\\n        os.fork()\\n    except OSError:\\n        pass\\n'])\n" + WRONG_AREA,
    "membomb": "hog = b'x' * (3 * 2**30)\n",
    "output": "import sys\nfor _ in range(1024):\n    sys.stdout.write('x' * 2**20)\n",
    "bigfile": "import os\ntry:\n    with open('big.bin', 'wb') as f:\n        for _ in range(1024):\n            f.write(b'x' * 2**20)\n"
               "    print('WROTE', os.path.getsize('big.bin'))\nexcept OSError as e:\n    print('BLOCKED', e.errno, e)\n"
               + WRONG_AREA,
}


def attack_writes(course: Path) -> str:
    targets = [course / "autograder" / "submitted" / "writer" / ASSIGNMENT / "area.ipynb",
               course / "autograder" / "submitted" / "reference" / ASSIGNMENT / "area.ipynb",
               course / "autograder" / "source" / ASSIGNMENT / "area.ipynb",
               course / "autograder" / "nbgrader_config.py", ROOT / "src" / "labkit" / "__init__.py",
               Path(sys.prefix) / "owned.txt", cache_dir() / "models" / "owned.txt", Path("/etc/owned"),
               Path("../../../gradebook.db"), Path("/owned")]
    return ("import os\nfor target in %r:\n    try:\n        with open(target, 'a') as f:\n            f.write('owned')\n"
            "        print('WROTE', target)\n    except OSError as e:\n        print('BLOCKED', target, type(e).__name__)\n"
            % [str(t) for t in targets]) + WRONG_AREA


def attack_reads(course: Path) -> str:
    sources = [course / "autograder" / "source" / ASSIGNMENT / "area.ipynb", Path("../../../source/adv/area.ipynb"),
               ROOT / "autograder" / "source" / "phase1" / "01_embeddings.ipynb",
               course / "autograder" / "submitted" / "reference" / ASSIGNMENT / "area.ipynb"]
    return ("import json\nfor path in %r:\n"
            "    try:\n        cells = json.load(open(path))['cells']\n        print('READ', path)\n"
            "        for cell in cells:\n            code = ''.join(cell['source'])\n"
            "            if 'def circle_area' in code:\n"
            "                exec(code.replace('### BEGIN SOLUTION', '').replace('### END SOLUTION', ''))\n"
            "    except OSError as e:\n        print('BLOCKED', path, type(e).__name__)\n"
            "if 'circle_area' not in globals():\n" % [str(p) for p in sources]) + \
        "    " + WRONG_AREA.replace("\n    ", "\n        ").rstrip("\n") + "\n"


def attack_gradebook(course: Path) -> str:
    return ("import sqlite3\nfor path in %r:\n    try:\n        db = sqlite3.connect(f'file:{path}?mode=rw', uri=True)\n"
            "        db.execute(\"update grade set manual_score = 1\")\n        db.commit()\n        print('CHANGED', path)\n"
            "    except sqlite3.Error as e:\n        print('BLOCKED', path, e)\n"
            % [str(course / "autograder" / "gradebook.db"), "../../../gradebook.db"]) + WRONG_AREA


def attack_network(port: int) -> str:
    return (f"import socket\ntry:\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
            "    print('REACHED', s.recv(100))\nexcept OSError as e:\n    print('BLOCKED', type(e).__name__)\n") + WRONG_AREA


def cell(kind: str, source: str, grade_id: str | None = None, points: int = 0, **extra) -> dict:
    meta = {}
    if grade_id:
        meta = {"nbgrader": {"grade_id": grade_id, "schema_version": 3, "locked": kind == "test",
                             "solution": kind == "answer", "grade": kind == "test", "task": False,
                             **({"points": points} if kind == "test" else {})}}
    return {"cell_type": "markdown" if kind == "markdown" else "code", "metadata": meta, "source": source,
            **({} if kind == "markdown" else {"execution_count": None, "outputs": []}), **extra}


def source_notebook() -> dict:
    cells = [cell("markdown", "# Two small exercises"), cell("answer", ANSWER_AREA, "circle_area"),
             cell("test", TEST_AREA, "test_area", 1), cell("answer", ANSWER_WORDS, "word_count"),
             cell("test", TEST_WORDS, "test_words", 1)]
    for i, c in enumerate(cells):
        c["id"] = f"cell-{i}"
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}


def answered(release: dict, area: str | None = RIGHT_AREA, words: str | None = RIGHT_WORDS) -> dict:
    nb = json.loads(json.dumps(release))
    for c in nb["cells"]:
        grade_id = c["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id == "circle_area" and area is not None:
            c["source"] = area
        if grade_id == "word_count" and words is not None:
            c["source"] = words
    return nb


def edited_tests(release: dict) -> dict:
    nb = answered(release, area=WRONG_AREA)
    for c in nb["cells"]:
        if c["metadata"].get("nbgrader", {}).get("grade"):
            c["source"] = "print('all tests passed')\n"
            c["metadata"]["nbgrader"]["locked"] = False
            c["metadata"]["nbgrader"].pop("checksum", None)
    return nb


def deleted_tests(release: dict) -> dict:
    nb = answered(release, area=WRONG_AREA)
    nb["cells"] = [c for c in nb["cells"] if not c["metadata"].get("nbgrader", {}).get("grade")]
    return nb


def duplicated_ids(release: dict) -> dict:
    nb = answered(release)
    for c in nb["cells"]:
        c["id"] = "same-id"
    return nb


# learner: (expected {graded cell: score}, expected status in `labkit grades`, or the statuses allowed)
FULL, AREA_LOST, NOTHING = {"test_area": 1, "test_words": 1}, {"test_area": 0, "test_words": 1}, {"test_area": 0, "test_words": 0}
EXPECTED = {
    "reference": (FULL, "graded"),
    "untouched": (NOTHING, "graded"),
    "edited": (AREA_LOST, "graded"),
    "deleted": (NOTHING, "graded"),  # a deleted test cell is scored as failed
    "alwayseq": (AREA_LOST, "graded"),
    "isclose": (AREA_LOST, "graded"),
    "builtins": (AREA_LOST, "graded"),
    "hooks": (AREA_LOST, "graded"),
    "loop": (AREA_LOST, "graded, timed out"),
    "sigint": (None, "not graded"),  # no interrupt stops it: the run ends, flagged for a look
    # 64 spinning processes may slow the next cell past 5 s, or leave the kernel unable to start a
    # thread of its own under the process cap: then the run ends and is flagged, never a silent zero.
    "forkbomb": (AREA_LOST, ("graded", "graded, timed out", "not graded")),
    "membomb": (None, "not graded"),
    # The kernel buffers what a cell prints: 1 GiB at full speed outgrows the sandbox's memory, or the
    # cell hits its time limit first on a slow machine. Either way the run ends and is flagged.
    "output": (AREA_LOST, ("not graded", "graded, timed out")),
    "bigfile": (AREA_LOST, "graded"),
    "writer": (AREA_LOST, "graded"),
    "reader": (AREA_LOST, "graded"),
    "gradebook": (AREA_LOST, "graded"),
    "network": (AREA_LOST, "graded"),
    "duplicateids": (FULL, "graded"),
    "notjson": (None, "broken file"),
    "wrongformat": (None, "broken file"),
    "renamed": (None, "not submitted"),
    "missing": (None, "not submitted"),
}


class Listener:
    """A TCP server on the grading machine's 127.0.0.1 that hands out a secret to anyone."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        self.server.settimeout(0.5)
        self.port, self.connections, self.stop = self.server.getsockname()[1], 0, False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop:
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            self.connections += 1
            conn.sendall(SECRET.encode())
            conn.close()

    def close(self):
        self.stop = True
        self.thread.join()
        self.server.close()


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def gradebook_rows(database: Path) -> dict[str, list]:
    with sqlite3.connect(database) as db:
        return {table: sorted(map(repr, db.execute(f"select * from {table}")))
                for table in ("assignment", "notebook", "grade_cells", "solution_cells", "source_cell", "base_cell")}


def our_processes(marker: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in line:
                found.append(f"{proc.name}: {line[:200]}")
    return found


def sandbox_config(course: Path, **overrides) -> None:
    config = course / "autograder" / "nbgrader_config.py"
    shutil.copy(ROOT / "autograder" / "nbgrader_config.py", config)
    shutil.copy(ROOT / "autograder" / "feedback_filters.py", course / "autograder")
    settings = {"SandboxedExecute.sandbox": True, "SandboxedExecute.guard": True, "Execute.timeout": 5,
                "SandboxedExecute.memory_mb": 512, "SandboxedExecute.processes": 64,
                "SandboxedExecute.output_kb": 256, "SandboxedExecute.cpu_seconds": 60,
                "SandboxedExecute.file_mb": 64, **overrides}
    with config.open("a") as handle:
        handle.write("\n# short limits for the adversarial suite\n")
        for key, value in settings.items():
            handle.write(f"c.{key} = {value!r}\n")


def run_nbgrader(course: Path, *args, tmpdir: Path | None = None) -> subprocess.CompletedProcess:
    env = venv_env(**({"TMPDIR": str(tmpdir)} if tmpdir else {}))
    return subprocess.run([str(Path(sys.executable).parent / "nbgrader"), *args], cwd=course / "autograder",
                          env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    course = tmp_path_factory.mktemp("adversarial")
    (course / "autograder" / "source" / ASSIGNMENT).mkdir(parents=True)
    sandbox_config(course)
    (course / "autograder" / "source" / ASSIGNMENT / "area.ipynb").write_text(json.dumps(source_notebook(), indent=1))
    result = run_nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")
    assert result.returncode == 0, result.stderr[-3000:]
    release = json.loads((course / "notebooks" / ASSIGNMENT / "area.ipynb").read_text())
    source = json.loads((course / "autograder" / "source" / ASSIGNMENT / "area.ipynb").read_text())
    listener = Listener()
    notebooks = {
        "reference": source, "untouched": release, "edited": edited_tests(release), "deleted": deleted_tests(release),
        "alwayseq": answered(release, area=ANYTHING), "duplicateids": duplicated_ids(release),
        "writer": answered(release, area=attack_writes(course)), "reader": answered(release, area=attack_reads(course)),
        "gradebook": answered(release, area=attack_gradebook(course)),
        "network": answered(release, area=attack_network(listener.port)),
        **{name: answered(release, area=code) for name, code in ATTACKS.items()},
    }
    if "pids" not in sandbox._cgroup_mounts():  # a fork bomb is only safe to run where it is capped
        del notebooks["forkbomb"]
    submitted = course / "autograder" / "submitted"
    for learner, nb in notebooks.items():
        folder = submitted / learner / ASSIGNMENT
        folder.mkdir(parents=True)
        (folder / "area.ipynb").write_text(json.dumps(nb, indent=1))
    for learner, name, text in (("notjson", "area.ipynb", "this is not a notebook {"),
                                ("wrongformat", "area.ipynb", json.dumps({**release, "nbformat": 99})),
                                ("renamed", "area_final.ipynb", json.dumps(answered(release), indent=1)),
                                ("missing", "notes.txt", "my notebook is on my other laptop\n")):
        (submitted / learner / ASSIGNMENT).mkdir(parents=True)
        (submitted / learner / ASSIGNMENT / name).write_text(text)
    before = digest(submitted)
    database = course / "autograder" / "gradebook.db"
    definitions = gradebook_rows(database)
    kernels = course / "kernels"  # the sandboxes' own folders go here, to prove they are removed
    kernels.mkdir()
    start = time.perf_counter()
    result = run_nbgrader(course, "autograde", ASSIGNMENT, "--force", tmpdir=kernels)
    wall = time.perf_counter() - start
    listener.close()
    print(f"adversarial autograde: {len(os.listdir(submitted))} submissions in {wall:.0f} s "
          f"(load {os.getloadavg()[0]:.1f})")
    yield {"course": course, "result": result, "before": before, "definitions": definitions,
           "listener": listener, "kernels": kernels, "wall": wall,
           "report": {row.student_id: row for row in grading.grade_report(course / "autograder")}}


def scores(course: Path, learner: str) -> dict:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'autograder' / 'gradebook.db'}") as gb:
        submission = gb.find_submission(ASSIGNMENT, learner)
        return {g.name: g.score for nb in submission.notebooks for g in nb.grades}


def outputs(course: Path, learner: str) -> str:
    graded = course / "autograder" / "autograded" / learner / ASSIGNMENT / "area.ipynb"
    return "".join("".join(o.get("text", "")) + o.get("evalue", "") for c in json.loads(graded.read_text())["cells"]
                   for o in c.get("outputs", []))


@needs_sandbox
@pytest.mark.parametrize("learner", sorted(EXPECTED))
def test_each_attack_has_its_expected_outcome(attacked, learner):
    course, report = attacked["course"], attacked["report"]
    if learner == "forkbomb" and "pids" not in sandbox._cgroup_mounts():
        pytest.skip("no pids cgroup here: a fork bomb would reach the whole machine")
    expected_scores, expected_status = EXPECTED[learner]
    row = report[learner]
    allowed = (expected_status,) if isinstance(expected_status, str) else expected_status
    assert row.status in allowed, f"{learner}: {row.status} ({row.detail}), expected {expected_status}"
    if expected_scores is None or row.status == "not graded":
        assert row.score is None or row.status == "not submitted", f"{learner} got a score: {row.score}"
        return
    assert scores(course, learner) == expected_scores, f"{learner}: {scores(course, learner)}"
    assert row.score == sum(expected_scores.values())


@needs_sandbox
def test_sandbox_blocked_what_the_attacks_tried(attacked):
    course = attacked["course"]
    writes = outputs(course, "writer")
    assert writes.count("WROTE") + writes.count("BLOCKED") == 10, writes
    # Where the course folder lies under /tmp, the folders above the submission exist inside the
    # sandbox on its own throwaway /tmp, so a write there "succeeds" and vanishes with the sandbox.
    # What counts is that no real file outside was touched.
    scratch = course / "autograder" / "autograded" / "writer" / ASSIGNMENT
    for line in writes.splitlines():
        if line.startswith("WROTE"):
            target = Path(line.split(" ", 1)[1])
            real = (scratch / target).resolve() if not target.is_absolute() else target
            assert str(real).startswith("/tmp/"), f"a write outside the submission got through: {line}"
            assert not real.is_file() or not real.read_bytes().endswith(b"owned"), f"{real} was changed"
    reads = outputs(course, "reader")
    assert "READ" not in reads and reads.count("BLOCKED") == 4, reads
    book = outputs(course, "gradebook")
    assert "CHANGED" not in book and book.count("BLOCKED") == 2, book
    assert "BLOCKED" in outputs(course, "network") and attacked["listener"].connections == 0
    bigfile = outputs(course, "bigfile")
    assert "BLOCKED 27" in bigfile, bigfile  # EFBIG: the file-size limit, not a full disk
    assert (course / "autograder" / "autograded" / "bigfile" / ASSIGNMENT / "big.bin").stat().st_size <= 64 * 2**20
    printed = course / "autograder" / "autograded" / "output" / ASSIGNMENT / "area.ipynb"
    assert not printed.exists() or printed.stat().st_size < 2 * 2**20, "gigabytes of output reached the graded notebook"


@needs_sandbox
def test_originals_unchanged_gradebook_consistent_nothing_left_running(attacked):
    course = attacked["course"]
    submitted = course / "autograder" / "submitted"
    assert digest(submitted) == attacked["before"], "a submitted file changed during grading"
    database = course / "autograder" / "gradebook.db"
    with sqlite3.connect(database) as db:
        assert db.execute("pragma integrity_check").fetchone() == ("ok",)
        assert db.execute("select count(*) from grade where manual_score is not null").fetchone() == (0,)
        assert db.execute("select count(*) from comment where manual_comment is not null").fetchone() == (0,)
    assert gradebook_rows(database) == attacked["definitions"], "the assignment's definition in the gradebook changed"
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{database}") as gb:
        handed_in = {p.parent.parent.name for p in submitted.glob(f"*/{ASSIGNMENT}/*.ipynb")}
        assert {s.id for s in gb.students} == handed_in
        for row in attacked["report"].values():
            if row.status.startswith("graded"):
                notebook = gb.find_submission_notebook("area", ASSIGNMENT, row.student_id)
                assert {g.name for g in notebook.grades} == {"test_area", "test_words"}
                assert notebook.score == row.score
    assert not our_processes(str(course)), our_processes(str(course))
    assert not list(attacked["kernels"].iterdir()), "a sandbox's folder was left behind"


def test_grading_refuses_without_a_sandbox_unless_told(tmp_path):
    course = tmp_path
    (course / "autograder" / "source" / ASSIGNMENT).mkdir(parents=True)
    sandbox_config(course, **{"SandboxedExecute.bwrap": "no-such-bwrap"})
    (course / "autograder" / "source" / ASSIGNMENT / "area.ipynb").write_text(json.dumps(source_notebook(), indent=1))
    assert run_nbgrader(course, "generate_assignment", ASSIGNMENT, "--force").returncode == 0
    submission = course / "autograder" / "submitted" / "alice" / ASSIGNMENT / "area.ipynb"
    submission.parent.mkdir(parents=True)
    shutil.copy(course / "autograder" / "source" / ASSIGNMENT / "area.ipynb", submission)
    refused = run_nbgrader(course, "autograde", ASSIGNMENT, "--force")
    assert refused.returncode != 0
    assert "no sandbox can start" in refused.stdout + refused.stderr
    assert "--SandboxedExecute.allow_unsandboxed=True" in refused.stdout + refused.stderr
    assert grading.grade_report(course / "autograder")[0].status == "not graded"
    allowed = run_nbgrader(course, "autograde", ASSIGNMENT, "--force", "--SandboxedExecute.allow_unsandboxed=True")
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert "WITHOUT a sandbox" in allowed.stdout + allowed.stderr
    assert grading.grade_report(course / "autograder")[0].score == 2


def test_the_sandbox_command_shows_only_the_submissions_own_folder(tmp_path):
    course = tmp_path / "course" / "autograder"
    scratch = course / "autograded" / "ada" / "phase1"
    scratch.mkdir(parents=True)
    kernel_dir = tmp_path / "kernel"
    kernel_dir.mkdir()
    plan = sandbox.Plan(scratch, kernel_dir, sandbox.Limits(cpu_seconds=7, memory_mb=300, processes=9, file_mb=5))
    argv = sandbox.command(["python", "-m", "ipykernel_launcher"], plan)
    bound = [argv[i + 2] for i, arg in enumerate(argv) if arg in ("--bind", "--ro-bind")]
    writable = [argv[i + 2] for i, arg in enumerate(argv) if arg == "--bind"]
    assert str(scratch) in writable and str(kernel_dir) in writable
    assert not [path for path in bound if path.startswith(str(course)) and path != str(scratch)]
    assert not [path for path in bound if path.startswith(str(ROOT / "autograder"))]
    assert "--unshare-all" in argv and "--share-net" not in argv and argv[-3:] == ["python", "-m", "ipykernel_launcher"]
    assert {"--cpu=7", f"--fsize={5 * 2**20}", f"--data={300 * 2**20}", "--nproc=9"} <= set(argv)  # no cgroups given
    with_cgroups = sandbox.command(["python"], sandbox.Plan(scratch, kernel_dir, cgroups={
        "memory": tmp_path / "m", "pids": tmp_path / "p"}))
    assert not [arg for arg in with_cgroups if arg.startswith(("--data=", "--nproc="))]
    assert "cgroup.procs" in with_cgroups[2] and "trap '' INT" in with_cgroups[2]


def test_a_missing_bubblewrap_is_named_with_the_fix():
    problem = sandbox.probe("no-such-bwrap")
    assert "not installed" in problem and "apt-get install bubblewrap" in problem


def test_a_course_inside_a_readable_folder_is_refused(tmp_path):
    scratch = Path(sys.prefix) / "course" / "autograded" / "ada" / "phase1"  # never created
    with pytest.raises(sandbox.SandboxUnavailable, match="move the course"):
        sandbox.command(["python"], sandbox.Plan(scratch, tmp_path))
