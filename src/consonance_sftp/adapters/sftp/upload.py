"""The upload protocol of ``SftpRemoteFS`` (never half a file under its final name).

It comes in two halves, so a package can be all-or-nothing: ``stage`` (steps 1-4) leaves a
verified file under its temporary name, ``publish`` (steps 5-6) gives it its final name. The
delivery engine stages every file of a package before it publishes the first; ``upload`` is
both at once, for a lone file.

1. hash the local file (SHA-256, also the ledger's content key), while it is sent;
2. apply the overwrite policy to an existing final name (fail / replace / skip-if-identical);
3. write into a temporary name (prefix/suffix, or a temp folder), in segments over one or
   several connections, recording finished segments in a local journal so an interrupted
   upload resumes from what is already on the server;
4. verify the remote size, and the SHA-256 where the server offers a way;
5. rename to the final name (``posix-rename`` when offered); servers that forbid rename,
   overwrite or setstat get the partner's configured strategy, never a silent fallback;
6. write the optional done-marker last.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import cast

import asyncssh

from consonance_sftp import errors
from consonance_sftp.adapters.sftp import checksums, verify
from consonance_sftp.adapters.sftp.connection import (
    PooledConnection,
)
from consonance_sftp.adapters.sftp.publish import PublishMixin
from consonance_sftp.adapters.sftp.resume import (
    contiguous_prefix,
    reconcile_journal,
    refused_by_write_model,
)
from consonance_sftp.adapters.sftp.segmented import (
    SegmentHash,
    SegmentJournal,
    file_source_id,
    put_segmented,
    put_stream,
    read_sizes,
    segment_count,
)
from consonance_sftp.adapters.sftp.verify import reads_back, remote_sha256
from consonance_sftp.adapters.transfer_common import temp_name_for
from consonance_sftp.config.transfer import (
    ChecksumMethod,
    OverwritePolicy,
    UploadStrategy,
)
from consonance_sftp.models import Verification
from consonance_sftp.ports.remote_fs import (
    ProgressCallback,
    StagedFile,
    UploadItem,
    UploadResult,
)

log = logging.getLogger(__name__)

# Files up to this size are sent from memory in one pipelined burst on one handle, size-checked
# by fstat before close: no journal (a single segment resumes nothing), fewer round trips.
SMALL_FILE = 8 * 1024 * 1024

# ``upload_many`` reads files up to this size ahead, READ_AHEAD_FILES to a trip to a thread (a
# run is held until each of its files is taken): a trip costs more CPU than reading and hashing
# a 50 KB file (2,000 such files to OpenSSH, alternating runs: 1.21 -> 0.97 client CPU-ms a file).
READ_AHEAD_LARGEST = 256 * 1024
READ_AHEAD_FILES = 32


class _ReadAhead:
    """Small files read and hashed ahead, ``READ_AHEAD_FILES`` to a trip to a thread, the next
    run while the current one is sent; a run is let go once each of its files is taken."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths = paths
        self._runs: dict[int, asyncio.Future[list[tuple[bytes, str] | None]]] = {}
        self._left: dict[int, int] = {}

    def _start(self, run: int) -> None:
        first = run * READ_AHEAD_FILES
        if run not in self._left and first < len(self._paths):
            paths = self._paths[first : first + READ_AHEAD_FILES]
            self._left[run] = len(paths)
            self._runs[run] = asyncio.ensure_future(
                asyncio.to_thread(checksums.read_small_files, paths, READ_AHEAD_LARGEST)
            )

    async def take(self, index: int) -> tuple[bytes, str] | None:
        """File ``index``'s bytes and SHA-256 (each is taken once), or None: larger, or it
        could not be read ahead (its upload reads it itself, and words any error)."""
        run = index // READ_AHEAD_FILES
        self._start(run)
        self._start(run + 1)
        reading = self._runs[run]
        try:
            got = await asyncio.shield(reading)
        except Exception:
            got = None
        self._left[run] -= 1
        if not self._left[run]:
            del self._runs[run]
        if got is None:
            return None
        found, got[index % READ_AHEAD_FILES] = got[index % READ_AHEAD_FILES], None
        return found

    def close(self) -> None:
        for reading in self._runs.values():
            reading.cancel()
        self._runs.clear()


def _quiet(done: asyncio.Future[tuple[int, str]]) -> None:
    """A local read nobody waits for: its failure is met by whoever needs its hashes (the
    journal's segments, a verification by segments, each hashes the file itself then)."""
    if not done.cancelled():
        done.exception()


class UploadMixin(PublishMixin):
    """``stage``, ``publish``, ``upload``, ``upload_many`` and their protocol."""

    # The one look at whether the server answers check-file (``_learn_check_file``).
    _check_file_asked: asyncio.Future[None] | None = None

    def staging_path(self, final: str, temp_path: str | None = None) -> str:
        """Where ``stage`` writes the bytes meant for ``final``: the delivery convention's
        fixed temporary name, else the partner's temp name; the final name itself with the
        ``direct`` strategy (a server that forbids rename)."""
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
        """Write ``local_path`` under its staging name and verify it (size, and SHA-256 where
        the server offers a way), resuming from the segments an earlier attempt left there;
        nothing gets the final name (except with ``direct``, see ``staging_path``). The
        overwrite policy is applied to the final name first, except to a final name holding
        exactly these bytes when ``replace_identical`` (an explicit resend: the old copy stays
        until ``publish(replace=True)``). Retries transient failures."""
        return await self._retrying(
            "upload",
            remote_path,
            lambda: self._stage_once(
                local_path,
                remote_path,
                progress,
                None,
                sha256,
                temp_path,
                replace_identical=replace_identical,
            ),
        )

    async def publish(
        self,
        remote_path: str,
        *,
        sha256: str,
        temp_path: str | None = None,
        replace: bool = False,
    ) -> str:
        """Give a staged file its final name (rename, as the upload strategy says), then write
        the done-marker when one is configured; returns the strategy used. ``temp_path`` is the
        one given to ``stage``. With ``direct`` only the marker is written: it is what tells
        the partner that the file is complete. ``replace``: an existing final name (a resend's
        old copy) is replaced: in one ``posix-rename`` where the server offers it, else
        removed right before the rename."""

        tries = 0

        async def once() -> str:
            nonlocal tries
            tries += 1
            async with self._lease(None) as pc:
                return await self._publish_staged(
                    pc,
                    self.staging_path(remote_path, temp_path),
                    remote_path,
                    sha256,
                    again=tries > 1,
                    replace=replace,
                )

        return await self._retrying("rename", remote_path, once)

    def temp_name(self, final: str) -> str:
        """Where ``final`` is written before it is renamed."""
        return temp_name_for(self.settings, final)

    async def upload(
        self,
        local_path: Path,
        remote_path: str,
        *,
        progress: ProgressCallback | None = None,
        sha256: str | None = None,
        temp_path: str | None = None,
    ) -> UploadResult:
        """Send one file through the full upload protocol (retrying transient failures).

        ``sha256``: the file's hash when the caller has it already (the delivery ledger keys
        files by it), which saves reading the file a second time; verification compares the
        remote checksum with it. ``temp_path``: the name to write before the rename when the
        partner's delivery convention fixes it (TitlePage: ``.XOT`` renamed to ``.COT``);
        otherwise the partner's temp prefix/suffix or folder.
        """
        return await self._retrying(
            "upload",
            remote_path,
            lambda: self._upload_once(local_path, remote_path, progress, None, sha256, temp_path),
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
            # One read-ahead per connection, in the order its files go.
            lanes = len(conns)
            ahead = [_ReadAhead([it.local_path for it in items[k::lanes]]) for k in range(lanes)]
            gates = [asyncio.Semaphore(ts.file_concurrency) for _ in conns]

            async def one(i: int, item: UploadItem) -> UploadResult | errors.TransportError:
                nonlocal finished
                shared, gate = conns[i % len(conns)], gates[i % len(conns)]
                async with gate:
                    # the first attempt sends what was read ahead; a retry reads the file again
                    preread = [await ahead[i % lanes].take(i // lanes)]
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
                                item.sha256,
                                preread=preread.pop() if preread else None,
                            ),
                        )
                    except errors.TransportError as exc:
                        result = exc
                finished += 1
                if progress is not None:
                    progress(finished, total)
                return result

            try:
                results = list(await asyncio.gather(*(one(i, it) for i, it in enumerate(items))))
            finally:
                for lane in ahead:
                    lane.close()
        return results

    async def _upload_once(
        self,
        local_path: Path,
        remote_path: str,
        progress: ProgressCallback | None,
        shared: PooledConnection | None,
        known_sha: str | None = None,
        temp_path: str | None = None,
        *,
        preread: tuple[bytes, str] | None = None,
    ) -> UploadResult:
        staged = await self._stage_once(
            local_path,
            remote_path,
            progress,
            shared,
            known_sha,
            temp_path,
            preread=preread,
            publishing=True,
        )
        strategy = ""
        if not staged.skipped:
            async with self._lease(shared) as pc:
                strategy = await self._publish_staged(
                    pc, staged.staged_path, remote_path, staged.sha256
                )
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

    async def _stage_once(
        self,
        local_path: Path,
        remote_path: str,
        progress: ProgressCallback | None,
        shared: PooledConnection | None,
        known_sha: str | None = None,
        temp_path: str | None = None,
        *,
        replace_identical: bool = False,
        preread: tuple[bytes, str] | None = None,
        publishing: bool = False,
    ) -> StagedFile:
        """``preread``: the file's bytes and SHA-256, read already (``upload_many``).
        ``publishing``: the file is published right after (a lone upload, not a package's)."""
        try:
            size = (
                len(preread[0])
                if preread is not None
                else (await asyncio.to_thread(os.stat, local_path)).st_size
            )
        except OSError as exc:
            raise errors.TransportError(
                f"cannot read the local file {local_path}: {exc.strerror}",
                partner=self.partner,
                path=remote_path,
            ) from exc
        data: bytes | None = None
        hasher: checksums.FileHasher | None = None
        if size <= min(SMALL_FILE, self.settings.segment_size):
            # One trip to a thread reads and hashes a small file: it is sent from memory.
            if preread is None:
                preread = await asyncio.to_thread(checksums.read_and_sha256, local_path)
            content, sha = preread
            if known_sha is not None and known_sha != sha:
                raise errors.IntegrityError(
                    f"the local file {local_path} changed since it was hashed",
                    partner=self.partner,
                    path=remote_path,
                )
            data = content
            hashing: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
            hashing.set_result((len(content), sha))
        elif known_sha is not None:
            hashing = asyncio.get_running_loop().create_future()
            hashing.set_result((size, known_sha))
            segment_size = self.settings.segment_size
            if self.settings.resume and segment_count(size, segment_size) > 1:
                # The journal needs each segment's hash: one read while the bytes travel
                # gives them and the file's SHA-256, which a verification by segments checks
                # against the caller's (``verify.read_back_by_segments``).
                hasher = checksums.FileHasher(local_path, segment_size)
                reading = asyncio.ensure_future(asyncio.to_thread(hasher.run))
                reading.add_done_callback(_quiet)
        else:
            # Hash while the bytes travel: hashing first would add a full read of the file to
            # every upload's time. The same read hashes each segment for the resume journal.
            segment_size = self.settings.segment_size
            if self.settings.resume and segment_count(size, segment_size) > 1:
                hasher = checksums.FileHasher(local_path, segment_size)
            hashing = asyncio.ensure_future(
                asyncio.to_thread(hasher.run)
                if hasher is not None
                else asyncio.to_thread(checksums.sha256_file, local_path)
            )
        try:
            return await self._stage_hashed(
                local_path,
                remote_path,
                size,
                hashing,
                progress,
                shared,
                data,
                temp_path,
                replace_identical=replace_identical,
                hasher=hasher,
                publishing=publishing,
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

    async def _stage_hashed(
        self,
        local_path: Path,
        remote_path: str,
        size: int,
        hashing: asyncio.Future[tuple[int, str]],
        progress: ProgressCallback | None,
        shared: PooledConnection | None,
        data: bytes | None,
        temp_path: str | None = None,
        *,
        replace_identical: bool = False,
        hasher: checksums.FileHasher | None = None,
        publishing: bool = False,
    ) -> StagedFile:
        started = time.monotonic()
        segment_hash = None if hasher is None else hasher.segment
        ts = self.settings
        final = remote_path
        temp = self.staging_path(final, temp_path)
        direct = temp == final
        segment_size = ts.segment_size
        small = data is not None

        # The journal of an earlier, interrupted attempt (large files only: a small file is
        # one burst that resumes nothing).
        journal: SegmentJournal | None = None
        if not small and ts.resume and segment_count(size, segment_size) > 1:
            journal = await asyncio.to_thread(
                SegmentJournal,
                self._journal_path("up", final),
                file_size=size,
                segment_size=segment_size,
                source_id=file_source_id(local_path) + f";temp={temp}",
            )
        interrupted = journal is not None and bool(journal.done())
        kept: set[int] = set()
        checked_by = Verification.READ_BACK
        if interrupted:
            assert journal is not None
            # Never trust bytes we cannot see: keep only the segments the server holds.
            async with self._lease(shared) as pc:
                kept, checked_by = await reconcile_journal(self, pc.sftp, temp, journal)
        # Every segment there and checked by hash (a package's file staged again): nothing is
        # sent, and the whole file is already verified.
        all_checked = journal is not None and len(kept) == journal.segment_count

        # With ``direct`` the partial file under the final name is ours when its prefix
        # matches our journal: it is continued, not refused as somebody else's file.
        own_partial = direct and bool(kept)
        # With 'fail' a small file's look at the final name goes out with the open of its
        # temporary name (one round trip less per file); a final name found there then costs
        # the temporary file, removed, and nothing else: the rename is still never tried.
        # No look at all where the plain rename right after refuses an existing name itself.
        looking: asyncio.Future[StagedFile | None] | None = None
        fail_small = (
            small
            and not direct
            and ts.overwrite is OverwritePolicy.FAIL
            and not replace_identical
            and not own_partial
        )
        rename_refuses = (
            publishing
            and ts.rename_keeps_existing
            and ts.upload_strategy in (UploadStrategy.AUTO, UploadStrategy.RENAME)
        )
        if fail_small and not rename_refuses:
            looking = asyncio.ensure_future(
                self._apply_overwrite_policy(shared, final, size, hashing, local_path, started)
            )
        elif not fail_small and not own_partial:
            skipped = await self._apply_overwrite_policy(
                shared, final, size, hashing, local_path, started, replace_identical
            )
            if skipped is not None:
                return skipped

        resumed_from = sum(min(segment_size, size - i * segment_size) for i in kept)
        if resumed_from:
            log.info(
                "resuming upload: %d of %d bytes verified on the server",
                resumed_from,
                size,
                extra={"partner": self.partner, "path": final},
            )

        ticks = [time.monotonic()]
        report = self._progress(size, progress, ticks)
        # A small file read back on its own handle: the SHA-256 of what the server returned.
        read_back: list[str] = []
        segmented_over = 0  # connections a segmented upload used (none: one stream)
        if small:
            try:
                async with self._lease_many(shared, 1) as conns:
                    await self._learn_check_file(conns[0].sftp, temp)
                    await self._watch(
                        self._put_small(
                            conns[0].sftp,
                            data or b"",
                            temp,
                            size,
                            report,
                            read_back=read_back if reads_back(self, size) else None,
                            sha=hashing.result()[1],  # a small file is hashed as it is read
                        ),
                        temp,
                        ticks,
                        conns,
                    )
            except BaseException:
                if looking is not None:
                    looking.cancel()
                    await asyncio.wait({looking})  # settled; its own error is not ours
                raise
            if looking is not None:
                try:
                    await looking  # 'fail': returns nothing or raises
                except errors.RemoteFileExists:
                    async with self._lease(shared) as pc:
                        with contextlib.suppress(errors.TransportError):
                            await self._guard(pc.sftp.remove(temp), temp)
                    raise
        else:
            resumed_from, restarted, segmented_over = await self._put_large(
                local_path, temp, size, journal, kept, report, ticks, shared, segment_hash
            )
            # A write the server refused mid-upload is an interruption too: a failed attempt's
            # writes may still land (rclone closes its handles in the background).
            interrupted = interrupted or restarted
            if restarted:
                self._after_refusal[temp] = size

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
            # After an interrupted attempt the size proves nothing (a server can keep zeros
            # where acknowledged bytes were): the whole file is verified by hash, server-side
            # or read back.
            remote_sha: str | None
            if all_checked:
                remote_sha, verified_by = sha, checked_by
            elif read_back:
                remote_sha, verified_by = read_back[0], Verification.READ_BACK
            else:
                remote_sha, verified_by = await remote_sha256(
                    self,
                    pc,
                    temp,
                    size=size,
                    force=interrupted,
                    local=(local_path, sha),
                    data=data,
                    by_segments=None
                    if segmented_over < 2
                    else functools.partial(
                        self._read_back_segmented,
                        pc,
                        shared,
                        segmented_over,
                        temp,
                        size,
                        local_path,
                        sha,
                        hasher,
                    ),
                )
            if remote_sha is not None and remote_sha != sha:
                if journal is not None:
                    journal.remove()
                with contextlib.suppress(errors.TransportError):
                    if not direct:
                        await self._guard(pc.sftp.remove(temp), temp)
                raise errors.IntegrityError(
                    f"remote checksum {remote_sha} does not match the local SHA-256 {sha}",
                    partner=self.partner,
                    path=temp,
                )
            if ts.set_mtime:
                await self._set_mtime(pc.sftp, local_path, temp)
        # The journal stays until ``publish``: a stage run again (a retry after another file
        # of the package failed) finds every segment there and sends nothing.
        return StagedFile(
            remote_path=final,
            staged_path=temp,
            size=size,
            sha256=sha,
            verified_by=verified_by,
            resumed_from=resumed_from,
            seconds=time.monotonic() - started,
        )

    async def _apply_overwrite_policy(
        self,
        shared: PooledConnection | None,
        final: str,
        size: int,
        hashing: asyncio.Future[tuple[int, str]],
        local_path: Path,
        started: float,
        replace_identical: bool = False,
    ) -> StagedFile | None:
        """Apply the overwrite policy to an existing final name: raise (fail), or return the
        skipped result (skip-if-identical with the same bytes there), else None. With
        ``replace_identical`` (an explicit resend) the same bytes there are staged again."""
        ts = self.settings
        async with self._lease(shared) as pc:
            # An atomic replace needs no look at the final name first: one round trip less
            # per file, which counts for batches of small files.
            replacing = ts.overwrite is OverwritePolicy.REPLACE and (
                self._strategy(pc.sftp) is UploadStrategy.POSIX_RENAME
            )
            existing = None if replacing else await self._stat(pc.sftp, final)
            if existing is None:
                return None
            # (sha, how it was checked) of identical bytes at the final name, else None.
            same: tuple[str, Verification] | None = None
            if existing.size == size and (
                replace_identical or ts.overwrite is OverwritePolicy.SKIP_IF_IDENTICAL
            ):
                sha = await self._local_sha(hashing, size, local_path, final)
                remote_sha, how = await remote_sha256(self, pc, final, force=True)
                same = (sha, how) if remote_sha == sha else None
            if replace_identical and same is not None:
                return None  # a resend: staged again; its old copy is replaced at publish
            if ts.overwrite is OverwritePolicy.FAIL:
                raise self._exists_error(final)
            if ts.overwrite is OverwritePolicy.SKIP_IF_IDENTICAL and same is not None:
                log.info(
                    "identical file already present, skipped",
                    extra={"partner": self.partner, "path": final},
                )
                return StagedFile(
                    remote_path=final,
                    staged_path=final,
                    size=size,
                    sha256=same[0],
                    skipped=True,
                    verified_by=same[1],
                    seconds=time.monotonic() - started,
                )
        return None

    async def _put_large(
        self,
        local_path: Path,
        temp: str,
        size: int,
        journal: SegmentJournal | None,
        kept: set[int],
        report: Callable[[int], None],
        ticks: list[float],
        shared: PooledConnection | None,
        segment_hash: SegmentHash | None = None,
    ) -> tuple[int, bool, int]:
        """Send a large file the way the server's write model allows; returns the bytes that
        were already there (verified) and not sent again, whether a refused attempt made
        it start again (the file is then verified by hash, like after an interruption), and
        the connections a segmented upload went over (0: one stream, ``put_stream``).

        Parallel segments need a file that can be opened again for writing and written at any
        offset. A server that refuses either (ProFTPD's ``AllowOverwrite off``, rclone without
        a write cache) is noted for this client's life and gets one open and writes in
        order (``put_stream``), continuing after the verified prefix where the server lets a
        file be reopened, else from the start."""
        ts = self.settings
        segment_size = ts.segment_size
        restarted = False
        n_conns = ts.segment_connections if size >= ts.segmented_threshold else 1
        n_conns = min(n_conns, segment_count(size, segment_size), self.endpoint.max_connections)
        # One connection gains nothing from segments: one open and writes in order, which
        # every server accepts (a second open of the file is what some refuse).
        if n_conns > 1 and "random_write" not in self._unsupported:
            if not kept:
                # A fresh start: the segmented writer never truncates (sessions must not wipe
                # each other's ranges), so a stale, longer temporary file from an abandoned
                # attempt is cut to nothing first.
                async with self._lease(shared) as pc:
                    await self._discard(pc.sftp, temp)
            try:
                async with self._lease_many(shared, n_conns) as conns:
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
                            segment_hash=segment_hash,
                        ),
                        temp,
                        ticks,
                        conns,
                    )
                    used = len(conns)
                return sum(min(segment_size, size - i * segment_size) for i in kept), False, used
            except errors.TransportError as exc:
                if not refused_by_write_model(exc):
                    raise
                async with self._lease(shared) as pc:
                    created = await self._stat(pc.sftp, temp) is not None
                if not created:
                    raise  # not even created: a folder we may not write in, not a write model
                self._unsupported.add("random_write")
                log.warning(
                    "the server refused a second open or an out-of-order write (%s): "
                    "sending in one sequential stream",
                    exc.detail,
                    extra={"partner": self.partner, "path": temp},
                )
                # ``put_segmented`` returns only once the server answered the close of every
                # handle it opened: nothing of the refused attempt can still land on the file.
                kept = set()
                restarted = True
                if journal is not None:
                    journal.keep(kept)
        start = contiguous_prefix(kept) if "reopen_write" not in self._unsupported else 0
        for attempt in (start, 0) if start else (0,):
            if attempt == 0:
                if journal is not None:
                    journal.keep(set())
                async with self._lease(shared) as pc:
                    # Truncated, else removed (a server that refuses to reopen a file for
                    # writing refuses to truncate it too); after a refused attempt always
                    # removed: the stream starts on a new file, not on the refused one.
                    await self._discard(pc.sftp, temp, remove=restarted)
            try:
                async with self._lease_many(shared, 1) as conns:
                    await self._watch(
                        put_stream(
                            self._sessions_one(conns[0].sftp),
                            local_path,
                            temp,
                            segment_size=segment_size,
                            block_size=ts.block_size,
                            max_requests=ts.max_requests,
                            start_segment=attempt,
                            journal=journal,
                            progress=report,
                            segment_hash=segment_hash,
                        ),
                        temp,
                        ticks,
                        conns,
                    )
                return min(size, attempt * segment_size), restarted, 0
            except errors.TransportError as exc:
                if attempt == 0 or not refused_by_write_model(exc):
                    raise
                self._unsupported.add("reopen_write")
                restarted = True
                log.warning(
                    "the server will not let the temporary file be continued (%s): "
                    "sending it again from the start",
                    exc.detail,
                    extra={"partner": self.partner, "path": temp},
                )
        raise AssertionError("unreachable")

    async def _read_back_segmented(
        self,
        pc: PooledConnection,
        shared: PooledConnection | None,
        n_conns: int,
        temp: str,
        size: int,
        local_path: Path,
        sha: str,
        hasher: checksums.FileHasher | None,
    ) -> str:
        """A segmented upload read back (``verify.read_back_by_segments``) over as many
        connections as it was sent over: called only once every handle of the upload was
        answered its close (``put_segmented`` returns then), so no write can land after.
        ``pc``: the connection the verification holds already, one of them."""
        async with self._lease_many(shared, n_conns - 1) as more:
            conns = [pc, *(c for c in more if c is not pc)]
            return await verify.read_back_by_segments(
                self,
                self._sessions(conns),
                temp,
                size=size,
                segment_size=self.settings.segment_size,
                local_path=local_path,
                sha=sha,
                hasher=hasher,
            )

    async def _discard(self, sftp: asyncssh.SFTPClient, temp: str, *, remove: bool = False) -> None:
        """Clear a stale temporary file before a fresh start: truncate it, or remove it
        (a server that refuses to reopen a file for writing refuses to truncate it too).
        No file, nothing to do: a truncating open would create one, which such a server then
        refuses to open again for the upload itself."""
        if await self._stat(sftp, temp) is None:
            return
        if not remove:
            try:
                await self._guard(self._truncate(sftp, temp), temp)
                return
            except errors.TransportError as exc:
                if exc.retryable:
                    raise
        # What cannot be removed either is left to the writer's own truncating open.
        try:
            await self._guard(sftp.remove(temp), temp)
        except errors.TransportError as exc:
            if exc.retryable:
                raise

    async def _learn_check_file(self, sftp: asyncssh.SFTPClient, path: str) -> None:
        """With ``checksum = "auto"``, whether the server answers ``check-file`` decides how a
        small file is verified (by the server, or read back on its own handle): asked once,
        before the first file is written, so the files already in flight meanwhile wait for
        the answer instead of each asking it. Any answer but "unsupported" (a digest, no
        such file) leaves it to ``remote_sha256``, as before."""
        if self.settings.checksum is not ChecksumMethod.AUTO or "check_file" in self._unsupported:
            return
        asked = self._check_file_asked
        if asked is None or (
            not asked.done() and asked.get_loop() is not asyncio.get_running_loop()
        ):

            async def ask() -> None:
                try:
                    await self._guard(checksums.check_file_sha256(sftp, path), path)
                except errors.UnsupportedOperation:
                    self._unsupported.add("check_file")
                except errors.TransportError:
                    pass  # a lost connection is met by the write that follows

            self._check_file_asked = asked = asyncio.ensure_future(ask())
        await asyncio.shield(asked)

    async def _put_small(
        self,
        sftp: asyncssh.SFTPClient,
        data: bytes,
        temp: str,
        size: int,
        report: Callable[[int], None],
        *,
        read_back: list[str] | None = None,
        sha: str = "",
    ) -> None:
        """Write ``data`` (SHA-256 ``sha``) to ``temp`` on one handle. ``read_back``: the
        file is also read back on that handle (opened for reading too) once every write is
        acknowledged, and the SHA-256 of what the server returned is appended to the list:
        the read-back verification without a second open and close (a server that refuses a
        handle for both is noted, and gets the separate read-back)."""
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

        # Every write is acknowledged by the server (SSH_FX_OK) and the writes cover
        # [0, size) of a truncated file: that is the size check, without an fstat round trip
        # per file (small files are latency-bound), and a partner that moves files away on
        # close cannot make it fail.
        async def write_all(fh: asyncssh.SFTPClientFile) -> None:
            async def put(offset: int) -> None:
                nonlocal done
                chunk = data[offset : offset + block]
                await fh.write(chunk, offset)
                done += len(chunk)
                report(done)

            await asyncio.gather(*(put(offset) for offset in range(0, size, block)))

        if read_back is not None:
            refused = await self._put_small_read_back(
                sftp, session, flags, temp, data, sha, write_all, read_back
            )
            if refused is None:
                return
            # A handle for reading and writing refused, or its reads (rclone without a write
            # cache takes the open, then answers reads "Illegal seek"): this file is written
            # again on a write-only handle (on a new file: some servers refuse to reopen one)
            # and read back on a handle of its own.
            with contextlib.suppress(errors.TransportError):
                await self._guard(sftp.remove(temp), temp)
            done = 0
        async with await session.open(temp, flags, encoding=None, block_size=0) as fh:
            if read_back is not None:
                # Taken write-only: a refusal of the handle for both, not of the folder.
                # Noted for this client's life.
                self._unsupported.add("read_write_open")
                log.info(
                    "the server refused to read back on the handle written (%s): small files "
                    "are read back on a handle of their own",
                    refused,
                    extra={"partner": self.partner, "path": temp},
                )
            await write_all(fh)

    async def _put_small_read_back(
        self,
        sftp: asyncssh.SFTPClient,
        session: asyncssh.SFTPClient,
        flags: int,
        temp: str,
        data: bytes,
        sha: str,
        write_all: Callable[[asyncssh.SFTPClientFile], Awaitable[None]],
        read_back: list[str],
    ) -> str | None:
        """``write_all`` on a handle for reading and writing, then the read-back on it; None
        when done, else why the server refused the handle or a read on it."""
        try:
            fh = await session.open(temp, flags | asyncssh.FXF_READ, encoding=None, block_size=0)
        except asyncssh.SFTPError as exc:
            if isinstance(exc, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection):
                raise
            return str(exc.reason)
        done = False
        try:
            await write_all(fh)
            try:
                # Sent once every write is answered (a server may run the requests on one
                # handle in parallel); the reads and the close then share one round trip.
                read_back.append(await self._read_back_handle(sftp, fh, temp, data, sha))
            except asyncssh.SFTPError as exc:
                if isinstance(exc, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection):
                    raise
                return str(exc.reason)
            done = True
        finally:
            if done:
                await fh.close()  # a no-op when the close went with the reads
            else:
                with contextlib.suppress(asyncssh.Error, OSError):
                    await fh.close()
        return None

    async def _read_back_handle(
        self,
        sftp: asyncssh.SFTPClient,
        fh: asyncssh.SFTPClientFile,
        path: str,
        data: bytes,
        sha: str,
    ) -> str:
        """SHA-256 of the ``len(data)`` bytes read back on ``fh`` (``sha`` when they are
        ``data``, whose SHA-256 it is), reads pipelined, and the close
        sent with them (one round trip for both). No read past the end: the acknowledged
        writes over the truncated file are its size check (see ``_put_small``).

        The close may follow the reads unanswered: a server runs the requests on one file in
        order (the SFTP draft's rule; rclone's server, which runs reads and writes in
        parallel, waits for a handle's reads before its close). Not with a bandwidth limit,
        whose reads wait for tokens before they are sent. A short answer (a server that caps
        its reads) has the file read back again on a handle of its own."""
        size = len(data)
        block = self.settings.read_block
        offsets = range(0, size, block)
        reads = [fh.read(min(block, size - at), at) for at in offsets]
        if self._bucket is None:
            *answers, _closed = await asyncio.gather(*reads, fh.close())
        else:
            answers = list(await asyncio.gather(*reads))
        parts = cast(list[bytes], answers)  # opened with encoding=None
        got = b"".join(parts)
        if len(got) < size and any(
            len(part) < min(block, size - at) for at, part in zip(offsets, parts, strict=True)
        ):
            _n, digest = await verify.read_back_sized(sftp, path, size, **read_sizes(self.settings))
            return digest
        # The same bytes as sent have the SHA-256 already taken of them: no second hash.
        return sha if got == data else hashlib.sha256(got).hexdigest()

    @staticmethod
    async def _truncate(sftp: asyncssh.SFTPClient, path: str) -> None:
        flags = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC
        async with await sftp.open(path, flags, encoding=None, block_size=0):
            pass

    async def holds(self, remote_path: str, size: int, sha256: str) -> bool:
        """Does ``remote_path`` already hold exactly these bytes (size, then SHA-256 by the
        best method the server allows, reading back as the last resort)? The engine asks
        before re-running an upload, so a crash between rename and record never resends."""
        return await self.held_by(remote_path, size, sha256) is not None

    async def held_by(self, remote_path: str, size: int, sha256: str) -> Verification | None:
        """How ``remote_path`` was found to hold exactly these bytes (``holds``), or None."""
        async with self._lease(None) as pc:
            attrs = await self._stat(pc.sftp, remote_path)
            if attrs is None or attrs.size != size:
                return None
            digest, how = await remote_sha256(self, pc, remote_path, size=size, force=True)
        return how if digest == sha256 else None
