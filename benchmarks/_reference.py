"""Load the reference answers of a lab from its instructor source notebook.

The answers to the exercises live only in the labs (autograder/source/...), so the
benchmarks run the labs' own reference code instead of keeping a second copy of it.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "autograder" / "source" / "phase1"


def _cells(lab: str) -> list[dict]:
    path = SOURCE / lab
    if not path.is_file():
        raise SystemExit(f"{path} is missing: the benchmarks need the instructor's source notebooks")
    return json.loads(path.read_text())["cells"]


def reference_functions(lab: str, grade_ids, namespace: dict | None = None) -> dict:
    """Execute the solution cells ``grade_ids`` of ``lab`` and return the names they define."""
    namespace = dict(namespace or {})
    namespace.setdefault("np", np)
    for cell in _cells(lab):
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") in grade_ids:
            exec(compile("".join(cell["source"]), f"{lab}:{cell['metadata']['nbgrader']['grade_id']}", "exec"), namespace)
    return namespace


def _assigned_literal(source: str, name: str):
    """The literal value assigned to ``name`` in the Python ``source``; ``KeyError`` if none is."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise KeyError(name)


def literal_from_cell(lab: str, grade_id: str, name: str):
    """The literal value assigned to ``name`` in the cell ``grade_id`` (hidden tests included)."""
    for cell in _cells(lab):
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            try:
                return _assigned_literal("".join(cell["source"]), name)
            except KeyError:
                pass
    raise SystemExit(f"{name} not found in cell {grade_id} of {lab}")


def literal_from_code(lab: str, name: str):
    """The literal value assigned to ``name`` in any code cell of ``lab``."""
    for cell in _cells(lab):
        if cell["cell_type"] != "code":
            continue
        try:
            return _assigned_literal("".join(cell["source"]), name)
        except (SyntaxError, KeyError):
            continue
    raise SystemExit(f"{name} not found in {lab}")
