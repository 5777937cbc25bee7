"""The transfer's CPU savings change no byte: the lean SSH data packets are asyncssh's own
packets, received ones reach the channel as asyncssh's parser would hand them, one read of a
file gives the same hashes as reading it per segment, and SFTP answers framed from the channel
reach the requests asyncssh's reader would give them to."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from asyncssh import SFTPBadMessage
from asyncssh.channel import SSHClientChannel
from asyncssh.connection import SSHConnection
from asyncssh.encryption import get_encryption, get_encryption_params
from asyncssh.packet import String, UInt32

from consonance_sftp.adapters.sftp import packets, sftp_frames
from consonance_sftp.adapters.sftp.checksums import FileHasher, range_sha256


class _Conn:
    """The parts of an asyncssh connection that sending a packet reads and updates."""

    def __init__(self, alg: bytes, mac: bytes, coalesced: bool) -> None:
        keysize, ivsize, blocksize, mac_keysize, _hashsize, etm = get_encryption_params(alg, mac)
        self._send_encryption = get_encryption(
            alg, b"k" * keysize, b"i" * ivsize, mac, b"m" * mac_keysize, etm
        )
        self._send_enchdrlen = 1 if etm else 5
        self._send_blocksize = max(8, blocksize)
        self._send_seq = 7
        self._auth_complete = self._kex_complete = True
        self._rekey_bytes_sent, self._rekey_bytes = 0, 1 << 40
        self._rekey_seconds, self._rekey_time = 0, 0.0
        self._compressor = None
        self._deferred_packets: list[Any] = []
        self._consonance_coalesced = coalesced
        self.out: list[bytes] = []

    def _send(self, data: bytes) -> None:
        self.out.append(bytes(data))

    def send_packet(self, *args: Any, **kwargs: Any) -> None:
        if args[0] != 2:  # the ignore packet dropped (packets.drop_ignore_packets)
            SSHConnection.send_packet(self, *args, **kwargs)  # type: ignore[arg-type]

    def log_sent_packet(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("alg", "mac", "coalesced"),
    [
        (b"aes128-gcm@openssh.com", b"", True),
        (b"aes256-gcm@openssh.com", b"", False),
        (b"chacha20-poly1305@openssh.com", b"", True),
        (b"aes128-ctr", b"hmac-sha2-256-etm@openssh.com", True),
        (b"aes256-ctr", b"hmac-sha2-256", True),
    ],
)
def test_lean_data_packets_are_asyncssh_packets(
    alg: bytes, mac: bytes, coalesced: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "urandom", lambda n: bytes(range(n)))  # the same padding in both
    ours, theirs = _Conn(alg, mac, coalesced), _Conn(alg, mac, coalesced)
    for size in (1, 15, 16, 17, 4096, 32768, 32768 - 9, 65536):
        data = bytes((i * 7 + size) % 251 for i in range(size))
        view = memoryview(bytearray(data))
        packets._send_data(ours, 3, view)
        SSHConnection.send_packet(
            theirs,  # type: ignore[arg-type]
            packets._MSG_CHANNEL_DATA,
            UInt32(3) + String(data),
            handler=theirs,  # type: ignore[arg-type]
        )
        assert b"".join(ours.out) == b"".join(theirs.out), (alg, size)
        assert ours._send_seq == theirs._send_seq
        assert ours._rekey_bytes_sent == theirs._rekey_bytes_sent
    # One packet is one call (GCM hands over its clear header and its sealed body apart only
    # into a coalescing connection, which joins them).
    assert len(ours.out) == len(theirs.out) * (2 if coalesced and b"gcm" in alg else 1)


def test_lean_path_steps_aside_when_a_rekey_is_due() -> None:
    conn = _Conn(b"aes128-gcm@openssh.com", b"", True)
    assert packets._plain_path(conn)
    conn._rekey_bytes_sent = conn._rekey_bytes
    assert not packets._plain_path(conn)
    conn._rekey_bytes_sent = 0
    conn._kex_complete = False
    assert not packets._plain_path(conn)


class _Chan:
    """The parts of an asyncssh client channel that flushing its send buffer uses."""

    def __init__(self, conn: _Conn, window: int = 1 << 20) -> None:
        self._conn = conn
        self._send_chan = 3
        self._send_buf: list[tuple[bytearray, None]] = []
        self._send_buf_len = 0
        self._send_window = window
        self._send_pktsize = 32768
        self._send_state = "open"

    def queue(self, data: bytes) -> None:
        self._send_buf.append((bytearray(data), None))
        self._send_buf_len += len(data)

    def _pause_resume_writing(self) -> None:
        pass


async def test_a_loop_turn_s_requests_leave_together_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[bytes] = []
    monkeypatch.setattr(packets, "_send_data", lambda _c, _ch, data: sent.append(bytes(data)))
    conn = _Conn(b"aes128-gcm@openssh.com", b"", True)
    conn._consonance_lean = True  # type: ignore[attr-defined]
    conn._loop = asyncio.get_running_loop()  # type: ignore[attr-defined]
    chan = _Chan(conn)
    packets._install_lean_flush()
    from asyncssh.channel import SSHClientChannel

    entries = [b"a" * 10, b"b" * 20, b"c" * 30, os.urandom(40_000), b"e" * 10]
    for entry in entries:  # as SSHChannel.write queues each, then flushes
        chan.queue(entry)
        SSHClientChannel._flush_send_buf(chan)  # type: ignore[arg-type]
    assert sent == []  # nothing leaves before the loop turn ends
    await asyncio.sleep(0)
    # The small requests share a packet, the large one fills packets, its tail takes the
    # next request along: the same bytes, in the same order, in three packets, not six.
    assert b"".join(sent) == b"".join(entries)
    assert [len(p) for p in sent] == [60, 32768, 40_000 - 32768 + 10]
    assert chan._send_buf == [] and chan._send_buf_len == 0
    assert chan._send_window == (1 << 20) - sum(map(len, entries))

    # A window smaller than the queue: no more than it allows, whole entries or not.
    sent.clear()
    small = _Chan(conn, window=25)
    for entry in entries[:3]:
        small.queue(entry)
    packets._lean_flush(small, conn)
    assert b"".join(sent) == (b"a" * 10 + b"b" * 20)[:25]
    assert small._send_window == 0 and small._send_buf_len == 35


class _Receiver:
    """The parts of an asyncssh connection that receiving a packet reads and updates."""

    def __init__(self, alg: bytes) -> None:
        keysize, ivsize, *_ = get_encryption_params(alg, b"")
        self._recv_encryption = get_encryption(alg, b"k" * keysize, b"i" * ivsize, b"", b"", True)
        self._auth_complete = True
        self._decompressor = None
        self._max_recv_pktlen = 1 << 20
        self._recv_seq = 7
        self._channels: dict[int, Any] = {}


def _client_channel(window: int) -> Any:
    """A bare asyncssh client channel recording what ``_lean_receive`` hands it."""
    chan: Any = SSHClientChannel.__new__(SSHClientChannel)
    chan._recv_state = "open"
    chan._recv_window = window
    chan._send_window = 0
    chan.got = []
    chan._accept_data = chan.got.append
    chan._flush_send_buf = lambda: chan.got.append("flushed")
    return chan


def test_lean_receive_takes_channel_data_and_window_adjusts_and_leaves_the_rest() -> None:
    sender = _Conn(b"aes128-gcm@openssh.com", b"", False)
    receiver = _Receiver(b"aes128-gcm@openssh.com")
    chan = _client_channel(window=100_000)
    receiver._channels[5] = chan

    def wire(pkttype: int, *fields: bytes) -> bytes:
        sender.out.clear()
        SSHConnection.send_packet(sender, pkttype, *fields, handler=sender)  # type: ignore[arg-type]
        return b"".join(sender.out)

    body = os.urandom(40_000)
    stream = (
        wire(94, UInt32(5), String(body))
        + wire(93, UInt32(5), UInt32(1234))
        + wire(96, UInt32(5))  # EOF: asyncssh's
    )
    sizes = []
    pos = 0
    while pos < len(stream):
        size = packets._lean_size(receiver, stream, pos, len(stream))
        assert size is not None
        sizes.append(size)
        pos += size
    assert pos == len(stream) and len(sizes) == 3
    assert packets._lean_receive(receiver, stream, 0, sizes[0])
    assert chan.got == [body] and receiver._recv_seq == 8
    assert packets._lean_receive(receiver, stream, sizes[0], sizes[1])
    assert chan._send_window == 1234 and chan.got[-1] == "flushed" and receiver._recv_seq == 9
    pos = sizes[0] + sizes[1]
    # The EOF is left to asyncssh, which decrypts it with the nonce still unused.
    assert not packets._lean_receive(receiver, stream, pos, sizes[2])
    assert receiver._recv_seq == 9
    header, rest = stream[pos : pos + 16], stream[pos + 16 : -16]
    enc = receiver._recv_encryption
    assert enc.decrypt_packet(9, header, rest, 4, stream[-16:]) is not None

    # A bad tag, more than the window, or an unknown channel: asyncssh's own parser gets it
    # (and refuses what it must); so does any packet where debug logging or another cipher is.
    fresh = _Receiver(b"aes128-gcm@openssh.com")
    fresh._channels[5] = _client_channel(window=100_000)
    sender._send_encryption = get_encryption(
        b"aes128-gcm@openssh.com", b"k" * 16, b"i" * 12, b"", b"", True
    )
    data = wire(94, UInt32(5), String(b"x" * 100))
    size = len(data)
    assert packets._lean_size(fresh, data, 0, 3) is None  # not even the length there yet
    assert packets._lean_size(fresh, data, 0, len(data)) == size
    bad = data[:-1] + bytes([data[-1] ^ 1])
    assert not packets._lean_receive(fresh, bad, 0, size)
    fresh._channels[5]._recv_window = 99
    assert not packets._lean_receive(fresh, data, 0, size)
    fresh._channels = {6: fresh._channels[5]}
    assert not packets._lean_receive(fresh, data, 0, size)
    other = _Receiver(b"aes128-ctr")
    assert packets._lean_size(other, data, 0, size) is None
    fresh._channels[5] = _client_channel(window=100)
    assert packets._lean_receive(fresh, data, 0, size)
    assert fresh._channels[5].got == [b"x" * 100]


def _file(path: Path, size: int) -> bytes:
    data = bytes((i * 31 + 7) % 256 for i in range(size))
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("size", [0, 1, 3 << 20, (3 << 20) + 12345])
def test_one_read_gives_the_file_and_segment_hashes(tmp_path: Path, size: int) -> None:
    seg = 1 << 20
    data = _file(tmp_path / "f", size)
    hasher = FileHasher(tmp_path / "f", seg)
    # Segments asked for before the read has reached them wait for it (another thread).
    count = max(1, -(-size // seg))
    answers: dict[int, str] = {}

    def ask(i: int) -> None:
        answers[i] = hasher.segment(i, i * seg, min(seg, size - i * seg))

    askers = [threading.Thread(target=ask, args=(i,)) for i in reversed(range(count))]
    for t in askers:
        t.start()
    assert hasher.run() == (size, hashlib.sha256(data).hexdigest())
    for t in askers:
        t.join(10)
    assert answers == {
        i: hashlib.sha256(data[i * seg : (i + 1) * seg]).hexdigest() for i in range(count)
    }


def test_a_range_the_read_did_not_hash_is_read_again(tmp_path: Path) -> None:
    data = _file(tmp_path / "f", 5000)
    hasher = FileHasher(tmp_path / "f", 2048)
    hasher.run()
    # Another length than the read saw (the file changed), another segment size: from the file.
    assert hasher.segment(2, 4096, 100) == hashlib.sha256(data[4096:4196]).hexdigest()
    assert hasher.segment(1, 1000, 1000) == hashlib.sha256(data[1000:2000]).hexdigest()
    assert range_sha256(tmp_path / "f", 4000, 5000) == hashlib.sha256(data[4000:]).hexdigest()
    # Without segments it is the file's hash alone, and a segment is read from the file.
    plain = FileHasher(tmp_path / "f")
    assert plain.run() == (5000, hashlib.sha256(data).hexdigest())
    assert plain.segment(0, 0, 10) == hashlib.sha256(data[:10]).hexdigest()


def test_a_failed_read_does_not_leave_a_segment_waiting(tmp_path: Path) -> None:
    hasher = FileHasher(tmp_path / "missing", 1024)
    with pytest.raises(FileNotFoundError):
        hasher.run()
    with pytest.raises(FileNotFoundError):
        hasher.segment(0, 0, 1024)
    assert hasher.wait() is None  # ended, without a result


def test_wait_gives_the_read_s_result_once_it_ended(tmp_path: Path) -> None:
    data = _file(tmp_path / "f", (2 << 20) + 7)
    hasher = FileHasher(tmp_path / "f", 1 << 20)
    got: list[tuple[int, str] | None] = []
    waiter = threading.Thread(target=lambda: got.append(hasher.wait()))
    waiter.start()
    waiter.join(0.05)
    assert got == []  # the read has not run yet
    hasher.run()
    waiter.join(10)
    assert got == [(len(data), hashlib.sha256(data).hexdigest())]


class _Session:
    def __init__(self) -> None:
        self._recv_buf: dict[object, list[bytes]] = {None: []}
        self._recv_buf_len = 0
        self.passed: list[tuple[bytes, object]] = []

    def data_received(self, data: bytes, datatype: object) -> None:
        self.passed.append((data, datatype))


class _Handler:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._reader = type("Reader", (), {"_session": _Session(), "_datatype": None})()
        self._requests: dict[int, asyncio.Future[Any]] = {}
        self.cleaned: list[BaseException | None] = []
        self.loop = loop

    async def _cleanup(self, exc: BaseException | None) -> None:
        self.cleaned.append(exc)

    def log_received_packet(self, *args: object) -> None:
        pass


def _answer(pktid: int, body: bytes, pkttype: int = 103) -> bytes:
    payload = bytes((pkttype,)) + pktid.to_bytes(4, "big") + body
    return len(payload).to_bytes(4, "big") + payload


async def test_answers_reach_their_requests_however_the_bytes_are_cut() -> None:
    loop = asyncio.get_running_loop()
    handler = _Handler(loop)
    sftp = type("Sftp", (), {"_handler": handler})()
    assert sftp_frames.lean_sftp_receive(sftp)  # type: ignore[arg-type]
    session = handler._reader._session
    bodies = {i: bytes([i]) * (i * 997 % 5000) for i in range(40)}
    for i in bodies:
        handler._requests[i] = loop.create_future()
    waiters = dict(handler._requests)
    wire = b"".join(_answer(i, body) for i, body in bodies.items())
    cut = 0
    for step in (1, 3, 4, 5, 4096, 7, 1 << 20):  # pieces inside a length, across answers
        session.data_received(wire[cut : cut + step], None)
        cut += step
    assert cut >= len(wire)
    for i, body in bodies.items():
        pkttype, packet = waiters[i].result()
        assert pkttype == 103
        assert packet.get_remaining_payload() == body
    assert not handler._requests and not handler.cleaned
    session.data_received(b"err", 1)  # extended data is not SFTP's: passed on as before
    assert session.passed == [(b"err", 1)]


@pytest.mark.parametrize(
    "wire",
    [_answer(99, b"x"), (10 << 20).to_bytes(4, "big") + b"\0" * 8],
    ids=["unknown request id", "over the length cap"],
)
async def test_an_answer_that_breaks_the_protocol_ends_the_session(wire: bytes) -> None:
    loop = asyncio.get_running_loop()
    handler = _Handler(loop)
    sftp = type("Sftp", (), {"_handler": handler})()
    assert sftp_frames.lean_sftp_receive(sftp)  # type: ignore[arg-type]
    handler._requests[1] = loop.create_future()
    handler._reader._session.data_received(wire + _answer(1, b"late"), None)
    await asyncio.sleep(0)
    assert len(handler.cleaned) == 1 and isinstance(handler.cleaned[0], SFTPBadMessage)
    assert not handler._requests[1].done()  # nothing after the broken answer is read


def test_asyncssh_debug_arguments_are_not_converted_unless_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from asyncssh.logging import logger as ssh_logger

    packets._quiet_packet_logs()
    converted: list[str] = []

    class Arg:
        def __str__(self) -> str:
            converted.append("x")
            return "arg"

    log = ssh_logger.get_child("sftp")
    with caplog.at_level(logging.INFO, logger="asyncssh"):
        log.debug1("request %s", [Arg()])
    assert converted == []  # the level is off: nothing formatted
    with caplog.at_level(logging.DEBUG, logger="asyncssh"):
        log.debug1("request %s", [Arg()])
    assert converted == ["x"]
    assert "request arg" in caplog.text  # an enabled level logs as before
