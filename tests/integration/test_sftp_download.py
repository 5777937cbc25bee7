"""Intake side: durable downloads, resume, stability detection, post-actions, large listings."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
from pathlib import Path

import pytest

from consonance_sftp import errors
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.config.transfer import PostAction
from consonance_sftp.ports.remote_fs import DownloadResult
from tests.fixtures.fault_server import FaultServer, grow_file
from tests.fixtures.sftp_servers import EndpointFactory

MIB = 1024 * 1024


def _remote_file(server: FaultServer, name: str, size: int) -> str:
    data = os.urandom(size)
    path = server.home("partner") / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("action", [PostAction.DELETE, PostAction.MOVE])
async def test_post_action_runs_only_after_the_local_copy_is_durable(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path, action: PostAction
) -> None:
    sha = _remote_file(fault_server, "inbox/sales-2026-10.csv", 2 * MIB)
    (fault_server.home("partner") / "done").mkdir()
    local = tmp_path / "local" / "sales-2026-10.csv"
    local.parent.mkdir()
    remote_file = fault_server.home("partner") / "inbox" / "sales-2026-10.csv"
    checked: list[bool] = []

    async def record(result: DownloadResult) -> None:
        # what the caller (the intake flow) sees before the remote file is touched
        assert local.read_bytes() and hashlib.sha256(local.read_bytes()).hexdigest() == sha
        assert result.sha256 == sha
        assert not list(local.parent.glob(".*.partial"))
        assert remote_file.exists()
        checked.append(True)

    ep = fault_endpoint(processed_folder="/done", post_action=action.value)
    async with SftpRemoteFS(ep, state_dir=tmp_path / "state") as fs:
        result = await fs.download(
            "inbox/sales-2026-10.csv", local, post_action=action, before_post_action=record
        )
    assert checked == [True]
    assert not remote_file.exists()
    if action is PostAction.MOVE:
        assert (fault_server.home("partner") / "done" / "sales-2026-10.csv").exists()
        assert result.post_action == "move:/done/sales-2026-10.csv"
    # remote removal/move happened after the last read of the file
    events = [op for _, op, _, _ in fault_server.recorder.events]
    assert events[-1] in ("remove", "rename")


async def test_failed_download_never_runs_the_post_action(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    _remote_file(fault_server, "report.csv", 3 * MIB)
    fault_server.faults.drop_after_read_bytes = MIB
    called: list[DownloadResult] = []

    async def record(result: DownloadResult) -> None:
        called.append(result)

    async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s", retries=0) as fs:
        with pytest.raises(errors.ConnectionLost):
            await fs.download(
                "report.csv",
                tmp_path / "report.csv",
                post_action=PostAction.DELETE,
                before_post_action=record,
            )
    assert called == []
    assert (fault_server.home("partner") / "report.csv").exists()
    assert not (tmp_path / "report.csv").exists()
    assert fault_server.recorder.ops("remove") == []


async def test_download_resumes_after_disconnect(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    size = 10 * MIB
    sha = _remote_file(fault_server, "master.wav", size)
    fault_server.faults.drop_after_read_bytes = random.randrange(2 * MIB, size - 2 * MIB)
    ep = fault_endpoint(segment_size=MIB, max_requests=8)
    fs = SftpRemoteFS(ep, state_dir=tmp_path / "s", retries=0)
    with pytest.raises(errors.ConnectionLost):
        await fs.download("master.wav", tmp_path / "master.wav")
    first = fault_server.recorder.bytes_read
    result = await fs.download("master.wav", tmp_path / "master.wav")
    await fs.close()
    assert result.resumed_from > 0
    assert (
        result.sha256 == sha == hashlib.sha256((tmp_path / "master.wav").read_bytes()).hexdigest()
    )
    assert fault_server.recorder.bytes_read - first == size - result.resumed_from


async def test_growing_file_is_not_taken_until_stable(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    path = fault_server.home("partner") / "incoming" / "typeset.pdf"
    stop = asyncio.Event()
    grower = asyncio.create_task(grow_file(path, stop, interval=0.05))
    await asyncio.sleep(0.1)
    async with SftpRemoteFS(fault_endpoint(stable_interval=0.3), state_dir=tmp_path / "s") as fs:
        for _ in range(3):
            entry = await fs.stat("incoming/typeset.pdf")
            assert entry is not None
            assert await fs.wait_stable(entry) is None  # still being written
        stop.set()
        final_size = await grower
        entry = await fs.stat("incoming/typeset.pdf")
        assert entry is not None
        stable = await fs.wait_stable(entry)
        assert stable is not None and stable.size == final_size
        result = await fs.download(
            "incoming/typeset.pdf", tmp_path / "typeset.pdf", expected_size=stable.size
        )
    assert result.size == final_size


async def test_min_age_and_intake_done_marker(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    _remote_file(fault_server, "fresh.csv", 100)
    async with SftpRemoteFS(
        fault_endpoint(min_age=3600, stable_interval=0), state_dir=tmp_path / "s"
    ) as fs:
        entry = await fs.stat("fresh.csv")
        assert entry is not None
        assert await fs.wait_stable(entry) is None
        assert await fs.wait_stable(entry, now=lambda: entry.mtime + 3601) is not None

    async with SftpRemoteFS(
        fault_endpoint(intake_done_marker="{stem}.ok"), state_dir=tmp_path / "s"
    ) as fs:
        entry = await fs.stat("fresh.csv")
        assert entry is not None
        assert await fs.wait_stable(entry) is None
        (fault_server.home("partner") / "fresh.ok").write_text("")
        assert await fs.wait_stable(entry) is not None


async def test_file_changed_since_listing_is_refused(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    _remote_file(fault_server, "x.csv", 1000)
    async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s", retries=0) as fs:
        with pytest.raises(errors.IntegrityError, match="changed"):
            await fs.download("x.csv", tmp_path / "x.csv", expected_size=999)
    assert not (tmp_path / "x.csv").exists()


async def test_missing_remote_file(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s") as fs:
        with pytest.raises(errors.RemotePathNotFound) as info:
            await fs.download("nope/missing.csv", tmp_path / "m.csv")
    assert "nope/missing.csv" in str(info.value) and "fault-partner" in str(info.value)
    assert not info.value.retryable


async def test_listing_10k_entries_filters_and_walk(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    inbox = fault_server.home("partner") / "inbox"
    inbox.mkdir()
    for i in range(10_000):
        (inbox / f"{i:05d}.{'csv' if i % 10 == 0 else 'txt'}").touch()
    sub = fault_server.home("partner") / "sub"
    (sub / "deeper").mkdir(parents=True)
    for name in ("a.csv", "a.txt", "b.csv", "deeper/c.csv"):
        (sub / name).touch()
    async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s") as fs:
        csv = [e.name async for e in fs.list("inbox", pattern="*.csv")]
        assert len(csv) == 1000 and all(n.endswith(".csv") for n in csv)
        # lazily: stopping early does not read the whole folder first
        async with contextlib.aclosing(fs.list("inbox")) as entries:
            first = await anext(entries)
        assert first.is_file
        rx = sorted([e.name async for e in fs.list("sub", regex=r"^[ab]\.csv$")])
        assert rx == ["a.csv", "b.csv"]
        walked = sorted([e.path async for e in fs.walk("sub", pattern="*.csv")])
        assert walked == ["sub/a.csv", "sub/b.csv", "sub/deeper/c.csv"]
        shallow = sorted([e.path async for e in fs.walk("sub", max_depth=1)])
        assert shallow == ["sub/a.csv", "sub/a.txt", "sub/b.csv"]
        with pytest.raises(errors.RemotePathNotFound):
            [e async for e in fs.list("no-such-folder")]
