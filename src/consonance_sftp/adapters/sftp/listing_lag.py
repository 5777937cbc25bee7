"""The probe's look at whether a server's ``stat`` and listings lag behind what is written.

An inbox takes a file once two looks at it, ``stable_interval`` apart, agree on its size and
mtime. A server that answers from a cache defeats that rule: both looks show the same old size
while the file is still growing, and half a file is taken. ``measure_listing_lag`` writes a
small file of the probe's own in steps through one session, keeping it open as a partner's
upload would, and after each step asks a *second* session (another connection where the
budget allows it) for the file's ``stat`` and its listing entry, until both show what was
written or ``bound`` seconds pass; the
delays are the lag.

What SFTP cannot show: a server that caches what is written behind its back (another program
writing into the folder it serves) but sees its own writes at once. ``rclone serve sftp`` is
one: its directory cache (``--dir-cache-time``, 5 minutes by default) keeps the old size of a
file written straight into the folder it serves, in ``stat``, ``fstat`` and the listing alike,
while everything written through its SFTP server shows at once, so the probe measures no lag
on it. Such servers are recognised by their SSH version string instead (``KNOWN_CACHES``), and
the report says the lag is known rather than measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import time
from dataclasses import dataclass

import asyncssh

from consonance_sftp.ports.remote_fs import ListingLag

# Long enough for a server that writes back every second or two; the probe stays quick.
LAG_BOUND = 3.0
# Lags shorter than this are the round trips of the looks themselves, not a cache.
LAG_THRESHOLD = 0.5
_STEP = 4096  # bytes per write: the views are asked after each
_STEPS = 3


@dataclass(frozen=True, slots=True)
class KnownCache:
    """Server software documented to answer listings and stat from a cache."""

    banner: str  # the start of its SSH version string, lower case
    seconds: float  # how long the cache keeps an old view, by default
    what: str


KNOWN_CACHES = (
    KnownCache(
        "ssh-2.0-rclone",
        300.0,
        "rclone serve sftp answers listings and stat from its directory cache: a file "
        "written into the folder it serves by anything but its own SFTP server keeps its old "
        "size (or is not listed yet) for up to --dir-cache-time, 5 minutes by default",
    ),
)


def known_cache(server_version: str) -> KnownCache | None:
    """The documented cache of the server whose SSH version string is ``server_version``."""
    version = server_version.lower()
    return next((c for c in KNOWN_CACHES if version.startswith(c.banner)), None)


async def _views(sftp: asyncssh.SFTPClient, path: str) -> tuple[int | None, int | None]:
    """(size by ``stat``, size in the folder's listing) of ``path``; None: not there."""
    try:
        by_stat: int | None = (await sftp.stat(path)).size
    except asyncssh.SFTPNoSuchFile:
        by_stat = None
    folder, name = posixpath.split(path)
    listed: int | None = None
    async for entry in sftp.scandir(folder or "."):
        if entry.filename == name:
            listed = entry.attrs.size
            break
    return by_stat, listed


async def _catch_up(
    sftp: asyncssh.SFTPClient, path: str, size: int, bound: float
) -> tuple[float | None, float | None, bool]:
    """Seconds until ``stat`` and the listing showed ``size`` (None: not within ``bound``
    seconds),
    and whether either showed another size meanwhile. A delay counts from the write's return
    to the start of the first look that was right, so a slow listing is not taken for lag."""
    written = time.monotonic()
    seen: list[float | None] = [None, None]
    stale = False
    while True:
        asked = time.monotonic()
        views = await _views(sftp, path)
        for i, got in enumerate(views):
            if seen[i] is None:
                if got == size:
                    seen[i] = round(asked - written, 2)
                elif got is not None:
                    stale = True
        if all(s is not None for s in seen) or time.monotonic() - written >= bound:
            return seen[0], seen[1], stale
        # the looks themselves may take a while in a large folder: no faster than they go
        await asyncio.sleep(max(0.05, time.monotonic() - asked))


def _worst(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else max(a, b)


async def measure_listing_lag(
    writer: asyncssh.SFTPClient,
    reader: asyncssh.SFTPClient,
    path: str,
    *,
    bound: float = LAG_BOUND,
    server_version: str = "",
) -> ListingLag:
    """Write ``path`` in steps through ``writer``, its handle open all along, and measure how
    late ``reader`` (another session) sees each step in ``stat`` and in the listing.

    The file is made afresh (a server may refuse to open an existing file for writing) and
    left for the caller to remove."""
    # not there, or a drop box that refuses removes (the open below truncates it)
    with contextlib.suppress(asyncssh.SFTPError):
        await writer.remove(path)
    stat_s: float | None = 0.0
    list_s: float | None = 0.0
    stale = False
    async with await writer.open(path, "wb", encoding=None, block_size=0) as fh:
        for step in range(_STEPS):
            await fh.write(b"l" * _STEP, step * _STEP)
            s, listed, was_stale = await _catch_up(reader, path, (step + 1) * _STEP, bound)
            stat_s, list_s = _worst(stat_s, s), _worst(list_s, listed)
            stale = stale or was_stale
    cache = known_cache(server_version)
    worst = _worst(stat_s, list_s)
    measured = stale and (worst is None or worst >= LAG_THRESHOLD)
    return ListingLag(
        stat_seconds=stat_s,
        listing_seconds=list_s,
        stale=stale,
        timeout=bound,
        known_cache=cache.what if cache else "",
        known_cache_seconds=cache.seconds if cache else 0.0,
        lagging=measured or cache is not None,
    )
