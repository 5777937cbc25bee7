"""The store reference documents every table and column of the schema (docs checked by tests)."""

from __future__ import annotations

import re
from pathlib import Path

from consonance_sftp.adapters.store.schema import metadata

DOC = Path(__file__).resolve().parents[2] / "docs" / "reference" / "store.md"


def documented_columns() -> dict[str, set[str]]:
    """Columns listed in the doc's tables, by the table named in the heading or header above."""
    found: dict[str, set[str]] = {}
    current: list[str] = []
    for line in DOC.read_text().splitlines():
        heading = re.match(r"^(#+)\s+(.*)$", line)
        if heading:
            # only level-3 headings name tables; any other heading ends the previous one
            current = re.findall(r"[a-z_]+", heading.group(2)) if heading.group(1) == "###" else []
            continue
        header = re.match(r"^\|\s*column \(`(\w+)`\)", line)
        if header:
            current = [header.group(1)]
            continue
        row = re.match(r"^\|\s*`(\w+)`\s*\|", line)
        if row and current:
            found.setdefault(current[0], set()).add(row.group(1))
    return found


def test_every_table_and_column_is_documented() -> None:
    documented = documented_columns()
    missing = [
        f"{table.name}.{column.name}"
        for table in metadata.sorted_tables
        for column in table.columns
        if column.name not in documented.get(table.name, set())
    ]
    assert missing == [], f"document these in {DOC.name}: {missing}"


def test_no_documented_column_is_invented() -> None:
    invented = [
        f"{table}.{column}"
        for table, columns in documented_columns().items()
        if table in metadata.tables
        for column in columns
        if column not in metadata.tables[table].columns
    ]
    assert invented == []
