"""A lean read pipeline: the blocks of a download requested in file order, without a task each.

``segmented.get_segmented`` keeps ``max_requests`` reads in flight per session. Through
asyncssh's file API each read is a coroutine in its own task, with its own debug-log calls
(their arguments are formatted whether or not the level is on) on the way out and back: on a
server that answers at most 32 KiB per read (rclone) that is 8,192 reads per 256 MiB, and the
client's CPU, not the link or the server, set the pace (profiled: about a third of the
client's time per read went to the task and the logging around it).

Here a read is one request sent from a callback and one future whose done-callback writes the
bytes to the local file (from a view of asyncssh's packet, not a copy) and, once a quarter of
the requests in flight were answered, tops them up again. Requests go out strictly in file
order (each top-up asks for the blocks after the last one asked), so a server that reads its
file sequentially (rclone without a read cache: an out-of-order read makes it wait, then seek)
sees a sequential reader. A short answer (the server's own read cap) is asked again for the
rest at once; that is the only request out of order, and the probe's ``read_block_size``
avoids it.

Why top up by the quarter: a request sent after every answer is one socket write and one
wake-up of the server per block; on loopback against OpenSSH that cost about 0.1-0.5 CPU-s
per GiB in our client (figures in docs/reference/performance.md). On average 7/8 of
``max_requests`` stay in flight.

Only a plain ``asyncssh.SFTPClient`` file can be read this way (``fits``): the pipeline talks
to its request handler directly (asyncssh 2.24, pinned, as ``packets.coalesce_writes``);
anything else (the bandwidth limiter's wrapper) takes the generic path in ``segmented``.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import asyncssh
from asyncssh.constants import FXP_DATA, FXP_READ
from asyncssh.packet import String, UInt32, UInt64

from consonance_sftp.errors import IntegrityError

# Requests are topped up once this share of them was answered (1/4), not after every answer.
_REFILL_SHARE = 4


class Block(Protocol):
    """What the pipeline needs of a segment: its count of requests not yet answered (raised
    here as each request goes out, lowered by the caller's ``block_done``)."""

    outstanding: int


S = TypeVar("S", bound=Block)


def fits(sftp: object, fh: object) -> bool:
    """Can ``fh`` (opened on ``sftp``) be read by the lean pipeline?"""
    return (
        isinstance(sftp, asyncssh.SFTPClient)
        and isinstance(fh, asyncssh.SFTPClientFile)
        and isinstance(getattr(fh, "_handle", None), bytes)
        and hasattr(getattr(sftp, "_handler", None), "_send_request")
    )


async def read_blocks(
    sftp: asyncssh.SFTPClient,
    fh: asyncssh.SFTPClientFile,
    fd: int | None,
    blocks: Iterator[tuple[S, int, int]],
    max_requests: int,
    block_done: Callable[[S, int], None],
    *,
    remote_path: str,
    size: int,
    written: Callable[[int, bytes | memoryview], None] | None = None,
) -> None:
    """Read every ``(segment, offset, length)`` of ``blocks`` from ``fh`` into local ``fd``
    (None: into nothing, ``written`` takes the bytes: a read-back that only hashes).

    ``blocks`` is consumed lazily, in order, as requests go out (at most ``max_requests`` in
    flight); ``block_done(segment, nbytes)`` runs once per answered request, after its bytes
    were written, and lowers ``segment.outstanding``, which each request raised;
    ``written(offset, data)`` (when given) right after each write (the in-order hash). Raises
    the server's error, or ``IntegrityError`` when the file ends before ``size``.
    """
    loop = asyncio.get_running_loop()
    handler: Any = sftp._handler  # private, see the module docstring
    raw_handle: bytes = fh._handle  # type: ignore[assignment]
    handle = String(raw_handle)
    finished: asyncio.Future[None] = loop.create_future()
    in_flight = 0
    # Top up once a quarter of the requests were answered: the requests of one top-up leave in
    # one socket write (packets.coalesce_writes), and the server reads them in one wake-up.
    low_water = max_requests - max(1, max_requests // _REFILL_SHARE)

    def fail(exc: BaseException) -> None:
        if not finished.done():
            finished.set_exception(exc)

    def issue(seg: S, offset: int, length: int) -> None:
        nonlocal in_flight
        waiter: asyncio.Future[tuple[int, Any]] = loop.create_future()
        handler._send_request(FXP_READ, (handle, UInt64(offset), UInt32(length)), waiter)
        in_flight += 1
        seg.outstanding += 1
        waiter.add_done_callback(functools.partial(answered, seg, offset, length))

    def refill() -> None:
        nonlocal in_flight
        # The requests of one top-up go to the channel in one write, so they travel in one SSH
        # packet, not one each (a packet is a frame, an encryption and a dispatch on both
        # sides; the server reads SFTP requests from the stream whatever the packets).
        wire: list[bytes] = []
        while in_flight < max_requests:
            nxt = next(blocks, None)
            if nxt is None:
                break
            seg, offset, length = nxt
            waiter: asyncio.Future[tuple[int, Any]] = loop.create_future()
            wire.append(_read_request(handler, raw_handle, offset, length, waiter))
            in_flight += 1
            seg.outstanding += 1
            waiter.add_done_callback(functools.partial(answered, seg, offset, length))
        if wire:
            _send(handler, wire)
        if in_flight == 0 and not finished.done():
            finished.set_result(None)

    def answered(seg: S, offset: int, length: int, waiter: asyncio.Future[Any]) -> None:
        nonlocal in_flight
        in_flight -= 1
        if finished.done() or waiter.cancelled():
            return  # an earlier failure, or the transfer was cancelled: nothing more to do
        try:
            data = _data(handler, *waiter.result())
            if not data:
                raise IntegrityError(
                    f"remote file ended at {offset} bytes, expected {size}", path=remote_path
                )
            if len(data) > length:
                raise asyncssh.SFTPBadMessage(f"{len(data)} bytes answered a {length}-byte read")
            if fd is not None:
                os.pwrite(fd, data, offset)
            if written is not None:
                written(offset, data)
            if len(data) < length:
                # The server's own read cap: ask for the rest now rather than leave a hole.
                issue(seg, offset + len(data), length - len(data))
            block_done(seg, len(data))
            if in_flight <= low_water:
                refill()
        except BaseException as exc:  # handed to the awaiting caller
            fail(exc)

    try:
        refill()
        await finished
    finally:
        # Answers still on their way find ``finished`` done and touch nothing (``fd`` may be
        # closed by then).
        if not finished.done():
            finished.cancel()


def _read_request(
    handler: Any, handle: bytes, offset: int, length: int, waiter: asyncio.Future[Any]
) -> bytes:
    """One FXP_READ as asyncssh's ``_send_request`` frames it, registered for its answer."""
    pktid = handler._next_pktid
    handler._next_pktid = (pktid + 1) & 0xFFFFFFFF
    handler._requests[pktid] = waiter
    return b"".join(
        (
            (1 + 4 + 4 + len(handle) + 8 + 4).to_bytes(4, "big"),
            _FXP_READ_BYTE,
            pktid.to_bytes(4, "big"),
            len(handle).to_bytes(4, "big"),
            handle,
            offset.to_bytes(8, "big"),
            length.to_bytes(4, "big"),
        )
    )


_FXP_READ_BYTE = bytes((FXP_READ,))


def _send(handler: Any, wire: list[bytes]) -> None:
    """The requests to the session's channel in one write (as asyncssh's ``send_packet``: an
    SFTP session whose channel is closing sends nothing; its requests fail as the session
    closes)."""
    writer = handler._writer
    if not writer:
        raise asyncssh.SFTPNoConnection("Connection not open")
    if writer.channel.is_closing():
        return
    writer.write(b"".join(wire))


def _data(handler: Any, resptype: int, packet: Any) -> bytes | memoryview:
    """The bytes of a read's answer; an error status raises asyncssh's SFTPError for it
    (end of file: ``SFTPEOFError``, taken as no bytes)."""
    if resptype == FXP_DATA:
        # A view of the answer's bytes in asyncssh's packet, not a copy (get_string slices).
        size = packet.get_uint32()
        start = packet._idx
        end = start + size
        if end > packet._len or (handler.version < 6 and end != packet._len):
            raise asyncssh.SFTPBadMessage("malformed data answer to a read")
        return memoryview(packet._packet)[start:end]
    process = handler._packet_handlers.get(resptype)
    try:
        if process is not None:
            process(handler, packet)  # a status: raises its error (an OK is no answer either)
    except asyncssh.SFTPEOFError:
        return b""
    raise asyncssh.SFTPBadMessage(f"unexpected response type {resptype} to a read")
