"""Opening our database: engine settings per backend, and migrations run on open.

SQLite (the embedded default) gets WAL, a busy timeout and foreign keys on every connection,
and SQLAlchemy takes over BEGIN from the sqlite3 driver (its legacy mode does not begin
transactions for SELECT or DDL). Write transactions start with ``BEGIN IMMEDIATE`` so two
processes never both read and then fail to upgrade to a write lock; read-only work asks for a
plain deferred ``BEGIN`` (execution option ``READ_ONLY``) and so never holds up a writer.

PostgreSQL is reached with psycopg 3 (``postgresql+psycopg://``); a plain ``postgresql://`` URL
is taken to mean the same.

Migrations (``alembic upgrade head``) run in one transaction under a lock (a PostgreSQL advisory
lock, SQLite's write lock), so processes starting together migrate once.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from consonance_sftp.errors import StoreError

MIGRATIONS = Path(__file__).with_name("migrations")
READ_ONLY = "consonance_read_only"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Any fixed 64-bit number: the key of the advisory lock that serialises migrations.
_PG_MIGRATION_LOCK = 0x0C0_5A_5F7B


def normalise_url(url: str) -> str:
    """Accept the URL forms users write; use psycopg 3 for PostgreSQL."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StoreError(
            f"not a database URL: {url!r}",
            hint="Use sqlite:///path/to/file.db or postgresql+psycopg://user@host/dbname.",
        ) from exc
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername not in {"postgresql+psycopg", "sqlite", "sqlite+pysqlite"}:
        raise StoreError(
            f"unsupported database {parsed.drivername!r} in the store URL",
            hint="Use sqlite:///path/to/file.db or postgresql+psycopg://user@host/dbname.",
        )
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str) -> Engine:
    """An engine for our tables with the per-backend settings described above."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        else:
            # In memory: one shared connection, or each pooled connection would see its own
            # empty database. Fine for single-threaded tests; not for concurrent use.
            engine = sa.create_engine(
                url, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # None: the driver stops issuing its own BEGIN; _sqlite_on_begin issues ours.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        _set_wal(cursor)
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # NORMAL is durable across process crashes in WAL mode; only a power cut can lose the
        # last commits, never corrupt the file.
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _set_wal(cursor: sqlite3.Cursor) -> None:
    """Switch to WAL. Two processes opening a fresh file at once can both try the switch, and
    SQLite answers the loser "database is locked" at once, without its busy handler: try again
    for as long as the busy timeout would have waited."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sqlite_on_begin(conn: Connection) -> None:
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (``alembic upgrade head``), once, under a lock."""
    head = head_revision()
    if current_revision(engine) == head:
        return
    cfg = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
