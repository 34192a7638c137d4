"""The GitHub Actions workflow that tests the course and publishes the book, checked offline."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def check_jsonschema() -> str:
    found = Path(sys.executable).parent / "check-jsonschema"
    if found.exists():
        return str(found)
    on_path = shutil.which("check-jsonschema")
    if not on_path:
        pytest.fail("check-jsonschema is missing: it is pinned in the dev extra (pip install -e '.[dev]')")
    return on_path


def test_there_is_a_workflow():
    assert WORKFLOWS, "no workflow under .github/workflows"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_github_schema(path):
    """check-jsonschema's vendored schema for GitHub workflows; no network needed."""
    done = subprocess.run([check_jsonschema(), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_schema_check_can_fail(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("name: broken\non: push\njobs:\n  test:\n    steps:\n      - run: true\n")  # no runs-on
    done = subprocess.run([check_jsonschema(), "--builtin-schema", "vendor.github-workflows", str(broken)],
                          capture_output=True, text=True)
    assert done.returncode != 0


def test_workflow_runs_the_tests_then_publishes_the_book():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "course.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert "main" in triggers["push"]["branches"] and "pull_request" in triggers
    test, publish = workflow["jobs"]["test"], workflow["jobs"]["publish"]
    runs = [step.get("run", "") for step in test["steps"]]
    assert any(run.strip() == "bash .ci/run" for run in runs), "the workflow must run the course's CI entry point"
    uploads = [step for step in test["steps"] if str(step.get("uses", "")).startswith("actions/upload-pages-artifact")]
    assert uploads and uploads[0]["with"]["path"] == "_build/html"
    assert "jupyter-book build ." in (ROOT / ".ci" / "setup").read_text(), "the site must be built where it is uploaded from"
    assert publish["needs"] == "test" and "refs/heads/main" in publish["if"]
    assert publish["permissions"] == {"pages": "write", "id-token": "write"}
    assert any(str(step.get("uses", "")).startswith("actions/deploy-pages") for step in publish["steps"])
    assert test["timeout-minutes"] <= 90


def test_check_jsonschema_is_pinned_in_the_dev_extra():
    import tomllib

    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert any(dep.startswith("check-jsonschema==") for dep in dev)
