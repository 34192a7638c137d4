"""The public edition of the course (``labkit public-tree``): nothing a learner must not see, and
its own README's two commands work there.

The checks of what is secret are written here from the instructor's tree, independently of
the exporter's own check (``public_tree.leaks``), which is itself shown to catch planted leaks.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import RELEASE, ROOT, SOURCE_LABS
from labkit import finetune, heldout, oncall
from labkit.course import public_tree

MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


@pytest.fixture(scope="module")
def public(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("public") / "course"
    written = public_tree.export(dest, git=True)
    assert written.commit, "--git commits the first export"
    return dest


def files_of(tree: Path) -> dict[str, Path]:
    return {p.relative_to(tree).as_posix(): p for p in sorted(tree.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(tree).parts}


def texts_of(tree: Path) -> dict[str, str]:
    found = {}
    for rel, path in files_of(tree).items():
        try:
            found[rel] = " ".join(path.read_text(encoding="utf-8").split()).lower()
        except UnicodeDecodeError:
            continue
    return found


def code_lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def regions(cell_source: str) -> list[list[str]]:
    """The solution and hidden-test regions of a source cell, as code lines."""
    found, inside = [], False
    for line in cell_source.splitlines():
        if re.search(r"BEGIN (SOLUTION|HIDDEN TESTS)", line):
            found.append([])
            inside = True
        elif re.search(r"END (SOLUTION|HIDDEN TESTS)", line):
            inside = False
        elif inside:
            found[-1].append(line)
    return [code_lines("\n".join(r)) for r in found]


# --- what is in it --------------------------------------------------------------------

def test_it_holds_the_learners_tree_and_nothing_of_the_grading(public):
    files = files_of(public)
    assert not [f for f in files if f.startswith("autograder/")]
    assert not [f for f in files if f.endswith(".db") or "gradebook" in f or "/submitted/" in f or "/autograded/" in f]
    for needed in ("README.md", "CONTRIBUTING.md", "LICENSE", "LICENSE-CONTENT.md", "_config.yml", "_toc.yml",
                   "pyproject.toml", "environment.yml", ".ci/setup", ".ci/test", "binder/postBuild",
                   "src/labkit/heldout.py", "tests/conftest.py", "tests/test_student_copies.py", "book/intro.md"):
        assert needed in files, f"the public tree lacks {needed}"
    notebooks = sorted(f for f in files if f.endswith(".ipynb"))
    assert notebooks == sorted(p.relative_to(ROOT).as_posix() for p in RELEASE.glob("phase*/*.ipynb"))
    for name in notebooks:  # the student copies, byte for byte
        assert (public / name).read_bytes() == (ROOT / name).read_bytes()
    for tool in ("grading.py", "sandbox.py", "public_tree.py"):
        assert f"src/labkit/course/{tool}" not in files
    left_out = [f"tests/{name}" for name in public_tree.LEFT_OUT_TESTS]
    assert not set(left_out) & set(files) and "tests/test_autograder.py" in left_out


def test_no_solution_or_hidden_test_is_in_it(public):
    for rel, path in files_of(public).items():
        if rel.endswith(".ipynb"):
            body = path.read_text(encoding="utf-8")
            assert not [m for m in MARKERS if m in body], f"{rel} carries a solution or hidden-test marker"
    public_lines = {rel: "\n".join(code_lines(path.read_text(encoding="utf-8")))
                    for rel, path in files_of(public).items() if rel.endswith((".py", ".md", ".yml", ".toml"))}
    public_lines.update({rel: "\n".join(code_lines("\n".join("".join(c["source"]) for c in json.loads(p.read_text())["cells"])))
                         for rel, p in files_of(public).items() if rel.endswith(".ipynb")})
    checked = 0
    for source in SOURCE_LABS:
        for cell in json.loads(source.read_text(encoding="utf-8"))["cells"]:
            for region in regions("".join(cell["source"])):
                if len(region) < 4 or len("".join(region)) < 120:
                    continue  # too short to be told apart from anyone's code
                checked += 1
                block = "\n".join(region)
                assert not [rel for rel, body in public_lines.items() if block in body], (
                    f"a solution or hidden test of {source.name} is in the public tree:\n{block[:300]}")
    assert checked >= 40, f"only {checked} solution and hidden-test regions were long enough to check"
    assert public_tree.leaks(public) == []  # and the exporter's own, finer check agrees


def lab03_heldout() -> list[tuple[str, str]]:
    import ast

    source = ROOT / "autograder" / "source" / "phase1" / "03_rag_with_eval.ipynb"
    for cell in json.loads(source.read_text(encoding="utf-8"))["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") != "test_heldout":
            continue
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "HELDOUT":
                return ast.literal_eval(node.value)
    raise AssertionError("03_rag_with_eval no longer has its HELDOUT set")


def test_no_held_out_wording_item_or_answer_is_in_it(public):
    texts = "\0".join(texts_of(public).values())
    assert heldout.EDITION == "instructor"
    wordings = [t for ts in heldout.UNSEEN_TEMPLATES.values() for t in ts] + \
        [t for ts in heldout.ONCALL_ALERT_TEMPLATES.values() for t in ts]
    fixed_parts = [p.strip() for t in wordings for p in re.split(r"\{\w+\}", t) if len(p.strip()) >= 12]
    aliases = [a for names in heldout.UNSEEN_SERVICE_ALIASES.values() for a in names]
    incidents = oncall.incidents("heldout", n=45, seed=0)
    requests = finetune.toolcall_dataset(400, 60, 120, seed=0, n_unseen=120)["test_unseen"]["request"]
    questions = [q for q, _ in lab03_heldout()]
    assert len(fixed_parts) >= 10 and len(aliases) >= 10 and len(questions) >= 15
    for what, items in [("held-out wording", wordings + fixed_parts), ("reserved alias", aliases),
                        ("held-out alert", [i.alert for i in incidents]), ("held-out request", requests),
                        ("held-out question of lab 3", questions)]:
        found = [item for item in items if " ".join(item.split()).lower() in texts]
        assert not found, f"{what}s in the public tree: {found[:3]}"

    # The stand-in has the same shape, none of the wording, and draws other items, so it holds
    # none of the answers either (the expected end state of each held-out incident).
    spec = {}
    exec(compile((public / "src/labkit/heldout.py").read_text(), "public heldout", "exec"), spec)
    assert spec["EDITION"] == "public"
    assert set(spec["UNSEEN_TEMPLATES"]) == set(heldout.UNSEEN_TEMPLATES)
    assert set(spec["ONCALL_ALERT_TEMPLATES"]) == set(heldout.ONCALL_ALERT_TEMPLATES)
    assert spec["ONCALL_SEED_KEY"] != heldout.ONCALL_SEED_KEY and spec["UNSEEN_SEED_KEY"] != heldout.UNSEEN_SEED_KEY
    theirs = run_in(public, "import json; from labkit import oncall; "
                            "print(json.dumps([[i.seed, i.alert] for i in oncall.incidents('heldout', n=45, seed=0)]))")
    assert len(theirs) == len(incidents)
    assert not {seed for seed, _ in theirs} & {i.seed for i in incidents}, "the stand-in rebuilt held-out fleets"
    assert not {alert for _, alert in theirs} & {i.alert for i in incidents}


def run_in(tree: Path, code: str):
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_the_exporters_check_catches_what_it_must(tmp_path):
    source = ROOT / "autograder" / "source" / "phase2" / "06_agent_with_eval.ipynb"
    hidden = max((r for c in json.loads(source.read_text())["cells"] for r in regions("".join(c["source"]))), key=len)
    planted = {
        "autograder/source/phase1/x.ipynb": "{}",
        "autograder/gradebook.db": "",
        "notes.md": "# a note\n### BEGIN HIDDEN TESTS\nassert True\n",
        "copied.py": "\n".join(hidden) + "\n",
        "alerts.txt": oncall.incidents("heldout", n=1)[0].alert,
        "question.md": lab03_heldout()[0][0],
    }
    for rel, text in planted.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    problems = public_tree.leaks(tmp_path)
    for rel in planted:
        assert any(p.startswith(rel + ":") for p in problems), f"the check missed {rel}: {problems}"


def test_a_leak_stops_the_export_and_leaves_dest_alone(tmp_path, monkeypatch):
    leaky = tmp_path / "leaky.md"
    leaky.write_text(next(iter(heldout.ONCALL_ALERT_TEMPLATES.values()))[0])
    monkeypatch.setitem(public_tree.ADDED, "book/leaky.md", leaky)
    dest = tmp_path / "public"
    with pytest.raises(public_tree.PublicTreeError, match="(?s)would not be clean.*book/leaky.md"):
        public_tree.export(dest)
    assert not dest.exists()


def test_dest_must_be_empty_or_an_earlier_export(tmp_path, monkeypatch):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("precious")
    with pytest.raises(public_tree.PublicTreeError, match="not empty and was not written by labkit public-tree"):
        public_tree.export(foreign)
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"]
    with pytest.raises(public_tree.PublicTreeError, match="inside the instructor's tree"):
        public_tree.export(ROOT / "book" / "public")
    assert not (ROOT / "book" / "public").exists()
    # A release into the public repository written before replaces its tree and keeps its history;
    # the same release again has nothing new to commit.
    public = tmp_path / "public"
    first = public_tree.export(public, git=True).commit
    (public / "README.md").write_text("edited by hand\n")
    (public / "stray.txt").write_text("not part of the course\n")
    new_page = tmp_path / "new.md"
    new_page.write_text("# A page of the next release\n")
    monkeypatch.setitem(public_tree.ADDED, "book/new.md", new_page)
    second = public_tree.export(public, git=True).commit
    assert first and second and second != first and (public / "book" / "new.md").is_file()
    assert not (public / "stray.txt").exists() and (public / "README.md").read_text() != "edited by hand\n"
    log = subprocess.run(["git", "-C", str(public), "log", "--format=%H"], capture_output=True, text=True).stdout.split()
    assert log == [second, first]
    assert public_tree.export(public, git=True).commit is None


# --- its two commands -------------------------------------------------------------------

def readme_commands(tree: Path) -> list[str]:
    section = public_tree.sections((tree / "README.md").read_text())["The two commands"]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def differing_tests() -> list[str]:
    """The public tree's tests that are not this tree's own, unchanged: those the exporter rewrites
    or adds, and those of the modules that read the held-out stand-in."""
    written = [path for path, content in public_tree.plan().items()
               if path.startswith("tests/test_") and (isinstance(content, str) or path in public_tree.ADDED)]
    return sorted({*written, "tests/test_oncall.py", "tests/test_finetune.py"})


def test_its_readme_commands_work_there(public):
    """Set-up with --serve serves the book, and the test command passes there, in this machine's
    environment (LABKIT_VENV: nothing is installed, the public tree's src/ is imported).

    The test command runs the tests that differ from this tree's (``differing_tests``); the others
    are the same files testing the same code, which this suite runs already.
    LABKIT_PUBLIC_TREE_TESTS=all runs every one of them there (13 minutes on the 2-core AMD EPYC,
    under a load average of 14)."""
    setup, test = readme_commands(public)
    assert (setup, test) == ("bash .ci/setup --serve", "bash .ci/test")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABKIT_", "PYTHONPATH", "NBGRADER"))}
    port = free_port()
    env.update(LABKIT_VENV=sys.prefix, PORT=str(port))
    log = public / "_build" / "setup.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("w") as out:
        server = subprocess.Popen(setup.split(), cwd=public, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        page, deadline = None, time.monotonic() + 600
        while page is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/notebooks/phase2/06_agent_with_eval.html",
                                            timeout=5) as reply:
                    page = reply.read().decode()
            except OSError:
                time.sleep(2)
        assert page is not None, "set-up did not serve the book:\n" + log.read_text()[-4000:]
        title = json.loads((RELEASE / "phase2" / "06_agent_with_eval.ipynb").read_text())["cells"][0]["source"][0]
        assert title.split(":", 1)[1].strip() in page, "the served page is not lab 6's"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    selection = [] if os.environ.get("LABKIT_PUBLIC_TREE_TESTS") == "all" else differing_tests()
    done = subprocess.run(test.split() + selection, cwd=public, env=env, capture_output=True, text=True, timeout=3000)
    output = done.stdout + done.stderr
    assert done.returncode == 0, "the public tree's tests fail there:\n" + output[-6000:]
    assert re.search(r"\d+ passed", output) and not re.search(r"\d+ failed", output)
