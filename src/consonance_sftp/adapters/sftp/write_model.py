"""The probe's look at how a server lets a file be written: the *write model*.

Servers differ in what they accept once a file exists: ProFTPD's default ``AllowOverwrite off``
refuses to open an existing file for writing again; rclone without a write cache refuses any
write that is not at the end of what it has; most servers accept both. Uploads in parallel
segments need both; one open with writes in order needs neither. The sizes a server accepts
per write and per read request differ too (rclone answers reads of at most 32 KiB but accepts
255 KiB writes), so both are measured, separately.

``probe_write_model`` tries each on one small file of the probe's own and returns the facts;
the probe turns them into recommendations (``segment_connections = 1`` where parallel segments
cannot work, ``block_size`` from the largest accepted write).
"""

from __future__ import annotations

from typing import Any

import asyncssh

from consonance_sftp import errors
from consonance_sftp.config.transfer import MAX_OPENSSH_BLOCK

# Write sizes tried, largest first: OpenSSH's limit, then the sizes servers commonly cap at.
_WRITE_SIZES = (MAX_OPENSSH_BLOCK, 131_072, 65_536, 32_768)
_W = asyncssh.FXF_WRITE
_CREATE = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC


async def _refused(aw: Any) -> bool:
    """True when the server refused the operation (an SFTP status), False when it worked.
    A lost connection is not a refusal: it propagates."""
    try:
        await aw
        return False
    except asyncssh.SFTPError as exc:
        if isinstance(exc, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection):
            raise
        return True
    except errors.TransportError as exc:
        if exc.retryable:
            raise
        return True


async def probe_write_model(sftp: asyncssh.SFTPClient, path: str) -> dict[str, object]:
    """The write model of the folder holding ``path``, tried on that one probe file (left for
    the caller to remove, when it is still there): ``max_write``, ``max_read`` (bytes; 0 when
    nothing worked), ``reopen_write`` (an existing file opened again for writing and
    continued), ``remove``, ``random_write`` (a write before the end of what is written; None
    when it could not be tried: the file could be neither removed nor reopened)."""
    found: dict[str, object] = {}
    # Made afresh: the name may hold an earlier probe step's file, which a server that
    # refuses to reopen files (ProFTPD's AllowOverwrite off) would not let us write over.
    await _refused(sftp.remove(path))
    max_write = 0
    for size in _WRITE_SIZES:

        async def write_one(n: int = size) -> None:
            async with await sftp.open(path, _CREATE, encoding=None, block_size=0) as fh:
                await fh.write(b"w" * n, 0)

        if not await _refused(write_one()):
            attrs = await sftp.stat(path)
            if attrs.size == size:
                max_write = size
                break
    found["max_write"] = max_write

    async def read_one() -> int:
        async with await sftp.open(path, asyncssh.FXF_READ, encoding=None, block_size=0) as fh:
            data = await fh.read(MAX_OPENSSH_BLOCK, 0)
        return len(data)

    try:
        found["max_read"] = await read_one() if max_write else 0
    except asyncssh.SFTPError as exc:
        if isinstance(exc, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection):
            raise
        found["max_read"] = 0

    async def reopen_and_continue() -> None:
        async with await sftp.open(path, _W, encoding=None, block_size=0) as fh:
            await fh.write(b"+", max_write)
        attrs = await sftp.stat(path)
        if attrs.size != max_write + 1:
            raise asyncssh.SFTPFailure("the continued file has the wrong size")

    reopen = bool(max_write) and not await _refused(reopen_and_continue())
    found["reopen_write"] = reopen
    # The out-of-order write needs a new file: the same name, removed first (a server that
    # refuses to reopen a file refuses to truncate it too).
    found["remove"] = removed = not await _refused(sftp.remove(path))

    async def out_of_order() -> None:
        async with await sftp.open(path, _CREATE, encoding=None, block_size=0) as fh:
            await fh.write(b"b" * 1024, 4096)
            await fh.write(b"a" * 4096, 0)
        attrs = await sftp.stat(path)
        if attrs.size != 5120:
            raise asyncssh.SFTPFailure("the file written out of order has the wrong size")

    found["random_write"] = (not await _refused(out_of_order())) if removed or reopen else None
    return found
