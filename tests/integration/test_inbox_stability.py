"""Stability against a server that answers listings from a cache (issue 13, item 8).

The fault server's ``stale_listing`` shows each file's size and mtime in listings as it first
showed them, for a while, and keeps ``stat`` current (a server with a listing cache): the
inbox poll's second look is a ``stat`` of the file, so a growing file is not taken, and the
probe measures the listing's lag and recommends a ``min_age`` longer than it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.app.intake import InboxReport, _stable
from consonance_sftp.ports.remote_fs import RemoteEntry
from tests.fixtures.fault_server import FaultServer, grow_file
from tests.fixtures.sftp_servers import EndpointFactory


async def _poll_takes(fs: SftpRemoteFS, name: str) -> list[RemoteEntry]:
    """What the inbox poll's stability step takes of ``name`` (listed first, as a poll does)."""
    [entry] = [e async for e in fs.list("incoming") if e.name == name]
    report = InboxReport(flow="revisions", trigger="test")
    return await _stable(fs, [entry], fs.settings, fs.partner, report)


async def test_poll_takes_a_file_only_once_a_stat_agrees_with_a_cached_listing(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    fault_server.faults.stale_listing = 600.0
    path = fault_server.home("partner") / "incoming" / "typeset.pdf"
    stop = asyncio.Event()
    grower = asyncio.create_task(grow_file(path, stop, interval=0.05))
    await asyncio.sleep(0.2)
    async with SftpRemoteFS(fault_endpoint(stable_interval=0.3), state_dir=tmp_path / "s") as fs:
        for _ in range(3):
            # the listing shows the same size every time; stat shows the file growing
            assert await _poll_takes(fs, "typeset.pdf") == []
        stop.set()
        final_size = await grower
        fault_server.faults.stale_listing = 0.0  # the cache expires
        [taken] = await _poll_takes(fs, "typeset.pdf")
    assert taken.size == final_size == path.stat().st_size


async def test_probe_measures_a_listing_cache(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    fault_server.faults.stale_listing = 1.0
    async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s") as fs:
        report = await fs.probe()
    lag = report.listing_lag
    assert lag is not None and lag.lagging and lag.stale and lag.known_cache == ""
    assert lag.stat_seconds == 0.0  # stat stays current
    assert lag.listing_seconds is not None and 0.8 <= lag.listing_seconds < lag.timeout
    min_age = report.recommended["min_age"]
    assert isinstance(min_age, int) and min_age > lag.listing_seconds
    assert any(f"min_age = {min_age}" in note for note in report.notes)

    # A cache longer than the probe waits: no min_age can be derived, a done-marker can.
    fault_server.faults.stale_listing = 600.0
    async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s") as fs:
        report = await fs.probe()
    lag = report.listing_lag
    assert lag is not None and lag.lagging and lag.listing_seconds is None
    assert "min_age" not in report.recommended
    assert any("intake_done_marker" in note for note in report.notes)
    # the probe removed its file however long the listing keeps showing it
    assert not [
        p for p in (fault_server.home("partner")).iterdir() if p.name.startswith(".consonance")
    ]
