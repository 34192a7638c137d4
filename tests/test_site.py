"""The built site in a real headless Chromium: every page in the table of contents opens,
renders content, loads its images, and links only to pages and anchors that exist.
Screenshots of the landing page and a lab page are saved as test artefacts."""
from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest
import yaml

from conftest import ROOT
from lanes import require

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTEFACTS = ROOT / "_build" / "test-artifacts"
# Flags for a headless browser on a machine without outside network (no background calls).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def toc_pages() -> list[str]:
    """Every page of _toc.yml as a path relative to the site root, e.g. book/intro.html."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return [f"{page}.html" for page in pages]


@pytest.fixture(scope="module")
def site(built_book):
    handler = functools.partial(QuietHandler, directory=str(built_book))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", built_book
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    require(CHROMIUM is not None, "Chromium", "apt-get install chromium (bash .ci/test does it when run as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def anchors_of(html_file: Path) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', html_file.read_text(encoding="utf-8")))


def test_every_page_renders_with_working_links_and_images(site, browser):
    base, root = site
    page = browser.new_page()
    failures, links = [], set()
    broken_loads = []
    page.on("response", lambda r: broken_loads.append(f"{r.status} {r.url}")
            if r.url.startswith(base) and r.status >= 400 else None)
    page.on("requestfailed", lambda r: broken_loads.append(f"failed {r.url}") if r.url.startswith(base) else None)
    for path in toc_pages():
        url = urljoin(base, path)
        response = page.goto(url, wait_until="load")
        if response is None or response.status != 200:
            failures.append(f"{path}: HTTP {response.status if response else 'no response'}")
            continue
        text = page.inner_text("main") if page.query_selector("main") else ""
        if len(text.strip()) < 200:
            failures.append(f"{path}: renders almost empty ({len(text.strip())} characters)")
        for image in page.eval_on_selector_all("main img", "els => els.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"):
            failures.append(f"{path}: image did not load: {image}")
        for href in page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)"):
            if href.startswith(base):
                links.add((path, href))
    for source, href in sorted(links):
        target, fragment = urldefrag(href)
        local = root / urlparse(target).path.lstrip("/")
        if local.is_dir():
            local = local / "index.html"
        if not local.is_file():
            failures.append(f"{source}: broken link to {href}")
        elif fragment and local.suffix == ".html" and fragment not in anchors_of(local):
            failures.append(f"{source}: link to a missing anchor {href}")
    failures += [f"resource: {b}" for b in sorted(set(broken_loads))]
    assert not failures, "\n".join(failures)


def test_screenshots_of_landing_and_lab_pages(site, browser):
    base, _ = site
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    pages = toc_pages()
    lab = next(p for p in pages if p.startswith("notebooks/"))
    for name, path in (("landing", pages[0]), ("lab", lab)):
        page.goto(urljoin(base, path), wait_until="networkidle")
        shot = ARTEFACTS / f"{name}.png"
        page.screenshot(path=str(shot), full_page=False)
        assert shot.stat().st_size > 20_000, f"{shot} looks blank"
    assert "Backend to AI Engineer" in page.title() or page.query_selector("main")


def test_search_finds_pages(site, browser):
    base, _ = site
    page = browser.new_page()
    page.goto(urljoin(base, "search.html?q=continuous+batching"), wait_until="networkidle")
    page.wait_for_selector("#search-results ul.search li", timeout=20_000)
    hits = page.eval_on_selector_all("#search-results ul.search li a", "els => els.map(a => a.href)")
    assert any("glossary" in hit or "phase2" in hit for hit in hits), hits
