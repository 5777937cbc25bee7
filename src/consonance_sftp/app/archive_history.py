"""The audit trail of a restored archive, checked where it lies (``audit verify --archive DIR``).

The bag's ``data/history/audit.jsonl`` and ``data/history/tables/*.jsonl`` hold the raw rows of
the audit trail and of what it covers (``adapters.store.audit_export``). They are loaded into a
new SQLite database (``restore_history``; a temporary one for ``archived_store``) and checked
by the store's own ``verify_audit``: the same chains, chain of chains and ledger checks as on
the live database. A problem is traced back to its line of ``audit.jsonl``.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consonance_sftp.adapters.store.audit_export import TABLES, load_rows
from consonance_sftp.adapters.store.sql_store import SqlStore, open_store
from consonance_sftp.errors import ConsonanceSftpError

EVENTS = "history/audit.jsonl"
TABLES_DIR = "history/tables"


@dataclass(frozen=True, slots=True)
class EventLine:
    """Where one event is in ``audit.jsonl``."""

    line: int
    action: str
    subject: str


def _payload(bag: Path) -> Path:
    """The bag's ``data/`` folder (``bag`` may be the restored folder or its ``data/``)."""
    for candidate in (bag / "data", bag):
        if (candidate / EVENTS).is_file():
            return candidate
    raise ConsonanceSftpError(
        f"{bag} holds no {EVENTS}",
        hint="Give the folder 'archive restore --to' wrote (the bag), or its data/ folder.",
    )


def _read_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except ValueError as exc:
                raise ConsonanceSftpError(f"{path.name} line {number} is not JSON: {exc}") from None
            if not isinstance(row, dict):
                raise ConsonanceSftpError(f"{path.name} line {number} is not a JSON object")
            yield number, row


Rows = dict[str, list[dict[str, Any]]]


def read_history(bag: Path) -> tuple[Rows, dict[tuple[str, int], EventLine]]:
    """The raw rows by table, and where each event (chain, seq) is in ``audit.jsonl``."""
    data = _payload(bag)
    if not (data / TABLES_DIR).is_dir():
        raise ConsonanceSftpError(
            f"{bag} holds the audit events but not {TABLES_DIR}/ (chain heads, chain of chains, "
            "ledgers): it was archived before the whole trail was, and cannot be verified",
        )
    rows: Rows = {"audit_events": []}
    where: dict[tuple[str, int], EventLine] = {}
    for number, row in _read_lines(data / EVENTS):
        rows["audit_events"].append(row)
        key = (str(row.get("chain_id")), row.get("seq"))
        if isinstance(key[1], int):
            where[(key[0], key[1])] = EventLine(
                number, str(row.get("action", "")), str(row.get("subject", ""))
            )
    for table in TABLES:
        path = data / TABLES_DIR / f"{table}.jsonl"
        if table != "audit_events" and path.is_file():
            rows[table] = [row for _, row in _read_lines(path)]
    return rows, where


def restore_history(bag: Path, database: Path, *, key: bytes | None = None) -> dict[str, int]:
    """Load the bag's audit trail and ledgers into a new SQLite database; rows per table."""
    if database.exists():
        raise ConsonanceSftpError(f"{database} exists: the history loads into a new database")
    rows, _ = read_history(bag)
    store = open_store(f"sqlite:///{database}", audit_key=key)
    try:
        with store.write() as conn:
            return load_rows(conn, rows)
    finally:
        store.close()


@contextlib.contextmanager
def archived_store(
    bag: Path, *, key: bytes | None = None
) -> Iterator[tuple[SqlStore, dict[tuple[str, int], EventLine]]]:
    """A store over a temporary copy of the bag's history (deleted afterwards), and where
    each event is in ``audit.jsonl``."""
    _, where = read_history(bag)
    with tempfile.TemporaryDirectory(prefix="audit-copy-") as tmp:
        database = Path(tmp) / "history.db"
        restore_history(bag, database, key=key)
        store = open_store(f"sqlite:///{database}", migrate=False, audit_key=key)
        try:
            yield store, where
        finally:
            store.close()
