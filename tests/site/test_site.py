"""The instructor's decks and the static site, opened in a real browser.

Headless Chromium (Debian's package, driven by Playwright, no browser downloaded) opens
the index, every notebook's page and every deck from a local web server: each loads with
no console error, no failed request, and every image rendered. Screenshots are kept in
build/screenshots/ for review. The site is built as `make site` builds it, from the
executed notebooks (`make notebooks`; run here when they are missing or stale).
"""

import functools
import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from conftest import page_problems

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "build" / "site"
SHOTS = ROOT / "build" / "screenshots"
NAMES = [p.stem for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))]


def run(*command, cwd=ROOT):
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def site_url(executed_notebooks):
    if not (ROOT / "site" / "node_modules" / "reveal.js").is_dir():
        if shutil.which("npm") is None:
            pytest.skip("needs npm to install the deck's reveal.js (site/package-lock.json)")
        assert run("npm", "ci", "--ignore-scripts", cwd=ROOT / "site").returncode == 0
    built = run(sys.executable, "scripts/build_site.py")
    assert built.returncode == 0, built.stderr
    handler = functools.partial(QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def visit(browser, url, screenshot, ready="true"):
    """Opens URL; what went wrong while loading, the images and how many did not render."""
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    problems = page_problems(page)
    page.goto(url, wait_until="load")
    page.wait_for_load_state("networkidle")
    page.wait_for_function(ready, timeout=15_000)
    images = page.evaluate(
        "Array.from(document.images).map(i => [i.src.slice(0, 60), i.naturalWidth > 0])"
    )
    page.screenshot(path=str(SHOTS / screenshot), full_page=screenshot.startswith("page"))
    return page, problems, images


def image_outputs(name):
    notebook = nbformat.read(ROOT / "notebooks" / "executed" / f"{name}.ipynb", as_version=4)
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


def test_the_index_lists_every_notebook_with_its_duration_and_deck(browser, site_url):
    page, problems, _ = visit(browser, f"{site_url}/index.html", "page-index.png")
    assert problems == []
    rows = page.locator("table tr").all_inner_texts()[1:]
    assert len(rows) == len(NAMES)
    assert all("minutes" in row and "slides" in row for row in rows), rows
    links = page.eval_on_selector_all("a", "links => links.map(a => a.getAttribute('href'))")
    assert set(links) == {f"{n}.html" for n in NAMES} | {f"slides/{n}.slides.html" for n in NAMES}
    page.close()


@pytest.mark.parametrize("name", NAMES)
def test_each_page_loads_cleanly_with_every_picture(browser, site_url, name):
    page, problems, images = visit(browser, f"{site_url}/{name}.html", f"page-{name}.png")
    assert problems == [], problems
    assert [src for src, shown in images if not shown] == [], "images that did not render"
    assert len(images) >= image_outputs(name) >= 1, "a picture of the notebook is missing"
    assert "Exercises" in page.inner_text("body")
    page.close()


@pytest.mark.parametrize("name", NAMES)
def test_each_deck_opens_as_slides(browser, site_url, name):
    page, problems, images = visit(
        browser,
        f"{site_url}/slides/{name}.slides.html",
        f"deck-{name}.png",
        ready="() => document.querySelector('.reveal.ready') !== null",  # reveal.js is up
    )
    assert problems == [], problems
    assert [src for src, shown in images if not shown] == [], "images that did not render"
    slides = page.locator(".reveal .slides > section").count()
    headings = sum(
        cell.cell_type == "markdown" and cell.source.startswith(("# ", "## "))
        for cell in nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4).cells
    )
    assert slides == headings, f"{slides} slides for {headings} headings"
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "document.querySelectorAll('.reveal .slides > section')[1].classList.contains('present')"
    )
    page.wait_for_timeout(1000)  # the slide transition's end
    page.screenshot(path=str(SHOTS / f"deck-{name}-2.png"))
    page.close()
