"""A real upstream project to contribute to, offline: the pinned source distribution, fetched once.

Lab 9 practises the contribution workflow on a small pure-Python package from the package
index. This module holds the infrastructure around it (no exercise answers):

- ``fetch_sdist`` downloads the pinned sdist once with ``pip download --no-binary :all:
  --no-deps`` into labkit's cache folder and checks its hash (``labkit prepare`` calls it);
- ``fresh_repo`` unpacks it into a new git repository with one commit, the "upstream" state;
- ``make_environment`` gives that repository its own virtual environment, and ``run_tests``
  runs the project's own test suite in it with a time bound, counting results from JUnit XML;
- ``replace_function`` swaps one function's source in a file (how the lab edits code);
- ``apply_patch`` applies a ``git format-patch`` file to a fresh copy, refusing with a clear
  reason a patch that is not one, touches files a fix has no business touching, deletes
  the project's tests, or does not apply;
- ``commit_message_problems`` and ``pr_description_problems`` check the shape upstream
  projects ask for.
"""
from __future__ import annotations

import ast
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import textwrap
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from .config import cache_dir


@dataclass(frozen=True)
class Upstream:
    """A pinned release of a project, and where its own rules say a change may go."""

    name: str
    version: str
    sha256: str
    fixed_in: str
    issue: str                       # the upstream issue the course's bug comes from
    changelog_entry: str             # that fix's entry in the newer release's CHANGELOG, quoted
    package_dir: str                 # the importable code, relative to the sdist root
    editable: tuple[str, ...]        # folders a contribution may change
    test_dir: str
    # The project's pytest options without the coverage plugin its CI installs (pytest-cov);
    # everything else is as its .pytest.ini has it.
    pytest_options: tuple[str, ...] = ()

    @property
    def sdist_name(self) -> str:
        return f"{self.name}-{self.version}.tar.gz"

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


SEMVER = Upstream(
    name="semver",
    version="3.0.4",
    sha256="afc7d8c584a5ed0a11033af086e8af226a9c0b206f313e0301f8dd7b6b589602",
    fixed_in="3.1.1",
    issue="python-semver/python-semver#487",
    changelog_entry=(":gh:`487`: Comparing versions with long numeric prerelease identifiers no longer "
                     "raises ``ValueError`` because of Python's integer string conversion limit."),
    package_dir="src/semver",
    editable=("src/semver/", "tests/", "changelog.d/", "docs/"),
    test_dir="tests",
    pytest_options=("-o", "addopts=--import-mode=importlib --doctest-glob=*.rst --doctest-modules"),
)
PINNED = SEMVER

# Files in the editable folders that steer how tests run: changing them is changing the referee.
PROTECTED = ("conftest.py", ".pytest.ini", "pytest.ini", "setup.cfg", "tox.ini", "pyproject.toml")
GIT_IDENTITY = ("-c", "user.name=Course Learner", "-c", "user.email=learner@example.invalid")


class UpstreamError(RuntimeError):
    """Something about the upstream project stopped the lab; the message says what to do."""


class SdistUnavailable(UpstreamError):
    """The pinned sdist is not cached and could not be fetched."""


class PatchRejected(UpstreamError):
    """A patch that cannot be graded as a contribution; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def sdist_cache(spec: Upstream = PINNED) -> Path:
    return cache_dir() / "upstream" / spec.sdist_name


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_sdist(spec: Upstream = PINNED, *, download: bool = True, timeout: float = 600) -> Path:
    """The pinned sdist in the cache, downloaded once with pip when it is missing."""
    target = sdist_cache(spec)
    if target.is_file() and _sha256(target) == spec.sha256:
        return target
    command = f"{Path(sys.executable).parent / 'labkit'} prepare"
    if not download:
        raise SdistUnavailable(f"{spec.sdist_name} is not in {target.parent}. Fetch it once with `{command}` "
                               "(it runs pip download and needs the package index).")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as folder:
        pip = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
               "--disable-pip-version-check", "--dest", folder, spec.requirement]
        try:
            run = subprocess.run(pip, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            run = None
        found = list(Path(folder).glob(f"{spec.name}-{spec.version}.tar.gz"))
        if run is None or run.returncode != 0 or not found:
            said = "timed out" if run is None else " | ".join((run.stderr or run.stdout).strip().splitlines()[-3:])
            raise SdistUnavailable(
                f"could not download the sdist of {spec.requirement} from the package index ({said}). "
                f"On a machine that can reach it, run `{command}`; it caches {spec.sdist_name} in {target.parent}.")
        digest = _sha256(found[0])
        if digest != spec.sha256:
            raise SdistUnavailable(f"the downloaded {spec.sdist_name} has sha256 {digest}, not the pinned "
                                   f"{spec.sha256}: the index served a different file; it was not used.")
        shutil.move(str(found[0]), target)
    return target


def git(repo: Path, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    """Run git in ``repo`` with the course's identity; raise with git's own words when it fails."""
    run = subprocess.run(["git", *GIT_IDENTITY, *args], cwd=repo, capture_output=True, text=True, input=input)
    if check and run.returncode != 0:
        raise UpstreamError(f"git {' '.join(args)} failed: {(run.stderr or run.stdout).strip()}")
    return run


def fresh_repo(dest: Path, spec: Upstream = PINNED) -> Path:
    """Unpack the pinned sdist into a new git repository at ``dest`` (which must not exist yet)."""
    dest = Path(dest)
    if dest.exists():
        raise UpstreamError(f"{dest} already exists; give fresh_repo a new folder so nothing is overwritten")
    archive = fetch_sdist(spec, download=False)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as folder, tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(folder, filter="data")   # refuses absolute paths and links that leave the folder
        else:  # Python 3.11.0-3.11.3 lack extraction filters: check the members by hand
            unsafe = [m.name for m in tar.getmembers() if m.name.startswith("/") or ".." in Path(m.name).parts
                      or m.issym() or m.islnk() or m.isdev()]
            if unsafe:
                raise UpstreamError(f"{archive.name} holds entries that would leave its folder: {unsafe[:3]}")
            tar.extractall(folder)
        shutil.move(str(Path(folder) / f"{spec.name}-{spec.version}"), dest)
    git(dest, "init", "--quiet", "--initial-branch=main")
    # The environment and test byproducts stay out of every commit and patch.
    (dest / ".git" / "info" / "exclude").write_text(".venv/\n__pycache__/\n*.pyc\n.pytest_cache/\n*.junit.xml\n")
    git(dest, "add", "--all")
    git(dest, "commit", "--quiet", "-m", f"Import {spec.name} {spec.version} from its sdist")
    git(dest, "tag", "upstream")
    return dest


def make_environment(repo: Path, spec: Upstream = PINNED) -> Path:
    """A virtual environment in ``repo/.venv`` for the project's development: its own
    interpreter, the project's source installed in place (a .pth file, as an editable install
    does) and the course's pytest. Returns the environment's python."""
    env = Path(repo) / ".venv"
    python = env / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, capture_output=True)
        run = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True)
        site = Path(run.stdout.strip())
        # Files are read in name order: the project's own source first, then the course's tools.
        (site / "00-editable-project.pth").write_text(str((Path(repo) / spec.package_dir).parent.resolve()) + "\n")
        (site / "zz-course-tools.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@dataclass
class TestRun:
    """The outcome of one run of a project's test suite."""

    passed: int
    failed: int
    errors: int
    skipped: int
    seconds: float
    returncode: int
    output: str = field(repr=False, default="")
    timed_out: bool = False
    failures: list[str] = field(default_factory=list)

    @property
    def green(self) -> bool:
        return self.returncode == 0 and not self.failed and not self.errors and not self.timed_out and self.passed > 0

    def summary(self) -> str:
        state = "timed out" if self.timed_out else ("green" if self.green else "red")
        return (f"{self.passed} passed, {self.failed} failed, {self.errors} errors, {self.skipped} skipped "
                f"in {self.seconds:.1f} s ({state})")


def run_tests(repo: Path, *selection: str, spec: Upstream = PINNED, timeout: float = 120) -> TestRun:
    """Run the project's own pytest suite (or ``selection`` of it) in its environment, bounded in time."""
    repo = Path(repo)
    python = make_environment(repo, spec)
    report = repo / ".labkit.junit.xml"
    report.unlink(missing_ok=True)
    command = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *spec.pytest_options,
               f"--junitxml={report}", *selection]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    start = time.perf_counter()
    try:
        run = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)
        output, code, timed_out = run.stdout + run.stderr, run.returncode, False
    except subprocess.TimeoutExpired as stopped:
        output = (stopped.stdout or b"").decode(errors="replace") if isinstance(stopped.stdout, bytes) else (stopped.stdout or "")
        code, timed_out = -1, True
    seconds = time.perf_counter() - start
    passed = failed = errors = skipped = 0
    failures: list[str] = []
    if report.is_file():
        for case in ET.parse(report).getroot().iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            if case.find("failure") is not None:
                failed += 1
                failures.append(name)
            elif case.find("error") is not None:
                errors += 1
                failures.append(name)
            elif case.find("skipped") is not None:
                skipped += 1
            else:
                passed += 1
        report.unlink()
    if code not in (0, 1) and not timed_out and not (failed or errors):
        errors += 1   # pytest could not even collect: count it, so the run is never green
    return TestRun(passed, failed, errors, skipped, seconds, code, output, timed_out, failures)


def function_source(repo: Path, path: str, qualname: str) -> str:
    """The current source of ``Class.method`` or ``function`` in a file of ``repo``."""
    node, lines = _find(Path(repo) / path, qualname)
    return textwrap.dedent("".join(lines[node.lineno - 1:node.end_lineno]))


def _find(file: Path, qualname: str):
    text = file.read_text(encoding="utf-8")
    scope = ast.parse(text)
    node = None
    for part in qualname.split("."):
        node = next((n for n in ast.iter_child_nodes(scope)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == part), None)
        if node is None:
            raise UpstreamError(f"{file.name} has no {qualname}")
        scope = node
    return node, text.splitlines(keepends=True)


def replace_function(repo: Path, path: str, qualname: str, new_source: str) -> None:
    """Put ``new_source`` (a def, at any indentation) in place of ``qualname``'s def in ``path``,
    keeping its decorators. The new source must define a function of the same name."""
    if not isinstance(new_source, str):
        raise TypeError(f"new_source must be the text of a def, not {type(new_source).__name__}")
    new = textwrap.dedent(new_source).strip("\n") + "\n"
    tree = ast.parse(new)
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    name = qualname.rsplit(".", 1)[-1]
    if len(tree.body) != 1 or not defs or defs[0].name != name:
        raise UpstreamError(f"new_source must be exactly one def named {name}")
    if defs[0].decorator_list:   # the file keeps its own decorators
        new = "".join(new.splitlines(keepends=True)[defs[0].lineno - 1:])
    file = Path(repo) / path
    node, lines = _find(file, qualname)
    indent = re.match(r"\s*", lines[node.lineno - 1]).group(0)
    body = textwrap.indent(new, indent, lambda line: line.strip() != "")
    file.write_text("".join(lines[:node.lineno - 1]) + body + "".join(lines[node.end_lineno:]), encoding="utf-8")


def patch_files(patch: str) -> list[str]:
    """The repository paths a git patch touches (both sides of renames)."""
    paths: list[str] = []
    for pair in re.findall(r"^diff --git a/(\S+) b/(\S+)$", patch, flags=re.M):
        paths += [p for p in dict.fromkeys(pair) if p not in paths]
    return paths


def apply_patch(patch: str | Path, dest: Path, spec: Upstream = PINNED) -> AppliedPatch:
    """Apply a learner's patch to a fresh copy of the project at ``dest``.

    Raises PatchRejected, with a reason a learner can act on, when the text is not a git patch,
    touches files outside the folders a fix may change (or the files that steer the tests),
    removes lines from the project's own tests, or does not apply to the pinned release."""
    if isinstance(patch, Path) or (isinstance(patch, str) and "\n" not in patch and Path(patch).is_file()):
        patch = Path(patch).read_text(encoding="utf-8", errors="replace")
    if not isinstance(patch, str) or not patch.strip():
        raise PatchRejected("the patch is empty: make a commit, then `git format-patch -1` writes it")
    files = patch_files(patch)
    if not files:
        raise PatchRejected("this is not a git patch (no `diff --git` header): write it with `git format-patch`")
    outside = [p for p in files if p.startswith("/") or ".." in Path(p).parts
               or not p.startswith(spec.editable) or Path(p).name in PROTECTED]
    if outside:
        raise PatchRejected(f"the patch touches {', '.join(outside)}: a fix to {spec.name} may change only "
                            f"{', '.join(spec.editable)} (and not {', '.join(PROTECTED)})")
    repo = fresh_repo(dest, spec)
    check = git(repo, "apply", "--check", "--numstat", "-", check=False, input=patch)
    if check.returncode != 0:
        raise PatchRejected(f"the patch does not apply to a fresh {spec.name} {spec.version}: "
                            + " ".join(check.stderr.strip().splitlines()[:4]))
    for _added, deleted, path in (line.split("\t", 2) for line in check.stdout.splitlines() if line.strip()):
        if path.startswith(spec.test_dir + "/") and deleted not in ("0", "-") and (repo / path).exists():
            raise PatchRejected(f"the patch removes {deleted} lines from {path}: a fix adds tests, it does not "
                                "delete the project's own")
    if patch.startswith("From "):
        run = git(repo, "am", "--quiet", "--keep-cr", check=False, input=patch)
        if run.returncode != 0:
            git(repo, "am", "--abort", check=False)
            raise PatchRejected(f"git am could not apply the patch: {(run.stderr or run.stdout).strip()[:400]}")
    else:
        git(repo, "apply", "--index", "-", input=patch)
        git(repo, "commit", "--quiet", "-m", "Apply a patch without a commit message")
    message = git(repo, "log", "-1", "--format=%B").stdout.strip()
    return AppliedPatch(repo=repo, files=files, message=message)


@dataclass
class AppliedPatch:
    repo: Path
    files: list[str]
    message: str

    @property
    def subject(self) -> str:
        return self.message.splitlines()[0] if self.message else ""


# Words that make a subject describe what was done instead of what the commit does.
_NOT_IMPERATIVE = re.compile(r"^(\w+(ed|ing)|(?!\w*ss$)\w+s)$", flags=re.I)
_IMPERATIVE_ANYWAY = {"embed", "feed", "need", "seed", "speed", "shed", "bring", "string", "focus", "alias"}
_ISSUE_REFERENCE = re.compile(r"(#\d+|\bgh[-:]\s*\d+|issues/\d+|pull/\d+)", flags=re.I)
_PLACEHOLDERS = re.compile(r"\b(TODO|TBD|FIXME|WIP|YOUR ANSWER HERE|lorem ipsum)\b", flags=re.I)


def commit_message_problems(message) -> list[str]:
    """What keeps ``message`` from the shape most projects ask for (an empty list when none):
    a subject of at most 72 characters in the imperative mood without a final full stop, a
    blank line, and a body wrapped at 72 columns that says why and names the issue it fixes."""
    if not isinstance(message, str) or not message.strip():
        return ["the commit message is empty"]
    problems = []
    lines = message.strip("\n").splitlines()
    subject = lines[0]
    words = re.sub(r"^[\w.-]+:\s*", "", subject).split()   # an optional "component: " prefix
    if len(subject) > 72:
        problems.append(f"the subject has {len(subject)} characters; keep it to 72 (50 reads best)")
    if subject.rstrip().endswith("."):
        problems.append("the subject ends with a full stop")
    if words and _NOT_IMPERATIVE.match(words[0]) and words[0].lower() not in _IMPERATIVE_ANYWAY:
        problems.append(f"the subject starts with '{words[0]}': use the imperative ('Fix', 'Add'), as if "
                        "completing 'If applied, this commit will ...'")
    if len(lines) < 3 or lines[1].strip():
        problems.append("no body: leave one blank line after the subject, then say what was wrong and why this fixes it")
    else:
        body = "\n".join(lines[2:])
        long_lines = [line for line in lines[2:] if len(line) > 72 and "://" not in line and not line.startswith("    ")]
        if long_lines:
            problems.append(f"{len(long_lines)} body lines are longer than 72 characters; wrap them")
        if len(body.split()) < 15:
            problems.append("the body is too short to say what was wrong and why the change fixes it")
        if not _ISSUE_REFERENCE.search(body):
            problems.append("the body names no issue (e.g. 'Fixes #123'), so a reviewer cannot find the report")
    if _PLACEHOLDERS.search(message):
        problems.append("the message still holds a placeholder (TODO, WIP, ...)")
    return problems


PR_SECTIONS = {"what": r"what", "why": r"why", "how tested": r"how.*test|test"}


def pr_sections(text: str) -> dict[str, str]:
    """{heading: body} of a Markdown pull-request description."""
    sections, current = {}, None
    for line in text.splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            current = heading.group(1).strip().lower()
            sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections


def pr_description_problems(text) -> list[str]:
    """What keeps a pull-request description from the shape reviewers ask for: a What, a Why
    and a How-tested section (Markdown headings), each with substance, the issue named, the
    test command shown, and short enough to review."""
    if not isinstance(text, str) or not text.strip():
        return ["the description is empty"]
    problems = []
    sections = pr_sections(text)
    for label, pattern in PR_SECTIONS.items():
        match = next((body for heading, body in sections.items() if re.match(pattern, heading)), None)
        if match is None:
            problems.append(f"no '{label}' section (a Markdown heading such as '## {label.capitalize()}')")
        elif len(match.split()) < 8:
            problems.append(f"the '{label}' section is too thin to help a reviewer")
    if not _ISSUE_REFERENCE.search(text):
        problems.append("the description names no issue (e.g. 'Fixes #123')")
    if not re.search(r"\bpytest\b|\btox\b", text):
        problems.append("'how tested' does not show the command that ran the tests")
    if len(text.split()) > 400:
        problems.append(f"{len(text.split())} words: a reviewer reads a small change's description in a minute; cut it")
    if _PLACEHOLDERS.search(text):
        problems.append("the description still holds a placeholder (TODO, TBD, ...)")
    return problems
