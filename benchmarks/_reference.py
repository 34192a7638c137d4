"""The one way the benchmarks reach a lab's reference solution (its instructor source notebook).

The answers to the exercises live only in the labs (autograder/source/...), so a benchmark
either runs the whole reference lab in a fresh kernel (``run_lab``) and reads the results
file the lab writes, or executes a few of its solution cells (``reference_functions``) and
reads literals from its cells (``literal_from_cell``, ``literal_from_code``). Each fails
with a message naming the lab and the cell when the lab has changed under the benchmark;
tests/test_benchmarks.py checks every such use against the current labs.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "autograder" / "source"


def lab_source(lab: str) -> Path:
    """The source notebook of ``lab``, named by its file name or its stem (``03_rag_with_eval``)."""
    name = lab if lab.endswith(".ipynb") else f"{lab}.ipynb"
    found = sorted(SOURCE.glob(f"phase*/{name}"))
    if not found:
        raise SystemExit(f"no source notebook {name} under {SOURCE}: the benchmarks need the instructor's source notebooks")
    return found[0]


def _cells(lab: str) -> list[dict]:
    return json.loads(lab_source(lab).read_text())["cells"]


def _grade_id(cell: dict) -> str | None:
    return (cell.get("metadata") or {}).get("nbgrader", {}).get("grade_id")


def run_lab(lab: str, out: Path, *, quick: bool, timeout: int, results_file: str, extra_env: dict | None = None):
    """Execute the reference lab top to bottom in a fresh kernel, as CI and a learner run it.

    The executed copy goes to ``out``, the lab writes into ``out/results``; returns the run
    (wall time, peak memory) and the numbers of ``results_file``.
    """
    from labkit.course.labrun import run_notebook

    source = lab_source(lab)
    results = Path(out) / "results"
    run = run_notebook(source, Path(out) / source.name, timeout=timeout, quick=quick,
                       extra_env={"LABKIT_RESULTS": str(results), **(extra_env or {})})
    path = results / results_file
    if not path.is_file():
        raise SystemExit(f"{source.name} ran but wrote no {results_file} into {results}: "
                         "the lab's results file was renamed; update the benchmark")
    return run, json.loads(path.read_text())


def reference_functions(lab: str, grade_ids, namespace: dict | None = None) -> dict:
    """Execute the solution cells ``grade_ids`` of ``lab`` and return the names they define."""
    namespace = dict(namespace or {})
    namespace.setdefault("np", np)
    cells = [cell for cell in _cells(lab) if _grade_id(cell) in grade_ids]  # in the lab's order
    missing = sorted(set(grade_ids) - {_grade_id(cell) for cell in cells})
    if missing:
        raise SystemExit(f"{lab} has no cells {missing}: the lab's graded cells were renamed; update the benchmark")
    for cell in cells:
        exec(compile("".join(cell["source"]), f"{lab}:{_grade_id(cell)}", "exec"), namespace)
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
        if _grade_id(cell) == grade_id:
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
