"""labkit's two halves: the runtime the labs import, and the course's tooling (labkit.course).

A runtime module that imported the tooling would drag nbgrader and the CLI into every
learner's kernel and blur who owns what; this fails when one does.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "labkit"
RUNTIME = sorted(p for p in PACKAGE.glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the labkit modules a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x / from .x import y, inside labkit
                base = "labkit" + (f".{base}" if base else "")
            found.update(f"{base}.{alias.name}" for alias in node.names)
            found.add(base)
    return {name for name in found if name.startswith("labkit")}


@pytest.mark.parametrize("path", RUNTIME, ids=lambda p: p.name)
def test_runtime_module_does_not_import_the_course_tooling(path):
    tooling = sorted(name for name in imported_modules(path) if name.startswith("labkit.course"))
    assert not tooling, f"{path.name} imports {tooling}: move the shared code into a runtime module"


def test_no_lab_imports_the_course_tooling():
    labs = sorted(ROOT.glob("autograder/source/phase*/*.ipynb"))
    assert labs
    for lab in labs:
        code = "\n".join("".join(c["source"]) for c in json.loads(lab.read_text())["cells"] if c["cell_type"] == "code")
        for line in code.splitlines():
            if "import" in line and "labkit.course" in line:
                pytest.fail(f"{lab.name} imports the course tooling: {line.strip()}")


def test_the_checker_sees_a_relative_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from .course import plan\nfrom . import models\n")
    assert {"labkit.course.plan", "labkit.models"} <= imported_modules(module)
