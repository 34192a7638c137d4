"""The set-up block that opens every lab: one template, one install source, and how it behaves."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import pytest

from conftest import RELEASE, ROOT, SOURCE_LABS
from labkit import launch

STUDENT_COPIES = sorted(RELEASE.glob("phase*/*.ipynb"))


def block_for_this_course() -> str:
    source = launch.read_source(ROOT)
    return launch.render(source.repository, source.ref)


def test_install_source_is_the_books_repository_at_a_release():
    """_config.yml's repository.url (the launch buttons' URL) is the URL the labs install from,
    at a tag equal to the package's version (or a full commit id)."""
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    source = launch.read_source(ROOT)
    assert source.repository == config["repository"]["url"]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    if source.ref.startswith("v"):
        assert source.ref == f"v{version}", f"the labs install {source.ref}, but pyproject.toml says version {version}"
    assert source.requirement.startswith("labkit[colab] @ git+https://github.com/")


@pytest.mark.parametrize("path", SOURCE_LABS + STUDENT_COPIES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_lab_opens_with_the_block(path):
    assert launch.block_in(path) == block_for_this_course(), (
        f"{path.relative_to(ROOT)}: its first code cell does not start with the set-up block for "
        "_config.yml's repository and ref. Run: python -m labkit.launch apply --regenerate")


def test_no_lab_tells_anyone_to_pip_install_the_namesake():
    """The name labkit on the package index is someone else's: install only from the repository."""
    for path in SOURCE_LABS + STUDENT_COPIES:
        text = path.read_text(encoding="utf-8")
        for bad in ("pip install labkit", "pip install -U labkit", "pip install --upgrade labkit"):
            assert bad not in text, f"{path.name} says `{bad}`"


@pytest.mark.parametrize("config, wrong", [
    ("repository: {url: 'https://github.com/OWNER/REPOSITORY'}\nlaunch_install_ref: v1.0.0\n", "placeholder"),
    ("repository: {url: 'https://gitlab.com/a/b'}\nlaunch_install_ref: v1.0.0\n", "GitHub"),
    ("repository: {url: 'https://github.com/a/b'}\nlaunch_install_ref: main\n", "one release"),
    ("repository: {url: 'https://github.com/a/b'}\n", "one release"),
])
def test_bad_install_sources_are_refused_with_the_fix(tmp_path, config, wrong):
    (tmp_path / "_config.yml").write_text(config)
    with pytest.raises(launch.LaunchError, match=wrong):
        launch.read_source(tmp_path)


def legacy_notebook() -> dict:
    code = ("import numpy as np\n\ntry:\n    import labkit\nexcept ImportError as error:\n    raise ImportError(\n"
            "        \"labkit is not installed\"\n    ) from error\n\nfrom labkit import data\n")
    return {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# Lab\n"]},
                      {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                       "source": code.splitlines(keepends=True)}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_apply_replaces_the_old_import_and_is_idempotent(tmp_path):
    path = tmp_path / "lab.ipynb"
    path.write_text(json.dumps(legacy_notebook(), indent=1) + "\n")
    first = launch.render("https://github.com/a/b", "v1.0.0")
    assert launch.apply_to(path, first)
    code = "".join(json.loads(path.read_text())["cells"][1]["source"])
    assert code.startswith(first) and code.endswith("import numpy as np\n\nimport labkit\n\nfrom labkit import data\n")
    assert "ImportError" not in code.removeprefix(first)
    assert not launch.apply_to(path, first), "a second apply must change nothing"
    second = launch.render("https://github.com/a/b", "v1.0.1")
    assert launch.apply_to(path, second)
    assert launch.block_in(path) == second and path.read_text().count("_course_setup()") == 1


def run_block(block: str, **env) -> subprocess.CompletedProcess:
    """The block in a fresh interpreter that cannot see the course's package (-S: no site-packages,
    so neither the editable install nor anything else; no PYTHONPATH), as on a runtime without it."""
    environment = {k: v for k, v in os.environ.items() if k not in ("NBGRADER_EXECUTION", "PYTHONPATH")}
    return subprocess.run([sys.executable, "-S", "-c", block], capture_output=True, text=True, timeout=120,
                          env=dict(environment, **env))


def test_block_does_nothing_where_the_course_is_installed():
    done = subprocess.run([sys.executable, "-c", block_for_this_course()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""


def test_block_never_installs_under_the_autograder():
    done = run_block(block_for_this_course(), NBGRADER_EXECUTION="autograde")
    assert done.returncode != 0 and "grading environment lacks the course's package" in done.stderr
    assert "Installing" not in done.stdout


def test_block_stops_on_a_placeholder_repository():
    done = run_block(launch.render("https://github.com/OWNER/REPOSITORY", "v0.1.0"))
    assert done.returncode != 0 and "set repository.url in _config.yml" in done.stderr


def test_a_failed_install_names_the_cause_and_keeps_going_possible(tmp_path):
    missing = (tmp_path / "no-such-repository").as_uri()
    done = run_block(launch.render(missing, "v0.1.0"), PIP_NO_INDEX="1")
    assert done.returncode != 0
    assert "failed (exit" in done.stderr and "run this cell again; your edits are kept" in done.stderr
    assert "no-such-repository" in done.stderr


def test_check_command_reports_a_stale_lab(tmp_path):
    path = tmp_path / "lab.ipynb"
    path.write_text(json.dumps(legacy_notebook(), indent=1) + "\n")
    assert launch.main(["check", str(path)]) == 1
    assert launch.main(["apply", str(path)]) == 0
    assert launch.main(["check", str(path)]) == 0
