"""``packets.frame_received_packets`` against a real OpenSSH server.

The service's connections hand asyncssh's parser one SSH packet at a time instead of whole
socket reads. These tests download through such a connection and check that the bytes are
the same whatever the socket delivers in one read (down to single bytes, packets split
anywhere), that a key re-exchange in the middle of a download passes through the framed
parser, and that the parser's buffer really holds at most one packet (the data packets, on
AES-GCM, are taken past it by ``packets._lean_receive``).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consonance_sftp.adapters.sftp import packets
from consonance_sftp.adapters.sftp.endpoint import SftpEndpoint
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.adapters.sftp.packets import MAX_RECEIVE_PACKET
from consonance_sftp.adapters.sftp.segmented import get_segmented

KiB = 1024
SIZE = 3 * 1024 * KiB + 4321


async def test_any_split_of_the_received_bytes_and_a_rekey_give_the_same_file(
    openssh_endpoint: Callable[..., SftpEndpoint],
    openssh_dir: Callable[[str], tuple[Path, str]],
    tmp_path: Path,
) -> None:
    local_dir, remote_dir = openssh_dir("shell")
    data = os.urandom(SIZE)
    (local_dir / "f.bin").write_bytes(data)
    fs = SftpRemoteFS(openssh_endpoint("shell"), state_dir=tmp_path / "state")
    async with fs, fs.pool.lease() as pc:  # a connection as the service opens it
        conn: Any = pc.conn
        sftp = pc.sftp
        framed = conn.data_received
        rng = random.Random(21)

        def split(chunk: bytes, datatype: object = None) -> None:
            # What a socket might deliver: single bytes, a header cut in two, a packet and a
            # half, several packets at once.
            pos = 0
            while pos < len(chunk):
                n = rng.choice((1, 3, 17, 40, 5_000, 32_800, 70_000, 300_000))
                framed(chunk[pos : pos + n])
                pos += n

        conn.data_received = split
        keys_before = conn._recv_encryption
        rekeyed = [False]

        def progress(done: int) -> None:
            if done > SIZE // 3 and not rekeyed[0]:
                rekeyed[0] = True
                # asyncssh re-keys on its next packet out, as after rekey_bytes; the server's
                # kex packets arrive in the middle of the read answers, framed.
                conn._rekey_bytes_sent = conn._rekey_bytes

        await get_segmented(
            [sftp],
            f"{remote_dir}/f.bin",
            tmp_path / "back.bin",
            size=SIZE,
            segment_size=1024 * KiB,
            block_size=64 * KiB,
            max_requests=8,
            progress=progress,
        )
        assert (tmp_path / "back.bin").read_bytes() == data
        assert rekeyed[0]
        # The new keys are in use: the exchange went through the framed parser.
        await sftp.stat(remote_dir)
        assert conn._recv_encryption is not keys_before


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "asyncssh-parser"])
async def test_the_parser_buffer_holds_at_most_one_packet(
    openssh_endpoint: Callable[..., SftpEndpoint],
    openssh_dir: Callable[[str], tuple[Path, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    lean: bool,
) -> None:
    # The data packets go past asyncssh's parser (``packets._lean_receive``) unless that is
    # off; either way asyncssh's buffer never holds more than one packet.
    taken = [0]
    if lean:
        take = packets._lean_receive

        def counting(c: Any, data: bytes, pos: int, size: int) -> bool:
            took = take(c, data, pos, size)
            taken[0] += took
            return took

        monkeypatch.setattr(packets, "_lean_receive", counting)
    else:
        monkeypatch.setattr(packets, "_lean_size", lambda *_args: None)
    local_dir, remote_dir = openssh_dir("shell")
    data = os.urandom(SIZE)
    (local_dir / "f.bin").write_bytes(data)
    fs = SftpRemoteFS(openssh_endpoint("shell"), state_dir=tmp_path / "state")
    async with fs, fs.pool.lease() as pc:  # a connection as the service opens it
        conn: Any = pc.conn
        sftp = pc.sftp
        keys = conn._recv_encryption
        decrypt = keys.decrypt_packet
        largest = [0]

        def watched(*args: Any) -> Any:
            # Called while the packet is parsed: the buffer still holds it and what follows.
            largest[0] = max(largest[0], len(conn._inpbuf))
            return decrypt(*args)

        keys.decrypt_packet = watched
        await get_segmented(
            [sftp],
            f"{remote_dir}/f.bin",
            tmp_path / "back.bin",
            size=SIZE,
            segment_size=4 * 1024 * KiB,
            block_size=255 * KiB,
            max_requests=16,
        )
        assert (tmp_path / "back.bin").read_bytes() == data
    if lean:
        # sshd's 32 KiB packets, all of them taken straight to the channel.
        assert taken[0] >= SIZE // (32 * KiB)
        assert largest[0] <= MAX_RECEIVE_PACKET + 64, largest[0]
    else:
        # Without framing a socket read of up to 256 KiB sits in the buffer: several packets.
        assert 16 * KiB < largest[0] <= MAX_RECEIVE_PACKET + 64, largest[0]
