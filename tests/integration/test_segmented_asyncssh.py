"""Segmented transfer against the asyncssh fault server: a real disconnect, then a resume.

The fault server records every write (path, offset, length), so the test can prove on the
server side that the resumed upload sent exactly the segments the journal did not record.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from consonance_sftp.adapters.sftp.connection import open_connection
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.adapters.sftp.segmented import (
    SegmentJournal,
    get_segmented,
    put_segmented,
)
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.sftp_servers import PARTNER, EndpointFactory

KiB = 1024
MIB = 1024 * KiB
SEGMENT = 128 * KiB
BLOCK = 16 * KiB
SIZE = 15 * SEGMENT + 777  # 16 segments, the last one short
COUNT = 16


@pytest.fixture
async def conns(
    fault_endpoint: EndpointFactory,
) -> AsyncIterator[list[asyncssh.SSHClientConnection]]:
    ep = fault_endpoint()
    opened = list(await asyncio.gather(*(open_connection(ep) for _ in range(3))))
    try:
        yield opened
    finally:
        for c in opened:
            c.close()


async def sessions_of(conns: list[asyncssh.SSHClientConnection]) -> list[asyncssh.SFTPClient]:
    return list(await asyncio.gather(*(c.start_sftp_client() for c in conns)))


def seg_len(i: int) -> int:
    return min(SEGMENT, SIZE - i * SEGMENT)


async def test_round_trip_is_byte_identical(
    conns: list[asyncssh.SSHClientConnection], fault_server: FaultServer, tmp_path: Path
) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(os.urandom(SIZE))
    sftps = await sessions_of(conns)
    await put_segmented(
        sftps, source, "rt.part", segment_size=SEGMENT, block_size=BLOCK, max_requests=4
    )
    assert (fault_server.home(PARTNER) / "rt.part").read_bytes() == source.read_bytes()
    # Every block went over the wire once, as a write of at most BLOCK bytes.
    ranges = next(r for p, r in fault_server.recorder.writes.items() if p.endswith("rt.part"))
    assert sum(n for _, n in ranges) == SIZE
    assert max(n for _, n in ranges) == BLOCK

    back = tmp_path / "back.bin"
    await get_segmented(
        sftps, "rt.part", back, size=SIZE, segment_size=SEGMENT, block_size=BLOCK, max_requests=4
    )
    assert back.read_bytes() == source.read_bytes()


async def test_disconnect_at_a_random_offset_then_resume_sends_only_missing_segments(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(os.urandom(SIZE))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    journal_path = tmp_path / "up.journal"

    def journal() -> SegmentJournal:
        return SegmentJournal(
            journal_path, file_size=SIZE, segment_size=SEGMENT, source_id=f"sha={digest}"
        )

    async def attempt() -> None:
        ep = fault_endpoint()
        opened = list(await asyncio.gather(*(open_connection(ep) for _ in range(3))))
        try:
            await put_segmented(
                await sessions_of(opened),
                source,
                "big.part",
                segment_size=SEGMENT,
                block_size=BLOCK,
                max_requests=2,
                journal=journal(),
            )
        finally:
            for c in opened:
                c.close()
            await asyncio.gather(*(c.wait_closed() for c in opened))

    drop_at = random.randrange(SIZE // 3, 2 * SIZE // 3)
    fault_server.faults.drop_after_bytes = drop_at
    with pytest.raises((asyncssh.Error, OSError)):
        await attempt()
    assert fault_server.recorder.drops >= 1 or fault_server.faults.drop_after_bytes is None
    done = journal().done()
    assert 0 < len(done) < COUNT, (drop_at, done)

    writes = fault_server.recorder.writes
    path = next(p for p in writes if p.endswith("big.part"))
    # Let the server finish requests that were already on the wire when the client gave up,
    # so that they are not counted as the second attempt's.
    for _ in range(100):
        first_attempt = len(writes[path])
        await asyncio.sleep(0.05)
        if fault_server.recorder.active == 0 and len(writes[path]) == first_attempt:
            break
    await attempt()

    resumed = writes[path][first_attempt:]
    # Nothing of a recorded segment was sent again, and every missing one was sent in full.
    assert not [off for off, _ in resumed if off // SEGMENT in done]
    assert sum(n for _, n in resumed) == sum(seg_len(i) for i in range(COUNT) if i not in done)
    final = fault_server.home(PARTNER) / "big.part"
    assert hashlib.sha256(final.read_bytes()).hexdigest() == digest
    assert journal().done() == set(range(COUNT))


async def test_a_read_back_verify_reads_at_the_read_size(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    # A server that answers smaller reads than it takes writes (rclone: 32 KiB) is read back
    # at its read size: larger reads come back short and asyncssh asks for the rest out of
    # order, which made rclone's read-back four times slower.
    local = tmp_path / "v.bin"
    local.write_bytes(os.urandom(MIB + 123))
    ep = fault_endpoint(checksum="read_back", block_size=64 * KiB, read_block_size=16 * KiB)
    async with SftpRemoteFS(ep, state_dir=tmp_path / "s") as fs:
        result = await fs.upload(local, "v.bin")
    assert result.verified_by == "read_back"
    reads = [r for path, rs in fault_server.recorder.reads.items() if "v.bin" in path for r in rs]
    assert sum(size for _, size in reads) >= MIB + 123
    assert max(size for _, size in reads) == 16 * KiB
