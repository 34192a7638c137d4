"""The book builds clean from scratch, with warnings as errors, and shows every lab."""
from __future__ import annotations

from conftest import RELEASE, ROOT


def test_book_builds_clean_and_shows_the_labs(built_book):
    assert (built_book / "index.html").is_file()
    for lab in RELEASE.glob("phase*/*.ipynb"):
        page = built_book / lab.relative_to(ROOT).with_suffix(".html")
        text = page.read_text()
        assert "colab.research.google.com" in text and "mybinder.org" in text, f"{page.name}: no launch buttons"
        assert "YOUR CODE HERE" in text, f"{page.name}: the page should show the student copy"
    for page in ("book/instructor.html", "book/phase1/index.html", "book/phase2/index.html", "book/phase3/index.html"):
        assert (built_book / page).is_file(), page


def test_landing_figure_matches_the_plan(tmp_path):
    """The plan figure on the landing page is drawn from labkit.course.plan; regenerate it when the plan changes."""
    from labkit.course.plan import plan_timeline

    committed = ROOT / "book" / "images" / "plan-at-a-glance.svg"
    plan_timeline(tmp_path / "plan.svg")
    assert committed.read_bytes() == (tmp_path / "plan.svg").read_bytes(), (
        "book/images/plan-at-a-glance.svg is out of date; regenerate it: .venv/bin/python -c "
        "\"from labkit.course.plan import plan_timeline; plan_timeline('book/images/plan-at-a-glance.svg')\"")
    assert "plan-at-a-glance.svg" in (ROOT / "book" / "intro.md").read_text(), "the landing page shows the plan"
