"""``FtpRemoteFS``: one partner's FTP/FTPS server behind the RemoteFS port.

The same guarantees as the SFTP adapter, with FTP's commands:

* never half a file under its final name: STOR to the temporary name, SIZE checked, the
  SHA-256 checked where the server hashes (``HASH``/``XSHA256``) or after any interruption
  (read back), then RNFR/RNTO; a server that refuses rename gets the partner's configured
  ``upload_strategy`` (``direct`` plus a done-marker), never a silent fallback;
* resume, don't restart: a local journal (``state_dir/journals/ftp-up-*.json``) says which
  temporary file is ours and what it will hold; a retry continues with ``REST`` + ``STOR``
  from the bytes already there once their tail matches the local file, and the whole file is
  then verified by hash before it may be renamed;
* the server's certificate is checked before the user name or the password is sent
  (``client``); a mismatch raises ``TlsCertificateMismatch`` (a ``HostKeyMismatch``: the
  partner is paused and an alert raised, as for a changed SSH host key);
* nothing lost on intake: downloads go to a hidden staging file (resumed with ``REST``), are
  fsynced, size-checked against a second look at the remote file and renamed into place;
  the remote post-action runs only after the caller's ``before_post_action``;
* one connection cap per partner (``ConnectionBudget``); ``ftplib`` calls run in threads;
* ``bandwidth_limit``: the same ``TokenBucket`` as SFTP, one per partner, drawn on for every
  block sent or received (uploads, downloads, read-back checks). Each file is one stream: no
  parallel segments over FTP (servers differ on ``REST`` + ``STOR`` into one file from
  several connections), and ``config check`` says segment settings are ignored here.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import json
import logging
import os
import posixpath
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Self, TypeVar

from consonance_sftp import errors
from consonance_sftp.adapters.ftp import ops
from consonance_sftp.adapters.ftp import probe as ftp_probe
from consonance_sftp.adapters.ftp.certificate import PresentedCertificate, fetch_certificate
from consonance_sftp.adapters.ftp.endpoint import FtpEndpoint
from consonance_sftp.adapters.ftp.pool import FtpConnection, FtpPool
from consonance_sftp.adapters.transfer_common import (
    TokenBucket,
    blocking_throttle,
    commit_local,
    done_marker,
    finish_download,
    retry_transient,
    temp_name_for,
)
from consonance_sftp.config.transfer import (
    ChecksumMethod,
    OverwritePolicy,
    PostAction,
    UploadStrategy,
)
from consonance_sftp.formats.packaging import sha256_file
from consonance_sftp.models import Verification
from consonance_sftp.ports.remote_fs import (
    ConnectionBudget,
    DownloadResult,
    ProbeReport,
    ProgressCallback,
    RemoteEntry,
    RemoteFS,
    SentTestFile,
    StagedFile,
    UploadItem,
    UploadResult,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Bytes of the partial temporary file compared with the local file before a resume.
_TAIL_CHECK = 64 * 1024


class FtpRemoteFS:
    """One partner's FTP/FTPS server: upload, download, list, walk, stat, move, remove."""

    def __init__(
        self,
        endpoint: FtpEndpoint,
        *,
        state_dir: Path,
        budget: ConnectionBudget | None = None,
        retries: int = 2,
    ) -> None:
        self.endpoint = endpoint
        self.settings = endpoint.transfer
        self.pool = FtpPool(endpoint, budget)
        self.state_dir = state_dir
        self.retries = retries
        self._interrupted: set[str] = set()  # temporary names whose STOR failed midway
        # bandwidth_limit: one bucket for every connection to this partner (as for SFTP);
        # each transfer's thread waits on it for every block (``ops.put``/``get``).
        limit = self.settings.bandwidth_limit
        self._bucket = TokenBucket(limit) if limit else None
        self._block = ops.block_size(limit)

    @property
    def partner(self) -> str:
        return self.endpoint.partner

    async def close(self) -> None:
        await self.pool.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- plumbing -----------------------------------------------------------------------

    async def _retrying(self, what: str, path: str, attempt_fn: Callable[[], Awaitable[T]]) -> T:
        return await retry_transient(
            what, path, attempt_fn, retries=self.retries, partner=self.partner, logger=log
        )

    def _run(
        self, conn: FtpConnection, fn: Callable[..., T], *args: object, path: str | None = None
    ) -> Awaitable[T]:
        return self.pool.run(conn, fn, *args, path=path)

    async def _stat(self, conn: FtpConnection, path: str) -> RemoteEntry | None:
        return await self._run(
            conn, ops.stat_path, conn.ftp, conn.features, path, conn.home, path=path
        )

    async def _size(self, conn: FtpConnection, path: str) -> int | None:
        return await self._run(conn, ops.size_of, conn.ftp, conn.features, path, path=path)

    def _journal_path(self, direction: str, remote_path: str) -> Path:
        key = hashlib.sha256(f"{self.partner}\0{direction}\0{remote_path}".encode()).hexdigest()
        return self.state_dir / "journals" / f"ftp-{direction}-{key[:32]}.json"

    @staticmethod
    def _read_journal(path: Path) -> dict[str, object] | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def _write_journal(path: Path, data: dict[str, object]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, sort_keys=True))
        os.replace(tmp, path)

    def _throttle(self) -> ops.Throttle | None:
        """The bandwidth limit, as a transfer thread waits on it (None: unlimited)."""
        return blocking_throttle(self._bucket, asyncio.get_running_loop())

    def _reporter(self, total: int, progress: ProgressCallback | None) -> Callable[[int], None]:
        """A progress callback safe to call from the transfer's thread."""
        if progress is None:
            return lambda done: None
        loop = asyncio.get_running_loop()

        def report(done: int) -> None:
            loop.call_soon_threadsafe(progress, done, total)

        return report

    # --- upload -------------------------------------------------------------------------

    def temp_name(self, final: str) -> str:
        return temp_name_for(self.settings, final)

    def staging_path(self, final: str, temp_path: str | None = None) -> str:
        if temp_path is not None:
            return temp_path
        if self.settings.upload_strategy is UploadStrategy.DIRECT:
            return final
        return self.temp_name(final)

    async def stage(
        self,
        local_path: Path,
        remote_path: str,
        *,
        progress: ProgressCallback | None = None,
        sha256: str | None = None,
        temp_path: str | None = None,
        replace_identical: bool = False,
    ) -> StagedFile:
        """Write under the staging name (resuming from verified bytes already there), check
        size and hash; nothing gets the final name (except with ``direct``)."""
        return await self._retrying(
            "upload",
            remote_path,
            lambda: self._stage_once(
                local_path, remote_path, progress, sha256, temp_path, replace_identical
            ),
        )

    async def _local_size(self, local_path: Path, remote_path: str) -> int:
        try:
            return (await asyncio.to_thread(local_path.stat)).st_size
        except OSError as exc:
            raise errors.TransportError(
                f"cannot read the local file {local_path}: {exc.strerror}",
                partner=self.partner,
                path=remote_path,
            ) from exc

    async def _local(
        self, local_path: Path, remote_path: str, known: str | None
    ) -> tuple[int, str]:
        try:
            size, sha = await asyncio.to_thread(sha256_file, local_path)
        except OSError as exc:
            raise errors.TransportError(
                f"cannot read the local file {local_path}: {exc.strerror}",
                partner=self.partner,
                path=remote_path,
            ) from exc
        if known is not None and known != sha:
            raise errors.IntegrityError(
                f"the local file {local_path} changed since it was hashed",
                partner=self.partner,
                path=remote_path,
            )
        return size, sha

    async def _stage_once(
        self,
        local_path: Path,
        remote_path: str,
        progress: ProgressCallback | None,
        known_sha: str | None,
        temp_path: str | None,
        replace_identical: bool,
    ) -> StagedFile:
        started = time.monotonic()
        ts = self.settings
        if known_sha is not None:
            # The caller hashed it (a planned file): it is hashed again while it is sent (one
            # read, not two), and a file that changed meanwhile fails after the STOR.
            size, sha = await self._local_size(local_path, remote_path), known_sha
        else:
            size, sha = await self._local(local_path, remote_path, known_sha)
        final = remote_path
        temp = self.staging_path(final, temp_path)
        direct = temp == final
        journal_path = self._journal_path("up", final)
        wanted: dict[str, object] = {"sha256": sha, "size": size, "temp": temp}
        ours = ts.resume and await asyncio.to_thread(self._read_journal, journal_path) == wanted
        async with self.pool.lease() as conn:
            if not (direct and ours):
                skipped = await self._overwrite_policy(
                    conn, final, size, sha, started, replace_identical
                )
                if skipped is not None:
                    return skipped
            offset = 0
            if ours:
                there = await self._stat(conn, temp)
                if there is not None and there.is_file and 0 < there.size <= size:
                    offset = await self._verified_prefix(conn, local_path, temp, there.size)
            await asyncio.to_thread(self._write_journal, journal_path, wanted)
            interrupted = offset > 0 or temp in self._interrupted
            if known_sha is not None and offset > 0:
                await self._local(local_path, remote_path, known_sha)  # a resume: the whole
            digest = hashlib.sha256() if known_sha is not None and offset == 0 else None
            if offset < size or size == 0:
                report = self._reporter(size, progress)
                try:
                    await self._run(
                        conn,
                        ops.put,
                        conn.ftp,
                        local_path,
                        temp,
                        offset,
                        report,
                        digest,
                        self._throttle(),
                        self._block,
                        path=temp,
                    )
                except errors.TransportError as exc:
                    if exc.retryable:
                        self._interrupted.add(temp)
                    raise
            if digest is not None and digest.hexdigest() != sha:
                await self._discard_staged(conn, journal_path, temp, direct)
                raise errors.IntegrityError(
                    f"the local file {local_path} changed since it was hashed",
                    partner=self.partner,
                    path=remote_path,
                )
            after = await self._size(conn, temp)
            if after != size:
                await self._discard_staged(conn, journal_path, temp, direct)
                raise errors.IntegrityError(
                    f"remote size {after} after upload, expected {size}",
                    partner=self.partner,
                    path=temp,
                )
            try:
                verified_by = await self._verify(conn, temp, size, sha, force=interrupted)
            except errors.IntegrityError:
                await self._discard_staged(conn, journal_path, temp, direct)
                raise
        self._interrupted.discard(temp)
        return StagedFile(
            remote_path=final,
            staged_path=temp,
            size=size,
            sha256=sha,
            verified_by=verified_by,
            resumed_from=offset,
            seconds=time.monotonic() - started,
        )

    async def _discard_staged(
        self, conn: FtpConnection, journal_path: Path, temp: str, direct: bool
    ) -> None:
        """Bytes that failed their check are never resumed from: journal and file go."""
        await asyncio.to_thread(journal_path.unlink, missing_ok=True)
        self._interrupted.discard(temp)
        if not direct:
            with contextlib.suppress(errors.TransportError):
                await self._run(conn, ops.delete, conn.ftp, temp, path=temp)

    async def _verified_prefix(
        self, conn: FtpConnection, local_path: Path, temp: str, remote_size: int
    ) -> int:
        """Where to continue: ``remote_size`` when the last bytes there equal the local
        file's (a server can keep zeros or a cut block after a drop), else 0. The whole
        file is checked by hash after the resumed upload in any case."""
        length = min(_TAIL_CHECK, remote_size)
        start = remote_size - length
        try:
            remote = await self._run(conn, ops.read_range, conn.ftp, temp, start, length, path=temp)
        except errors.TransportError as exc:
            if exc.retryable:
                raise
            return 0  # no REST on RETR: start again

        def local_tail() -> bytes:
            with open(local_path, "rb") as fh:
                fh.seek(start)
                return fh.read(length)

        if remote != await asyncio.to_thread(local_tail):
            log.warning(
                "the partial upload on the server does not end with the local bytes: "
                "sending the whole file again",
                extra={"partner": self.partner, "path": temp},
            )
            return 0
        return remote_size

    async def _overwrite_policy(
        self,
        conn: FtpConnection,
        final: str,
        size: int,
        sha: str,
        started: float,
        replace_identical: bool,
    ) -> StagedFile | None:
        ts = self.settings
        existing = await self._stat(conn, final)
        if existing is None or not existing.is_file:
            return None
        same: Verification | None = None
        if existing.size == size and (
            replace_identical or ts.overwrite is OverwritePolicy.SKIP_IF_IDENTICAL
        ):
            same = await self._hash_matches(conn, final, sha)
        if replace_identical and same is not None:
            return None
        if ts.overwrite is OverwritePolicy.FAIL:
            raise errors.RemoteFileExists(
                "the final name already exists and the overwrite policy is 'fail'",
                partner=self.partner,
                path=final,
                hint="Set transfer.overwrite to 'replace' or 'skip_if_identical'.",
            )
        if ts.overwrite is OverwritePolicy.SKIP_IF_IDENTICAL and same is not None:
            return StagedFile(
                remote_path=final,
                staged_path=final,
                size=size,
                sha256=sha,
                skipped=True,
                verified_by=same,
                seconds=time.monotonic() - started,
            )
        return None

    async def _remote_sha256(self, conn: FtpConnection, path: str) -> tuple[str, Verification]:
        """The SHA-256 of ``path``: the server's own where it offers one, else read back."""
        command = conn.features.sha256_command
        if command is not None:
            try:
                digest = await self._run(
                    conn, ops.server_sha256, conn.ftp, command, path, path=path
                )
                return digest, Verification.SERVER_HASH
            except errors.TransportError as exc:
                if exc.retryable:
                    raise
                log.info(
                    "the server's %s failed (%s): reading the file back instead",
                    command,
                    exc.detail,
                    extra={"partner": self.partner, "path": path},
                )
        _size, digest = await self._read_back(conn, path)
        return digest, Verification.READ_BACK

    async def _read_back(self, conn: FtpConnection, path: str) -> tuple[int, str]:
        """Download ``path`` again and hash it (within the bandwidth limit)."""
        return await self._run(
            conn,
            ops.read_back_sha256,
            conn.ftp,
            path,
            self._throttle(),
            self._block,
            path=path,
        )

    async def _hash_matches(self, conn: FtpConnection, path: str, sha: str) -> Verification | None:
        digest, how = await self._remote_sha256(conn, path)
        return how if digest == sha else None

    async def _verify(
        self, conn: FtpConnection, path: str, size: int, sha: str, *, force: bool
    ) -> Verification:
        """How the bytes at ``path`` were proven (raises IntegrityError on a mismatch). With
        ``checksum = "size"`` only the size, unless ``force`` (after an interruption)."""
        if self.settings.checksum is ChecksumMethod.SIZE and not force:
            return Verification.SIZE
        if self.settings.checksum is ChecksumMethod.READ_BACK:
            _n, digest = await self._read_back(conn, path)
            how = Verification.READ_BACK
        else:
            digest, how = await self._remote_sha256(conn, path)
        if digest != sha:
            raise errors.IntegrityError(
                f"remote checksum {digest} does not match the local SHA-256 {sha}",
                partner=self.partner,
                path=path,
            )
        return how

    async def publish(
        self,
        remote_path: str,
        *,
        sha256: str,
        temp_path: str | None = None,
        replace: bool = False,
    ) -> str:
        """Rename the staged file to its final name, then the done-marker; returns the
        strategy used (``rename``, ``delete_rename`` or ``direct``)."""
        return await self._retrying(
            "rename",
            remote_path,
            lambda: self._publish_once(remote_path, sha256, temp_path, replace),
        )

    async def _publish_once(
        self, final: str, sha: str, temp_path: str | None, replace: bool
    ) -> str:
        ts = self.settings
        temp = self.staging_path(final, temp_path)
        journal_path = self._journal_path("up", final)
        async with self.pool.lease() as conn:
            if temp == final:
                strategy = UploadStrategy.DIRECT.value
            else:
                strategy = await self._rename(conn, temp, final, sha, replace)
            if ts.done_marker:
                await self._write_marker(conn, final, sha)
        await asyncio.to_thread(journal_path.unlink, missing_ok=True)
        return strategy

    async def _rename(
        self, conn: FtpConnection, temp: str, final: str, sha: str, replace: bool
    ) -> str:
        ts = self.settings
        staged = await self._size(conn, temp)
        if staged is None:
            # Renamed already (the answer to an earlier RNTO was lost)? Only if the final
            # name holds exactly these bytes.
            if await self._stat(conn, final) is not None and await self._hash_matches(
                conn, final, sha
            ):
                return UploadStrategy.RENAME.value
            raise errors.RemotePathNotFound(
                "the staged file is gone before it was renamed", partner=self.partner, path=temp
            )
        delete_first = ts.upload_strategy is UploadStrategy.DELETE_RENAME or (
            replace and ts.upload_strategy is UploadStrategy.RENAME
        )
        if delete_first:
            await self._delete_if_there(conn, final)
        try:
            await self._run(conn, ops.rename, conn.ftp, temp, final, path=final)
        except errors.TransportError as exc:
            if exc.retryable:
                raise
            may_replace = replace or ts.overwrite is OverwritePolicy.REPLACE
            auto = ts.upload_strategy in (UploadStrategy.AUTO, UploadStrategy.POSIX_RENAME)
            if not delete_first and auto and may_replace and await self._stat(conn, final):
                # RNTO over an existing file refused (some servers): delete, then rename.
                await self._delete_if_there(conn, final)
                await self._run(conn, ops.rename, conn.ftp, temp, final, path=final)
                return UploadStrategy.DELETE_RENAME.value
            raise errors.RemotePermissionDenied(
                f"the server refused to rename the uploaded file: {exc.detail}",
                partner=self.partner,
                path=final,
                hint="This server forbids rename: set transfer.upload_strategy = 'direct' "
                "and a transfer.done_marker so the partner knows when a file is complete.",
            ) from exc
        after = await self._size(conn, final)
        if after != staged:
            raise errors.IntegrityError(
                f"after the rename the final name holds {after} bytes, expected {staged}",
                partner=self.partner,
                path=final,
            )
        return (UploadStrategy.DELETE_RENAME if delete_first else UploadStrategy.RENAME).value

    async def _delete_if_there(self, conn: FtpConnection, path: str) -> None:
        if await self._stat(conn, path) is not None:
            await self._run(conn, ops.delete, conn.ftp, path, path=path)

    async def _write_marker(self, conn: FtpConnection, final: str, sha: str) -> None:
        assert self.settings.done_marker is not None
        path, body = done_marker(self.settings.done_marker, final, sha)
        await self._run(conn, ops.put_bytes, conn.ftp, body, path, path=path)

    async def upload(
        self,
        local_path: Path,
        remote_path: str,
        *,
        progress: ProgressCallback | None = None,
        sha256: str | None = None,
        temp_path: str | None = None,
    ) -> UploadResult:
        """``stage`` then ``publish``, for a lone file."""
        staged = await self.stage(
            local_path, remote_path, progress=progress, sha256=sha256, temp_path=temp_path
        )
        strategy = ""
        if not staged.skipped:
            strategy = await self.publish(remote_path, sha256=staged.sha256, temp_path=temp_path)
        return UploadResult(
            remote_path=remote_path,
            size=staged.size,
            sha256=staged.sha256,
            skipped=staged.skipped,
            verified_by=staged.verified_by,
            resumed_from=staged.resumed_from,
            seconds=staged.seconds,
            strategy=strategy,
        )

    async def upload_many(
        self, items: Sequence[UploadItem], *, progress: ProgressCallback | None = None
    ) -> list[UploadResult | errors.TransportError]:
        """One result or error per item, in order, over up to ``file_connections``
        connections; ``progress`` counts files."""
        total, finished = len(items), 0
        width = max(1, min(self.settings.file_connections, self.endpoint.max_connections))
        gate = asyncio.Semaphore(width)

        async def one(item: UploadItem) -> UploadResult | errors.TransportError:
            nonlocal finished
            async with gate:
                try:
                    result: UploadResult | errors.TransportError = await self.upload(
                        item.local_path, item.remote_path, sha256=item.sha256
                    )
                except errors.TransportError as exc:
                    result = exc
            finished += 1
            if progress is not None:
                progress(finished, total)
            return result

        return list(await asyncio.gather(*(one(item) for item in items)))

    async def holds(self, remote_path: str, size: int, sha256: str) -> bool:
        return await self.held_by(remote_path, size, sha256) is not None

    async def held_by(self, remote_path: str, size: int, sha256: str) -> Verification | None:
        """How ``remote_path`` was found to hold exactly these bytes, or None."""
        async with self.pool.lease() as conn:
            found = await self._stat(conn, remote_path)
            if found is None or not found.is_file or found.size != size:
                return None
            return await self._hash_matches(conn, remote_path, sha256)

    # --- intake -------------------------------------------------------------------------

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
        """Durable local copy first; then ``before_post_action``; then the remote action."""
        result = await self._retrying(
            "download",
            remote_path,
            lambda: self._download_once(remote_path, local_path, expected_size, progress),
        )
        return await finish_download(
            result, remote_path, post_action, before_post_action, self.apply_post_action
        )

    async def _download_once(
        self,
        remote_path: str,
        local_path: Path,
        expected_size: int | None,
        progress: ProgressCallback | None,
    ) -> DownloadResult:
        started = time.monotonic()
        staging = local_path.with_name(f".{local_path.name}.partial")
        journal_path = self._journal_path("down", f"{remote_path}\0{local_path}")
        async with self.pool.lease() as conn:
            found = await self._stat(conn, remote_path)
            if found is None or not found.is_file:
                raise errors.RemotePathNotFound(
                    "no such file on the server", partner=self.partner, path=remote_path
                )
            if expected_size is not None and found.size != expected_size:
                raise errors.IntegrityError(
                    f"the remote file is {found.size} bytes, listed as {expected_size}: it changed",
                    partner=self.partner,
                    path=remote_path,
                )
            # Continue a partial copy only of this very version of the remote file.
            wanted: dict[str, object] = {"size": found.size, "mtime": found.mtime}
            offset = 0
            if self.settings.resume and staging.exists():
                journal = await asyncio.to_thread(self._read_journal, journal_path)
                have = staging.stat().st_size
                if journal == wanted and have <= found.size:
                    offset = have
            await asyncio.to_thread(self._write_journal, journal_path, wanted)
            report = self._reporter(found.size, progress)
            # From byte 0 the SHA-256 is taken as the bytes arrive (one pass); after a resume
            # the staging file is hashed whole once it is complete.
            digest = hashlib.sha256() if offset == 0 else None
            try:
                await self._run(
                    conn,
                    ops.get,
                    conn.ftp,
                    remote_path,
                    staging,
                    offset,
                    report,
                    digest,
                    self._throttle(),
                    self._block,
                    path=remote_path,
                )
            except OSError as exc:  # the local disk: the staging file stays for a resume
                raise errors.LocalDiskFull.writing(exc, local_path, kept=True) from exc
            after = await self._stat(conn, remote_path)
        if after is None or after.size != found.size or after.mtime != found.mtime:
            await asyncio.to_thread(staging.unlink, missing_ok=True)
            await asyncio.to_thread(journal_path.unlink, missing_ok=True)
            raise errors.IntegrityError(
                "the remote file changed while it was downloaded (still being written?)",
                partner=self.partner,
                path=remote_path,
            )
        got, sha = await asyncio.to_thread(
            commit_local, staging, local_path, digest.hexdigest() if digest else None
        )
        await asyncio.to_thread(journal_path.unlink, missing_ok=True)
        if got != found.size:
            raise errors.IntegrityError(
                f"downloaded {got} bytes, expected {found.size}",
                partner=self.partner,
                path=remote_path,
            )
        return DownloadResult(
            remote_path=remote_path,
            local_path=local_path,
            size=got,
            sha256=sha,
            resumed_from=offset,
            seconds=time.monotonic() - started,
        )

    async def apply_post_action(self, remote_path: str, action: PostAction | None = None) -> str:
        """Leave, delete or move a taken file; returns the new path after a move, else ""."""
        action = action or self.settings.post_action
        if action is PostAction.LEAVE:
            return ""
        async with self.pool.lease() as conn:
            if action is PostAction.DELETE:
                await self._run(conn, ops.delete, conn.ftp, remote_path, path=remote_path)
                return ""
            folder = self.settings.processed_folder
            if not folder:
                raise errors.UnsupportedOperation(
                    "post_action 'move' needs transfer.processed_folder",
                    partner=self.partner,
                    path=remote_path,
                )
            target = posixpath.join(folder, posixpath.basename(remote_path))
            if await self._stat(conn, target) is not None:
                target = f"{target}.{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
            await self._run(conn, ops.rename, conn.ftp, remote_path, target, path=remote_path)
            return target

    async def list_kinds(self, folder: str) -> AsyncIterator[tuple[RemoteEntry, str]]:
        """Every entry of ``folder`` with what it is: ``file``, ``folder``, ``symbolic
        link`` or ``special file``."""
        async with self.pool.lease() as conn:
            found = await self._run(
                conn, ops.list_folder, conn.ftp, conn.features, folder, path=folder
            )
        for item in found:
            yield item

    async def list(
        self,
        folder: str,
        *,
        pattern: str | None = None,
        regex: str | None = None,
        include_dirs: bool = False,
    ) -> AsyncIterator[RemoteEntry]:
        compiled = re.compile(regex) if regex else None
        async for entry, _kind in self.list_kinds(folder):
            if entry.is_dir and not include_dirs:
                continue
            if not entry.is_dir and not entry.is_file:
                continue
            if pattern and not fnmatch.fnmatchcase(entry.name, pattern):
                continue
            if compiled and not compiled.search(entry.name):
                continue
            yield entry

    async def walk(
        self, folder: str, *, max_depth: int | None = None, pattern: str | None = None
    ) -> AsyncIterator[RemoteEntry]:
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
        async with self.pool.lease() as conn:
            return await self._stat(conn, remote_path)

    async def wait_stable(
        self, entry: RemoteEntry, *, now: Callable[[], float] = time.time
    ) -> RemoteEntry | None:
        """The entry once the partner has finished writing it, else None (look again).

        With an intake done-marker, the marker decides. Otherwise two looks at the file
        (SIZE and MDTM, or MLST) ``stable_interval`` apart must agree, with the listed size,
        and the file must be ``min_age`` old. Both looks use the same command: a LIST shows
        times to the minute at best, MDTM to the second."""
        ts = self.settings
        if ts.intake_done_marker:
            folder, name = posixpath.split(entry.path)
            stem, dot, suffix = name.rpartition(".")
            marker = ts.intake_done_marker.format(
                name=name, stem=stem if dot else name, suffix=suffix if dot else ""
            )
            found = await self.stat(posixpath.join(folder, marker) if folder else marker)
            return await self.stat(entry.path) if found is not None else None
        first = await self.stat(entry.path)
        if first is None or first.size != entry.size:
            return None
        if ts.min_age and now() - first.mtime < ts.min_age:
            return None
        if ts.stable_interval:
            await asyncio.sleep(ts.stable_interval)
        again = await self.stat(entry.path)
        if again is None or again.size != first.size or again.mtime != first.mtime:
            return None
        return again

    # --- simple operations --------------------------------------------------------------

    async def remove(self, remote_path: str) -> None:
        async with self.pool.lease() as conn:
            await self._run(conn, ops.delete, conn.ftp, remote_path, path=remote_path)

    async def move(self, remote_path: str, new_path: str) -> None:
        async with self.pool.lease() as conn:
            await self._run(conn, ops.rename, conn.ftp, remote_path, new_path, path=remote_path)

    async def makedirs(self, remote_path: str) -> None:
        async with self.pool.lease() as conn:
            await self._run(conn, ops.makedirs, conn.ftp, remote_path, conn.home, path=remote_path)

    # --- partner doctor ----------------------------------------------------------------

    async def features(self) -> tuple[str, ...]:
        """The server's FEAT lines, as this adapter read them on connecting."""
        async with self.pool.lease() as conn:
            return conn.features.lines

    async def probe(self) -> ProbeReport:
        """What the server supports (FEAT, PROT P, TLS session reuse, rename, rename over an
        existing file, DELE, its hash, the PASV address) and the settings that follow. The
        connection it used is closed afterwards (PASV and a data connection without session
        reuse leave it in an unknown state)."""
        async with self.pool.lease() as conn:
            try:
                found = await self._run(
                    conn, ftp_probe.run_checks, conn.ftp, conn.features, self.endpoint, conn.home
                )
                return ftp_probe.build_report(self.endpoint, conn.ftp, conn.features, found)
            finally:
                conn.broken = True

    async def send_test_file(self, folder: str | None = None) -> SentTestFile:
        """A small file through the full upload protocol, then removed where allowed."""
        target = folder or (self.endpoint.folders[0] if self.endpoint.folders else "")
        name = f"consonance-sftp-test-{int(time.time())}.txt"
        remote = posixpath.join(target, name) if target else name
        local = self.state_dir / "probe" / name
        await asyncio.to_thread(local.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(local.write_bytes, b"consonance-sftp test file\n")
        try:
            upload = await self.upload(local, remote)
        finally:
            await asyncio.to_thread(local.unlink, missing_ok=True)
        try:
            await self.remove(remote)
        except errors.TransportError as exc:
            return SentTestFile(
                upload=upload, removed=False, left_behind=(remote,), cleanup_error=exc.detail
            )
        return SentTestFile(upload=upload)

    async def presented_host_keys(self) -> NoReturn:
        """SSH host keys do not apply: ``presented_certificate`` is the FTPS counterpart."""
        raise errors.UnsupportedOperation(
            "an FTP/FTPS server has no SSH host keys",
            partner=self.partner,
            hint="'partner trust NAME' shows and pins an FTPS server's TLS certificate.",
        )

    async def presented_certificate(self) -> PresentedCertificate:
        """The TLS certificate the server presents (``partner trust``): no login, nothing
        sent but ``AUTH TLS``; never checked against the pins here (that is the point)."""
        async with self.pool.budget.slot(self.partner, max(1, self.endpoint.max_connections)):
            return await asyncio.to_thread(fetch_certificate, self.endpoint)


if TYPE_CHECKING:
    _implements: type[RemoteFS] = FtpRemoteFS
