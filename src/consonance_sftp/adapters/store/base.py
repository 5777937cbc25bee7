"""Helpers shared by the store's parts: transactions, time normalisation, error translation."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from consonance_sftp.adapters.store.database import READ_ONLY
from consonance_sftp.errors import RecordNotFound, StoreError

P = ParamSpec("P")
R = TypeVar("R")


def to_db_time(ts: datetime | None) -> datetime | None:
    """UTC before storing: SQLite's DateTime keeps wall-clock digits and drops the zone."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def from_db_time(ts: datetime | None) -> datetime | None:
    """Aware UTC after reading (SQLite hands back naive UTC, PostgreSQL the session's zone)."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def from_db_time_required(ts: datetime) -> datetime:
    out = from_db_time(ts)
    assert out is not None
    return out


def not_found(what: str, ident: int) -> RecordNotFound:
    """A record asked for by its id is not in the store."""
    return RecordNotFound(f"no {what} with id {ident}")


def _describe(exc: sa.exc.SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def translate_errors(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Turn SQLAlchemy errors of a store method into ``StoreError`` naming what was being done.

    Connection-level failures (``OperationalError``: server gone, database locked past the busy
    timeout) are retryable; constraint and programming errors are not.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except sa.exc.OperationalError as exc:
                raise StoreError(
                    f"database unavailable while {what}: {_describe(exc)}",
                    hint="Check that the database in the config is reachable and not full.",
                    retryable=True,
                ) from exc
            except sa.exc.SQLAlchemyError as exc:
                raise StoreError(f"database error while {what}: {_describe(exc)}") from exc

        return wrapper

    return decorate


class Tables:
    """Base of the store's parts: owns the engine and opens transactions the same way."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction (SQLite: BEGIN IMMEDIATE), committed on leaving the block."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """A read-only transaction; ``snapshot``: one consistent view across several queries."""
        options: dict[str, Any] = {READ_ONLY: True}
        if snapshot and self.engine.dialect.name == "postgresql":
            options["isolation_level"] = "REPEATABLE READ"
        with self.engine.connect().execution_options(**options) as conn:
            yield conn
