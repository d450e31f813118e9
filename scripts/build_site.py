"""Builds the instructor's decks and the static site of the series from executed notebooks.

    .venv/bin/python scripts/build_site.py --slides   # make slides: a reveal.js deck each
    .venv/bin/python scripts/build_site.py            # make site: pages, decks and an index

Reads notebooks/executed/ (`make notebooks` writes it) and writes build/site/:
`index.html` (each notebook's duration and learning goals, with links), one page per
notebook with its outputs and pictures (`NN-name.html`), and `slides/NN-name.slides.html`.
A cell's slide type (cell metadata `slideshow.slide_type`) decides the decks: every `##`
heading starts a slide, a `###` heading a vertical slide under it, and cells of type
`skip` stay off the decks. A cell tagged `check` (a check of what the notebook did,
folded in JupyterLab) is on neither; one tagged `output-only` shows on a slide without
its code. Each slide's speaker notes (reveal.js's speaker view: press S) come from
`notebooks/speaker-notes/NN-name.md`, one section per slide, opened by the slide's
heading line. Everything a page loads is in build/site (reveal.js, require.js and jQuery
from site/package.json, installed by `make slides` with `npm ci`), so the site and the
decks open offline.
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
from nbconvert.preprocessors import TagRemovePreprocessor

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = ROOT / "notebooks" / "executed"
SOURCES = ROOT / "notebooks"
WEB = ROOT / "site"
OUT = ROOT / "build" / "site"
TEMPLATES = [str(WEB / "templates")]
NOTES = SOURCES / "speaker-notes"
CHECK_TAG = "check"
"""A cell that checks what the notebook did: run, folded in JupyterLab, never published."""
OUTPUT_ONLY_TAG = "output-only"
"""A cell whose output a slide shows without its code (a picture's plumbing)."""
HEADING = re.compile(r"^(#{1,3}) \S")


def executed_notebooks(only: list[str] | None = None) -> list[Path]:
    """The executed copies, one per numbered notebook (ONLY: those whose name starts so),
    each newer than its source."""
    sources = sorted(SOURCES.glob("[0-9][0-9]-*.ipynb"))
    if only:
        sources = [s for s in sources if s.name.startswith(tuple(only))]
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
    notebook.cells = [c for c in notebook.cells if CHECK_TAG not in c.metadata.get("tags", [])]
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = merged_streams(
                [o for o in cell.outputs if set(o.get("data", {})) != {"application/javascript"}]
            )
    return notebook


def merged_streams(outputs: list) -> list:
    """The outputs with each run of same-stream text joined, as a reader sees it: one box.

    A cell that prints as it goes (a shell command's lines) leaves many pieces of output;
    as one block, it scrolls in one box on a slide."""
    merged: list = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (
            output.get("output_type") == "stream"
            and previous is not None
            and previous.get("output_type") == "stream"
            and previous.get("name") == output.get("name")
        ):
            previous["text"] += output["text"]
        else:
            merged.append(output)
    return merged


def slide_type(cell) -> str:
    return cell.metadata.get("slideshow", {}).get("slide_type", "-")


def speaker_notes(name: str) -> dict[str, str]:
    """A deck's notes: each slide's heading line, and the markdown that follows it."""
    path = NOTES / f"{name}.md"
    if not path.is_file():
        sys.exit(f"error: no speaker notes for {name}\n  fix: write {path.relative_to(ROOT)}")
    sections: dict[str, list[str]] = {}
    current = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if HEADING.match(line):
            current = line.strip()
            if current in sections:
                sys.exit(f"error: {path}:{number}: a second section for {current!r}")
            sections[current] = []
        elif current is None and line.strip():
            sys.exit(f"error: {path}:{number}: text before the first slide's heading line")
        elif current is not None:
            sections[current].append(line)
    return {heading: "\n".join(lines).strip() for heading, lines in sections.items()}


def with_notes(notebook, name: str):
    """The notebook with each slide's speaker notes after the cell that starts the slide.

    Every slide and vertical slide starts with a markdown cell whose first line is its
    heading; a slide with no notes, notes for no slide, or a slide that starts otherwise
    stop the build, naming the fix.
    """
    notes = speaker_notes(name)
    cells, problems, used = [], [], set()
    for cell in notebook.cells:
        cells.append(cell)
        if slide_type(cell) not in ("slide", "subslide"):
            continue
        heading = cell.source.splitlines()[0].strip() if cell.source else ""
        if cell.cell_type != "markdown" or not HEADING.match(heading):
            problems.append(f"a slide starts with a cell that is no heading: {heading[:60]!r}")
        elif not notes.get(heading):
            problems.append(f"no notes for the slide {heading!r}")
        else:
            used.add(heading)
            cells.append(
                nbformat.v4.new_markdown_cell(
                    notes[heading], metadata={"slideshow": {"slide_type": "notes"}}
                )
            )
    problems += [f"notes for no slide: {heading!r}" for heading in notes.keys() - used]
    if problems:
        sys.exit(
            f"error: the speaker notes of {name} do not match its slides:\n  "
            + "\n  ".join(problems)
            + f"\n  fix: notebooks/speaker-notes/{name}.md, one section per slide, opened by "
            "the slide's heading line as in the notebook"
        )
    notebook.cells = cells
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
        reveal_scroll=False,  # a slide fits the screen; a long output scrolls in its box
        require_js_url="require.js",
        jquery_url="jquery.min.js",  # the deck's template loads it
    )
    exporter.register_preprocessor(
        TagRemovePreprocessor(remove_input_tags={OUTPUT_ONLY_TAG}, enabled=True), enabled=True
    )
    decks = []
    for path in notebooks:
        body, _ = exporter.from_notebook_node(with_notes(read(path), path.stem))
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
    parser.add_argument(
        "--only", action="append", default=[], help="notebooks whose name starts so, e.g. 03"
    )
    args = parser.parse_args()
    notebooks = executed_notebooks(args.only)
    built = build_slides(notebooks) + [write_favicon()]
    if not args.slides:
        built = build_pages(notebooks) + built
    for path in built:
        print(path.relative_to(ROOT))
    print(f"open {(OUT / ('slides' if args.slides else '')).relative_to(ROOT)} in a browser")
    return 0


if __name__ == "__main__":
    sys.exit(main())
