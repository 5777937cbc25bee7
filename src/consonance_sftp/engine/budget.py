"""A per-partner connection cap that holds across processes and machines (PostgreSQL).

Implements ``ports.remote_fs.ConnectionBudget``. Slot *i* of partner *p* is the session advisory
lock ``(hash(p), i)``; holding one of the first ``limit`` locks is holding a slot. Because the
locks belong to this process's database session, a process that dies (``kill -9``, lost
machine) gives its slots back the moment PostgreSQL notices the session is gone; nothing has to
clean up after it.

DBOS's queue partitions count workflows, not connections (an inbox poll, a probe or a
segmented upload also connects), which is why the transport takes a slot for every connection.

One dedicated connection per process holds all of its slots. Session advisory locks are
re-entrant within a session, so the process tracks which slots it holds and never asks for one
of those again. If that connection is lost, so are the slots: the budget then refuses new slots
(``ConnectionLost``, retryable) until it reconnects, and reports the loss, because connections
opened under the old slots may now exceed the cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import psycopg

from consonance_sftp.errors import ConnectionLost
from consonance_sftp.logs import get_logger

from .lease import connect_pg

log = get_logger(__name__)


def partner_lock_id(partner: str) -> int:
    """The first key of a partner's slot locks (signed 32-bit)."""
    digest = hashlib.sha256(f"consonance-budget:{partner}".encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


class PostgresConnectionBudget:
    def __init__(self, url: str, *, poll_interval_s: float = 0.1) -> None:
        self._url = url
        self._poll_s = poll_interval_s
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._held: dict[str, list[int]] = {}

    # --- ConnectionBudget -----------------------------------------------------------------

    async def acquire(self, partner: str, limit: int, *, wait: bool = True) -> bool:
        delay = self._poll_s
        while True:
            if await asyncio.to_thread(self._try_acquire, partner, limit):
                return True
            if not wait:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    async def release(self, partner: str) -> None:
        await asyncio.to_thread(self._release, partner)

    def in_use(self, partner: str) -> int:
        """Slots this process holds for ``partner`` (not the cluster-wide count)."""
        return len(self._held.get(partner, []))

    @contextlib.asynccontextmanager
    async def slot(self, partner: str, limit: int) -> AsyncIterator[None]:
        await self.acquire(partner, limit)
        try:
            yield
        finally:
            await self.release(partner)

    async def close(self) -> None:
        await asyncio.to_thread(self.close_blocking)

    # --- blocking parts, run in a worker thread ------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            if self._held:
                log.error(
                    "connection budget session was lost while holding slots %s: "
                    "connections opened under them may exceed the partners' caps",
                    {p: len(s) for p, s in self._held.items()},
                )
                self._held.clear()
            self._conn = connect_pg(self._url)
        return self._conn

    def _try_acquire(self, partner: str, limit: int) -> bool:
        key = partner_lock_id(partner)
        with self._lock:
            try:
                conn = self._connection()
                held = self._held.setdefault(partner, [])
                for slot in range(limit):
                    if slot in held:
                        continue
                    row = conn.execute(
                        "SELECT pg_try_advisory_lock(%s, %s)", (key, slot)
                    ).fetchone()
                    if row and row[0]:
                        held.append(slot)
                        return True
                return False
            except psycopg.OperationalError as exc:
                self._drop()
                raise ConnectionLost(
                    f"connection budget database unreachable: {exc}", partner=partner
                ) from exc

    def _release(self, partner: str) -> None:
        with self._lock:
            held = self._held.get(partner)
            if not held:
                return
            slot = held.pop()
            if self._conn is None or self._conn.closed:
                return
            try:
                self._conn.execute(
                    "SELECT pg_advisory_unlock(%s, %s)", (partner_lock_id(partner), slot)
                )
            except psycopg.OperationalError:
                # The session is gone, and with it every lock it held.
                self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close_blocking(self) -> None:
        with self._lock:
            self._held.clear()
            self._drop()


if TYPE_CHECKING:
    from consonance_sftp.ports.remote_fs import ConnectionBudget

    def _implements_port(budget: PostgresConnectionBudget) -> ConnectionBudget:
        return budget
