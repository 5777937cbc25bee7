"""docs/reference/guarantees.md cites the tests that show each guarantee: they must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reference" / "guarantees.md"
CITE = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`|`::(\w+)`")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        n.name
        for n in tree.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")
    }


def test_every_cited_test_exists() -> None:
    cited: list[tuple[str, str | None]] = []
    current: str | None = None  # a bullet's file, for `::name` citations on its wrapped lines
    for line in DOC.read_text().splitlines():
        if not line.startswith("  "):
            current = None
        for match in CITE.finditer(line):
            path, name, continued = match.groups()
            if path:
                current = path
                cited.append((path, name))
            elif continued and current:
                cited.append((current, continued))
    assert len(cited) > 20
    missing = [
        f"{path}::{name}" if name else path
        for path, name in cited
        if not (ROOT / path).is_file() or (name and name not in _tests_in(ROOT / path))
    ]
    assert not missing, f"guarantees.md cites tests that do not exist: {missing}"
