"""The labs as this repository has them: the copies learners work in, their skeleton and checks.

The labs' sources, with the reference solutions and the hidden tests, are kept by the
course's instructors; these checks need only the student copies.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COPIES = sorted((ROOT / "notebooks").glob("phase*/*.ipynb"))
PHASES = ("phase1", "phase2", "phase3")
SKELETON = ["Overview", "Prerequisites", "Time to learn", "Setup", "Summary", "What's next"]


def cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def test_every_phase_has_labs():
    assert {p.parent.name for p in COPIES} == set(PHASES), "a phase without labs under notebooks/"


@pytest.mark.parametrize("path", COPIES, ids=lambda p: p.name)
def test_copy_follows_the_skeleton(path):
    markdown = "\n".join("".join(c["source"]) for c in cells(path) if c["cell_type"] == "markdown")
    headings = re.findall(r"^#+\s+(.*)$", markdown, flags=re.M)
    for section in SKELETON:
        assert any(h.startswith(section) for h in headings), f"{path.name} lacks a '{section}' section"
    assert re.search(r"difficulty", markdown, flags=re.I), f"{path.name} does not state difficulty"
    assert re.match(r"\d\d_[a-z0-9_]+\.ipynb$", path.name), f"{path.name}: labs are named NN_slug.ipynb"


@pytest.mark.parametrize("path", COPIES, ids=lambda p: p.name)
def test_exercises_are_stubs_and_checks_are_locked(path):
    exercises = [c for c in cells(path) if nbgrader(c).get("solution") and c["cell_type"] == "code"]
    checks = [c for c in cells(path) if nbgrader(c).get("grade")]
    assert len(exercises) >= 3, f"{path.name}: a lab has at least three exercises"
    for cell in exercises:
        assert "raise NotImplementedError" in "".join(cell["source"]), f"{nbgrader(cell)['grade_id']}: not a stub"
    for cell in checks:
        meta, text = nbgrader(cell), "".join(cell["source"])
        assert meta.get("locked") and meta.get("points", 0) > 0, f"{meta['grade_id']}: checks are locked and worth points"
        assert "assert" in text, f"{meta['grade_id']}: a check without an assert cannot fail"


@pytest.mark.parametrize("path", COPIES, ids=lambda p: p.name)
def test_each_lab_is_a_page_of_the_book(path):
    assert str(path.relative_to(ROOT).with_suffix("")) in (ROOT / "_toc.yml").read_text(), f"{path.name} is not in _toc.yml"
