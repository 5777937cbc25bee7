"""``SftpRemoteFS``: one partner's SFTP server behind the RemoteFS port.

Upload protocol (never half a file under its final name):

1. hash the local file (SHA-256, also the ledger's content key);
2. apply the overwrite policy to an existing final name (fail / replace / skip-if-identical);
3. write into a temporary name (prefix/suffix, or a temp folder), in segments over one or
   several connections, recording finished segments in a local journal so an interrupted
   upload resumes from what is already on the server;
4. verify the remote size, and the SHA-256 where the server offers a way;
5. rename to the final name (``posix-rename`` when offered); servers that forbid rename,
   overwrite or setstat get the partner's configured strategy, never a silent fallback;
6. write the optional done-marker last.

Download protocol (nothing lost inbound): stream into a hidden staging file next to the
target, journal for resume, check the remote file did not change meanwhile, fsync, atomic
local rename, fsync the folder; only then may the remote file be moved or deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import logging
import os
import posixpath
import re
import stat as statmod
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import asyncssh

from consonance_sftp import errors
from consonance_sftp.adapters.sftp import checksums
from consonance_sftp.adapters.sftp.connection import (
    ConnectionPool,
    InProcessConnectionBudget,
    PooledConnection,
    fetch_host_key,
)
from consonance_sftp.adapters.sftp.endpoint import SftpEndpoint
from consonance_sftp.adapters.sftp.segmented import (
    SegmentJournal,
    file_source_id,
    get_segmented,
    put_segmented,
    segment_count,
)
from consonance_sftp.adapters.sftp.throttle import ThrottledSFTP, TokenBucket
from consonance_sftp.adapters.sftp.translate import translate
from consonance_sftp.config.transfer import (
    ChecksumMethod,
    OverwritePolicy,
    PostAction,
    UploadStrategy,
)
from consonance_sftp.ports.remote_fs import (
    ConnectionBudget,
    DownloadResult,
    ProbeReport,
    ProgressCallback,
    RemoteEntry,
    RemoteFS,
    UploadItem,
    UploadResult,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_RETRY_BASE_DELAY = 0.5
# Files up to this size are sent from memory in one pipelined burst on one handle, size-checked
# by fstat before close: no journal (a single segment resumes nothing), fewer round trips.
SMALL_FILE = 8 * 1024 * 1024
# With checksum 'auto', a hashing command runs for files from this size: an exec costs a new
# SSH channel (tens of ms), too much per small file whose bytes SSH's MAC already protects.
_SHELL_HASH_MIN_SIZE = 1024 * 1024


class SftpRemoteFS:
    """One partner's server: upload, download, list, walk, stat, move, remove."""

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

    @property
    def partner(self) -> str:
        return self.endpoint.partner

    async def close(self) -> None:
        await self.pool.close()

    async def __aenter__(self) -> SftpRemoteFS:
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
        for attempt in range(self.retries + 1):
            try:
                return await attempt_fn()
            except errors.TransportError as exc:
                if not exc.retryable or attempt == self.retries:
                    raise
                delay = _RETRY_BASE_DELAY * 2**attempt
                log.warning(
                    "%s failed, retrying in %.1fs: %s",
                    what,
                    delay,
                    exc,
                    extra={"partner": self.partner, "path": path, "attempt": attempt + 1},
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

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

    def temp_name(self, final: str) -> str:
        """Where ``final`` is written before it is renamed."""
        folder, name = posixpath.split(final)
        temp = f"{self.settings.temp_prefix}{name}{self.settings.temp_suffix}"
        if self.settings.temp_folder:
            return posixpath.join(self.settings.temp_folder, temp)
        return posixpath.join(folder, temp) if folder else temp

    def _journal_path(self, direction: str, remote_path: str) -> Path:
        key = hashlib.sha256(f"{self.partner}\0{direction}\0{remote_path}".encode()).hexdigest()
        return self.state_dir / "journals" / f"{direction}-{key[:32]}.journal"

    def _sessions(self, conns: Sequence[PooledConnection]) -> list[asyncssh.SFTPClient]:
        if self._bucket is None:
            return [c.sftp for c in conns]
        bucket = self._bucket
        return [cast(asyncssh.SFTPClient, ThrottledSFTP(c.sftp, bucket)) for c in conns]

    async def _watch(self, coro: Coroutine[Any, Any, None], path: str, ticks: list[float]) -> None:
        """Run a transfer; a stall longer than the operation timeout becomes TransferTimeout."""
        task = asyncio.ensure_future(coro)
        timeout = self.settings.operation_timeout
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=min(timeout, 5.0))
                if done:
                    break
                if time.monotonic() - ticks[0] > timeout:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
                    raise errors.TransferTimeout(
                        f"no progress for {timeout:.0f}s", partner=self.partner, path=path
                    )
            task.result()
        except errors.TransportError:
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

    # --- upload -------------------------------------------------------------------------

    async def upload(
        self, local_path: Path, remote_path: str, *, progress: ProgressCallback | None = None
    ) -> UploadResult:
        """Send one file through the full upload protocol (retrying transient failures)."""
        return await self._retrying(
            "upload",
            remote_path,
            lambda: self._upload_once(local_path, remote_path, progress, None),
        )

    async def upload_many(
        self,
        items: Sequence[UploadItem],
        *,
        progress: ProgressCallback | None = None,
    ) -> list[UploadResult | errors.TransportError]:
        """Upload many (small) files concurrently, spread over up to ``file_connections``
        connections with ``file_concurrency`` files in flight on each.

        Returns one result per item, in order: an ``UploadResult``, or the error that item
        ended with (other items go on). ``progress`` reports (files done, files total).
        """
        total = len(items)
        finished = 0
        ts = self.settings
        n_conns = max(1, min(ts.file_connections, self.endpoint.max_connections, total))
        results: list[UploadResult | errors.TransportError] = []

        async with self.pool.lease_many(n_conns) as conns:
            gates = [asyncio.Semaphore(ts.file_concurrency) for _ in conns]

            async def one(i: int, item: UploadItem) -> UploadResult | errors.TransportError:
                nonlocal finished
                shared, gate = conns[i % len(conns)], gates[i % len(conns)]
                async with gate:
                    try:
                        result: UploadResult | errors.TransportError = await self._retrying(
                            "upload",
                            item.remote_path,
                            # a retry after a dropped connection takes a fresh one
                            lambda: self._upload_once(
                                item.local_path,
                                item.remote_path,
                                None,
                                shared if shared.alive else None,
                            ),
                        )
                    except errors.TransportError as exc:
                        result = exc
                finished += 1
                if progress is not None:
                    progress(finished, total)
                return result

            results = list(await asyncio.gather(*(one(i, it) for i, it in enumerate(items))))
        return results

    async def _upload_once(
        self,
        local_path: Path,
        remote_path: str,
        progress: ProgressCallback | None,
        shared: PooledConnection | None,
    ) -> UploadResult:
        try:
            size = (await asyncio.to_thread(os.stat, local_path)).st_size
        except OSError as exc:
            raise errors.TransportError(
                f"cannot read the local file {local_path}: {exc.strerror}",
                partner=self.partner,
                path=remote_path,
            ) from exc
        data: bytes | None = None
        if size <= min(SMALL_FILE, self.settings.segment_size):
            # One trip to a thread reads and hashes a small file: it is sent from memory.
            content, sha = await asyncio.to_thread(_read_and_hash, local_path)
            data = content
            hashing: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
            hashing.set_result((len(content), sha))
        else:
            # Hash while the bytes travel: hashing first would add a full read of the file to
            # every upload's time.
            hashing = asyncio.ensure_future(asyncio.to_thread(checksums.sha256_file, local_path))
        try:
            return await self._upload_hashed(
                local_path, remote_path, size, hashing, progress, shared, data
            )
        finally:
            if not hashing.done():
                hashing.cancel()

    async def _local_sha(
        self, hashing: asyncio.Future[tuple[int, str]], size: int, local_path: Path, path: str
    ) -> str:
        try:
            hashed_size, sha = await hashing
        except OSError as exc:
            raise errors.TransportError(
                f"cannot read the local file {local_path}: {exc.strerror}",
                partner=self.partner,
                path=path,
            ) from exc
        if hashed_size != size:
            raise errors.IntegrityError(
                f"the local file {local_path} changed while it was sent",
                partner=self.partner,
                path=path,
            )
        return sha

    async def _upload_hashed(
        self,
        local_path: Path,
        remote_path: str,
        size: int,
        hashing: asyncio.Future[tuple[int, str]],
        progress: ProgressCallback | None,
        shared: PooledConnection | None,
        data: bytes | None,
    ) -> UploadResult:
        started = time.monotonic()
        ts = self.settings
        final = remote_path
        direct = ts.upload_strategy is UploadStrategy.DIRECT
        temp = final if direct else self.temp_name(final)

        async with self._lease(shared) as pc:
            # An atomic replace needs no look at the final name first: one round trip less
            # per file, which counts for batches of small files.
            replacing = ts.overwrite is OverwritePolicy.REPLACE and (
                self._strategy(pc.sftp) is UploadStrategy.POSIX_RENAME
            )
            existing = None if replacing else await self._stat(pc.sftp, final)
            if existing is not None:
                if ts.overwrite is OverwritePolicy.FAIL:
                    raise errors.RemoteFileExists(
                        "the final name already exists and the overwrite policy is 'fail'",
                        partner=self.partner,
                        path=final,
                        hint="Set transfer.overwrite to 'replace' or 'skip_if_identical'.",
                    )
                if ts.overwrite is OverwritePolicy.SKIP_IF_IDENTICAL and existing.size == size:
                    sha = await self._local_sha(hashing, size, local_path, final)
                    remote_sha, _how = await self._remote_sha256(pc, final, force=True)
                    if remote_sha == sha:
                        log.info(
                            "identical file already present, skipped",
                            extra={"partner": self.partner, "path": final},
                        )
                        return UploadResult(
                            remote_path=final,
                            size=size,
                            sha256=sha,
                            skipped=True,
                            verified_by=_how,
                            seconds=time.monotonic() - started,
                        )

        journal: SegmentJournal | None = None
        resumed_from = 0
        segment_size = ts.segment_size
        small = data is not None
        if ts.resume and segment_count(size, segment_size) > 1:
            journal = await asyncio.to_thread(
                SegmentJournal,
                self._journal_path("up", final),
                file_size=size,
                segment_size=segment_size,
                source_id=file_source_id(local_path) + f";temp={temp}",
            )
            done = journal.done()
            if done:
                async with self._lease(shared) as pc:
                    if await self._stat(pc.sftp, temp) is None:
                        # The partial file is gone (cleaned up by the partner): start over.
                        journal.remove()
                        journal = await asyncio.to_thread(
                            SegmentJournal,
                            journal.path,
                            file_size=size,
                            segment_size=segment_size,
                            source_id=journal.source_id,
                        )
                        done = set()
                resumed_from = sum(min(segment_size, size - i * segment_size) for i in done)
                if resumed_from:
                    log.info(
                        "resuming upload: %d of %d bytes already on the server",
                        resumed_from,
                        size,
                        extra={"partner": self.partner, "path": final},
                    )

        if not small and not resumed_from:
            # A fresh start: the segmented writer never truncates (sessions must not wipe each
            # other's ranges), so a stale, longer temporary file from an abandoned attempt is
            # cut to nothing first.
            async with self._lease(shared) as pc:
                await self._guard(self._truncate(pc.sftp, temp), temp)

        ticks = [time.monotonic()]
        report = self._progress(size, progress, ticks)
        n_conns = ts.segment_connections if size >= ts.segmented_threshold else 1
        n_conns = min(n_conns, segment_count(size, segment_size), self.endpoint.max_connections)
        async with self._lease_many(shared, n_conns) as conns:
            if small:
                await self._watch(
                    self._put_small(conns[0].sftp, data or b"", temp, size, report), temp, ticks
                )
            else:
                await self._watch(
                    put_segmented(
                        self._sessions(conns),
                        local_path,
                        temp,
                        segment_size=segment_size,
                        block_size=ts.block_size,
                        max_requests=ts.max_requests,
                        journal=journal,
                        progress=report,
                    ),
                    temp,
                    ticks,
                )

        sha = await self._local_sha(hashing, size, local_path, final)
        async with self._lease(shared) as pc:
            attrs = None if small else await self._stat(pc.sftp, temp)
            if not small and (attrs is None or attrs.size != size):
                if journal is not None:
                    journal.remove()
                with contextlib.suppress(errors.TransportError):
                    if not direct:
                        await self._guard(pc.sftp.remove(temp), temp)
                raise errors.IntegrityError(
                    f"remote size {None if attrs is None else attrs.size} after upload, "
                    f"expected {size}",
                    partner=self.partner,
                    path=temp,
                )
            remote_sha, verified_by = await self._remote_sha256(pc, temp, size=size)
            if remote_sha is not None and remote_sha != sha:
                if journal is not None:
                    journal.remove()
                with contextlib.suppress(errors.TransportError):
                    if not direct:
                        await self._guard(pc.sftp.remove(temp), temp)
                raise errors.IntegrityError(
                    f"remote SHA-256 {remote_sha} does not match the local {sha}",
                    partner=self.partner,
                    path=temp,
                )
            if ts.set_mtime:
                await self._set_mtime(pc.sftp, local_path, temp)
            strategy = await self._finalize(pc, temp, final)
            if ts.done_marker:
                await self._write_marker(pc.sftp, final, sha)
        if journal is not None:
            journal.remove()
        return UploadResult(
            remote_path=final,
            size=size,
            sha256=sha,
            verified_by=verified_by,
            resumed_from=resumed_from,
            seconds=time.monotonic() - started,
            strategy=strategy,
        )

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

    async def _put_small(
        self,
        sftp: asyncssh.SFTPClient,
        data: bytes,
        temp: str,
        size: int,
        report: Callable[[int], None],
    ) -> None:
        if len(data) != size:
            raise errors.IntegrityError(
                f"the local file changed while it was sent ({len(data)} bytes, hashed {size})",
                partner=self.partner,
                path=temp,
            )
        session = self._sessions_one(sftp)
        flags = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC
        block = self.settings.block_size
        done = 0

        async def put(offset: int) -> None:
            nonlocal done
            chunk = data[offset : offset + block]
            await fh.write(chunk, offset)
            done += len(chunk)
            report(done)

        # Every write is acknowledged by the server (SSH_FX_OK) and the writes cover
        # [0, size) of a truncated file: that is the size check, without an fstat round trip
        # per file (small files are latency-bound), and a partner that moves files away on
        # close cannot make it fail.
        async with await session.open(temp, flags, encoding=None, block_size=0) as fh:
            await asyncio.gather(*(put(offset) for offset in range(0, size, block)))

    @staticmethod
    async def _truncate(sftp: asyncssh.SFTPClient, path: str) -> None:
        flags = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC
        async with await sftp.open(path, flags, encoding=None, block_size=0):
            pass

    def _sessions_one(self, sftp: asyncssh.SFTPClient) -> asyncssh.SFTPClient:
        if self._bucket is None:
            return sftp
        return cast(asyncssh.SFTPClient, ThrottledSFTP(sftp, self._bucket))

    async def _remote_sha256(
        self, pc: PooledConnection, path: str, *, size: int = 0, force: bool = False
    ) -> tuple[str | None, str]:
        """(SHA-256 or None, how it was checked). ``force``: read back if nothing else works."""
        ts = self.settings
        method = ts.checksum
        want_check_file = method is ChecksumMethod.CHECK_FILE or (
            method is ChecksumMethod.AUTO and "check_file" not in self._unsupported
        )
        if want_check_file:
            try:
                digest = await self._guard(checksums.check_file_sha256(pc.sftp, path), path)
                return digest, "check_file"
            except errors.UnsupportedOperation:
                self._unsupported.add("check_file")
                if method is ChecksumMethod.CHECK_FILE:
                    raise
        want_shell = method is ChecksumMethod.SHELL or (
            method is ChecksumMethod.AUTO
            and ts.allow_shell
            and (force or size >= _SHELL_HASH_MIN_SIZE)
        )
        if want_shell:
            digest = await self._guard(
                checksums.shell_sha256(
                    pc.conn, ts.shell_hash_command, path, limit=ts.operation_timeout
                ),
                path,
            )
            return digest, "shell"
        if method is ChecksumMethod.READ_BACK or force:
            _size, digest = await self._guard(
                checksums.read_back_sha256(
                    pc.sftp, path, block_size=ts.block_size, max_requests=ts.max_requests
                ),
                path,
            )
            return digest, "read_back"
        return None, "size"

    async def _set_mtime(self, sftp: asyncssh.SFTPClient, local_path: Path, temp: str) -> None:
        st = await asyncio.to_thread(os.stat, local_path)
        try:
            await self._guard(sftp.utime(temp, (st.st_atime, st.st_mtime)), temp)
        except (errors.RemotePermissionDenied, errors.UnsupportedOperation) as exc:
            raise errors.UnsupportedOperation(
                f"the server refused to set the modification time: {exc.message}",
                partner=self.partner,
                path=temp,
                hint="This server forbids setstat: set transfer.set_mtime = false.",
            ) from exc

    def _strategy(self, sftp: asyncssh.SFTPClient) -> UploadStrategy:
        chosen = self.settings.upload_strategy
        if chosen is not UploadStrategy.AUTO:
            return chosen
        offers_posix = bool(getattr(sftp._handler, "_supports_posix_rename", False))
        if offers_posix and "posix_rename" not in self._unsupported:
            return UploadStrategy.POSIX_RENAME
        if self.settings.overwrite is OverwritePolicy.FAIL:
            return UploadStrategy.RENAME
        return UploadStrategy.DELETE_RENAME

    async def _finalize(self, pc: PooledConnection, temp: str, final: str) -> str:
        """Give the verified temporary file its final name; returns the strategy used."""
        sftp = pc.sftp
        strategy = self._strategy(sftp)
        if strategy is UploadStrategy.DIRECT:
            return strategy.value
        try:
            if strategy is UploadStrategy.POSIX_RENAME:
                try:
                    await self._guard(sftp.posix_rename(temp, final), final)
                    return strategy.value
                except errors.UnsupportedOperation:
                    if self.settings.upload_strategy is not UploadStrategy.AUTO:
                        raise
                    # Advertised but refused. 'auto' is the documented adaptive mode: note it
                    # and use the plain rename it would have chosen without the extension.
                    self._unsupported.add("posix_rename")
                    log.warning(
                        "server refused posix-rename; using rename (set upload_strategy to "
                        "pin this)",
                        extra={"partner": self.partner, "path": final},
                    )
                    strategy = self._strategy(sftp)
            if (
                strategy is UploadStrategy.DELETE_RENAME
                and await self._stat(sftp, final) is not None
            ):
                await self._guard(sftp.remove(final), final)
            try:
                await self._guard(sftp.rename(temp, final), final)
            except (errors.RemoteFileExists, errors.TransportError) as exc:
                if type(exc) in (errors.RemoteFileExists, errors.TransportError) and (
                    await self._stat(sftp, final) is not None
                ):
                    raise errors.RemoteFileExists(
                        "the server will not rename over the existing final name",
                        partner=self.partner,
                        path=final,
                        hint="Set transfer.upload_strategy = 'delete_rename', or overwrite "
                        "= 'fail' if replacing is not wanted.",
                    ) from exc
                raise
        except (errors.RemotePermissionDenied, errors.UnsupportedOperation) as exc:
            # Terminal: leave no orphaned temporary file behind (pitfall: ".part" leftovers).
            with contextlib.suppress(errors.TransportError):
                await self._guard(sftp.remove(temp), temp)
            raise type(exc)(
                f"the server refused to rename the uploaded file: {exc.message}",
                partner=self.partner,
                path=final,
                hint="This server forbids rename: set transfer.upload_strategy = 'direct' "
                "and a transfer.done_marker so the partner knows when a file is complete.",
            ) from exc
        return strategy.value

    async def _write_marker(self, sftp: asyncssh.SFTPClient, final: str, sha: str) -> None:
        assert self.settings.done_marker is not None
        folder, name = posixpath.split(final)
        stem, dot, suffix = name.rpartition(".")
        marker = self.settings.done_marker.format(
            name=name, stem=stem if dot else name, suffix=suffix if dot else ""
        )
        path = posixpath.join(folder, marker) if folder else marker
        body = f"{sha}  {name}\n".encode()

        async def write() -> None:
            async with sftp.open(path, "wb") as fh:
                await fh.write(body)

        await self._guard(write(), path)

    # --- download -----------------------------------------------------------------------

    async def download(
        self,
        remote_path: str,
        local_path: Path,
        *,
        expected_size: int | None = None,
        progress: ProgressCallback | None = None,
        post_action: PostAction | None = None,
        before_post_action: Callable[[DownloadResult], Awaitable[None]] | None = None,
    ) -> DownloadResult:
        """Fetch ``remote_path`` into ``local_path`` durably, then apply the post-action.

        ``before_post_action`` runs after the local copy is durable and before the remote
        file is moved or deleted (the caller records the file there). ``post_action`` None
        leaves the remote file alone.
        """
        result = await self._retrying(
            "download",
            remote_path,
            lambda: self._download_once(remote_path, local_path, expected_size, progress),
        )
        if post_action is not None and post_action is not PostAction.LEAVE:
            if before_post_action is not None:
                await before_post_action(result)
            moved_to = await self.apply_post_action(remote_path, post_action)
            result = DownloadResult(
                remote_path=result.remote_path,
                local_path=result.local_path,
                size=result.size,
                sha256=result.sha256,
                resumed_from=result.resumed_from,
                seconds=result.seconds,
                post_action=f"{post_action.value}:{moved_to}" if moved_to else post_action.value,
            )
        return result

    async def _download_once(
        self,
        remote_path: str,
        local_path: Path,
        expected_size: int | None,
        progress: ProgressCallback | None,
    ) -> DownloadResult:
        started = time.monotonic()
        ts = self.settings
        async with self.pool.lease() as pc:
            attrs = await self._guard(pc.sftp.stat(remote_path), remote_path)
        size = attrs.size or 0
        mtime = attrs.mtime or 0
        if expected_size is not None and size != expected_size:
            raise errors.IntegrityError(
                f"the remote file is {size} bytes, listed as {expected_size}: it changed",
                partner=self.partner,
                path=remote_path,
            )
        staging = local_path.with_name(f".{local_path.name}.partial")
        journal: SegmentJournal | None = None
        resumed_from = 0
        if ts.resume and size > 0:
            journal = await asyncio.to_thread(
                SegmentJournal,
                self._journal_path("down", f"{remote_path}\0{local_path}"),
                file_size=size,
                segment_size=ts.segment_size,
                source_id=f"{self.partner}:{remote_path}:{size}:{mtime}",
            )
            done = journal.done()
            if done and not staging.exists():
                journal.remove()
                journal = await asyncio.to_thread(
                    SegmentJournal,
                    journal.path,
                    file_size=size,
                    segment_size=ts.segment_size,
                    source_id=journal.source_id,
                )
                done = set()
            resumed_from = sum(min(ts.segment_size, size - i * ts.segment_size) for i in done)

        ticks = [time.monotonic()]
        report = self._progress(size, progress, ticks)
        n_conns = ts.segment_connections if size >= ts.segmented_threshold else 1
        n_conns = min(n_conns, segment_count(size, ts.segment_size), self.endpoint.max_connections)
        async with self.pool.lease_many(n_conns) as conns:
            await self._watch(
                get_segmented(
                    self._sessions(conns),
                    remote_path,
                    staging,
                    size=size,
                    segment_size=ts.segment_size,
                    block_size=ts.block_size,
                    max_requests=ts.max_requests,
                    journal=journal,
                    progress=report,
                ),
                remote_path,
                ticks,
            )
            after = await self._stat(conns[0].sftp, remote_path)
        if after is None or after.size != size or (after.mtime or 0) != mtime:
            if journal is not None:
                journal.remove()
            with contextlib.suppress(OSError):
                staging.unlink()
            raise errors.IntegrityError(
                "the remote file changed while it was downloaded (still being written?)",
                partner=self.partner,
                path=remote_path,
            )
        got, sha = await asyncio.to_thread(_commit_local, staging, local_path)
        if got != size:
            raise errors.IntegrityError(
                f"downloaded {got} bytes, expected {size}", partner=self.partner, path=remote_path
            )
        if journal is not None:
            journal.remove()
        return DownloadResult(
            remote_path=remote_path,
            local_path=local_path,
            size=size,
            sha256=sha,
            resumed_from=resumed_from,
            seconds=time.monotonic() - started,
        )

    async def apply_post_action(self, remote_path: str, action: PostAction | None = None) -> str:
        """Leave, delete or move a taken file; returns the new path after a move, else ""."""
        action = action or self.settings.post_action
        if action is PostAction.LEAVE:
            return ""
        async with self.pool.lease() as pc:
            if action is PostAction.DELETE:
                await self._guard(pc.sftp.remove(remote_path), remote_path)
                return ""
            folder = self.settings.processed_folder
            if not folder:
                raise errors.UnsupportedOperation(
                    "post_action 'move' needs transfer.processed_folder",
                    partner=self.partner,
                    path=remote_path,
                )
            target = posixpath.join(folder, posixpath.basename(remote_path))
            if await self._stat(pc.sftp, target) is not None:
                stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
                target = f"{target}.{stamp}"
            await self._guard(pc.sftp.rename(remote_path, target), remote_path)
            return target

    # --- listing ------------------------------------------------------------------------

    async def list(
        self,
        folder: str,
        *,
        pattern: str | None = None,
        regex: str | None = None,
        include_dirs: bool = False,
    ) -> AsyncIterator[RemoteEntry]:
        """Entries of ``folder`` as the server sends them (batch by batch, never all at once)."""
        compiled = re.compile(regex) if regex else None
        async with self.pool.lease() as pc:
            iterator = pc.sftp.scandir(folder).__aiter__()
            while True:
                try:
                    name = await self._guard(iterator.__anext__(), folder)
                except StopAsyncIteration:
                    break
                filename = name.filename
                if not isinstance(filename, str):
                    filename = os.fsdecode(filename)
                if filename in (".", ".."):
                    continue
                entry = self._entry(posixpath.join(folder, filename), filename, name.attrs)
                if entry.is_dir and not include_dirs:
                    continue
                if pattern and not fnmatch.fnmatchcase(filename, pattern):
                    continue
                if compiled and not compiled.search(filename):
                    continue
                yield entry

    async def walk(
        self, folder: str, *, max_depth: int | None = None, pattern: str | None = None
    ) -> AsyncIterator[RemoteEntry]:
        """Files below ``folder``; ``max_depth`` 1 is the folder itself, None is unlimited."""
        queue: list[tuple[str, int]] = [(folder, 1)]
        while queue:
            current, depth = queue.pop(0)
            async for entry in self.list(current, include_dirs=True):
                if entry.is_dir:
                    if max_depth is None or depth < max_depth:
                        queue.append((entry.path, depth + 1))
                    continue
                if pattern and not fnmatch.fnmatchcase(entry.name, pattern):
                    continue
                yield entry

    async def stat(self, remote_path: str) -> RemoteEntry | None:
        async with self.pool.lease() as pc:
            attrs = await self._stat(pc.sftp, remote_path)
        if attrs is None:
            return None
        return self._entry(remote_path, posixpath.basename(remote_path), attrs)

    async def wait_stable(
        self, entry: RemoteEntry, *, now: Callable[[], float] = time.time
    ) -> RemoteEntry | None:
        """The entry if the partner has finished writing it, else None (look again later).

        With an inbound done-marker, the marker's presence decides. Otherwise the file must
        be at least ``min_age`` old (by its mtime) and keep its size and mtime across
        ``stable_interval`` seconds.
        """
        ts = self.settings
        if ts.inbound_done_marker:
            folder, name = posixpath.split(entry.path)
            stem, dot, suffix = name.rpartition(".")
            marker = ts.inbound_done_marker.format(
                name=name, stem=stem if dot else name, suffix=suffix if dot else ""
            )
            found = await self.stat(posixpath.join(folder, marker) if folder else marker)
            return await self.stat(entry.path) if found is not None else None
        if ts.min_age and now() - entry.mtime < ts.min_age:
            return None
        if ts.stable_interval:
            await asyncio.sleep(ts.stable_interval)
        again = await self.stat(entry.path)
        if again is None or again.size != entry.size or again.mtime != entry.mtime:
            return None
        return again

    # --- partner doctor -----------------------------------------------------------------

    async def probe(self) -> ProbeReport:
        """What this partner's server supports, and recommended settings (``partner probe``)."""
        from consonance_sftp.adapters.sftp.probe import probe_partner

        return await probe_partner(self)

    async def send_test_file(self, folder: str | None = None) -> UploadResult:
        """One small file through the full upload protocol, then removed (``partner test``)."""
        from consonance_sftp.adapters.sftp.probe import send_test_file

        return await send_test_file(self, folder)

    async def presented_host_key(self) -> tuple[str, str]:
        """(fingerprint, known_hosts line) the server presents now (``partner trust``)."""
        return await fetch_host_key(self.endpoint)

    # --- simple operations --------------------------------------------------------------

    async def remove(self, remote_path: str) -> None:
        async with self.pool.lease() as pc:
            await self._guard(pc.sftp.remove(remote_path), remote_path)

    async def move(self, remote_path: str, new_path: str) -> None:
        async with self.pool.lease() as pc:
            await self._guard(pc.sftp.rename(remote_path, new_path), remote_path)

    async def makedirs(self, remote_path: str) -> None:
        async with self.pool.lease() as pc:
            await self._guard(pc.sftp.makedirs(remote_path, exist_ok=True), remote_path)


if TYPE_CHECKING:
    # mypy checks that the adapter implements the port.
    _implements: type[RemoteFS] = SftpRemoteFS


def _read_and_hash(path: Path) -> tuple[bytes, str]:
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def _commit_local(staging: Path, final: Path) -> tuple[int, str]:
    """Hash the fsynced staging file, rename it into place, fsync the folder."""
    size, sha = checksums.sha256_file(staging)
    os.replace(staging, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return size, sha
