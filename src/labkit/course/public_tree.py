"""The public edition of the course: the learner's tree, written from the instructor's.

    labkit public-tree DEST [--git]

The instructor's repository holds everything: the lab sources with their solutions and
hidden tests (``autograder/source``), the grading tools, and the held-out sets the labs are
scored on (``labkit.heldout``). This writes what learners need into DEST: the book, the
student copies, ``labkit`` without the instructor's parts, the tests and benchmarks that need
no solutions, the set-up and test commands, the environment files and the licences, with a
README and a CONTRIBUTING of its own. ``labkit.heldout`` is replaced by a stand-in of the same
shape (``labkit/course/public/heldout.py``), so every lab runs the same there.

The tree is written beside DEST first and checked (``leaks``): no file from ``autograder/``,
no solution or hidden-test marker, no run of code lines or sentence from a solution or a
hidden test, no held-out wording, alias or item, no gradebook. Only a clean tree replaces DEST. DEST must be
absent, empty, or a tree this command wrote before (its ``.git`` is kept): that is how a
release updates the public repository. ``--git`` commits the result there (``git init`` first
when DEST is not a repository yet).
"""
from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PUBLIC = Path(__file__).resolve().parent / "public"  # files that exist only to be written into the public tree
MARKER = ".labkit-public-tree"  # in DEST: which commit of the instructor's tree it was written from

# What goes: these folders (filtered below) and files, as git sees the working tree.
FOLDERS = ("book/", "notebooks/", "src/labkit/", "tests/", "benchmarks/", ".ci/", "binder/")
FILES = ("_config.yml", "_toc.yml", "pyproject.toml", "environment.yml", "LICENSE", "LICENSE-CONTENT.md",
         ".gitignore")
# The instructor's parts of labkit: grading (its report, its sandbox, a class's intake, the
# servers a grading run shares), and this exporter with its templates.
INSTRUCTOR_ONLY = tuple(f"src/labkit/course/{name}" for name in (
    "grading.py", "sandbox.py", "classgrade.py", "shared_servers.py", "public_tree.py", "public/"))
REPLACED = {"src/labkit/heldout.py": PUBLIC / "heldout.py"}  # path in the tree -> its public stand-in
ADDED = {"tests/test_student_copies.py": PUBLIC / "test_student_copies.py"}
# Tests that need the instructor's tree: left out whole, or without the named functions.
LEFT_OUT_TESTS = {
    "test_adversarial.py": "attacks the grading sandbox with submissions",
    "test_autograder.py": "autogrades each lab's reference solution",
    "test_colab_route.py": "runs labs with their reference solutions",
    "test_grading.py": "the grading report, an instructor's tool",
    "test_classgrade.py": "a class's intake and parallel grading, an instructor's tool",
    "test_shared_servers.py": "the servers a grading run shares, an instructor's tool",
    "test_public_tree.py": "writes this tree from the instructor's",
    "test_benchmarks.py": "checks what the benchmarks read from the reference labs",
    "test_publishing.py": "checks the instructor's workflow, which publishes the site",
}
LEFT_OUT_TEST_FUNCTIONS = {
    "test_corpus.py": ("_heldout_items", "test_heldout_questions_and_evidence_appear_nowhere_a_learner_looks"),
    "test_notebooks.py": ("test_there_is_at_least_one_lab", "test_source_lab_follows_the_skeleton",
                          "test_graded_cells_are_well_formed", "test_student_copies_match_a_fresh_generation"),
    "test_package_layout.py": ("test_no_lab_imports_the_course_tooling",),
    "test_portfolio.py": ("test_every_lab_still_writes_the_files_the_write_up_reads",),
    "test_lanes.py": ("test_every_listed_file_exists",),  # the list names tests left out here
    "test_reference_run.py": ("test_declared_files_are_the_ones_the_lab_writes",
                              "test_a_session_that_grades_every_reference_builds_the_book_requiring_the_runs",
                              "test_the_published_site_is_rebuilt_with_the_reference_run_required"),
}
MARKERS = re.compile(r"^\s*(?:#+|//)?\s*(?:BEGIN|END) (?:SOLUTION|HIDDEN TESTS)\b", re.M)
SECRET_MIN_CHARS = 24  # quoted text shorter than this is too common to be a secret
WINDOW = 3  # consecutive code lines of a solution or hidden test that must not appear together
RUN_MIN_CHARS = 64  # ... and that are at least this long, spaces aside


class PublicTreeError(ValueError):
    """The public tree cannot be written, or would not be clean; the message says why."""


@dataclass(frozen=True)
class Written:
    dest: Path
    files: int
    commit: str | None  # the new commit in DEST with --git, None when nothing changed or no --git


# ---------------------------------------------------------------------------------- choosing

def _git(root: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise PublicTreeError(f"git {' '.join(args)} failed in {root}: {done.stderr.strip()}")
    return done.stdout


def tracked_files(root: Path = ROOT) -> list[str]:
    """The files of the working tree that git does not ignore (committed or not): never .venv, _build, results."""
    listed = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    return sorted(path for path in set(listed) if path and (root / path).is_file())


def _reads_lab_sources(text: str) -> bool:
    """Whether a benchmark imports the reference solutions or opens a path under autograder/."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            if any(name.split(".")[0] == "_reference" for name in names):
                return True
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "autograder" in node.value:
            return True
    return False


def without_functions(text: str, names: tuple[str, ...], where: str) -> str:
    """``text`` without the top-level functions ``names`` (decorators included); the rest as written."""
    tree = ast.parse(text)
    spans = {node.name: (min([node.lineno, *(d.lineno for d in node.decorator_list)]), node.end_lineno)
             for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    missing = sorted(set(names) - set(spans))
    if missing:
        raise PublicTreeError(f"{where} no longer defines {', '.join(missing)}: update LEFT_OUT_TEST_FUNCTIONS "
                              "in labkit/course/public_tree.py")
    lines = text.splitlines(keepends=True)
    for first, last in sorted((spans[name] for name in names), reverse=True):
        while last < len(lines) and not lines[last].strip():  # and the blank lines after it
            last += 1
        del lines[first - 1:last]
    return _without_unused_imports("".join(lines), text)


def _used_names(tree: ast.AST) -> set[str]:
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


def _bound_name(alias: ast.alias) -> str:
    return alias.asname or alias.name.split(".")[0]


def _without_unused_imports(text: str, before: str) -> str:
    """``text`` without the top-level imports that only the removed functions used."""
    tree, used_before = ast.parse(text), _used_names(ast.parse(before))
    used = _used_names(tree)
    lines = text.splitlines(keepends=True)
    for node in reversed(tree.body):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno != node.end_lineno:
            continue
        kept = [a for a in node.names if _bound_name(a) in used or _bound_name(a) not in used_before]
        if len(kept) == len(node.names):
            continue
        if kept:
            node.names = kept
            lines[node.lineno - 1] = ast.unparse(node) + "\n"
        else:
            del lines[node.lineno - 1]
    return "".join(lines)


def plan(root: Path = ROOT) -> dict[str, Path | str]:
    """What the public tree holds: path -> the file to copy, or the text to write."""
    chosen: dict[str, Path | str] = {}
    for path in tracked_files(root):
        if not (path in FILES or path.startswith(FOLDERS)) or path.startswith(INSTRUCTOR_ONLY):
            continue
        name = Path(path).name
        if path.startswith("tests/") and name in LEFT_OUT_TESTS:
            continue
        if path.startswith("notebooks/") and not re.fullmatch(r"notebooks/phase\d+/\d\d_\w+\.ipynb", path):
            continue
        if path.startswith("benchmarks/") and path.endswith(".py") and _reads_lab_sources((root / path).read_text()):
            continue
        if path.startswith("tests/") and name in LEFT_OUT_TEST_FUNCTIONS:
            chosen[path] = without_functions((root / path).read_text(), LEFT_OUT_TEST_FUNCTIONS[name], path)
            continue
        chosen[path] = root / path
    for path, stand_in in {**REPLACED, **ADDED}.items():
        chosen[path] = stand_in
    chosen["README.md"] = readme(root)
    chosen["CONTRIBUTING.md"] = contributing(root)
    return chosen


# --------------------------------------------------------------------------- its own texts

def sections(markdown: str) -> dict[str, str]:
    """``## heading`` -> that section's text, heading line included."""
    found: dict[str, str] = {}
    parts = re.split(r"^(?=## )", markdown, flags=re.M)
    for part in parts[1:]:
        found[part.splitlines()[0][3:].strip()] = part.rstrip() + "\n"
    return found


def _take(markdown: str, heading: str, where: str) -> str:
    found = sections(markdown)
    if heading not in found:
        raise PublicTreeError(f"{where} has no section '## {heading}', which the public tree copies; "
                              "update labkit/course/public_tree.py")
    return found[heading]


def readme(root: Path = ROOT) -> str:
    source = (root / "README.md").read_text()
    title = source.splitlines()[0]
    kept = "\n".join(_take(source, h, "README.md") for h in
                     ("The two commands", "Three routes: local, Colab, Binder", "Models", "Other ways to install"))
    return f"""{title}

An open course for backend engineers with a few years of APIs, databases, distributed
systems and observability behind them who want to move into AI infrastructure or agent
engineering: three phases of thirty days, each ending in something measured that you can
show. The course is a Jupyter Book (`book/`) with hands-on labs (`notebooks/`) that run
offline on a laptop CPU with small real models shipped in PyPI packages, and scale up on a
GPU or Colab.

## This edition

This is the public edition, written from the instructors' repository by
`labkit public-tree`. It holds everything a learner uses: the book, the labs as learners
get them, the course's package `labkit`, its tests and the benchmarks. It leaves out what
would give answers away: the labs' reference solutions and hidden tests, the grading tools,
and the held-out sets the course grades on. Labs 5 and 6 measure on held-out data; here they
run on stand-in sets of the same shape (`src/labkit/heldout.py`), so every lab works the same
and your own measurement stays honest as long as you build on dev data and score on
held-out data once.

{kept}
## What to do next

Read the book, then work the labs in JupyterLab: `.venv/bin/jupyter lab notebooks/`. Start
with `notebooks/phase1/01_embeddings.ipynb`. Each exercise is followed by a cell of visible
checks; run it until it passes. `LABKIT_QUICK=1` runs any lab in its short form.
`.venv/bin/labkit plan --start 2026-12-01 --track infra` writes a dated ninety-day schedule,
and `.venv/bin/labkit progress` runs your labs and says which checks pass.

## Layout

```
book/                 chapters (MyST Markdown), one part per phase
notebooks/phaseN/     the labs as learners get them
src/labkit/           the course's package: what the labs import, and in labkit/course/ the
                      labkit command, plan, progress and notebook runner
tests/                pytest: labkit, the student copies, the book
benchmarks/           scripts that measure and print numbers on your machine
_config.yml _toc.yml  the Jupyter Book configuration
.ci/                  setup, test, and the CI entry point
```

## Contributing and licences

`CONTRIBUTING.md` says how to propose a change. The code is under the MIT licence
(`LICENSE`); the book and the lab text are under CC BY 4.0 (`LICENSE-CONTENT.md`).
"""


def contributing(root: Path = ROOT) -> str:
    source = (root / "CONTRIBUTING.md").read_text()
    kept = "\n".join(_take(source, h, "CONTRIBUTING.md") for h in
                     ("Set up", "Quick mode and measurements", "Names and style", "Licences"))
    return f"""# Contributing

Thank you for improving the course. `bash .ci/test` runs every test this repository has; a
change lands only when it is green.

## Where a change is made

This repository is the public edition of the course, written from the instructors'
repository, which also holds the labs' sources with their solutions and hidden tests. The
labs in `notebooks/` are generated from those sources, and each release rewrites this
repository from there. So open an issue that says what to change and why, or a pull request
(against the student copy, for a lab): a maintainer applies it in the instructors'
repository, and the next release brings it here.

{kept}"""


# ------------------------------------------------------------------------------- the check

def _text(path: Path) -> str | None:
    """A file's text; for a notebook, its cells' sources (what a reader of the notebook sees)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None
    if path.suffix == ".ipynb":
        try:
            return "\n".join("".join(c.get("source", "")) for c in json.loads(text).get("cells", []))
        except (json.JSONDecodeError, AttributeError):
            return text
    return text


def _normal(text: str) -> str:
    return " ".join(text.split()).lower()


def _code_lines(lines) -> list[str]:
    """Lines that carry code: stripped, without blanks and comments, spaces collapsed."""
    return [_normal(line) for line in lines if line.strip() and not line.strip().startswith("#")]


def _windows(lines: list[str]) -> set[str]:
    """Every run of WINDOW consecutive lines, joined, long enough to be someone's own code (one
    line alone, or a run like ``except ValueError: / pass / else:``, is too often anyone's)."""
    runs = ("\n".join(lines[i:i + WINDOW]) for i in range(len(lines) - WINDOW + 1))
    return {run for run in runs if len(run.replace(" ", "")) >= RUN_MIN_CHARS}


def _blocks(source: str) -> list[list[str]]:
    """The solution and hidden-test regions of a cell, each as its lines."""
    inside, found = False, []
    for line in source.splitlines():
        marker = re.sub(r"^[\s#/]*", "", line)
        if marker.startswith(("BEGIN SOLUTION", "BEGIN HIDDEN TESTS")):
            inside = True
            found.append([])
        elif marker.startswith(("END SOLUTION", "END HIDDEN TESTS")):
            inside = False
        elif inside:
            found[-1].append(line)
    return found


def _prose(code: str) -> list[str]:
    """The string literals of a piece of Python that read as text, normalised: five words or
    more, mostly letters (a question, a sentence; not a JSON example or a format string)."""
    code = textwrap.dedent(code)
    try:
        trees = [compile(code, "<cell>", "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)]
    except SyntaxError:  # a fragment or IPython syntax: each line that parses alone
        trees = []
        for line in code.splitlines():
            try:
                trees.append(ast.parse(line.strip().rstrip(",").rstrip("\\") or "None"))
            except SyntaxError:
                continue
    literals = [n.value for tree in trees for n in ast.walk(tree)
                if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return [_normal(t) for t in literals if len(t.strip()) >= SECRET_MIN_CHARS and len(re.findall(r"[A-Za-z]{2,}", t)) >= 5
            and sum(c.isalpha() for c in t) >= 0.75 * sum(not c.isspace() for c in t)]


@dataclass
class Secrets:
    """What the public tree must not contain. ``runs``: runs of WINDOW code lines of a solution or
    hidden test; ``texts``: prose of solutions and hidden tests, and the held-out wordings,
    aliases and items. Each maps to where it comes from."""
    runs: dict[str, str]
    texts: dict[str, str]


def secrets(root: Path = ROOT) -> Secrets:
    """From each lab source, what its solutions and hidden tests hold that its student copy does
    not show; from ``labkit.heldout``, the held-out wordings and the items they make. Prose that
    is quoted from the course's corpora (``src/labkit/data``, public text the labs search) is
    not a secret: a held-out question's evidence phrase is one."""
    corpora = _normal(" ".join(_text(p) or "" for p in sorted((root / "src" / "labkit" / "data").rglob("*"))
                               if p.is_file()))
    runs: dict[str, str] = {}
    texts: dict[str, str] = {}
    for source in sorted((root / "autograder" / "source").glob("phase*/*.ipynb")):
        copy = root / "notebooks" / source.parent.name / source.name
        shown = (_text(copy) or "") if copy.is_file() else ""
        shown_runs, shown_text = _windows(_code_lines(shown.splitlines())), _normal(shown)
        where = f"a solution or hidden test of {source.name}"
        for cell in json.loads(source.read_text(encoding="utf-8"))["cells"]:
            for block in _blocks("".join(cell["source"])):
                runs.update({run: where for run in _windows(_code_lines(block)) - shown_runs})
                texts.update({t: where for t in _prose("\n".join(block)) if t not in shown_text and t not in corpora})
    texts.update({_normal(text): what for text, what in heldout_texts().items()})
    return Secrets(runs, texts)


def heldout_texts() -> dict[str, str]:
    """The instructor's held-out wordings, aliases and items (labs 5 and 6) -> what each is."""
    from .. import finetune, heldout, oncall

    if heldout.EDITION != "instructor":
        raise PublicTreeError("labkit.heldout here is the public stand-in: run this in the instructor's repository")
    found = {}
    templates = [t for ts in heldout.UNSEEN_TEMPLATES.values() for t in ts] + \
        [t for ts in heldout.ONCALL_ALERT_TEMPLATES.values() for t in ts]
    for template in templates:
        for part in re.split(r"\{\w+\}", template):
            if len(part.strip()) >= 12:
                found[part.strip()] = "a held-out wording"
    for aliases in heldout.UNSEEN_SERVICE_ALIASES.values():
        found.update({alias: "a held-out service alias" for alias in aliases})
    for seed in range(3):
        found.update({i.alert: "a held-out incident of lab 6" for i in oncall.incidents("heldout", n=45, seed=seed)})
    unseen = finetune.toolcall_dataset(n_train=400, n_dev=60, n_test=120, n_unseen=120, seed=0)["test_unseen"]
    found.update({r: "a held-out request of lab 5" for r in unseen["request"]})
    return found


def leaks(tree: Path, root: Path = ROOT) -> list[str]:
    """What in ``tree`` must not be public, one line each; empty when it is clean."""
    problems = []
    files = sorted(p for p in tree.rglob("*") if p.is_file() and ".git" not in p.relative_to(tree).parts)
    for path in files:
        rel = path.relative_to(tree).as_posix()
        if rel.startswith("autograder/") or path.suffix == ".db" or "gradebook" in path.name:
            problems.append(f"{rel}: the instructor's grading files")
    texts = {path.relative_to(tree).as_posix(): _text(path) for path in files}
    texts = {rel: text for rel, text in texts.items() if text is not None}
    for rel, text in texts.items():
        if MARKERS.search(text) or (rel.endswith(".ipynb") and ("BEGIN SOLUTION" in text or "BEGIN HIDDEN" in text)):
            problems.append(f"{rel}: a solution or hidden-test marker")
    hidden = secrets(root)
    normal = {rel: _normal(text) for rel, text in texts.items()}
    everything = "\0".join(normal.values())  # one search per text; the file is looked for only on a hit
    for secret, what in hidden.texts.items():
        if secret in everything:
            problems += [f"{rel}: {what}: {secret[:60]!r}" for rel, text in normal.items() if secret in text]
    for rel, text in texts.items():
        for run in sorted(_windows(_code_lines(text.splitlines())) & hidden.runs.keys()):
            problems.append(f"{rel}: {hidden.runs[run]}: {run.splitlines()[0][:60]!r}...")
    return problems


# ----------------------------------------------------------------------------- the writing

def _writable(dest: Path, root: Path) -> None:
    inside = dest.resolve() == root.resolve() or root.resolve() in dest.resolve().parents
    if inside and subprocess.run(["git", "-C", str(root), "check-ignore", "--quiet", str(dest.resolve())]).returncode != 0:
        raise PublicTreeError(f"{dest} is inside the instructor's tree {root}, where git would see it; "
                              "write the public tree elsewhere (or under an ignored folder such as _build/)")
    if dest.exists() and not dest.is_dir():
        raise PublicTreeError(f"{dest} is a file, not a folder")
    if dest.is_dir() and any(p.name != ".git" for p in dest.iterdir()) and not (dest / MARKER).is_file():
        raise PublicTreeError(f"{dest} is not empty and was not written by labkit public-tree; nothing was changed. "
                              "Name an empty folder, or the public repository written before.")


def export(dest: str | Path, git: bool = False, root: Path = ROOT) -> Written:
    """Write the public tree into ``dest`` (see the module docstring); with ``git``, commit it there."""
    dest, root = Path(dest).absolute(), Path(root).absolute()
    _writable(dest, root)
    files = plan(root)
    commit = _git(root, "rev-parse", "HEAD").strip()
    dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no").strip())
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}-", dir=dest.parent) as scratch:
        staged = Path(scratch)
        for path, content in files.items():
            target = staged / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copy2(content, target)
            else:
                target.write_text(content)
        (staged / MARKER).write_text(json.dumps({"from_commit": commit, "uncommitted_changes": dirty}, indent=1) + "\n")
        problems = leaks(staged, root)
        if problems:
            raise PublicTreeError(f"the public tree would not be clean ({len(problems)} problems); nothing was "
                                  "written:\n  " + "\n  ".join(problems[:20]))
        dest.mkdir(exist_ok=True)
        for old in dest.iterdir():  # a release replaces the previous tree; its history stays in .git
            if old.name != ".git":
                shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
        for new in staged.iterdir():
            shutil.move(str(new), dest / new.name)
    made = _commit(dest, commit, dirty) if git else None
    return Written(dest, len(files), made)


def _commit(dest: Path, source_commit: str, dirty: bool) -> str | None:
    if not (dest / ".git").exists():
        _git(dest, "init", "--quiet", "--initial-branch=main")
    _git(dest, "add", "--all")
    if not _git(dest, "status", "--porcelain").strip():
        return None
    identity = [] if _git(dest, "config", "user.email", check=False).strip() else \
        ["-c", "user.name=Course maintainers", "-c", "user.email=maintainers@example.invalid"]
    message = f"Public edition of the course, from {source_commit[:12]}" + (" with uncommitted changes" if dirty else "")
    _git(dest, *identity, "commit", "--quiet", "-m", message)
    return _git(dest, "rev-parse", "HEAD").strip()
