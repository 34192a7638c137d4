"""The book builds clean from scratch, with warnings as errors, and shows every lab."""
from __future__ import annotations

import html

import pytest

from conftest import RELEASE, ROOT
from labkit.course import reference_run


def test_book_builds_clean_and_shows_the_labs(built_book):
    assert (built_book / "index.html").is_file()
    for lab in RELEASE.glob("phase*/*.ipynb"):
        page = built_book / lab.relative_to(ROOT).with_suffix(".html")
        text = page.read_text()
        assert "colab.research.google.com" in text and "mybinder.org" in text, f"{page.name}: no launch buttons"
        assert "YOUR CODE HERE" in text, f"{page.name}: the page should show the student copy"
    for page in ("book/instructor.html", "book/phase1/index.html", "book/phase2/index.html", "book/phase3/index.html"):
        assert (built_book / page).is_file(), page


@pytest.mark.parametrize("stem", reference_run.PAGES)
def test_lab_page_ends_with_the_reference_run(built_book, stem):
    """The page shows the run saved under _build/reference-run when there is one, else says the site shows it."""
    page = built_book / f"{reference_run.PAGES[stem].docname}.html"
    text = page.read_text()
    assert 'id="the-reference-run"' in text, f"{page.name}: no section on the reference run"
    try:
        reference = reference_run.load(stem, ROOT)
    except reference_run.ReferenceRunError:
        assert "published site shows here" in text, f"{page.name}: neither the run nor the placeholder"
        return
    assert reference.run["commit"][:10] in text and "quick mode" in text
    for path, _ in reference.figures:
        shown = built_book / "_images" / path.name
        assert shown.is_file() and shown.read_bytes() == path.read_bytes(), f"{page.name}: {path.name} is not the run's"
        assert f"_images/{path.name}" in text
    for label, value in reference.numbers:
        assert html.escape(value, quote=False) in text.replace("&#8217;", "'"), f"{page.name}: {label} = {value} missing"


def test_landing_figure_matches_the_plan(tmp_path):
    """The plan figure on the landing page is drawn from labkit.course.plan; regenerate it when the plan changes."""
    from labkit.course.plan import plan_timeline

    committed = ROOT / "book" / "images" / "plan-at-a-glance.svg"
    plan_timeline(tmp_path / "plan.svg")
    assert committed.read_bytes() == (tmp_path / "plan.svg").read_bytes(), (
        "book/images/plan-at-a-glance.svg is out of date; regenerate it: .venv/bin/python -c "
        "\"from labkit.course.plan import plan_timeline; plan_timeline('book/images/plan-at-a-glance.svg')\"")
    assert "plan-at-a-glance.svg" in (ROOT / "book" / "intro.md").read_text(), "the landing page shows the plan"
