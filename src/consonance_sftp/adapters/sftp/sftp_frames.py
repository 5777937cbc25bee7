"""SFTP answers handed to their requests as the channel delivers them, without a stream reader.

asyncssh's SFTP client reads its answers through the channel's stream: each SSH packet's data
is queued, a task wakes, reads the answer's length and then its body (two awaits, each slicing
and joining the queued bytes), and resolves the request's future. On a download of 32 KiB
reads (rclone's cap) that is 32,768 answers per GiB, each through the stream's read lock and
a task switch. Here the channel's data goes straight to a framer: each complete answer is cut
from the bytes received and resolves its request's future at once, as asyncssh's own loop
would (same packet object, same checks: the length cap, a known request id).

Installed on an idle session (nothing buffered in its stream), after the version exchange;
asyncssh's reading task stays waiting on the stream, which now only ever sees the end of file,
and cleans the session up as before when the channel closes. An answer that breaks the
protocol (too long, an unknown request id, undecodable) ends the session as asyncssh's loop
would (``_cleanup`` with ``SFTPBadMessage``), and nothing more is read. asyncssh 2.24, pinned.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncssh
from asyncssh.packet import PacketDecodeError, SSHPacket
from asyncssh.sftp import MAX_SFTP_PACKET_LEN


def lean_sftp_receive(sftp: asyncssh.SFTPClient) -> bool:
    """Frame ``sftp``'s answers directly from its channel; False when it cannot (not a plain
    asyncssh session, or something already buffered), and the session is left as it was."""
    handler: Any = getattr(sftp, "_handler", None)
    reader: Any = getattr(handler, "_reader", None)
    session: Any = getattr(reader, "_session", None)
    if (
        session is None
        or not hasattr(handler, "_requests")
        or getattr(session, "_consonance_framed", False)
        or getattr(reader, "_datatype", None) is not None
        or session._recv_buf_len
        or any(session._recv_buf.values())
    ):
        return False
    original = session.data_received
    pending = bytearray()
    broken: list[BaseException] = []

    def fail(exc: BaseException) -> None:
        broken.append(exc)
        task = asyncio.ensure_future(handler._cleanup(exc))
        _cleanups.add(task)
        task.add_done_callback(_cleanups.discard)

    def dispatch(payload: bytes) -> bool:
        packet = SSHPacket(payload)
        try:
            pkttype = packet.get_byte()
            pktid = packet.get_uint32()
        except PacketDecodeError as exc:
            fail(asyncssh.SFTPBadMessage(str(exc)))
            return False
        handler.log_received_packet(pkttype, pktid, packet)
        waiter = handler._requests.pop(pktid, None)
        if waiter is None:
            fail(asyncssh.SFTPBadMessage("Invalid response id"))
            return False
        if not waiter.cancelled():
            waiter.set_result((pkttype, packet))
        return True

    def data_received(data: bytes, datatype: object) -> None:
        if datatype is not None or handler._reader is None:
            original(data, datatype)
            return
        if broken:
            return
        if pending:
            pending.extend(data)
            buf: bytes | bytearray = pending
        else:
            buf = data
        pos, end = 0, len(buf)
        while end - pos >= 4:
            length = int.from_bytes(buf[pos : pos + 4], "big")
            if length > MAX_SFTP_PACKET_LEN:
                fail(asyncssh.SFTPBadMessage("Max packet size exceeded"))
                return
            if end - pos - 4 < length:
                break
            payload = bytes(buf[pos + 4 : pos + 4 + length])
            pos += 4 + length
            if not dispatch(payload):
                return
        if buf is pending:
            del pending[:pos]
        elif pos < end:
            pending.extend(data[pos:])

    session.data_received = data_received
    session._consonance_framed = True
    return True


_cleanups: set[asyncio.Task[None]] = set()
