"""The book builds clean from scratch, with warnings as errors, and shows every lab."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import RELEASE, ROOT, venv_env


def test_book_builds_clean(tmp_path):
    jb = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run([str(jb), "build", str(ROOT), "--all", "-W", "-n", "--keep-going",
                             "--path-output", str(tmp_path)], env=venv_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    html = tmp_path / "_build" / "html"
    assert (html / "index.html").is_file()
    for lab in RELEASE.glob("phase*/*.ipynb"):
        page = html / lab.relative_to(ROOT).with_suffix(".html")
        text = page.read_text()
        assert "colab.research.google.com" in text and "mybinder.org" in text, f"{page.name}: no launch buttons"
        assert "YOUR CODE HERE" in text, f"{page.name}: the page should show the student copy"
    for page in ("book/instructor.html", "book/phase1/index.html", "book/phase2/index.html", "book/phase3/index.html"):
        assert (html / page).is_file(), page
