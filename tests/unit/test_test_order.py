"""The order pytest-xdist hands out test files: the heaviest first, each file whole."""

from pathlib import Path

import pytest

from conftest import _heaviest_files_first


class _Item:
    def __init__(self, path: str, name: str, *kinds: str) -> None:
        self.path, self.name = Path(path), name
        self.marks = [getattr(pytest.mark, kind).mark for kind in kinds]

    def iter_markers(self):
        return iter(self.marks)


def test_the_heaviest_files_come_first_each_whole_and_in_its_own_order():
    items = [
        _Item("a.py", "a1"),
        _Item("a.py", "a2"),
        _Item("b.py", "b1", "pipeline_run"),
        _Item("b.py", "b2"),
        _Item("c.py", "c1", "browser", "network"),
        _Item("d.py", "d1"),
        _Item("d.py", "d2"),
        _Item("e.py", "e1", "pipeline_run", "skip"),  # skipped here: no weight
    ]
    _heaviest_files_first(items)
    # b: a whole run; c: a browser test (its heaviest kind); a and d: two quick tests each,
    # in the order they were collected
    assert [item.name for item in items] == ["b1", "b2", "c1", "a1", "a2", "d1", "d2", "e1"]
