"""Shared plumbing of ``SftpRemoteFS``: pool and leases, timeouts and error translation,
retries, journals, throttled sessions, stall detection."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import stat as statmod
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar, cast

import asyncssh

from consonance_sftp import errors
from consonance_sftp.adapters.sftp.connection import (
    ConnectionPool,
    InProcessConnectionBudget,
    PooledConnection,
)
from consonance_sftp.adapters.sftp.endpoint import SftpEndpoint
from consonance_sftp.adapters.sftp.throttle import ThrottledSFTP
from consonance_sftp.adapters.sftp.translate import translate
from consonance_sftp.adapters.transfer_common import TokenBucket, retry_transient
from consonance_sftp.ports.remote_fs import (
    ConnectionBudget,
    ProgressCallback,
    RemoteEntry,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class FSBase:
    """State and helpers shared by the upload and intake halves."""

    def __init__(
        self,
        endpoint: SftpEndpoint,
        *,
        state_dir: Path,
        budget: ConnectionBudget | None = None,
        retries: int = 2,
    ) -> None:
        self.endpoint = endpoint
        self.settings = endpoint.transfer
        self.pool = ConnectionPool(endpoint, budget or InProcessConnectionBudget())
        self.state_dir = state_dir
        self.retries = retries
        limit = self.settings.bandwidth_limit
        self._bucket = TokenBucket(limit) if limit else None
        self._unsupported: set[str] = set()  # operations the server refused (check_file, ...)
        # Staged files whose upload had a refused attempt: temporary name -> size, checked
        # again under the final name right after the rename (see ``_publish_staged``).
        self._after_refusal: dict[str, int] = {}

    @property
    def partner(self) -> str:
        return self.endpoint.partner

    async def close(self) -> None:
        await self.pool.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- small helpers ------------------------------------------------------------------

    async def _guard(self, aw: Awaitable[T], path: str | None) -> T:
        """Await one remote operation with the operation timeout; translate its errors."""
        try:
            async with asyncio.timeout(self.settings.operation_timeout):
                return await aw
        except errors.TransportError:
            raise
        except (asyncssh.Error, OSError, TimeoutError, BaseExceptionGroup) as exc:
            raise translate(exc, partner=self.partner, path=path) from exc

    async def _retrying(self, what: str, path: str, attempt_fn: Callable[[], Awaitable[T]]) -> T:
        return await retry_transient(
            what, path, attempt_fn, retries=self.retries, partner=self.partner, logger=log
        )

    async def _stat(self, sftp: asyncssh.SFTPClient, path: str) -> asyncssh.SFTPAttrs | None:
        try:
            return await self._guard(sftp.stat(path), path)
        except errors.RemotePathNotFound:
            return None

    def _entry(self, path: str, name: str, attrs: asyncssh.SFTPAttrs) -> RemoteEntry:
        is_dir = (
            statmod.S_ISDIR(attrs.permissions)
            if attrs.permissions is not None
            else attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY
        )
        is_file = (
            statmod.S_ISREG(attrs.permissions)
            if attrs.permissions is not None
            else attrs.type == asyncssh.FILEXFER_TYPE_REGULAR
        )
        return RemoteEntry(
            path=path,
            name=name,
            size=attrs.size or 0,
            mtime=float(attrs.mtime or 0),
            is_dir=is_dir,
            is_file=is_file,
        )

    def _journal_path(self, direction: str, remote_path: str) -> Path:
        key = hashlib.sha256(f"{self.partner}\0{direction}\0{remote_path}".encode()).hexdigest()
        return self.state_dir / "journals" / f"{direction}-{key[:32]}.journal"

    def _sessions(self, conns: Sequence[PooledConnection]) -> list[asyncssh.SFTPClient]:
        if self._bucket is None:
            return [c.sftp for c in conns]
        bucket = self._bucket
        return [cast(asyncssh.SFTPClient, ThrottledSFTP(c.sftp, bucket)) for c in conns]

    async def _watch(
        self,
        coro: Coroutine[Any, Any, None],
        path: str,
        ticks: list[float],
        conns: Sequence[PooledConnection],
    ) -> None:
        """Run a transfer; a stall longer than the operation timeout becomes TransferTimeout.

        A stalled server does not answer a cancelled request's file close either, so the
        transfer's connections are aborted (and never reused) to let it unwind.
        """
        task = asyncio.ensure_future(coro)
        timeout = self.settings.operation_timeout
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=min(timeout, 5.0))
                if done:
                    break
                if time.monotonic() - ticks[0] > timeout:
                    for pooled in conns:
                        pooled.broken = True
                        pooled.conn.abort()
                    task.cancel()
                    await asyncio.wait({task}, timeout=5.0)
                    raise errors.TransferTimeout(
                        f"no progress for {timeout:.0f}s", partner=self.partner, path=path
                    )
            task.result()
        except errors.TransportError as exc:
            if exc.partner is None:
                # Raised below the adapter (a segmented transfer, a full local disk): name it.
                raise translate(exc, partner=self.partner, path=path) from exc
            raise
        except (asyncssh.Error, OSError, TimeoutError, BaseExceptionGroup) as exc:
            raise translate(exc, partner=self.partner, path=path) from exc
        finally:
            if not task.done():
                task.cancel()

    def _progress(
        self, total: int, progress: ProgressCallback | None, ticks: list[float]
    ) -> Callable[[int], None]:
        def report(done: int) -> None:
            ticks[0] = time.monotonic()
            if progress is not None:
                progress(done, total)

        return report

    @contextlib.asynccontextmanager
    async def _lease(self, shared: PooledConnection | None) -> AsyncIterator[PooledConnection]:
        if shared is not None:
            yield shared
            return
        async with self.pool.lease() as pc:
            yield pc

    @contextlib.asynccontextmanager
    async def _lease_many(
        self, shared: PooledConnection | None, n: int
    ) -> AsyncIterator[list[PooledConnection]]:
        if shared is not None and n <= 1:
            yield [shared]
            return
        async with self.pool.lease_many(n) as conns:
            yield conns

    def _sessions_one(self, sftp: asyncssh.SFTPClient) -> asyncssh.SFTPClient:
        if self._bucket is None:
            return sftp
        return cast(asyncssh.SFTPClient, ThrottledSFTP(sftp, self._bucket))
