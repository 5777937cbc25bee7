"""Segmented parallel transfer against the private OpenSSH sshd: identical bytes, crash and resume.

The file sizes are odd on purpose (the last segment and the last block are short). Resume is
proven on the server side: after the interrupted attempt, the bytes of a segment the journal
records as done are overwritten on the server; the resumed transfer must leave them alone (it
never re-sends a finished segment and never truncates), and every other byte must match.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncssh
import pytest

from consonance_sftp.adapters.sftp import packets
from consonance_sftp.adapters.sftp.connection import open_connection
from consonance_sftp.adapters.sftp.endpoint import SftpEndpoint
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.adapters.sftp.packets import coalesce_writes
from consonance_sftp.adapters.sftp.segmented import (
    MAX_OPENSSH_BLOCK,
    SegmentJournal,
    file_source_id,
    get_segmented,
    put_segmented,
)
from consonance_sftp.errors import IntegrityError

pytestmark = pytest.mark.sshd

KiB = 1024
SEGMENT = 256 * KiB
BLOCK = 32 * KiB
SIZE = 9 * SEGMENT + 12_345  # 10 segments, the last one short


@pytest.fixture
async def sessions(
    openssh_endpoint: Callable[..., SftpEndpoint],
) -> AsyncIterator[list[asyncssh.SFTPClient]]:
    ep = openssh_endpoint("shell")
    conns = await asyncio.gather(*(open_connection(ep) for _ in range(3)))
    try:
        yield list(await asyncio.gather(*(c.start_sftp_client() for c in conns)))
    finally:
        for c in conns:
            c.close()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.bin"
    path.write_bytes(os.urandom(SIZE))
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Recorder:
    """Progress callback that remembers every running total and can interrupt the transfer."""

    def __init__(self, stop_after: int | None = None, journal: Path | None = None) -> None:
        self.totals: list[int] = []
        self.stop_after = stop_after
        self.journal = journal
        self.task: asyncio.Task[None] | None = None

    def __call__(self, done: int) -> None:
        self.totals.append(done)
        if self.stop_after is not None and done >= self.stop_after and self.task is not None:
            # Journal marks are written by worker threads; blocking the event loop here (the
            # transfer stands still) lets the marks of finished segments land before the crash,
            # so the test does not depend on how busy the machine is.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self._marks() == 0:
                time.sleep(0.01)
            self.task.cancel()  # the "crash": nothing after this point completes
            self.stop_after = None

    def _marks(self) -> int:
        if self.journal is None or not self.journal.exists():
            return 1
        return len(self.journal.read_bytes().split(b"\n")) - 2


async def interrupted(
    coro_factory: Callable[[Recorder], object], stop_after: int, journal: Path
) -> Recorder:
    rec = Recorder(stop_after, journal)
    task: asyncio.Task[None] = asyncio.create_task(coro_factory(rec))  # type: ignore[arg-type]
    rec.task = task
    with pytest.raises(asyncio.CancelledError):
        await task
    return rec


async def test_upload_and_download_are_byte_identical(
    sessions: list[asyncssh.SFTPClient],
    openssh_dir: Callable[[str], tuple[Path, str]],
    source: Path,
    tmp_path: Path,
) -> None:
    local_dir, remote_dir = openssh_dir("shell")
    rec = Recorder()
    await put_segmented(
        sessions,
        source,
        f"{remote_dir}/up.part",
        segment_size=SEGMENT,
        block_size=BLOCK,
        max_requests=4,
        progress=rec,
    )
    assert sha(local_dir / "up.part") == sha(source)
    assert rec.totals[0] == 0 and rec.totals[-1] == SIZE
    assert rec.totals == sorted(rec.totals)

    back = tmp_path / "back" / "down.part"
    rec = Recorder()
    await get_segmented(
        sessions,
        f"{remote_dir}/up.part",
        back,
        size=SIZE,
        segment_size=SEGMENT,
        block_size=BLOCK,
        max_requests=4,
        progress=rec,
    )
    assert sha(back) == sha(source)
    assert rec.totals[-1] == SIZE


async def test_upload_resumes_from_the_journal_and_sends_only_missing_segments(
    sessions: list[asyncssh.SFTPClient],
    openssh_dir: Callable[[str], tuple[Path, str]],
    source: Path,
    tmp_path: Path,
) -> None:
    local_dir, remote_dir = openssh_dir("shell")
    remote = f"{remote_dir}/big.part"
    journal_path = tmp_path / "big.journal"
    source_id = file_source_id(source, sha(source))

    def new_journal() -> SegmentJournal:
        return SegmentJournal(
            journal_path, file_size=SIZE, segment_size=SEGMENT, source_id=source_id
        )

    def attempt(rec: Recorder) -> object:
        return put_segmented(
            sessions,
            source,
            remote,
            segment_size=SEGMENT,
            block_size=BLOCK,
            max_requests=2,
            journal=new_journal(),
            progress=rec,
        )

    await interrupted(attempt, stop_after=6 * SEGMENT, journal=journal_path)
    done = new_journal().done()
    assert 0 < len(done) < 10, done

    # Server side: overwrite one finished segment. A resume that re-sent it, or truncated the
    # file on open, would restore or wipe these bytes.
    tampered = min(done)
    marker = b"\xee" * SEGMENT
    with open(local_dir / "big.part", "r+b") as fh:
        fh.seek(tampered * SEGMENT)
        fh.write(marker)

    rec = Recorder()
    await attempt(rec)
    done_bytes = sum(min(SEGMENT, SIZE - i * SEGMENT) for i in done)
    assert rec.totals[0] == done_bytes  # the resumed attempt starts where the journal says
    assert rec.totals[-1] == SIZE
    # Every block callback of the second attempt is one block sent: count what was sent.
    assert len(rec.totals) - 1 == sum(
        -(-min(SEGMENT, SIZE - i * SEGMENT) // BLOCK) for i in range(10) if i not in done
    )

    expected = bytearray(source.read_bytes())
    expected[tampered * SEGMENT : (tampered + 1) * SEGMENT] = marker
    assert (local_dir / "big.part").read_bytes() == bytes(expected)
    assert new_journal().done() == set(range(10))


async def test_changed_source_invalidates_the_journal(
    sessions: list[asyncssh.SFTPClient],
    openssh_dir: Callable[[str], tuple[Path, str]],
    source: Path,
    tmp_path: Path,
) -> None:
    local_dir, remote_dir = openssh_dir("shell")
    remote = f"{remote_dir}/changed.part"
    journal_path = tmp_path / "changed.journal"

    def attempt(rec: Recorder, src_id: str) -> object:
        return put_segmented(
            sessions,
            source,
            remote,
            segment_size=SEGMENT,
            block_size=BLOCK,
            max_requests=2,
            journal=SegmentJournal(
                journal_path, file_size=SIZE, segment_size=SEGMENT, source_id=src_id
            ),
            progress=rec,
        )

    old_id = file_source_id(source, sha(source))
    await interrupted(
        lambda rec: attempt(rec, old_id), stop_after=6 * SEGMENT, journal=journal_path
    )

    # Same size, new content: the old marks describe bytes of another file.
    source.write_bytes(os.urandom(SIZE))
    rec = Recorder()
    await attempt(rec, file_source_id(source, sha(source)))
    assert rec.totals[0] == 0  # nothing trusted from the old journal
    assert sha(local_dir / "changed.part") == sha(source)


async def test_download_resumes_from_the_journal(
    sessions: list[asyncssh.SFTPClient],
    openssh_dir: Callable[[str], tuple[Path, str]],
    tmp_path: Path,
) -> None:
    local_dir, remote_dir = openssh_dir("shell")
    served = local_dir / "served.bin"
    served.write_bytes(os.urandom(SIZE))
    target = tmp_path / "staging" / "served.part"
    journal_path = tmp_path / "served.journal"

    def new_journal() -> SegmentJournal:
        return SegmentJournal(journal_path, file_size=SIZE, segment_size=SEGMENT, source_id="r1")

    def attempt(rec: Recorder) -> object:
        return get_segmented(
            sessions,
            f"{remote_dir}/served.bin",
            target,
            size=SIZE,
            segment_size=SEGMENT,
            block_size=BLOCK,
            max_requests=2,
            journal=new_journal(),
            progress=rec,
        )

    await interrupted(attempt, stop_after=6 * SEGMENT, journal=journal_path)
    done = new_journal().done()
    assert 0 < len(done) < 10, done
    # Marked segments are on the local disk already (fsynced before the mark).
    data = target.read_bytes()
    original = served.read_bytes()
    for i in done:
        assert data[i * SEGMENT : (i + 1) * SEGMENT] == original[i * SEGMENT : (i + 1) * SEGMENT]

    rec = Recorder()
    await attempt(rec)
    assert rec.totals[0] == sum(min(SEGMENT, SIZE - i * SEGMENT) for i in done)
    assert sha(target) == sha(served)


async def test_download_of_a_shorter_remote_file_fails(
    sessions: list[asyncssh.SFTPClient],
    openssh_dir: Callable[[str], tuple[Path, str]],
    tmp_path: Path,
) -> None:
    local_dir, remote_dir = openssh_dir("shell")
    (local_dir / "short.bin").write_bytes(b"z" * 1000)
    with pytest.raises(IntegrityError, match="ended at 1000 bytes"):
        await get_segmented(
            sessions,
            f"{remote_dir}/short.bin",
            tmp_path / "short.part",
            size=5000,
            segment_size=SEGMENT,
            block_size=BLOCK,
            max_requests=2,
        )


async def test_block_above_the_openssh_limit_is_refused(
    sessions: list[asyncssh.SFTPClient], source: Path
) -> None:
    with pytest.raises(ValueError, match="block_size"):
        await put_segmented(
            sessions,
            source,
            "/nonexistent/x",
            segment_size=SEGMENT,
            block_size=MAX_OPENSSH_BLOCK + 1,
            max_requests=2,
        )


async def test_coalesced_connection_sends_fewer_writes_and_the_same_bytes(
    openssh_endpoint: Callable[..., SftpEndpoint],
    openssh_dir: Callable[[str], tuple[Path, str]],
    source: Path,
) -> None:
    local_dir, remote_dir = openssh_dir("shell")
    ep = openssh_endpoint("shell")
    writes: dict[bool, int] = {}
    for coalesced in (False, True):
        conn = await open_connection(ep)
        try:
            if coalesced:
                coalesce_writes(conn)
                coalesce_writes(conn)  # idempotent
            transport = conn._transport
            original = transport.write
            count = [0]

            def counting(data: bytes, original=original, count=count) -> None:  # type: ignore[no-untyped-def]
                count[0] += 1
                original(data)

            transport.write = counting
            sftp = await conn.start_sftp_client()
            name = f"c{int(coalesced)}.part"
            await put_segmented(
                [sftp],
                source,
                f"{remote_dir}/{name}",
                segment_size=SEGMENT,
                block_size=BLOCK,
                max_requests=8,
            )
            sftp.exit()
            writes[coalesced] = count[0]
            assert sha(local_dir / name) == sha(source)
        finally:
            conn.close()
            await conn.wait_closed()
    # Uncoalesced: two writes per SSH packet (asyncssh adds an IGNORE packet before each).
    assert writes[True] * 3 < writes[False], writes


async def test_fresh_upload_replaces_a_longer_stale_temp_file(
    sessions: list[asyncssh.SFTPClient],
    openssh_dir: Callable[[str], tuple[Path, str]],
    source: Path,
) -> None:
    local_dir, remote_dir = openssh_dir("shell")
    (local_dir / "stale.part").write_bytes(b"old" * SIZE)  # three times longer
    await put_segmented(
        sessions,
        source,
        f"{remote_dir}/stale.part",
        segment_size=SEGMENT,
        block_size=BLOCK,
        max_requests=4,
    )
    assert (local_dir / "stale.part").read_bytes() == source.read_bytes()


async def test_memory_stays_flat_whatever_the_file_size(
    sessions: list[asyncssh.SFTPClient],
    openssh_dir: Callable[[str], tuple[Path, str]],
    tmp_path: Path,
) -> None:
    _local_dir, remote_dir = openssh_dir("shell")
    big = tmp_path / "big.bin"
    size = 24 * 1024 * KiB
    with open(big, "wb") as fh:
        for _ in range(24):
            fh.write(os.urandom(1024 * KiB))
    tracemalloc.start()
    try:
        await put_segmented(
            sessions[:2],
            big,
            f"{remote_dir}/big.part",
            segment_size=4 * 1024 * KiB,
            block_size=64 * KiB,
            max_requests=4,
        )
        await get_segmented(
            sessions[:2],
            f"{remote_dir}/big.part",
            tmp_path / "back.bin",
            size=size,
            segment_size=4 * 1024 * KiB,
            block_size=64 * KiB,
            max_requests=4,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # In flight: 2 sessions x 4 requests x 64 KiB, plus SSH buffers; far below the 24 MiB file.
    assert peak < 6 * 1024 * KiB, peak
    assert sha(tmp_path / "back.bin") == sha(big)


async def test_one_ssh_packet_per_sftp_request_without_ignore_packets(
    openssh_endpoint: Callable[..., SftpEndpoint],
    openssh_dir: Callable[[str], tuple[Path, str]],
    tmp_path: Path,
) -> None:
    # asyncssh sends an empty SSH_MSG_IGNORE before every packet (a CBC-era defence); with the
    # AEAD ciphers we offer, the service's connections do not: one packet per request, not two.
    _local, remote_dir = openssh_dir("shell")
    fs = SftpRemoteFS(openssh_endpoint("shell"), state_dir=tmp_path / "s")
    async with fs, fs.pool.lease() as pc:
        # Every SSH packet sent takes the next sequence number (RFC 4253 6.4), an ignore too.
        # (Not a count of ``_send`` calls: the lean data path hands a packet over in two parts.)
        first = pc.conn._send_seq  # type: ignore[attr-defined]
        for _ in range(50):
            await pc.sftp.stat(remote_dir)
        sent = (pc.conn._send_seq - first) & 0xFFFFFFFF  # type: ignore[attr-defined]
    assert 50 <= sent < 60, sent


@pytest.mark.parametrize("read_size", [None, 7_919, 40_000], ids=["default", "7919", "40000"])
async def test_received_packets_take_the_lean_path_and_the_rest_asyncssh_s(
    openssh_endpoint: Callable[..., SftpEndpoint],
    openssh_dir: Callable[[str], tuple[Path, str]],
    source: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    read_size: int | None,
) -> None:
    # A download's data packets and an upload's window adjusts and answers are taken by
    # ``packets._lean_receive``, also when a packet is cut between socket reads (small reads:
    # most are); what else sshd sends (a command's exit status, EOF, close) is left to
    # asyncssh and arrives as before.
    if read_size is not None:
        monkeypatch.setattr(asyncio.selector_events._SelectorSocketTransport, "max_size", read_size)
    taken: list[bool] = []
    lean = packets._lean_receive

    def counting(c: object, data: bytes, pos: int, size: int) -> bool:
        took = lean(c, data, pos, size)
        taken.append(took)
        return took

    monkeypatch.setattr(packets, "_lean_receive", counting)
    _local, remote_dir = openssh_dir("shell")
    fs = SftpRemoteFS(openssh_endpoint("shell", checksum="size"), state_dir=tmp_path / "s")
    async with fs:
        await fs.upload(source, f"{remote_dir}/up.bin")
        assert any(taken)  # window adjusts, answers
        taken.clear()
        down = await fs.download(f"{remote_dir}/up.bin", tmp_path / "back.bin")
        # At least one lean packet per 32 KiB downloaded (sshd sends 32 KiB packets).
        assert taken.count(True) >= SIZE // (32 * KiB)
        taken.clear()
        async with fs.pool.lease() as pc:
            result = await pc.conn.run("printf 'made it'; exit 3", check=False)
    assert down.sha256 == sha(source) == sha(tmp_path / "back.bin")
    assert (result.stdout, result.exit_status) == ("made it", 3)
    assert not all(taken)  # the command's exit status, EOF and close: asyncssh's
