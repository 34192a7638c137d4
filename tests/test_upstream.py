"""labkit.upstream: the pinned sdist, its repository and test suite, patches and message shapes.

The tests that unpack the project read the sdist from labkit's cache, where `labkit prepare`
(run by .ci/setup) puts it; without it they fail with the command to run.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from labkit import upstream

METHOD = "Version._nat_cmp"
FILE = "src/semver/version.py"
# A correct fix in the shape of upstream's: numeric identifiers compared by length, then digits.
FIX = '''
def _nat_cmp(cls, a, b):
    def key(identifier):
        if not identifier.isdigit():
            return (1, 0, identifier)
        digits = identifier.lstrip("0") or "0"
        return (0, len(digits), digits)

    a_parts = [key(x) for x in (a or "").split(".")]
    b_parts = [key(x) for x in (b or "").split(".")]
    for sub_a, sub_b in zip(a_parts, b_parts):
        if sub_a != sub_b:
            return -1 if sub_a < sub_b else 1
    return _cmp(len(a_parts), len(b_parts))
'''
REPRODUCTION = '''
from semver import Version


def test_long_numeric_prerelease_compares():
    assert Version.parse("1.0.0-" + "1" * 5000) < Version.parse("1.0.0-" + "2" * 5000)
'''
MESSAGE = """Compare long numeric prerelease identifiers without int()

Version.compare turned every numeric prerelease identifier into an int,
which raises ValueError past Python's 4300-digit conversion limit.
Compare such identifiers by length and then digit by digit instead.

Fixes #487
"""


@pytest.fixture(scope="module")
def sdist() -> Path:
    return upstream.fetch_sdist(download=False)


@pytest.fixture(scope="module")
def patch_with_fix(sdist, tmp_path_factory) -> str:
    repo = upstream.fresh_repo(tmp_path_factory.mktemp("fix") / "semver")
    upstream.replace_function(repo, FILE, METHOD, FIX)
    (repo / "tests" / "test_long_prerelease.py").write_text(REPRODUCTION)
    upstream.git(repo, "add", "--all")
    upstream.git(repo, "commit", "--quiet", "-m", MESSAGE)
    return upstream.git(repo, "format-patch", "-1", "--stdout").stdout


def test_missing_sdist_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    with pytest.raises(upstream.SdistUnavailable, match="labkit prepare"):
        upstream.fetch_sdist(download=False)


def test_a_cached_file_with_the_wrong_hash_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    upstream.sdist_cache().parent.mkdir(parents=True)
    upstream.sdist_cache().write_bytes(b"not the release")
    with pytest.raises(upstream.SdistUnavailable):
        upstream.fetch_sdist(download=False)


def test_a_failed_download_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)                   # no mirrors from a pip.conf
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")   # nothing listens there
    monkeypatch.setenv("PIP_RETRIES", "0")
    with pytest.raises(upstream.SdistUnavailable, match="labkit prepare"):
        upstream.fetch_sdist(timeout=120)
    assert not upstream.sdist_cache().exists()


def test_fresh_repo_is_the_release_committed_once(sdist, tmp_path):
    repo = upstream.fresh_repo(tmp_path / "semver")
    assert (repo / FILE).is_file() and (repo / "tests").is_dir() and (repo / "CONTRIBUTING.rst").is_file()
    log = upstream.git(repo, "log", "--format=%s").stdout.splitlines()
    assert log == ["Import semver 3.0.4 from its sdist"]
    assert upstream.git(repo, "status", "--porcelain").stdout == ""
    with pytest.raises(upstream.UpstreamError, match="already exists"):
        upstream.fresh_repo(repo)


def test_the_suite_runs_green_in_its_own_environment_and_ignores_the_environment_folder(sdist, tmp_path):
    repo = upstream.fresh_repo(tmp_path / "semver")
    run = upstream.run_tests(repo)
    assert run.green and run.passed > 300, run.summary() + run.output[-2000:]
    assert (repo / ".venv" / "bin" / "python").exists()
    where = subprocess.run([str(repo / ".venv" / "bin" / "python"), "-c", "import semver; print(semver.__file__)"],
                           capture_output=True, text=True, check=True).stdout
    assert str((repo / "src").resolve()) in where
    assert upstream.git(repo, "status", "--porcelain").stdout == "", "the environment must not show up as a change"


def test_the_bug_is_real_and_the_fix_fixes_it(sdist, tmp_path):
    repo = upstream.fresh_repo(tmp_path / "semver")
    (repo / "tests" / "test_long_prerelease.py").write_text(REPRODUCTION)
    before = upstream.run_tests(repo, "tests/test_long_prerelease.py")
    assert before.failed == 1 and not before.green
    assert "4300" in before.output or "integer string conversion" in before.output
    upstream.replace_function(repo, FILE, METHOD, FIX)
    assert "@classmethod\n    def _nat_cmp(cls, a, b):" in (repo / FILE).read_text()
    after = upstream.run_tests(repo)
    assert after.green and after.passed == 351, after.summary()   # the 350 of the release and the new one


def test_run_tests_counts_a_broken_suite_as_red(sdist, tmp_path):
    repo = upstream.fresh_repo(tmp_path / "semver")
    (repo / "tests" / "test_broken.py").write_text("import does_not_exist\n")
    run = upstream.run_tests(repo)
    assert not run.green and run.errors >= 1


def test_run_tests_is_bounded_in_time(sdist, tmp_path):
    repo = upstream.fresh_repo(tmp_path / "semver")
    (repo / "tests" / "test_slow.py").write_text("import time\n\ndef test_slow():\n    time.sleep(60)\n")
    run = upstream.run_tests(repo, "tests/test_slow.py", timeout=5)
    assert run.timed_out and not run.green and run.seconds < 30


def test_replace_function_refuses_the_wrong_source(sdist, tmp_path):
    repo = upstream.fresh_repo(tmp_path / "semver")
    with pytest.raises(upstream.UpstreamError, match="_nat_cmp"):
        upstream.replace_function(repo, FILE, METHOD, "def other(cls, a, b):\n    return 0\n")
    with pytest.raises(TypeError):
        upstream.replace_function(repo, FILE, METHOD, None)
    with pytest.raises(upstream.UpstreamError, match="no Version.missing"):
        upstream.function_source(repo, FILE, "Version.missing")


def test_a_good_patch_applies_to_a_fresh_copy(patch_with_fix, tmp_path):
    applied = upstream.apply_patch(patch_with_fix, tmp_path / "fresh")
    assert applied.subject == MESSAGE.splitlines()[0]
    assert applied.files == [FILE, "tests/test_long_prerelease.py"]
    assert upstream.run_tests(applied.repo).green
    written = tmp_path / "0001-fix.patch"
    written.write_text(patch_with_fix)
    assert upstream.apply_patch(written, tmp_path / "from-file").files == applied.files


@pytest.mark.parametrize("mangle, reason", [
    (lambda p: "", "empty"),
    (lambda p: "please merge my fix", "not a git patch"),
    (lambda p: p.replace("tests/test_long_prerelease.py", "../outside.py"), "may change only"),
    (lambda p: p.replace("tests/test_long_prerelease.py", "setup.py"), "may change only"),
    (lambda p: p.replace("tests/test_long_prerelease.py", "tests/conftest.py"), "may change only"),
    (lambda p: p.replace("def _nat_cmp(cls, a: Optional", "def _nat_cmp(cls, a: Opshunal"), "does not apply"),
])
def test_a_bad_patch_is_refused_with_its_reason(patch_with_fix, tmp_path, mangle, reason):
    with pytest.raises(upstream.PatchRejected, match=reason):
        upstream.apply_patch(mangle(patch_with_fix), tmp_path / "fresh")


def test_a_patch_that_deletes_the_projects_tests_is_refused(sdist, tmp_path):
    repo = upstream.fresh_repo(tmp_path / "semver")
    compare = repo / "tests" / "test_compare.py"
    compare.write_text("\n".join(compare.read_text().splitlines()[:10]) + "\n")
    upstream.git(repo, "commit", "--quiet", "-am", "Trim the tests")
    patch = upstream.git(repo, "format-patch", "-1", "--stdout").stdout
    with pytest.raises(upstream.PatchRejected, match="removes .* lines from tests/test_compare.py"):
        upstream.apply_patch(patch, tmp_path / "fresh")


def test_commit_message_rules():
    assert upstream.commit_message_problems(MESSAGE) == []
    assert upstream.commit_message_problems("Embed the version in the wheel\n\n" + MESSAGE.split("\n\n", 1)[1]) == []
    assert upstream.commit_message_problems("") == ["the commit message is empty"]
    assert upstream.commit_message_problems(None) == ["the commit message is empty"]
    cases = {
        "Fixed the comparison" + MESSAGE[MESSAGE.index("\n"):]: "imperative",
        "Fixes the comparison" + MESSAGE[MESSAGE.index("\n"):]: "imperative",
        "Compare identifiers by length." + MESSAGE[MESSAGE.index("\n"):]: "full stop",
        "A" * 80 + MESSAGE[MESSAGE.index("\n"):]: "72",
        "Compare identifiers by length": "no body",
        "Compare identifiers by length\nFixes #487 because ints overflow the limit of digits": "no body",
        "Compare identifiers by length\n\nFixes #487": "too short",
        MESSAGE.replace("Fixes #487", "Fixes it"): "names no issue",
        MESSAGE.replace("instead.", "instead " + "x" * 80): "longer than 72",
        MESSAGE + "\nTODO: more tests\n": "placeholder",
    }
    for message, expected in cases.items():
        problems = upstream.commit_message_problems(message)
        assert any(expected in p for p in problems), (message[:40], problems)
    assert upstream.commit_message_problems("version: compare long identifiers" + MESSAGE[MESSAGE.index("\n"):]) == []


GOOD_PR = """## What

Compare numeric prerelease identifiers by their digits instead of converting them to int.

## Why

Comparing `1.0.0-` followed by 5000 digits raised ValueError (Python's integer string
conversion limit). Fixes #487.

## How tested

A new test in tests/test_long_prerelease.py failed before the change and passes after it;
`pytest` runs the whole suite: 351 passed.
"""


def test_pr_description_rules():
    assert upstream.pr_description_problems(GOOD_PR) == []
    assert upstream.pr_description_problems("") == ["the description is empty"]
    assert upstream.pr_description_problems(None) == ["the description is empty"]
    cases = {
        GOOD_PR.replace("## Why", "## Reason"): "'why'",
        GOOD_PR.replace("## How tested", "## Notes"): "'how tested'",
        GOOD_PR.replace("Compare numeric prerelease identifiers by their digits instead of converting them to int.",
                        "A fix."): "too thin",
        GOOD_PR.replace("Fixes #487", "Fixes it"): "names no issue",
        GOOD_PR.replace("`pytest`", "the suite"): "command",
        GOOD_PR + "word " * 400: "words",
        GOOD_PR + "TBD\n": "placeholder",
    }
    for text, expected in cases.items():
        problems = upstream.pr_description_problems(text)
        assert any(expected in p for p in problems), (expected, problems)
