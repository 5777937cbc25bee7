"""The per-partner connection cap of one process, safe across event loops and threads.

Two event loops use one partner's connections in the same process: DBOS runs the delivery and
ingest workflows on its own loop (in a thread of its own), while inbox polls, flow ticks and
operator commands run on the service's loop. An asyncio primitive shared between the two (the
adapter's ``InProcessConnectionBudget`` uses ``asyncio.Condition``) is woken from the wrong
thread when a slot is released on the other loop: the waiter's loop is never told, and a poll
waiting for a slot held by an idle download connection hung for good. Here the count sits
behind a ``threading.Lock`` and each waiter is woken on its own loop
(``call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class LoopSafeConnectionBudget:
    """``ports.remote_fs.ConnectionBudget`` for one process, whatever loop each caller runs
    on. On PostgreSQL the engine's cross-process budget replaces it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: dict[str, int] = {}
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}

    async def acquire(self, partner: str, limit: int, *, wait: bool = True) -> bool:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._used.get(partner, 0) < limit:
                    self._used[partner] = self._used.get(partner, 0) + 1
                    return True
                if not wait:
                    return False
                future: asyncio.Future[None] = loop.create_future()
                entry = (loop, future)
                self._waiters.setdefault(partner, []).append(entry)
            try:
                await future
            finally:
                with self._lock:
                    waiting = self._waiters.get(partner, [])
                    if entry in waiting:
                        waiting.remove(entry)

    async def release(self, partner: str) -> None:
        with self._lock:
            self._used[partner] = max(0, self._used.get(partner, 0) - 1)
            waiters = self._waiters.pop(partner, [])
        # Every waiter looks again (on its own loop); those that find no room wait again.
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed meanwhile
                loop.call_soon_threadsafe(_wake, future)

    def in_use(self, partner: str) -> int:
        with self._lock:
            return self._used.get(partner, 0)

    @contextlib.asynccontextmanager
    async def slot(self, partner: str, limit: int) -> AsyncIterator[None]:
        await self.acquire(partner, limit)
        try:
            yield
        finally:
            await self.release(partner)
