"""SSH packet handling on our asyncssh client connections: fewer packets, fewer syscalls.

Each of these works below the SFTP layer, on one connection, and is applied by
``connection.open_connection`` right after the handshake (see docs/reference/performance.md):

* ``coalesce_writes``: one socket ``send()`` per event-loop turn instead of one per packet;
* ``drop_ignore_packets``: no empty ``SSH_MSG_IGNORE`` before every packet (kept for CBC);
* ``MAX_RECEIVE_PACKET``: the largest packet the server may send us;
* ``frame_received_packets``: received bytes handed to asyncssh's parser one packet at a time,
  and AES-GCM channel data and window adjusts taken straight to their channel;
* ``lean_channel_data``: channel data framed and encrypted with one copy of each byte, sent
  once per event-loop turn, the small SFTP requests of that turn joined in one packet.

They reach into asyncssh's internals (``_send``, ``send_packet``, the packet logger), which is
why asyncssh is pinned (2.24); ``tests/integration/test_segmented_openssh.py`` checks them on
a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any, cast

import asyncssh
from asyncssh.channel import SSHClientChannel
from asyncssh.encryption import GCMEncryption
from asyncssh.logging import SSHLogger
from asyncssh.misc import DisconnectError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


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
    """Make asyncssh's per-packet (and per-request) log calls free when their level is off.

    asyncssh formats a description of every SSH and SFTP packet (name, size) before its logger
    checks whether packets are logged at all (only at its debug level 3): on a download of
    small reads that was 5-10 % of the client's CPU. The check is done first here; at debug
    level 3 packets are logged exactly as before.
    """
    cls = asyncssh.packet.SSHPacketLogger
    if getattr(cls, "_consonance_quiet", False):
        return
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

    # asyncssh's logger converts every argument of every debug call to text (bytes decoded,
    # lists joined) before the standard library checks whether the level is on: an SFTP
    # request logs one or two such calls each way, 5-10 % of a small file's client CPU. The
    # level is checked first here; an enabled level logs exactly as before.
    log = SSHLogger.log

    def log_if_enabled(self: SSHLogger, level: int, msg: object, *args: Any, **kw: Any) -> None:
        if self.isEnabledFor(level):
            log(self, level, msg, *args, **kw)

    SSHLogger.log = log_if_enabled  # type: ignore[method-assign]


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
    A whole AES-GCM packet of channel data or a window adjust is taken by ``_lean_receive``
    instead, before asyncssh's parser sees it.

    Call it once, right after the connection is established (asyncssh 2.24, pinned: it uses
    ``_recv_handler``, ``_recv_pkthdr``, ``_recv_packet`` and ``_inpbuf``).
    """
    if getattr(conn, "_consonance_framed", False):
        return
    c: Any = conn  # asyncssh's private parser state, see above
    header, body = c._recv_pkthdr, c._recv_packet

    # The start of an AES-GCM packet whose rest comes in the next socket read: kept here, not
    # in asyncssh's buffer, so that the packet too can be taken by ``_lean_receive``.
    carry = bytearray()

    def data_received(data: bytes, datatype: object = None) -> None:
        c._reset_keepalive_timer()
        try:
            pos, end = 0, len(data)
            if carry:
                size = _lean_size(c, carry, 0, len(carry))
                if size is not None and len(carry) + end < size:
                    carry.extend(data)
                    return
                if size is None:  # no longer one to take (a debug level set): asyncssh's
                    data, end = bytes(carry) + data, len(carry) + end
                else:
                    pos = size - len(carry)
                    carry.extend(data[:pos])
                    packet = bytes(carry)
                    if not _lean_receive(c, packet, 0, size):
                        data, end, pos = packet + data[pos:], size + end - pos, 0
                carry.clear()
            while pos < end:
                handler = c._recv_handler
                if handler == header and not c._inpbuf:
                    size = _lean_size(c, data, pos, end)
                    if size is not None:
                        if end - pos < size:
                            carry.extend(data[pos:])
                            return
                        if _lean_receive(c, data, pos, size):
                            pos += size
                            continue
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


_MSG_CHANNEL_WINDOW_ADJUST = 93  # RFC 4254
_MSG_CHANNEL_DATA = 94
_MSG_CHANNEL_EOF = 96
_GCM_TAG = 16


def _lean_size(c: Any, data: bytes | bytearray, pos: int, end: int) -> int | None:
    """The length of the packet at ``data[pos:]`` (its first 4 bytes at least there) where
    ``_lean_receive`` may take it: an AES-GCM connection past its authentication, with no
    compression and no debug logging (asyncssh logs each packet or its data at its debug levels
    2 and 3); else None, and asyncssh's parser takes the packet."""
    enc = c._recv_encryption
    if type(enc) is not GCMEncryption or not c._auth_complete or c._decompressor is not None:
        return None
    if end - pos < 4 or SSHLogger._debug_level >= 2:
        return None
    pktlen = int.from_bytes(data[pos : pos + 4], "big")
    if pktlen > c._max_recv_pktlen or pktlen < 10:
        return None
    return 4 + pktlen + _GCM_TAG


def _lean_receive(c: Any, data: bytes, pos: int, size: int) -> bool:
    """Take the whole AES-GCM packet ``data[pos : pos + size]`` (``_lean_size``) if it is plain
    channel data or a window adjust for an ordinary client channel; False leaves it to
    asyncssh's parser (another message, a bad tag, a length or window asyncssh would refuse).

    asyncssh's ``_recv_packet`` builds each packet's plaintext through three concatenations
    of its bytes, a fresh AESGCM object (a key schedule), an ``SSHPacket`` parsed field by
    field, a handler lookup, its logging and the channel's own checks: for a download's 32 KiB
    data packets and an upload's window adjusts (one per two or three 32 KiB packets sent),
    most of the client's receive CPU. Here the ciphertext is decrypted from a view of the
    socket's bytes, and the channel gets what ``_process_data`` or ``_process_window_adjust``
    would give it, after the same checks; sequence number and nonce advance as asyncssh's
    do. A packet this leaves is decrypted again by asyncssh with the same nonce."""
    cipher = c._recv_encryption._cipher
    aead = _aead(cipher)
    with memoryview(data) as view:
        try:
            plain = aead.decrypt(cipher._iv, view[pos + 4 : pos + size], view[pos : pos + 4])
        except InvalidTag:
            return False  # asyncssh's own check fails it the same way and disconnects
    padlen, pkttype = plain[0], plain[1]
    if pkttype not in (_MSG_CHANNEL_DATA, _MSG_CHANNEL_WINDOW_ADJUST) or len(plain) < 10:
        return False
    chan = c._channels.get(int.from_bytes(plain[2:6], "big"))
    if type(chan) is not SSHClientChannel:
        return False
    number = int.from_bytes(plain[6:10], "big")
    if pkttype == _MSG_CHANNEL_DATA:
        if 10 + number + padlen != len(plain) or chan._recv_state != "open":
            return False
        if number > chan._recv_window:
            return False
    elif 10 + padlen != len(plain) or chan._recv_state not in ("open", "eof_pending", "eof"):
        return False
    cipher._update_iv()
    c._recv_seq = (c._recv_seq + 1) & 0xFFFFFFFF
    if pkttype == _MSG_CHANNEL_DATA:
        chan._accept_data(plain[10 : 10 + number])
    else:
        chan._send_window += number
        chan._flush_send_buf()
    return True


def lean_channel_data(conn: asyncssh.SSHClientConnection) -> None:
    """Frame and encrypt the connection's channel data with one copy of each byte, not a dozen.

    An upload's bytes pass through asyncssh's generic packet path once per SSH packet (32 KiB
    on OpenSSH, eight per 255 KiB write): the channel slices its buffer, wraps the slice in a
    string, prefixes the channel number, the message type and the padding length, each a new
    concatenation of the whole packet, and AES-GCM's result is split and joined again; about
    ten copies of every byte, most of our client's CPU on a loopback upload
    (bench/download_profile.py --direction up). Here a channel's ordinary data packet is built
    in one ``join`` from a view of the channel's buffer and encrypted; the AES-GCM ciphertext
    (tag included) is queued as it comes out, next to its clear length header. The bytes on
    the wire are exactly asyncssh's (same framing, padding from ``os.urandom``, sequence
    numbers, rekey accounting); anything unusual goes through asyncssh's own path, packet by
    packet: extended data, a connection not past its key exchange or due for a rekey,
    compression, packet logging (debug level 3), or one that may still need the ``MSG_IGNORE``
    of CBC ciphers (``drop_ignore_packets`` not applied).

    What a channel is given to send leaves at the end of the event-loop turn, not at once:
    the requests of many files in flight (open, read, close, rename: tens of bytes each) then
    share one packet, one encryption and one ``send()`` instead of one each (a batch of 50 KB
    files: 7 packets a file before, 3 now). The end of a channel (EOF, close) still goes at
    once, after what is queued.

    Call it once, right after ``drop_ignore_packets`` (asyncssh 2.24, pinned: it replaces
    ``SSHClientChannel._flush_send_buf`` for the connections it was called on).
    """
    if not getattr(conn, "_consonance_no_ignore", False):
        return
    _install_lean_flush()
    setattr(conn, "_consonance_lean", True)  # noqa: B010 (not a declared attribute)


def _install_lean_flush() -> None:
    if getattr(SSHClientChannel, "_consonance_lean", False):
        return
    original = SSHClientChannel._flush_send_buf

    def lean(chan: Any) -> Any:
        conn = chan._conn
        if conn is None or chan._send_chan is None or not getattr(conn, "_consonance_lean", False):
            return None
        return conn

    def due(chan: Any) -> None:
        chan._consonance_flush_due = False
        conn = lean(chan)
        if conn is not None:
            _lean_flush(chan, conn)

    def flush(self: Any) -> None:
        conn = lean(self)
        if conn is None:
            original(self)
        elif self._send_state != "open":
            _lean_flush(self, conn)  # the end of the channel goes after what is queued, now
        elif not getattr(self, "_consonance_flush_due", False):
            # Once per loop turn: the requests of many files go out in one packet.
            self._consonance_flush_due = True
            conn._loop.call_soon(due, self)

    SSHClientChannel._flush_send_buf = flush  # type: ignore[method-assign]
    setattr(SSHClientChannel, "_consonance_lean", True)  # noqa: B010 (not a declared attribute)


def _plain_path(conn: Any) -> bool:
    """May this packet skip asyncssh's ``send_packet``? (Nothing it would do differently.)"""
    return bool(
        conn._kex_complete
        and conn._auth_complete
        and conn._send_encryption is not None
        and conn._compressor is None
        and conn._rekey_bytes_sent < conn._rekey_bytes
        and not (conn._rekey_seconds and time.monotonic() >= conn._rekey_time)
        and SSHLogger._debug_level < 3
    )


def _lean_flush(chan: Any, conn: Any) -> None:
    """asyncssh's ``SSHChannel._flush_send_buf``, with ``_send_data`` for plain data packets."""
    send_buf = chan._send_buf
    while send_buf and chan._send_window:
        pktsize = min(chan._send_window, chan._send_pktsize)
        buf, datatype = send_buf[0]
        n = min(len(buf), pktsize)
        if datatype is None and _plain_path(conn):
            whole = _whole_entries(send_buf, pktsize)
            if whole > 1:
                # Several queued requests that fit one packet go as one.
                joined = b"".join(entry for entry, _ in send_buf[:whole])
                n = len(joined)
                with memoryview(joined) as piece:
                    _send_data(conn, chan._send_chan, piece)
                del send_buf[:whole]
            else:
                view = memoryview(buf)
                piece = view[:n]
                try:
                    _send_data(conn, chan._send_chan, piece)
                finally:
                    piece.release()
                    view.release()
                if n == len(buf):
                    del send_buf[0]
                else:
                    del buf[:n]
        else:
            if len(buf) > n:
                data = bytes(buf[:n])
                del buf[:n]
            else:
                data = bytes(buf)
                del send_buf[0]
            if datatype is None:
                chan.send_packet(_MSG_CHANNEL_DATA, asyncssh.packet.String(data))
            else:
                chan.send_packet(
                    _MSG_CHANNEL_DATA + 1,
                    asyncssh.packet.UInt32(datatype),
                    asyncssh.packet.String(data),
                )
        chan._send_buf_len -= n
        chan._send_window -= n
    chan._pause_resume_writing()
    if not send_buf:
        if chan._send_state == "eof_pending":
            chan.send_packet(_MSG_CHANNEL_EOF)
            chan._send_state = "eof"
        elif chan._send_state == "close_pending":
            chan._close_send()


def _whole_entries(send_buf: Any, room: int) -> int:
    """How many queued entries from the front, whole and of plain data, fit in ``room``."""
    count = total = 0
    for entry, datatype in send_buf:
        total += len(entry)
        if datatype is not None or total > room:
            break
        count += 1
    return count


def _send_data(conn: Any, channel: int, data: memoryview) -> None:
    """One SSH_MSG_CHANNEL_DATA packet, as asyncssh's ``send_packet`` frames it."""
    n = len(data)
    payload_len = 9 + n  # type, recipient channel, string length, bytes
    blocksize = conn._send_blocksize
    padlen = -(conn._send_enchdrlen + payload_len) % blocksize
    if padlen < 4:
        padlen += blocksize
    pktlen = 1 + payload_len + padlen
    header = pktlen.to_bytes(4, "big")
    plain = b"".join(
        (
            bytes((padlen, _MSG_CHANNEL_DATA)),
            channel.to_bytes(4, "big"),
            n.to_bytes(4, "big"),
            data,
            os.urandom(padlen),
        )
    )
    seq = conn._send_seq
    enc = conn._send_encryption
    if type(enc) is GCMEncryption:
        # The ciphertext with its tag is the packet's body and MAC, in wire order.
        cipher = enc._cipher
        sealed = _aead(cipher).encrypt(cipher._iv, plain, header)
        cipher._update_iv()
        if getattr(conn, "_consonance_coalesced", False):
            conn._send(header)
            conn._send(sealed)
        else:
            conn._send(header + sealed)
    else:
        packet, mac = enc.encrypt_packet(seq, header, plain)
        conn._send(packet + mac)
    conn._send_seq = (seq + 1) & 0xFFFFFFFF
    conn._rekey_bytes_sent += pktlen


def _aead(cipher: Any) -> AESGCM:
    """The AESGCM object of an asyncssh ``GCMCipher``, made once per key (asyncssh makes a new
    one, a key schedule, for every packet)."""
    aead = getattr(cipher, "_consonance_aead", None)
    if aead is None:
        aead = AESGCM(cipher._key)
        setattr(cipher, "_consonance_aead", aead)  # noqa: B010 (not a declared attribute)
    return cast(AESGCM, aead)
