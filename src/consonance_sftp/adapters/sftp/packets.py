"""SSH packet handling on our asyncssh client connections: fewer packets, fewer syscalls.

Each of these works below the SFTP layer, on one connection, and is applied by
``connection.open_connection`` right after the handshake (see docs/reference/performance.md):

* ``coalesce_writes``: one socket ``send()`` per event-loop turn instead of one per packet;
* ``drop_ignore_packets``: no empty ``SSH_MSG_IGNORE`` before every packet (kept for CBC);
* ``MAX_RECEIVE_PACKET``: the largest packet the server may send us;
* ``frame_received_packets``: received bytes handed to asyncssh's parser one packet at a time.

They reach into asyncssh's internals (``_send``, ``send_packet``, the packet logger), which is
why asyncssh is pinned (2.24); ``tests/integration/test_segmented_openssh.py`` checks them on
a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import asyncssh
from asyncssh.misc import DisconnectError


def coalesce_writes(conn: asyncssh.SSHClientConnection) -> None:
    """Send all SSH packets produced in one event-loop turn with one ``send()``.

    asyncssh writes every SSH packet to the socket on its own, and precedes each encrypted
    packet with an ``SSH_MSG_IGNORE``: a 255 KiB SFTP write becomes 16 ``send()`` calls, a small
    file's open/write/close a dozen. On loopback each ``send()`` also runs the receiver's TCP
    path, so these syscalls are the largest single cost of the client (profiled: 20-35 % of
    its CPU). Buffering the packets of one loop turn and writing them once cuts the syscalls
    several-fold; it adds no latency beyond the current turn and keeps the packet order.

    Call it once, right after the connection is established. It replaces the connection's
    internal ``_send`` (asyncssh 2.24; the single place every packet passes through).
    """
    if getattr(conn, "_consonance_coalesced", False):
        return  # idempotent: a second buffer in front of the first would only cost time
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    # The transport as it was when the turn's first packet was queued: asyncssh drops its
    # reference on a forced close, after queueing the disconnect message that must still go.
    holder: list[asyncio.Transport | None] = [None]

    def flush() -> None:
        transport = holder[0]
        data = b"".join(chunks)
        chunks.clear()
        holder[0] = None
        if transport is not None and data:
            with contextlib.suppress(ConnectionError, RuntimeError):
                transport.write(data)

    def send(data: bytes) -> None:
        if not chunks:
            holder[0] = conn._transport
            loop.call_soon(flush)
        chunks.append(data)

    conn._send = send  # type: ignore[method-assign]
    setattr(conn, "_consonance_coalesced", True)  # noqa: B010 (not a declared attribute)


# Largest SSH packet we let the server send us. asyncssh's default, 32 KiB, splits every read
# answer of rclone (32 KiB of data and its SFTP header) into 2 packets and a 255 KiB answer of
# ProFTPD or paramiko into 8, each decrypted and dispatched in Python. 64 KiB measured best
# over 256 MiB downloads (client + server CPU): paramiko's server spends more on 255 KiB
# packets than it saves (1.9 s against 1.7 s), ProFTPD showed no difference, rclone's answers
# fit whole. OpenSSH's sshd sends 32 KiB packets whatever we allow.
MAX_RECEIVE_PACKET = 64 * 1024


def drop_ignore_packets(conn: asyncssh.SSHClientConnection) -> None:
    """Stop asyncssh from sending an empty ``SSH_MSG_IGNORE`` before every packet.

    asyncssh precedes each packet with one: a defence against the chosen-plaintext attacks on
    CBC mode, which do not apply to the AEAD and CTR ciphers we offer. Each is one more packet
    for both sides to encrypt, send, decrypt and dispatch: half of what a download sends (one
    read request, one ignore) and of the small packets of an upload. Left alone when the
    connection may use a CBC cipher (a partner configured one). Call it once, right after the
    connection is established.
    """
    offered = cast(list[bytes], getattr(conn, "_enc_algs", [b"cbc"]))
    if any(b"-cbc" in alg or alg == b"cbc" for alg in offered):
        return
    if getattr(conn, "_consonance_no_ignore", False):
        return
    send_packet = conn.send_packet
    empty = asyncssh.packet.String(b"")

    def without_ignore(pkttype: int, *args: bytes, **kwargs: object) -> None:
        if pkttype == _MSG_IGNORE and args == (empty,):
            return
        send_packet(pkttype, *args, **kwargs)  # type: ignore[arg-type]

    conn.send_packet = without_ignore  # type: ignore[method-assign]
    setattr(conn, "_consonance_no_ignore", True)  # noqa: B010 (not a declared attribute)
    _quiet_packet_logs()


_MSG_IGNORE = 2  # RFC 4253


def _quiet_packet_logs() -> None:
    """Make asyncssh's per-packet log calls free when packet logging is off.

    asyncssh formats a description of every SSH and SFTP packet (name, size) before its logger
    checks whether packets are logged at all (only at its debug level 3): on a download of
    small reads that was 5-10 % of the client's CPU. The check is done first here; at debug
    level 3 packets are logged exactly as before.
    """
    cls = asyncssh.packet.SSHPacketLogger
    if getattr(cls, "_consonance_quiet", False):
        return
    from asyncssh.logging import SSHLogger

    sent, received = cls.log_sent_packet, cls.log_received_packet

    def log_sent(self: object, *args: object, **kwargs: object) -> None:
        if SSHLogger._debug_level >= 3:
            sent(self, *args, **kwargs)  # type: ignore[arg-type]

    def log_received(self: object, *args: object, **kwargs: object) -> None:
        if SSHLogger._debug_level >= 3:
            received(self, *args, **kwargs)  # type: ignore[arg-type]

    cls.log_sent_packet = log_sent  # type: ignore[method-assign]
    cls.log_received_packet = log_received  # type: ignore[method-assign]
    setattr(cls, "_consonance_quiet", True)  # noqa: B010 (not a declared attribute)


def frame_received_packets(conn: asyncssh.SSHClientConnection) -> None:
    """Hand asyncssh's packet parser the received bytes one SSH packet at a time.

    asyncssh keeps what the socket delivered in one ``bytes`` buffer and, for every packet it
    takes from the front, copies the rest of the buffer twice (``buf = buf[n:]`` after the
    header and after the body). A socket read on a download holds up to 256 KiB, eight 32 KiB
    packets of OpenSSH's, so each byte was copied about seven more times than needed: profiled,
    a quarter of the client's event-loop CPU on a loopback download (2.6 -> 2.0 CPU-s/GiB,
    bench/download_profile.py). Here each socket read is cut at the lengths asyncssh's own
    parser asks for (its header, then the rest of the packet, as its state says) and each piece
    is parsed as it is cut, so the buffer never holds more than one packet. Which bytes reach
    which handler, in what order, and what an error does are unchanged: the parser is
    asyncssh's own, only its input is chunked (when its state is anything else, e.g. a packet
    still being handled asynchronously, the rest goes through asyncssh's own loop as before).

    Call it once, right after the connection is established (asyncssh 2.24, pinned: it uses
    ``_recv_handler``, ``_recv_pkthdr``, ``_recv_packet`` and ``_inpbuf``).
    """
    if getattr(conn, "_consonance_framed", False):
        return
    c: Any = conn  # asyncssh's private parser state, see above
    header, body = c._recv_pkthdr, c._recv_packet

    def data_received(data: bytes, datatype: object = None) -> None:
        c._reset_keepalive_timer()
        try:
            pos, end = 0, len(data)
            while pos < end:
                handler = c._recv_handler
                if handler == header:
                    need = c._recv_blocksize - len(c._inpbuf)
                elif handler == body:
                    need = 4 + c._pktlen + c._recv_macsize - c._recv_blocksize - len(c._inpbuf)
                else:
                    need = 0
                if need <= 0 or need >= end - pos:
                    # The rest is at most one step's worth (or the parser is busy): as asyncssh.
                    c._inpbuf += data[pos:] if pos else data
                    while c._inpbuf and c._recv_handler():
                        pass
                    return
                c._inpbuf += data[pos : pos + need]
                pos += need
                if not handler():
                    # A packet handled asynchronously: asyncssh parses the rest once it is done.
                    c._inpbuf += data[pos:]
                    return
        except DisconnectError as exc:  # as asyncssh's own _recv_data
            c._send_disconnect(exc.code, exc.reason, exc.lang)
            c._force_close(exc)
        except Exception:
            c.internal_error()

    c.data_received = data_received
    setattr(conn, "_consonance_framed", True)  # noqa: B010 (not a declared attribute)
