"""Builds the instructor's decks and the static site of the series from executed notebooks.

    .venv/bin/python scripts/build_site.py --slides   # make slides: a reveal.js deck each
    .venv/bin/python scripts/build_site.py            # make site: pages, decks and an index

Reads notebooks/executed/ (`make notebooks` writes it) and writes build/site/:
`index.html` (each notebook's duration and learning goals, with links), one page per
notebook with its outputs and pictures (`NN-name.html`), and `slides/NN-name.slides.html`.
A cell's slide type (cell metadata `slideshow.slide_type`) decides the decks: every `##`
heading starts a slide; the parameters cell and the solutions are skipped. Everything a
page loads is in build/site (reveal.js, require.js and jQuery from site/package.json, installed
by `make slides` with `npm ci`), so the site and the decks open offline.
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter, SlidesExporter

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = ROOT / "notebooks" / "executed"
SOURCES = ROOT / "notebooks"
WEB = ROOT / "site"
OUT = ROOT / "build" / "site"
TEMPLATES = [str(WEB / "templates")]


def executed_notebooks() -> list[Path]:
    """The executed copies, one per numbered notebook, each newer than its source."""
    sources = sorted(SOURCES.glob("[0-9][0-9]-*.ipynb"))
    stale = [
        s.name
        for s in sources
        if not (EXECUTED / s.name).is_file()
        or (EXECUTED / s.name).stat().st_mtime < s.stat().st_mtime
    ]
    if stale:
        sys.exit(
            f"error: no current executed copy of {', '.join(stale)} in {EXECUTED}\n"
            "  fix: run `make notebooks` first (make slides and make site do)"
        )
    return [EXECUTED / s.name for s in sources]


def opening(notebook) -> tuple[str, str, str]:
    """A notebook's title, duration and learning goals, from its first cell."""
    text = notebook.cells[0].source
    title = text.splitlines()[0].lstrip("# ").strip()
    duration = re.search(r"\*\*Duration:\*\* ([^.\n]+)", text)
    goals = re.search(r"\*\*Learning goals:\*\* (.+?)(?:\n\n|$)", text, flags=re.DOTALL)
    return (
        title,
        duration.group(1) if duration else "",
        " ".join(goals.group(1).split()) if goals else "",
    )


def read(path: Path):
    """An executed notebook without script outputs, which only a live kernel can use.

    Apache Beam, run in a notebook, displays a script that fetches jQuery from the
    internet for its interactive tables; a static page has no use for it.
    """
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [
                o for o in cell.outputs if set(o.get("data", {})) != {"application/javascript"}
            ]
    return notebook


def build_slides(notebooks: list[Path]) -> list[Path]:
    modules = WEB / "node_modules"
    if not (modules / "reveal.js" / "dist" / "reveal.js").is_file():
        sys.exit(
            f"error: reveal.js is not installed in {modules}\n"
            "  fix: run `make slides` (it runs `npm ci` in site/ first)"
        )
    out = OUT / "slides"
    out.mkdir(parents=True, exist_ok=True)
    for part in ("dist", "plugin"):
        shutil.copytree(modules / "reveal.js" / part, out / "reveal.js" / part, dirs_exist_ok=True)
    shutil.copy2(modules / "requirejs" / "require.js", out / "require.js")
    shutil.copy2(modules / "jquery" / "dist" / "jquery.min.js", out / "jquery.min.js")
    exporter = SlidesExporter(
        template_name="poets-reveal",
        extra_template_basedirs=TEMPLATES,
        reveal_url_prefix="reveal.js",
        reveal_theme="white",  # its fonts ship with reveal.js; "simple" fetches Google's
        reveal_scroll=True,  # a long slide scrolls instead of overflowing
        require_js_url="require.js",
        jquery_url="jquery.min.js",  # the deck's scrolling uses it
    )
    decks = []
    for path in notebooks:
        body, _ = exporter.from_notebook_node(read(path))
        decks.append(out / f"{path.stem}.slides.html")
        decks[-1].write_text(body)
    return decks


def build_pages(notebooks: list[Path]) -> list[Path]:
    exporter = HTMLExporter(template_name="poets-lab", extra_template_basedirs=TEMPLATES)
    pages = []
    rows = []
    for path in notebooks:
        notebook = read(path)
        body, _ = exporter.from_notebook_node(notebook)
        pages.append(OUT / f"{path.stem}.html")
        pages[-1].write_text(body)
        title, duration, goals = (html.escape(part) for part in opening(notebook))
        rows.append(
            f'<tr><td><a href="{path.stem}.html">{title}</a></td><td>{duration}</td>'
            f'<td>{goals}</td><td><a href="slides/{path.stem}.slides.html">slides</a></td></tr>'
        )
    index = OUT / "index.html"
    index.write_text(
        "<!DOCTYPE html>\n<!-- generated by scripts/build_site.py (make site); do not edit -->\n"
        '<html lang="en"><head><meta charset="utf-8"><title>Kubeflow for Poets</title>'
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "td,th{padding:.4em;vertical-align:top;border-bottom:1px solid #ddd}"
        "table{border-collapse:collapse}</style></head><body>"
        "<h1>Kubeflow for Poets</h1><p>The series, executed, with every output and picture; "
        "a deck per notebook for presenting it.</p><table><tr><th>notebook</th>"
        "<th>duration</th><th>learning goals</th><th>deck</th></tr>"
        + "".join(rows)
        + "</table></body></html>\n"
    )
    return [index, *pages]


def write_favicon() -> Path:
    """A small icon, so that a browser's request for /favicon.ico finds one."""
    from PIL import Image, ImageDraw

    icon = Image.new("RGB", (32, 32), "#cfe3f7")
    ImageDraw.Draw(icon).rectangle((6, 6, 25, 25), outline="#4a4a4a", width=3)
    icon.save(OUT / "favicon.ico")
    return OUT / "favicon.ico"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slides", action="store_true", help="the decks only")
    args = parser.parse_args()
    notebooks = executed_notebooks()
    built = build_slides(notebooks) + [write_favicon()]
    if not args.slides:
        built = build_pages(notebooks) + built
    for path in built:
        print(path.relative_to(ROOT))
    print(f"open {(OUT / ('slides' if args.slides else '')).relative_to(ROOT)} in a browser")
    return 0


if __name__ == "__main__":
    sys.exit(main())
