"""The benchmarks stay in step with the labs they measure.

Every benchmark starts (``--help``), and every way a benchmark reaches a lab through
``benchmarks/_reference.py`` (a whole-lab run and the results file it reads, solution cells
by grade id, literals from cells) is checked against the current source labs, so renaming a
graded cell or a results file fails here instead of breaking a benchmark silently.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

BENCHMARKS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import _reference  # noqa: E402

HELPERS = {"run_lab", "reference_functions", "literal_from_cell", "literal_from_code"}


def uses_of_the_labs(path: Path) -> list[tuple[str, list, dict]]:
    """(helper, positional args, keyword args) of every call to a _reference helper, with
    module-level string constants resolved; arguments that are not literals come back as None."""
    tree = ast.parse(path.read_text())
    constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                 for target in node.targets if isinstance(target, ast.Name)
                 and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}

    def value(node):
        if isinstance(node, ast.Name):
            return constants.get(node.id)
        try:
            return ast.literal_eval(node)
        except ValueError:
            return None

    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in HELPERS:
            calls.append((node.func.id, [value(a) for a in node.args], {k.arg: value(k.value) for k in node.keywords}))
    return calls


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_starts(path):
    done = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_what_a_benchmark_reads_from_a_lab_is_there(path):
    for helper, args, kwargs in uses_of_the_labs(path):
        lab = args[0]
        assert isinstance(lab, str), f"{path.name}: {helper} names its lab with a literal or a module constant"
        source = _reference.lab_source(lab)  # SystemExit when the lab is gone
        if helper == "reference_functions":
            _reference.reference_functions(lab, args[1])  # SystemExit names the missing cells
        elif helper == "literal_from_cell":
            _reference.literal_from_cell(lab, args[1], args[2])
        elif helper == "literal_from_code":
            _reference.literal_from_code(lab, args[1])
        elif helper == "run_lab":
            results_file = kwargs["results_file"]
            assert results_file and results_file in source.read_text(), (
                f"{path.name} reads {results_file}, which {source.name} no longer writes")


def test_a_renamed_cell_is_a_clear_error():
    with pytest.raises(SystemExit, match="no cells \\['no_such_cell'\\]"):
        _reference.reference_functions("03_rag_with_eval", {"no_such_cell"})
    with pytest.raises(SystemExit, match="no source notebook"):
        _reference.lab_source("99_missing")


def test_the_scan_finds_the_uses():
    found = {helper for path in BENCHMARKS for helper, _, _ in uses_of_the_labs(path)}
    assert {"run_lab", "reference_functions", "literal_from_cell"} <= found
