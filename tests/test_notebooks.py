"""Static checks of every lab: clean commits, student copies in sync, the lab skeleton."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from conftest import PHASES, RELEASE, ROOT, SOURCE_LABS

ALL_NOTEBOOKS = SOURCE_LABS + sorted(RELEASE.glob("phase*/*.ipynb"))
SKELETON = ["Overview", "Prerequisites", "Time to learn", "Setup", "Summary", "What's next"]


def cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def test_there_is_at_least_one_lab():
    assert SOURCE_LABS, "no source notebooks under autograder/source"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_without_outputs(path):
    dirty = [i for i, c in enumerate(cells(path))
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.relative_to(ROOT)}: cells {dirty} carry outputs or execution counts; clear them before committing"


@pytest.mark.parametrize("path", SOURCE_LABS, ids=lambda p: p.name)
def test_source_lab_follows_the_skeleton(path):
    markdown = "\n".join("".join(c["source"]) for c in cells(path) if c["cell_type"] == "markdown")
    headings = re.findall(r"^#+\s+(.*)$", markdown, flags=re.M)
    for section in SKELETON:
        assert any(h.startswith(section) for h in headings), f"{path.name} lacks a '{section}' section"
    assert re.search(r"difficulty", markdown, flags=re.I), f"{path.name} does not state difficulty"
    assert re.match(r"\d\d_[a-z0-9_]+\.ipynb$", path.name), f"{path.name}: name labs NN_slug.ipynb"


@pytest.mark.parametrize("path", SOURCE_LABS, ids=lambda p: p.name)
def test_graded_cells_are_well_formed(path):
    graded = [c for c in cells(path) if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    solutions = [c for c in cells(path) if c.get("metadata", {}).get("nbgrader", {}).get("solution")]
    assert len(solutions) >= 3, f"{path.name}: a lab needs at least three graded exercises"
    for cell in graded:
        meta, text = cell["metadata"]["nbgrader"], "".join(cell["source"])
        assert meta.get("locked") and meta.get("points", 0) > 0, f"{meta['grade_id']}: tests must be locked and worth points"
        assert "assert" in text, f"{meta['grade_id']}: a test cell without an assert cannot fail"
    hidden = sum("### BEGIN HIDDEN TESTS" in "".join(c["source"]) for c in graded)
    assert hidden >= len(solutions), f"{path.name}: every exercise needs hidden tests beyond the visible ones"
    for cell in solutions:
        assert "### BEGIN SOLUTION" in "".join(cell["source"]), "solution cells mark their answer"


@pytest.mark.parametrize("path", sorted(RELEASE.glob("phase*/*.ipynb")), ids=lambda p: p.name)
def test_student_copy_hides_answers(path):
    text = "".join("".join(c["source"]) for c in cells(path))
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS"):
        assert marker not in text, f"{path.relative_to(ROOT)} contains '{marker}'"


def test_student_copies_match_a_fresh_generation(course_copy):
    """notebooks/ must be exactly what `nbgrader generate_assignment` makes from the source."""
    fresh = {p.relative_to(course_copy / "notebooks"): p for p in (course_copy / "notebooks").glob("phase*/*.ipynb")}
    committed = {p.relative_to(RELEASE): p for p in RELEASE.glob("phase*/*.ipynb")}
    assert sorted(fresh) == sorted(committed), "notebooks/ and autograder/source/ hold different labs"
    stale = [str(name) for name in fresh if fresh[name].read_bytes() != committed[name].read_bytes()]
    assert not stale, (f"student copies out of sync with their source: {stale}. Regenerate them: "
                       "cd autograder && nbgrader generate_assignment phaseN --force")


def test_every_student_copy_is_in_the_book():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = set(re.findall(r"file: (\S+)", (ROOT / "_toc.yml").read_text()))
    assert toc["format"] == "jb-book"
    for path in RELEASE.glob("phase*/*.ipynb"):
        assert str(path.relative_to(ROOT).with_suffix("")) in files, f"{path.name} is missing from _toc.yml"
    assert {p.parent.name for p in SOURCE_LABS} <= set(PHASES)
