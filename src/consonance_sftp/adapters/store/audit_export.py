"""The audit trail's raw rows, out of a database and into another one (archives, issue 17).

An archive keeps, as JSON lines, every row of the tables ``audit verify`` reads: the events of
every chain (``ledger.write`` and ``ledger.seal`` included), the chain heads, the chain of
chains and its checkpoints, the delivery and intake ledgers the trail covers, and the asset
versions those ledgers refer to. Each row is written as ``audit_cover.row_image`` writes a
ledger row (times as the hashed UTC text), with the ``details`` of events and registry entries
as JSON objects rather than a string inside a string (the hashes are computed over the parsed
value, so nothing is lost).

``load_rows`` writes such rows into a new, empty database, so the unchanged ``verify`` of
``audit_trail`` can check the copy: no second implementation of the hashing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from consonance_sftp.adapters.store.audit_chain import canonical_json
from consonance_sftp.adapters.store.audit_cover import row_image
from consonance_sftp.adapters.store.base import to_db_time
from consonance_sftp.adapters.store.schema import (
    asset_versions,
    audit_chains,
    audit_checkpoints,
    audit_events,
    audit_registry,
    delivery_ledger,
    intake_ledger,
)
from consonance_sftp.errors import StoreError

# In the order they are loaded (rows referred to before the rows that refer to them).
TABLES: dict[str, sa.Table] = {
    t.name: t
    for t in (
        asset_versions,
        delivery_ledger,
        intake_ledger,
        audit_chains,
        audit_registry,
        audit_checkpoints,
        audit_events,
    )
}
_JSON_TEXT = {"audit_events": "details", "audit_registry": "details"}
_BATCH = 1000


def _order(table: sa.Table) -> list[sa.ColumnElement[Any]]:
    if table is audit_events:
        c = audit_events.c
        return [c.ts, c.chain_id, c.seq]
    return list(table.primary_key.columns)


def export_rows(conn: Connection, table_name: str) -> Iterator[dict[str, Any]]:
    """Every row of one table as JSON values, events oldest first, the rest by key."""
    table = TABLES[table_name]
    details = _JSON_TEXT.get(table_name)
    rows = conn.execution_options(yield_per=2000).execute(sa.select(table).order_by(*_order(table)))
    for row in rows:
        image = row_image({str(k): v for k, v in row._mapping.items()})
        if details is not None:
            image[details] = json.loads(image[details])
        yield image


def _db_row(table: sa.Table, row: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(row) - set(table.c.keys())
    if unknown:
        raise StoreError(f"{table.name}: unknown column(s) {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for name, value in row.items():
        column = table.c[name]
        if isinstance(column.type, sa.DateTime) and isinstance(value, str):
            value = to_db_time(datetime.fromisoformat(value))
        elif name == _JSON_TEXT.get(table.name) and not isinstance(value, str):
            value = canonical_json(value)
        out[name] = value
    return out


def load_rows(conn: Connection, rows: Mapping[str, Iterable[Mapping[str, Any]]]) -> dict[str, int]:
    """Insert exported rows into an empty database, in ``conn``'s transaction; rows per table.

    Foreign keys are checked at commit (SQLite), so a version superseded by a later one loads.
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
    counts: dict[str, int] = {}
    for name, table in TABLES.items():
        if conn.execute(sa.select(sa.func.count()).select_from(table)).scalar():
            raise StoreError(f"{table.name} is not empty: the rows load into a new database only")
        batch: list[dict[str, Any]] = []
        counts[name] = 0
        for row in rows.get(name, ()):
            batch.append(_db_row(table, row))
            if len(batch) >= _BATCH:
                conn.execute(table.insert(), batch)
                counts[name] += len(batch)
                batch = []
        if batch:
            conn.execute(table.insert(), batch)
            counts[name] += len(batch)
    return counts
