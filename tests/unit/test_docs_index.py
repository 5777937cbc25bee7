"""Every docs page is reachable from docs/index.md, and every relative link in the docs resolves."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_every_page_is_linked_from_the_index() -> None:
    linked = {(DOCS / target).resolve() for target in LINK.findall((DOCS / "index.md").read_text())}
    pages = {p.resolve() for p in DOCS.rglob("*.md") if p.name != "index.md"}
    assert not sorted(str(p.relative_to(DOCS)) for p in pages - linked)


def test_relative_links_resolve() -> None:
    broken = [
        f"{page.relative_to(DOCS)} -> {target}"
        for page in DOCS.rglob("*.md")
        for target in LINK.findall(page.read_text())
        if "://" not in target and not (page.parent / target).exists()
    ]
    assert not broken
