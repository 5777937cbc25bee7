"""Protocol-neutral pieces the SFTP and FTP/FTPS adapters share.

Nothing here speaks a wire protocol: the retry loop around one transfer attempt, the
post-action step after a durable download, the done-marker's name and body, and the
per-partner bandwidth limit (``TokenBucket``; ``blocking_throttle`` for transfers that run in
a thread, as ``ftplib``'s do). Each adapter
keeps its own logger (passed in), so log records keep the name they had.
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from consonance_sftp import errors
from consonance_sftp.config.transfer import PostAction, TransferSettings
from consonance_sftp.formats.packaging import sha256_file
from consonance_sftp.ports.remote_fs import DownloadResult

T = TypeVar("T")

# First pause before retrying a transient failure; it doubles with each attempt.
RETRY_BASE_DELAY = 0.5


async def retry_transient(
    what: str,
    path: str,
    attempt_fn: Callable[[], Awaitable[T]],
    *,
    retries: int,
    partner: str,
    logger: logging.Logger,
) -> T:
    """Run ``attempt_fn`` up to ``retries + 1`` times, retrying retryable TransportErrors."""
    for attempt in range(retries + 1):
        try:
            return await attempt_fn()
        except errors.TransportError as exc:
            if not exc.retryable or attempt == retries:
                raise
            delay = RETRY_BASE_DELAY * 2**attempt
            logger.warning(
                "%s failed, retrying in %.1fs: %s",
                what,
                delay,
                exc,
                extra={"partner": partner, "path": path, "attempt": attempt + 1},
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def finish_download(
    result: DownloadResult,
    remote_path: str,
    post_action: PostAction | None,
    before_post_action: Callable[[DownloadResult], Awaitable[None]] | None,
    apply_post_action: Callable[[str, PostAction], Awaitable[str]],
) -> DownloadResult:
    """After a durable local copy: ``before_post_action``, then the remote post-action, and
    the result naming what was done (``post_action`` None or LEAVE leaves it alone)."""
    if post_action is not None and post_action is not PostAction.LEAVE:
        if before_post_action is not None:
            await before_post_action(result)
        moved_to = await apply_post_action(remote_path, post_action)
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


def done_marker(template: str, final: str, sha: str) -> tuple[str, bytes]:
    """The done-marker's path for ``final`` (from the ``done_marker`` template with
    ``{name}``, ``{stem}``, ``{suffix}``) and its body: the hash and the file's name."""
    folder, name = posixpath.split(final)
    stem, dot, suffix = name.rpartition(".")
    marker = template.format(name=name, stem=stem if dot else name, suffix=suffix if dot else "")
    path = posixpath.join(folder, marker) if folder else marker
    return path, f"{sha}  {name}\n".encode()


def temp_name_for(settings: TransferSettings, final: str) -> str:
    """Where ``final`` is written before it is renamed: the partner's temp prefix and suffix
    around the name, in ``temp_folder`` when one is set, else beside ``final``."""
    folder, name = posixpath.split(final)
    temp = f"{settings.temp_prefix}{name}{settings.temp_suffix}"
    if settings.temp_folder:
        return posixpath.join(settings.temp_folder, temp)
    return posixpath.join(folder, temp) if folder else temp


def commit_local(staging: Path, final: Path, sha: str | None = None) -> tuple[int, str]:
    """Hash the fsynced staging file (unless ``sha`` was taken as it was written), rename it
    into place, fsync the folder; returns (size, sha256). Run it in a thread."""
    if sha is None:
        size, sha = sha256_file(staging)
    else:
        size = staging.stat().st_size
    os.replace(staging, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return size, sha


class TokenBucket:
    """``rate`` bytes per second, with bursts of up to a quarter second's worth."""

    def __init__(self, rate: int) -> None:
        self.rate = float(rate)
        self.burst = self.rate / 4
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def consume(self, nbytes: int) -> None:
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= nbytes
            if self._tokens < 0:
                # Sleeping inside the lock keeps later blocks queued behind this one, in order.
                await asyncio.sleep(-self._tokens / self.rate)


def blocking_throttle(
    bucket: TokenBucket | None, loop: asyncio.AbstractEventLoop
) -> Callable[[int], None] | None:
    """For a transfer running in a worker thread: a function that blocks that thread until
    ``nbytes`` of ``bucket``'s tokens were granted on ``loop`` (the bucket is the partner's
    one, shared with every other transfer to it). None without a limit."""
    if bucket is None:
        return None

    def wait(nbytes: int) -> None:
        asyncio.run_coroutine_threadsafe(bucket.consume(nbytes), loop).result()

    return wait
