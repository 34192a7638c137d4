"""Test lanes: a fast one for the edit-test loop, and the full suite that CI runs.

    python -m pytest -m "not slow"     # fast lane: no server starts, no autograding, no browser
    bash .ci/test                      # lint, fast lane, then the slow tests: the whole suite

A test is slow when its module (or its own node id) is listed in ``SLOW`` below, with the
reason; everything else is in the fast lane. ``.ci/test`` sets ``LABKIT_TEST_LANE=full``, and
then a missing prerequisite (Chromium, Prometheus, bubblewrap, the vLLM environment) fails
with its fix instead of skipping, so CI can never pass by skipping.
"""
from __future__ import annotations

import os

import pytest

FULL_LANE = os.environ.get("LABKIT_TEST_LANE") == "full"

# Node-id prefix -> why it is slow.
SLOW = {
    "tests/test_autograder.py": "autogrades every lab (reference, stub, tampered copies)",
    "tests/test_adversarial.py": "autogrades attacks in the sandbox",
    "tests/test_site.py": "opens the built site in Chromium",
    "tests/test_book.py::test_book_builds_clean_and_shows_the_labs": "builds the whole book",
    "tests/test_colab_route.py": "builds a fresh environment and runs two labs",
    "tests/test_grading.py": "autogrades a small course",
    "tests/test_monitoring.py": "starts Prometheus",
    "tests/test_serving.py": "starts server processes",
    "tests/test_vectordb.py::test_throwaway_postgres": "starts PostgreSQL",
    "tests/test_public_tree.py::test_its_readme_commands_work_there": "builds and tests the public course",
    "tests/test_shared_servers.py": "starts server processes",
    "tests/test_classgrade.py": "autogrades a class with parallel nbgrader processes",
    "tests/test_gpu_shapes.py::test_quick_run_without_the_course_package": "trains and encodes with real-shaped models",
}


def slow_reason(nodeid: str) -> str | None:
    """Why the test with this node id is in the slow lane, or None for the fast lane."""
    for prefix, reason in SLOW.items():
        if nodeid == prefix or nodeid.startswith(prefix + "::") or nodeid.startswith(prefix + "["):
            return reason
        if "::" in prefix and nodeid.startswith(prefix):  # a test and its parametrised cases
            return reason
    return None


def require(available: bool, what: str, fix: str) -> None:
    """Skip without ``what`` in the fast lane; fail with ``fix`` in the full lane (CI)."""
    if available:
        return
    if FULL_LANE:
        pytest.fail(f"{what} is missing, and the full test lane needs it: {fix}")
    pytest.skip(f"{what} is missing ({fix})")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: in the full lane only (see tests/lanes.py for why)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if slow_reason(item.nodeid):
            item.add_marker(pytest.mark.slow)
