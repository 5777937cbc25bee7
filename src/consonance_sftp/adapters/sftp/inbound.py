"""Inbound side of ``SftpRemoteFS``: downloads, post-actions, listings, stability.

Download protocol (nothing lost inbound): stream into a hidden staging file next to the
target, journal for resume, check the remote file did not change meanwhile, fsync, atomic
local rename, fsync the folder; only then may the remote file be moved or deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
import posixpath
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from consonance_sftp import errors
from consonance_sftp.adapters.sftp import checksums
from consonance_sftp.adapters.sftp.base import FSBase
from consonance_sftp.adapters.sftp.segmented import (
    SegmentJournal,
    get_segmented,
    segment_count,
)
from consonance_sftp.config.transfer import (
    PostAction,
)
from consonance_sftp.ports.remote_fs import (
    DownloadResult,
    ProgressCallback,
    RemoteEntry,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class InboundMixin(FSBase):
    """``download``, post-actions, ``list``, ``walk``, ``stat``, ``wait_stable``."""

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
