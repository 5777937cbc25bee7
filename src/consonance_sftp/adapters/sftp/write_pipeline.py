"""A lean block write: one SFTP write request framed around the file's bytes, read in place.

Through asyncssh's file API, a 255 KiB write of an upload is copied five times before the
channel sees it (the data wrapped in a string, the arguments joined, the type prefixed, the
length prefixed, the channel's own buffer), with its debug-log arguments formatted on the way
(the handle in hex, whether or not the level is on). Here the request's header is built first
and the block is read from the local file straight into the buffer behind it, which is handed
to the channel as its send buffer: one copy of each byte, from the page cache, before the
packet layer (``packets.lean_channel_data``). The request is registered with asyncssh's SFTP
session like any other; its answer is a future.

Only a plain ``asyncssh.SFTPClient`` file can be written this way (``fits``); anything else (the
bandwidth limiter's wrapper) writes through asyncssh's file API. asyncssh 2.24, pinned.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import asyncssh
from asyncssh.constants import FXP_STATUS, FXP_WRITE

_REQUEST_HEAD = 4 + 1 + 4  # SFTP length, type, request id


def fits(sftp: object, fh: object) -> bool:
    """Can blocks be written to ``fh`` (opened on ``sftp``) by ``send_write``?"""
    handler = getattr(sftp, "_handler", None)
    writer = getattr(handler, "_writer", None)
    return (
        isinstance(sftp, asyncssh.SFTPClient)
        and isinstance(fh, asyncssh.SFTPClientFile)
        and isinstance(getattr(fh, "_handle", None), bytes)
        and hasattr(handler, "_requests")
        and hasattr(getattr(writer, "channel", None), "_send_buf")
    )


class ShortRead(Exception):
    """The local file gave fewer bytes than asked (it shrank)."""


def send_write(
    sftp: asyncssh.SFTPClient, fh: asyncssh.SFTPClientFile, fd: int, offset: int, length: int
) -> asyncio.Future[tuple[int, Any]]:
    """Send a write of ``length`` bytes of local ``fd`` at ``offset`` to the same offset of
    ``fh``; returns the future of its answer (give it to ``check``). Raises ``ShortRead``
    (nothing sent) when the file ends early, ``OSError`` when the channel is closed."""
    handler: Any = sftp._handler  # private, see the module docstring
    writer = handler._writer  # None once the session is cleaned up (the connection lost)
    chan: Any = None if writer is None else writer.channel
    if chan is None or chan._send_state != "open" or chan.is_closing():
        raise BrokenPipeError("Channel not open for sending")
    handle: bytes = fh._handle  # type: ignore[assignment]
    pktid = handler._next_pktid
    # type, id, string handle, uint64 offset, string data
    body_len = 1 + 4 + 4 + len(handle) + 8 + 4 + length
    head = b"".join(
        (
            (body_len).to_bytes(4, "big"),
            bytes((FXP_WRITE,)),
            pktid.to_bytes(4, "big"),
            len(handle).to_bytes(4, "big"),
            handle,
            offset.to_bytes(8, "big"),
            length.to_bytes(4, "big"),
        )
    )
    buf = bytearray(len(head) + length)
    buf[: len(head)] = head
    with memoryview(buf) as view:
        tail = view[len(head) :]
        try:
            got = os.preadv(fd, [tail], offset)
        finally:
            tail.release()
    if got != length:
        raise ShortRead(f"read {got} of {length} bytes at {offset}")
    waiter: asyncio.Future[tuple[int, Any]] = handler._loop.create_future()
    handler._next_pktid = (pktid + 1) & 0xFFFFFFFF
    handler._requests[pktid] = waiter
    # asyncssh's SSHChannel.write, without its copy (the buffer is ours and never touched again).
    chan._send_buf.append((buf, None))
    chan._send_buf_len += len(buf)
    chan._flush_send_buf()
    return waiter


def check(sftp: asyncssh.SFTPClient, answer: tuple[int, Any]) -> None:
    """Raise the server's error for a write's answer (nothing for OK)."""
    resptype, packet = answer
    handler: Any = sftp._handler
    if resptype != FXP_STATUS:
        raise asyncssh.SFTPBadMessage(f"Unexpected response type: {resptype}")
    handler._packet_handlers[resptype](handler, packet)
