"""Keeps the committed notebooks clean: outputs only where nbval checks them.

A code cell tagged `nbval-check-output` keeps its outputs and an execution count (nbval
compares only cells that ran); every other cell has neither. Cells keep only their tags
and slide type (for `make slides`) as metadata, and a cell tagged `check` (a check of
what the notebook did, not part of the lesson) starts folded in JupyterLab; the notebook
keeps only its kernel and language, and cell ids are numbered, so a diff shows what
changed in the teaching, not in the last run.

    .venv/bin/python scripts/clean_notebooks.py           # clean in place (make format)
    .venv/bin/python scripts/clean_notebooks.py --check   # exit 1 naming unclean ones (make lint)

To change a checked output: run the notebook top to bottom (JupyterLab, or
`jupyter nbconvert --to notebook --execute --inplace notebooks/NN-….ipynb`), then clean it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
CHECK_TAG = "nbval-check-output"
CHECK_CELL_TAG = "check"


def checked(cell) -> bool:
    """Whether nbval compares this cell's output with the committed one."""
    return cell.cell_type == "code" and CHECK_TAG in cell.metadata.get("tags", [])


def clean(notebook):
    """A clean copy of the notebook (see the module's docstring)."""
    notebook = nbformat.from_dict(notebook)
    kernel = notebook.metadata.get("kernelspec", {})
    notebook.metadata = nbformat.from_dict(
        {
            "kernelspec": {
                "display_name": kernel.get("display_name", "Python 3 (ipykernel)"),
                "language": "python",
                "name": kernel.get("name", "python3"),
            },
            "language_info": {"name": "python"},
        }
    )
    for number, cell in enumerate(notebook.cells):
        cell.id = str(number)
        tags = cell.metadata.get("tags", [])
        slide = cell.metadata.get("slideshow", {}).get("slide_type")
        kept = ({"tags": tags} if tags else {}) | (
            {"slideshow": {"slide_type": slide}} if slide else {}
        )
        cell.metadata = nbformat.from_dict(kept)
        if CHECK_CELL_TAG in tags:  # folded in JupyterLab; the site and decks leave it out
            cell.metadata["jupyter"] = {"source_hidden": True}
        if cell.cell_type != "code":
            continue
        if checked(cell) and cell.outputs:
            cell.execution_count = cell.execution_count or 1
            for output in cell.outputs:
                if "execution_count" in output:  # an execute_result's own count
                    output.execution_count = None
        else:
            cell.outputs = []
            cell.execution_count = None
    return notebook


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; fail if unclean")
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args()
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    unclean = []
    for path in paths:
        text = path.read_text()
        cleaned = nbformat.writes(clean(nbformat.reads(text, as_version=4))) + "\n"
        if cleaned != text:
            unclean.append(path)
            if not args.check:
                path.write_text(cleaned)
    if args.check and unclean:
        names = ", ".join(p.name for p in unclean)
        print(
            f"error: {names} hold outputs or metadata beyond the checked cells\n"
            "  fix: run `make format` (it cleans them) and commit the result",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
