"""The test lanes: which tests are slow, and prerequisites that fail in the full lane."""
from __future__ import annotations

import pytest

import lanes


def test_slow_tests_are_classified_by_module_and_by_test():
    assert lanes.slow_reason("tests/test_autograder.py::test_reference_runs_clean_and_scores_full_marks[03_rag]")
    assert lanes.slow_reason("tests/test_book.py::test_book_builds_clean_and_shows_the_labs")
    assert lanes.slow_reason("tests/test_vectordb.py::test_throwaway_postgres_with_pgvector_starts_and_stops")
    assert lanes.slow_reason("tests/test_book.py::test_landing_figure_matches_the_plan") is None
    assert lanes.slow_reason("tests/test_autograder_helpers.py::test_x") is None, "a prefix of a file name is not a match"


def test_every_listed_file_exists():
    from conftest import ROOT

    missing = [prefix for prefix in lanes.SLOW if not (ROOT / prefix.split("::")[0]).exists()]
    assert not missing, f"tests/lanes.py lists files that do not exist: {missing}"


def test_a_missing_prerequisite_skips_in_the_fast_lane_and_fails_in_the_full_lane(monkeypatch):
    lanes.require(True, "anything", "nothing to do")  # present: nothing happens
    monkeypatch.setattr(lanes, "FULL_LANE", False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install thing"):
        lanes.require(False, "Thing", "apt-get install thing")
    monkeypatch.setattr(lanes, "FULL_LANE", True)
    with pytest.raises(pytest.fail.Exception, match="Thing is missing.*apt-get install thing"):
        lanes.require(False, "Thing", "apt-get install thing")
