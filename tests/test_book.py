"""The book builds clean from scratch, with warnings as errors, and shows every lab."""
from __future__ import annotations

import html

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
    problems = [problem for stem in reference_run.PAGES for problem in reference_run_problems(built_book, stem)]
    assert not problems, "\n".join(problems)


def reference_run_problems(built_book, stem: str) -> list[str]:
    """What is wrong with the section on lab ``stem``'s page: it shows the run saved under
    _build/reference-run (numbers, figures, commit) when there is one, else the placeholder."""
    page = built_book / f"{reference_run.PAGES[stem].docname}.html"
    text = page.read_text()
    if 'id="the-reference-run"' not in text:
        return [f"{page.name}: no section on the reference run"]
    try:
        reference = reference_run.load(stem, ROOT)
    except reference_run.ReferenceRunError:
        return [] if "published site shows here" in text else [f"{page.name}: neither the run nor the placeholder"]
    problems = [] if (reference.run["commit"] or "unknown")[:10] in text else [f"{page.name}: the run's commit is not stated"]
    for path, _ in reference.figures:
        shown = built_book / "_images" / path.name
        if not (shown.is_file() and shown.read_bytes() == path.read_bytes() and f"_images/{path.name}" in text):
            problems.append(f"{page.name}: does not show the run's {path.name}")
    shown_text = text.replace("&#8217;", "'")
    problems += [f"{page.name}: {label} = {value} is missing" for label, value in reference.numbers
                 if html.escape(value, quote=False) not in shown_text]
    return problems


def test_landing_figure_matches_the_plan(tmp_path):
    """The plan figure on the landing page is drawn from labkit.course.plan; regenerate it when the plan changes."""
    from labkit.course.plan import plan_timeline

    committed = ROOT / "book" / "images" / "plan-at-a-glance.svg"
    plan_timeline(tmp_path / "plan.svg")
    assert committed.read_bytes() == (tmp_path / "plan.svg").read_bytes(), (
        "book/images/plan-at-a-glance.svg is out of date; regenerate it: .venv/bin/python -c "
        "\"from labkit.course.plan import plan_timeline; plan_timeline('book/images/plan-at-a-glance.svg')\"")
    assert "plan-at-a-glance.svg" in (ROOT / "book" / "intro.md").read_text(), "the landing page shows the plan"
