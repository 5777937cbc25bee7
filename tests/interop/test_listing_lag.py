"""The probe flags servers whose listings lag, and an inbox on them keeps a growing file out
(issue 13, item 8).

What the probe can measure through SFTP, and what it cannot (measured on rclone 1.60, both
cache modes, over a local folder): every write made through rclone's own SFTP server shows at
once, in a second connection's ``stat`` and listing alike, so the probe measures no lag on it
(0.0 s). A file written into the served folder by another program (the partner's own tool)
keeps the size of the first listing that saw it, in ``stat``, ``fstat`` and the listing, for
``--dir-cache-time`` (5 minutes by default); a file created there after the folder was
listed is missing for as long. That cannot be seen without writing behind the server's back,
which the probe cannot do: it knows rclone's cache from its SSH version string instead, and
says so. ProFTPD, paramiko's server and OpenSSH show every write at once and are not flagged.

Where a second connection does see an old size (two servers over one folder, as behind a load
balancer: here paramiko's server writes and an rclone with a short directory cache reads), the
probe measures the lag and recommends a ``min_age`` longer than it; a lag it cannot bound
within its few seconds gets the done-marker advice instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from consonance_sftp.adapters.sftp.endpoint import SftpEndpoint
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.adapters.sftp.listing_lag import LAG_THRESHOLD, measure_listing_lag
from consonance_sftp.adapters.sftp.probe import _lag_advice
from consonance_sftp.app.intake import InboxReport, _stable
from consonance_sftp.config.transfer import TransferSettings
from consonance_sftp.flows.inbox import with_done_markers
from consonance_sftp.ports.remote_fs import ProbeReport
from tests.fixtures.fault_server import grow_file
from tests.fixtures.interop_servers import (
    InteropServer,
    ServerUnavailable,
    _free_port,
    _rclone_argv,
    start_interop_server,
)

RCLONE_DIR_CACHE = 300  # rclone's default --dir-cache-time


def _measured_at_once(report: ProbeReport) -> None:
    """The probe's own writes showed in the second connection's views at once."""
    lag = report.listing_lag
    assert lag is not None
    assert lag.stat_seconds is not None and lag.stat_seconds < LAG_THRESHOLD
    assert lag.listing_seconds is not None and lag.listing_seconds < LAG_THRESHOLD
    assert lag.stale is False


async def test_probe_flags_rclone_listing_cache_and_no_other_server(
    server_at: InteropServer, tmp_path: Path
) -> None:
    async with SftpRemoteFS(server_at.endpoint(), state_dir=tmp_path / "state") as fs:
        report = await fs.probe()
    _measured_at_once(report)
    lag = report.listing_lag
    assert lag is not None
    rclone = server_at.kind.startswith("rclone")
    assert lag.lagging is rclone
    if rclone:
        assert "--dir-cache-time" in lag.known_cache
        assert lag.known_cache_seconds == RCLONE_DIR_CACHE
        # longer than the cache keeps an old view, so a recent mtime still holds the file
        min_age = report.recommended["min_age"]
        assert isinstance(min_age, int) and min_age > RCLONE_DIR_CACHE
        assert any("--dir-cache-time" in note for note in report.notes)
        assert any(f"min_age = {min_age}" in note for note in report.notes)
    else:
        assert lag.known_cache == ""
        assert "min_age" not in report.recommended
    assert not [p for p in server_at.root.iterdir() if p.name.startswith(".consonance-probe")]


async def test_probe_does_not_flag_openssh(
    openssh_endpoint: Callable[..., SftpEndpoint], tmp_path: Path
) -> None:
    async with SftpRemoteFS(openssh_endpoint(), state_dir=tmp_path / "state") as fs:
        report = await fs.probe()
    _measured_at_once(report)
    assert report.listing_lag is not None and report.listing_lag.lagging is False
    assert "min_age" not in report.recommended
    # with one connection allowed, the second look goes through a second SFTP session
    async with SftpRemoteFS(
        openssh_endpoint(max_connections=1), state_dir=tmp_path / "state"
    ) as fs:
        report = await fs.probe()
    _measured_at_once(report)
    assert report.listing_lag is not None and report.listing_lag.lagging is False


@pytest.fixture(params=("rclone", "rclone-writes"))
def fresh_rclone(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InteropServer]:
    """An rclone server of its own, whose folder no listing has seen yet."""
    try:
        server = start_interop_server(request.param, tmp_path / request.param)
    except ServerUnavailable as exc:
        pytest.skip(f"{request.param} is not available: {exc}")
    try:
        yield server
    finally:
        server.stop()


async def _looks_finished(fs: SftpRemoteFS, name: str) -> bool:
    """Whether the inbox poll's stability step (and ``wait_stable``) would take ``name``."""
    listing = {e.path: e async for e in fs.list(".")}
    [entry] = [e for e in listing.values() if e.name == name]
    ts = fs.settings
    if ts.intake_done_marker:
        by_poll, _ = with_done_markers([entry], listing, ".", ts.intake_done_marker)
    else:
        report = InboxReport(flow="revisions", trigger="test")
        by_poll = await _stable(fs, [entry], ts, fs.partner, report)
    by_adapter = await fs.wait_stable(entry)
    assert bool(by_poll) == (by_adapter is not None)
    return bool(by_poll)


async def test_growing_file_behind_rclone_is_kept_out_with_the_probes_advice(
    fresh_rclone: InteropServer, tmp_path: Path
) -> None:
    # The partner's tool writes into the served folder itself, not through rclone's SFTP.
    growing = fresh_rclone.local("typeset.pdf")
    stop = asyncio.Event()
    grower = asyncio.create_task(grow_file(growing, stop, chunk=b"x" * 65536, interval=0.05))
    try:
        await asyncio.sleep(0.3)
        # Untouched settings are fooled: the cache shows the same size twice, while the file
        # on disk keeps growing.
        async with SftpRemoteFS(fresh_rclone.endpoint(), state_dir=tmp_path / "s") as fs:
            listed = [e async for e in fs.list(".") if e.name == "typeset.pdf"]
            assert await _looks_finished(fs, "typeset.pdf")
            assert os.stat(growing).st_size > listed[0].size
            report = await fs.probe()
        assert "min_age" in report.recommended
        # The probe's advice, applied untouched, keeps the file out while it grows.
        advised = fresh_rclone.endpoint(**report.recommended)
        async with SftpRemoteFS(advised, state_dir=tmp_path / "s") as fs:
            for _ in range(3):
                assert not await _looks_finished(fs, "typeset.pdf")
                await asyncio.sleep(0.2)
            [entry] = [e async for e in fs.list(".") if e.name == "typeset.pdf"]
            assert time.time() - entry.mtime < fs.settings.min_age
        # So does a done-marker convention, whatever the cache shows.
        marked = fresh_rclone.endpoint(intake_done_marker="{name}.done")
        async with SftpRemoteFS(marked, state_dir=tmp_path / "s") as fs:
            assert not await _looks_finished(fs, "typeset.pdf")
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await grower


@pytest.mark.parametrize("cache", [1, 300])
async def test_probe_measures_a_second_connection_that_sees_an_old_size(
    cache: int, tmp_path: Path
) -> None:
    try:
        writer = start_interop_server("paramiko", tmp_path / "paramiko")
    except ServerUnavailable as exc:
        pytest.skip(f"paramiko is not available: {exc}")
    port = _free_port()
    argv = _rclone_argv(writer.workdir, writer.root, port, writes=False)
    argv[argv.index("--cache-dir") + 1] = str(writer.workdir / "rclone-reader-cache")
    reader = InteropServer(
        kind="rclone-reader",
        workdir=writer.workdir,
        root=writer.root,  # the same folder, served by both
        port=port,
        argv=[*argv, "--dir-cache-time", f"{cache}s"],
        host_key=writer.host_key,
        client_key_path=writer.client_key_path,
    )
    try:
        reader.start()
    except ServerUnavailable as exc:
        writer.stop()
        pytest.skip(f"rclone is not available: {exc}")
    try:
        async with (
            SftpRemoteFS(writer.endpoint(), state_dir=tmp_path / "w") as w,
            SftpRemoteFS(reader.endpoint(), state_dir=tmp_path / "r") as r,
            w.pool.lease() as wc,
            r.pool.lease() as rc,
        ):
            lag = await measure_listing_lag(wc.sftp, rc.sftp, ".consonance-probe-lag")
    finally:
        reader.stop()
        writer.stop()
    assert lag.stale and lag.lagging and lag.known_cache == ""
    wanted, notes = _lag_advice(lag, TransferSettings(), None)
    if cache < lag.timeout:
        # caught up once rclone's cache expired: the lag is the cache time, give or take a look
        assert lag.stat_seconds is not None and cache * 0.8 <= lag.stat_seconds < lag.timeout
        assert lag.listing_seconds is not None and cache * 0.8 <= lag.listing_seconds
        min_age = wanted["min_age"]
        assert isinstance(min_age, int) and min_age > max(lag.stat_seconds, lag.listing_seconds)
    else:
        assert (lag.stat_seconds, lag.listing_seconds) == (None, None)
        assert wanted == {}
        assert any("intake_done_marker" in note for note in notes)
    # a partner whose inbox waits for done-markers needs nothing more
    assert _lag_advice(lag, TransferSettings(intake_done_marker="{name}.done"), None)[0] == {}
