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

pytestmark = pytest.mark.browser

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


SLIDES = """() => Reveal.getHorizontalSlides().map(
    (slide, h) => Math.max(1, slide.querySelectorAll(':scope > section').length))"""
MEASURE = """() => {
    // What the screen shows of the current slide: from its highest to its lowest part.
    const slide = Reveal.getCurrentSlide();
    const rects = Array.from(slide.children)
        .filter(part => part.tagName !== 'ASIDE')
        .map(part => part.getBoundingClientRect())
        .filter(rect => rect.height > 0);
    const top = Math.min(...rects.map(rect => rect.top));
    const bottom = Math.max(...rects.map(rect => rect.bottom));
    const right = Math.max(...rects.map(rect => rect.right));
    // A table, block or picture as far as the screen shows it: up to the box that scrolls
    // it, if one does (content a box hides is content the audience cannot reach).
    const shown = part => {
        for (let box = part.parentElement; box && box !== slide; box = box.parentElement) {
            if (['auto', 'scroll'].includes(getComputedStyle(box).overflowX)) return box;
        }
        return part;
    };
    const wide = Array.from(slide.querySelectorAll('table, pre, img'))
        .filter(part => shown(part).getBoundingClientRect().right > window.innerWidth)
        .length;
    const notes = slide.querySelector(':scope > aside.notes');
    return [slide.querySelector('h1, h2, h3')?.textContent.replace(/¶$/, '') ?? '',
            Math.round(top), Math.round(bottom), window.innerHeight,
            Math.round(right), wide, window.innerWidth,
            notes ? notes.textContent.trim().length : 0];
}"""


@pytest.mark.parametrize("name", NAMES)
def test_each_deck_has_a_slide_per_heading_each_on_one_screen_with_notes(browser, site_url, name):
    page, problems, images = visit(
        browser,
        f"{site_url}/slides/{name}.slides.html",
        f"deck-{name}.png",
        ready="() => document.querySelector('.reveal.ready') !== null",  # reveal.js is up
    )
    assert problems == [], problems
    assert [src for src, shown in images if not shown] == [], "images that did not render"
    cells = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4).cells
    kinds = [c.metadata.get("slideshow", {}).get("slide_type") for c in cells]
    vertical = page.evaluate(SLIDES)
    assert len(vertical) == kinds.count("slide"), "one slide per `#` and `##` heading"
    assert sum(vertical) == kinds.count("slide") + kinds.count("subslide")
    too_tall, silent = [], []
    page.evaluate("Reveal.configure({transition: 'none', backgroundTransition: 'none'})")
    for h, count in enumerate(vertical):
        for v in range(count):
            page.evaluate(f"Reveal.slide({h}, {v})")
            heading, top, bottom, screen, right, wide, width, notes = page.evaluate(MEASURE)
            if top < 0 or bottom > screen or right > width or wide:
                too_tall.append(
                    f"{heading!r}: shown from {top} to {bottom} px of {screen}, to {right} px "
                    f"of {width} ({wide} part(s) wider than the screen outside a scroll box)"
                )
                page.screenshot(path=str(SHOTS / f"deck-{name}-too-big-{h}-{v}.png"))
            if not notes:
                silent.append(heading)
    assert not too_tall, too_tall
    assert not silent, f"slides without speaker notes: {silent}"
    page.evaluate("Reveal.slide(1, 0)")
    page.wait_for_timeout(1000)  # the slide transition's end
    page.screenshot(path=str(SHOTS / f"deck-{name}-2.png"))
    page.close()
