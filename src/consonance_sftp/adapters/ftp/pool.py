"""A partner's open FTP control connections under the connection budget.

An FTP control connection runs one command at a time, so a lease is exclusive. Each open
connection holds one of the partner's budget slots until it is closed (after
``idle_timeout`` unused, or when it broke). Blocking ``ftplib`` calls run in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import ftplib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TypeVar

from consonance_sftp import errors
from consonance_sftp.adapters.ftp.client import Features, close_quietly, open_ftp, translate
from consonance_sftp.adapters.ftp.endpoint import FtpEndpoint
from consonance_sftp.ports.remote_fs import ConnectionBudget

T = TypeVar("T")

# An idle connection unused for this long is checked with NOOP before it is lent again.
_CHECK_AFTER = 15.0


@dataclass(eq=False)
class FtpConnection:
    ftp: ftplib.FTP
    features: Features
    home: str = "/"
    broken: bool = False
    last_used: float = field(default_factory=time.monotonic)
    idle_timer: asyncio.TimerHandle | None = None


class LocalBudget:
    """A per-partner cap within one event loop, for an adapter built without the App's."""

    def __init__(self) -> None:
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._used: dict[str, int] = {}

    def _sem(self, partner: str, limit: int) -> asyncio.Semaphore:
        return self._sems.setdefault(partner, asyncio.Semaphore(limit))

    @contextlib.asynccontextmanager
    async def slot(self, partner: str, limit: int) -> AsyncIterator[None]:
        await self.acquire(partner, limit)
        try:
            yield
        finally:
            await self.release(partner)

    async def acquire(self, partner: str, limit: int, *, wait: bool = True) -> bool:
        sem = self._sem(partner, limit)
        if not wait and sem.locked():
            return False
        await sem.acquire()
        self._used[partner] = self._used.get(partner, 0) + 1
        return True

    async def release(self, partner: str) -> None:
        self._used[partner] = max(0, self._used.get(partner, 0) - 1)
        self._sems[partner].release()

    def in_use(self, partner: str) -> int:
        return self._used.get(partner, 0)


class FtpPool:
    """Open connections of one partner, reused while alive."""

    def __init__(self, endpoint: FtpEndpoint, budget: ConnectionBudget | None = None) -> None:
        self.endpoint = endpoint
        self.budget: ConnectionBudget = budget or LocalBudget()
        self._idle: list[FtpConnection] = []
        self._open: set[FtpConnection] = set()
        self.opened = 0  # connections opened over the pool's life (tests and stats)
        self.features = Features()  # of the last connection opened

    @property
    def partner(self) -> str:
        return self.endpoint.partner

    async def _connect(self) -> FtpConnection:
        """A new connection, for a budget slot already taken (given back on failure)."""
        try:
            ftp, features = await asyncio.to_thread(open_ftp, self.endpoint)
            try:
                home = await asyncio.to_thread(ftp.pwd)
            except (OSError, EOFError, ftplib.Error):
                home = "/"
        except BaseException:
            await self.budget.release(self.partner)
            raise
        self.opened += 1
        self.features = features
        conn = FtpConnection(ftp, features, home)
        self._open.add(conn)
        return conn

    async def _take(self) -> FtpConnection:
        while self._idle:
            conn = self._idle.pop()
            if conn.idle_timer is not None:
                conn.idle_timer.cancel()
                conn.idle_timer = None
            if time.monotonic() - conn.last_used > _CHECK_AFTER:
                try:
                    await asyncio.to_thread(conn.ftp.voidcmd, "NOOP")
                except (OSError, EOFError, ftplib.Error):
                    await self._discard(conn)
                    continue
            return conn
        await self.budget.acquire(self.partner, max(1, self.endpoint.max_connections))
        return await self._connect()

    async def _discard(self, conn: FtpConnection) -> None:
        if conn in self._open:
            self._open.discard(conn)
            await asyncio.to_thread(close_quietly, conn.ftp)
            await self.budget.release(self.partner)

    def lease(self) -> AbstractAsyncContextManager[FtpConnection]:
        return self._lease()

    @contextlib.asynccontextmanager
    async def _lease(self) -> AsyncIterator[FtpConnection]:
        conn = await self._take()
        try:
            yield conn
        except BaseException as exc:
            # A lost connection, a timeout or a cancelled call leave the control connection
            # in an unknown state: it is not lent again. A refusal (5xx) leaves it usable.
            retryable = isinstance(exc, errors.TransportError) and exc.retryable
            if retryable or not isinstance(exc, errors.TransportError | ftplib.error_perm):
                conn.broken = True
            raise
        finally:
            await self._give_back(conn)

    async def _give_back(self, conn: FtpConnection) -> None:
        timeout = self.endpoint.transfer.idle_timeout
        if conn.broken or timeout <= 0:
            await self._discard(conn)
            return
        conn.last_used = time.monotonic()
        self._idle.append(conn)
        loop = asyncio.get_running_loop()
        conn.idle_timer = loop.call_later(timeout, self._expire, conn)

    def _expire(self, conn: FtpConnection) -> None:
        if conn in self._idle:
            self._idle.remove(conn)
            task = asyncio.ensure_future(self._discard(conn))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def run(
        self, conn: FtpConnection, fn: Callable[..., T], *args: object, path: str | None = None
    ) -> T:
        """One blocking call on ``conn`` in a thread, its errors translated."""
        try:
            return await asyncio.to_thread(fn, *args)
        except errors.TransportError:
            raise
        except (OSError, EOFError, ftplib.Error) as exc:
            raise translate(exc, self.partner, path) from exc

    async def close(self) -> None:
        for conn in list(self._idle):
            if conn.idle_timer is not None:
                conn.idle_timer.cancel()
        self._idle.clear()
        for conn in list(self._open):
            await self._discard(conn)
