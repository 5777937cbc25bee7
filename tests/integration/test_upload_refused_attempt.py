"""A refused upload attempt ends completely before the upload starts again (issue 13, item 3).

rclone serve sftp without a write cache refuses out-of-order writes, and a refused handle,
when it closes (seconds later: rclone waits for the missing writes first), writes what it got
(nothing) over its file. The transport restarts with one sequential stream; a close of the
refused attempt that it did not wait for landed on the restarted file, or on the final name
through a rename rclone had deferred for that handle: a 0-byte file recorded as sent. The fault
server plays that server deterministically (``Faults.in_order_writes``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import asyncssh
import pytest

from consonance_sftp import errors
from consonance_sftp.adapters.sftp.connection import open_connection
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.adapters.sftp.segmented import put_segmented
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.sftp_servers import EndpointFactory

MIB = 1024 * 1024


async def test_every_refused_handle_is_closed_before_the_sequential_restart(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    faults, rec = fault_server.faults, fault_server.recorder
    faults.in_order_writes = True
    faults.refused_close_delay = 0.4  # answered at 0.4, 0.8, 1.2 ... s: the last after 1.6 s
    local = tmp_path / "interior.pdf"
    data = os.urandom(8 * MIB)
    local.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    endpoint = fault_endpoint(
        segment_size=MIB,
        segmented_threshold=2 * MIB,
        segment_connections=4,
        block_size=64 * 1024,
        max_requests=4,
    )

    async with SftpRemoteFS(endpoint, state_dir=tmp_path / "state", retries=0) as fs:
        result = await fs.upload(local, "interior.pdf")

    temp = ".interior.pdf.part"
    t0 = rec.events[0][0]
    print([(round(t - t0, 2), op, a) for t, op, a, _ in rec.events if op != "write"])
    events = [(op, a) for _, op, a, _ in rec.events]
    refused = [i for i, (op, a) in enumerate(events) if op == "write_refused" and a == temp]
    answered = [i for i, (op, a) in enumerate(events) if op == "refused_close" and a == temp]
    # The parallel attempt was refused on several sessions, and every refused handle's close
    # was answered (its file emptied) before the sequential stream opened the file.
    assert len(refused) >= 2
    assert len(answered) == len(refused)
    stream_open = max(i for i, (op, a) in enumerate(events) if op == "open_write" and a == temp)
    assert max(answered) < stream_open
    # Nothing of the refused attempt touched the file that was verified and published.
    assert result.sha256 == sha
    home = fault_server.home("partner")
    assert hashlib.sha256((home / "interior.pdf").read_bytes()).hexdigest() == sha
    assert not (home / temp).exists()


async def test_a_refused_segmented_put_returns_only_after_every_close_is_answered(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    """The sessions of a refused parallel attempt never abandon a handle: the error comes
    back once the server answered every close (before, the first session's error cancelled
    the closes the others were waiting for, and they landed on the server afterwards)."""
    faults, rec = fault_server.faults, fault_server.recorder
    faults.in_order_writes = True
    faults.refused_close_delay = 0.3
    local = tmp_path / "cover.pdf"
    local.write_bytes(os.urandom(4 * MIB))
    conns = list(await asyncio.gather(*(open_connection(fault_endpoint()) for _ in range(4))))
    try:
        sessions = list(await asyncio.gather(*(c.start_sftp_client() for c in conns)))
        with pytest.raises(asyncssh.SFTPError, match="Illegal seek"):
            await put_segmented(
                sessions,
                local,
                "cover.pdf.part",
                segment_size=MIB,
                block_size=64 * 1024,
                max_requests=4,
            )
        refused = rec.ops("write_refused")
        assert len(refused) >= 2
        # At the moment the error came back, every refused handle's close was answered.
        assert len(rec.ops("refused_close")) == len(refused)
    finally:
        for c in conns:
            c.close()


async def test_a_file_changed_after_a_refused_attempt_is_never_published_as_sent(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    """The safety net behind the fix: after an upload that had a refused attempt, the final
    name is looked at again right after the rename; a server that emptied it (here: behind
    our back, between stage and publish) fails the publish loudly instead of a 'sent' row."""
    fault_server.faults.in_order_writes = True
    local = tmp_path / "jacket.pdf"
    local.write_bytes(os.urandom(4 * MIB))
    endpoint = fault_endpoint(
        segment_size=MIB, segmented_threshold=2 * MIB, segment_connections=4, max_requests=4
    )
    home = fault_server.home("partner")
    async with SftpRemoteFS(endpoint, state_dir=tmp_path / "state", retries=0) as fs:
        staged = await fs.stage(local, "jacket.pdf")
        assert fault_server.recorder.ops("write_refused")  # the parallel attempt was refused
        (home / staged.staged_path).write_bytes(b"")  # a late close of the refused attempt
        with pytest.raises(errors.IntegrityError, match="after a refused upload attempt") as info:
            await fs.publish("jacket.pdf", sha256=staged.sha256)
    assert info.value.partner == "fault-partner"
    assert info.value.path == "jacket.pdf"
