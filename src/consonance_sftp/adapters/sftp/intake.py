"""Intake side of ``SftpRemoteFS``: downloads, post-actions, listings, stability.

Download protocol (nothing lost on intake): stream into a hidden staging file next to the
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
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncssh

from consonance_sftp import errors
from consonance_sftp.adapters.sftp.base import FSBase
from consonance_sftp.adapters.sftp.checksums import InOrderSha256
from consonance_sftp.adapters.sftp.segmented import (
    SegmentJournal,
    get_segmented,
    read_requests,
    segment_count,
)
from consonance_sftp.adapters.transfer_common import commit_local, finish_download
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


class IntakeMixin(FSBase):
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
        done: set[int] = set()
        if ts.resume and size > 0:
            # Keys of text files: a name that is not UTF-8 is written with \xNN escapes.
            shown = _printable(remote_path)
            journal_path = self._journal_path("down", f"{shown}\0{local_path}")
            source_id = f"{self.partner}:{shown}:{size}:{mtime}"
            journal = await asyncio.to_thread(
                SegmentJournal,
                journal_path,
                file_size=size,
                segment_size=ts.segment_size,
                source_id=source_id,
            )
            done = journal.done()
            if done and not staging.exists():
                journal.remove()
                journal = await asyncio.to_thread(
                    SegmentJournal,
                    journal_path,
                    file_size=size,
                    segment_size=ts.segment_size,
                    source_id=source_id,
                )
                done = set()
            resumed_from = sum(min(ts.segment_size, size - i * ts.segment_size) for i in done)
        # The hash follows the download (checksums.InOrderSha256): the bytes that arrive in
        # order from memory, the rest (an earlier attempt's segments, other sessions' ones)
        # read back from the staging file, instead of reading the whole file again at the end.
        hasher = InOrderSha256(staging, size) if size > 0 else None
        hashing: asyncio.Future[str | None] | None = None
        if hasher is not None:
            for index in sorted(done):
                start = index * ts.segment_size
                hasher.on_disk(start, min(size, start + ts.segment_size))
            hashing = hasher.start()
        try:
            return await self._fetch(
                remote_path,
                local_path,
                staging,
                size,
                mtime,
                journal,
                hasher,
                hashing,
                resumed_from,
                progress,
                started,
            )
        finally:
            if hasher is not None:
                hasher.stop()  # no-op once the digest was taken
            if hashing is not None:
                with contextlib.suppress(BaseException):
                    await hashing

    async def _fetch(
        self,
        remote_path: str,
        local_path: Path,
        staging: Path,
        size: int,
        mtime: int,
        journal: SegmentJournal | None,
        hasher: InOrderSha256 | None,
        hashing: asyncio.Future[str | None] | None,
        resumed_from: int,
        progress: ProgressCallback | None,
        started: float,
    ) -> DownloadResult:
        ts = self.settings

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
                    block_size=ts.read_block,
                    max_requests=read_requests(ts.max_requests, ts.block_size, ts.read_block),
                    journal=journal,
                    progress=report,
                    written=hasher.written if hasher is not None else None,
                ),
                remote_path,
                ticks,
                conns,
            )
            after = await self._stat(conns[0].sftp, remote_path)
        if after is None or after.size != size or (after.mtime or 0) != mtime:
            if journal is not None:
                journal.remove()
            await asyncio.to_thread(staging.unlink, missing_ok=True)
            raise errors.IntegrityError(
                "the remote file changed while it was downloaded (still being written?)",
                partner=self.partner,
                path=remote_path,
            )
        in_order = None
        if hasher is not None and hashing is not None:
            hasher.finish()
            in_order = await hashing
        got, sha = await asyncio.to_thread(commit_local, staging, local_path, in_order)
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
        async for entry, _kind_of in self.list_kinds(folder):
            if entry.is_dir and not include_dirs:
                continue
            if pattern and not fnmatch.fnmatchcase(entry.name, pattern):
                continue
            if compiled and not compiled.search(entry.name):
                continue
            yield entry

    async def list_kinds(self, folder: str) -> AsyncIterator[tuple[RemoteEntry, str]]:
        """Every entry of ``folder`` with what it is: ``file``, ``folder``, ``symbolic link``
        or ``special file`` (an inbox poll says why it leaves the others alone)."""
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
                yield entry, _kind(entry, name.attrs)

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

        With an intake done-marker, the marker's presence decides. Otherwise the file must
        be at least ``min_age`` old (by its mtime) and keep its size and mtime across
        ``stable_interval`` seconds.
        """
        ts = self.settings
        if ts.intake_done_marker:
            folder, name = posixpath.split(entry.path)
            stem, dot, suffix = name.rpartition(".")
            marker = ts.intake_done_marker.format(
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


def _printable(path: str) -> str:
    """``path`` with bytes that are not UTF-8 (surrogates, see ``connection``) as ``\\xNN``."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _kind(entry: RemoteEntry, attrs: asyncssh.SFTPAttrs) -> str:
    if entry.is_file:
        return "file"
    if entry.is_dir:
        return "folder"
    link = (
        stat.S_ISLNK(attrs.permissions)
        if attrs.permissions is not None
        else attrs.type == asyncssh.FILEXFER_TYPE_SYMLINK
    )
    return "symbolic link" if link else "special file"
