"""The one reader of nbgrader's cell metadata, for the course's tools and tests.

A cell is a dict as in the notebook's JSON or an ``nbformat`` node (both support ``get``).
"""
from __future__ import annotations


def nbgrader(cell) -> dict:
    """The cell's nbgrader metadata, or an empty dict for a cell nbgrader does not track."""
    return (cell.get("metadata") or {}).get("nbgrader") or {}


def name(cell, index: int) -> str:
    """The cell's nbgrader ``grade_id``, or ``cell <index>`` when it has none."""
    return nbgrader(cell).get("grade_id") or f"cell {index}"


def is_graded_test(cell) -> bool:
    """A code cell that earns points by its checks (graded, not an answer cell)."""
    meta = nbgrader(cell)
    return cell.get("cell_type") == "code" and meta.get("grade") is True and not meta.get("solution")


def graded_tests(cells) -> dict[int, str]:
    """Cell index -> name for every graded test cell."""
    return {index: name(cell, index) for index, cell in enumerate(cells) if is_graded_test(cell)}
