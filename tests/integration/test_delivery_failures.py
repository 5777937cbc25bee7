"""Outbound delivery failures tell the truth.

The engine runs in this process on SQLite, with the real SFTP transport, the real store (ledger,
audit trail, alerts) and the asyncssh fault server, or a closed port for a partner that cannot
be reached:

* an unreachable partner: every retried attempt is logged with its cause and next try; the
  final error names the partner, host:port and "connection refused" (not DBOS's "Step plan has
  exceeded its maximum of 5 retries"); each file of the package gets a ``failed`` ledger row;
  one alert is raised per final failure, not per attempt, and a failed ``retry`` raises one more;
* a refused mkdir on the partner's server says "permission denied creating folder X", whatever
  status code the server answers it with;
* a full local disk while downloading from a partner says so (path, free space), is not retried
  as a network fault, and keeps the partial file, from which the download resumes once space is
  freed; while staging a package from Consonance (an HTTP download that starts again) it says
  so too and removes its partial.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import hashlib
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.adapters.store.sql_store import SqlStore, open_store
from consonance_sftp.app.delivery import SftpDeliveryTransport
from consonance_sftp.engine import Engine, EngineClient, StoreLedger
from consonance_sftp.errors import (
    DeliveryFailed,
    LocalDiskFull,
    RemotePermissionDenied,
    TransportError,
)
from consonance_sftp.models import DeliveryOutcome
from consonance_sftp.ports.delivery import DeliveryRequest
from tests.cli import free_port
from tests.engine_worker import make_source, settings_from
from tests.fixtures.consonance_sandbox import SandboxHandle
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.sftp_servers import EndpointFactory

PACKAGE = "9780000000001 production"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    st = open_store(f"sqlite:///{tmp_path}/store.db")
    try:
        yield st
    finally:
        st.close()


async def _engine(
    tmp_path: Path,
    store: SqlStore,
    make_fs: object,
    *,
    attempts: int,
    max_total_s: float | None = 60.0,
) -> tuple[Engine, SftpDeliveryTransport]:
    settings = settings_from(
        {
            "db": f"sqlite:///{tmp_path}/dbos.sqlite",
            "executor_id": "failures-test",
            "retry": {"max_attempts": attempts, "initial_interval_s": 0.1},
        }
    )
    settings = dataclasses.replace(
        settings, retry=dataclasses.replace(settings.retry, max_total_s=max_total_s)
    )
    transport = SftpDeliveryTransport(make_fs)  # type: ignore[arg-type]
    engine = Engine(settings, transport=transport, ledger=StoreLedger(store), alerts=store)
    await asyncio.to_thread(engine.launch)
    return engine, transport


async def test_an_unreachable_partner_fails_with_its_address_and_cause_rows_and_one_alert(
    fault_endpoint: EndpointFactory,
    store: SqlStore,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens there (bound, then released: the kernel answers RST)

    def make_fs(partner: str) -> SftpRemoteFS:
        endpoint = fault_endpoint(connect_timeout=5)
        return SftpRemoteFS(
            dataclasses.replace(endpoint, partner=partner, port=port),
            state_dir=tmp_path / "state",
        )

    engine, transport = await _engine(tmp_path, store, make_fs, attempts=3)
    client = EngineClient(engine.settings)
    files = tuple(make_source(tmp_path / f"{n}.pdf", 2000, seed=i) for i, n in enumerate("ab"))
    request = DeliveryRequest(flow="print", partner="printer", package=PACKAGE, files=files)
    try:
        with caplog.at_level(logging.WARNING):
            workflow_id = await engine.enqueue_delivery(request, max_connections=2)
            with pytest.raises(DeliveryFailed) as failed:
                await engine.result(workflow_id, 60)
        message = str(failed.value)
        assert "partner 'printer'" in message
        assert f"127.0.0.1:{port}" in message
        assert "connection refused" in message
        assert "gave up after 3 attempts" in message
        assert "exceeded its maximum" not in message

        # Progress while it backs off: each retried attempt, its cause and the next try.
        tries = [
            r.getMessage()
            for r in caplog.records
            if "failed: " in r.getMessage() and " of 3 " in r.getMessage()
        ]
        assert len(tries) == 2, tries
        assert "attempt 1 of 3 failed" in tries[0] and "next try in 0.1 s" in tries[0]
        assert "attempt 2 of 3 failed" in tries[1] and "next try in 0.2 s" in tries[1]
        assert all("connection refused" in t and f"127.0.0.1:{port}" in t for t in tries)

        # Every file of the package is on the record as failed, with the reason.
        rows = store.list_deliveries(partner="printer")
        assert sorted(r.remote_path for r in rows) == ["/in/a.pdf", "/in/b.pdf"]
        for r in rows:
            assert r.outcome is DeliveryOutcome.FAILED
            assert r.error is not None and "connection refused" in r.error
            assert r.attempts == 3
            assert r.executor_id == "failures-test"  # the engine process that recorded it
        actions = [e.action for e in store.list_audit(limit=50)]
        assert actions.count("delivery.failed") == 2

        # One alert for the final failure, not one per attempt.
        alerts = store.list_alerts(kind="delivery_failed")
        assert len(alerts) == 1
        assert alerts[0].partner == "printer" and alerts[0].flow == "print"
        assert "connection refused" in alerts[0].message and PACKAGE in alerts[0].message

        # A retry that fails again is another final failure: one more alert.
        await asyncio.to_thread(client.retry, workflow_id)
        deadline = time.monotonic() + 60
        while await asyncio.to_thread(client.status, workflow_id) != "ERROR":
            assert time.monotonic() < deadline, "the retry did not end"
            await asyncio.sleep(0.1)
        assert len(store.list_alerts(kind="delivery_failed")) == 2
    finally:
        client.close()
        await engine.aclose()
        await transport.close()


async def test_a_host_that_never_answers_gives_up_within_the_schedule_total_time(
    fault_endpoint: EndpointFactory, store: SqlStore, tmp_path: Path
) -> None:
    """A port that accepts the TCP connection and never says a word (a dead server, a
    firewall that swallows the session): each attempt costs the connect timeout, so the
    schedule stops trying when the next try would end after ``max_total_s``."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; the client gives up first
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    def make_fs(partner: str) -> SftpRemoteFS:
        endpoint = dataclasses.replace(fault_endpoint(connect_timeout=1), partner=partner)
        return SftpRemoteFS(dataclasses.replace(endpoint, port=port), state_dir=tmp_path / "s")

    engine, transport = await _engine(tmp_path, store, make_fs, attempts=10, max_total_s=3)
    files = (make_source(tmp_path / "a.pdf", 2000),)
    request = DeliveryRequest(flow="print", partner="printer", package=PACKAGE, files=files)
    try:
        started = time.monotonic()
        workflow_id = await engine.enqueue_delivery(request, max_connections=2)
        with pytest.raises(DeliveryFailed) as failed:
            await engine.result(workflow_id, 60)
        took = time.monotonic() - started
    finally:
        await engine.aclose()
        await transport.close()
        server.close()
    message = str(failed.value)
    assert f"cannot connect to 127.0.0.1:{port}: no answer within 1 s" in message, message
    assert "gave up after 2 attempts" in message
    assert took < 8, took  # ten attempts of 1 s each, as the count alone allows, take over 10 s
    (row,) = store.list_deliveries(partner="printer")
    assert row.outcome is DeliveryOutcome.FAILED and row.attempts == 2
    assert len(store.list_alerts(kind="delivery_failed")) == 1


async def test_a_refused_mkdir_says_permission_denied_creating_the_folder(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    """Both ways a server refuses a mkdir: SSH_FX_PERMISSION_DENIED, and the bare
    SSH_FX_FAILURE that asyncssh's makedirs reported as "is not a directory"."""
    source = make_source(tmp_path / "a.pdf", 3000)
    (fault_server.home("partner") / "in").mkdir(parents=True, exist_ok=True)
    for refusal in (errno.EPERM, errno.EACCES):
        fault_server.faults.deny_mkdir = refusal
        async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s") as fs:
            with pytest.raises(RemotePermissionDenied) as denied:
                await fs.makedirs("/in/9780000000001/covers")
        message = str(denied.value)
        assert "permission denied creating folder /in/9780000000001" in message, message
        assert "fault-partner" in message
        assert "not a directory" not in message
    fault_server.faults.deny_mkdir = None
    async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s") as fs:
        await fs.makedirs("/in/9780000000001/covers")
        await fs.makedirs("/in/9780000000001/covers")  # there already: nothing to do
    assert (fault_server.home("partner") / "in" / "9780000000001" / "covers").is_dir()

    # Through the engine: the delivery fails at once (not retried), and says so.
    fault_server.faults.deny_mkdir = errno.EPERM
    store = open_store(f"sqlite:///{tmp_path}/store.db")

    def make_fs(partner: str) -> SftpRemoteFS:
        endpoint = fault_endpoint()
        return SftpRemoteFS(
            dataclasses.replace(endpoint, partner=partner), state_dir=tmp_path / "s"
        )

    engine, transport = await _engine(tmp_path, store, make_fs, attempts=3)
    try:
        f = dataclasses.replace(source, remote_path="/in/new-title/a.pdf")
        request = DeliveryRequest(flow="print", partner="printer", package=PACKAGE, files=(f,))
        workflow_id = await engine.enqueue_delivery(request, max_connections=2)
        with pytest.raises(DeliveryFailed) as failed:
            await engine.result(workflow_id, 60)
        assert "permission denied creating folder /in/new-title" in str(failed.value)
        assert "partner 'printer'" in str(failed.value)
        (row,) = store.list_deliveries(partner="printer")
        assert row.outcome is DeliveryOutcome.FAILED and row.attempts == 1
        assert len(store.list_alerts(kind="delivery_failed")) == 1
    finally:
        await engine.aclose()
        await transport.close()
        store.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1.5 MiB filesystem (tmpfs), so a write fails with ENOSPC as on a full disk."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_full_local_disk_is_said_not_retried_and_the_download_resumes(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, small_disk: Path, tmp_path: Path
) -> None:
    body = os.urandom(3 * 1024 * 1024)  # three 1 MiB segments; the disk holds one and a half
    (fault_server.home("partner") / "out").mkdir(parents=True, exist_ok=True)
    (fault_server.home("partner") / "out" / "big.pdf").write_bytes(body)
    local = small_disk / "big.pdf"
    endpoint = fault_endpoint(segment_size=1024 * 1024)
    async with SftpRemoteFS(endpoint, state_dir=tmp_path / "state", retries=3) as fs:
        with pytest.raises(LocalDiskFull) as full:
            await fs.download("/out/big.pdf", local)
        reads_before = fault_server.recorder.bytes_read
    message = str(full.value)
    assert "local disk is full" in message and "network" not in message
    assert str(small_disk) in message and "bytes free" in message
    assert "fault-partner" in message
    assert not full.value.retryable
    assert isinstance(full.value, TransportError)
    # Not retried: one pass over at most the file's bytes (a retry would read them again).
    assert reads_before <= len(body)
    # The partial stays under its staging name (never the final name), to resume from.
    assert not local.exists()
    partial = small_disk / ".big.pdf.partial"
    assert partial.exists()

    # Space freed: the download resumes from the bytes already there, and is whole.
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    async with SftpRemoteFS(endpoint, state_dir=tmp_path / "state") as fs:
        result = await fs.download("/out/big.pdf", local)
    assert result.resumed_from > 0
    assert local.read_bytes() == body
    assert result.sha256 == hashlib.sha256(body).hexdigest()
    assert fault_server.recorder.bytes_read - reads_before < len(body)


async def test_a_full_local_disk_while_staging_a_package_is_said_and_leaves_no_partial(
    consonance_sandbox: SandboxHandle, small_disk: Path
) -> None:
    """Staging downloads a package's files from Consonance over HTTP: that download starts
    again rather than resumes, so its partial is removed (the space is the operator's)."""
    async with consonance_sandbox.client() as api:
        biggest = None
        async for work in api.iter_works():
            for p in work.products:
                for f in p.production_files:
                    if f.url and (biggest is None or (f.file_size or 0) > (biggest.file_size or 0)):
                        biggest = f
        assert biggest is not None and biggest.url
        # Leave less room than the file needs: the sandbox's files can be a few KiB, so
        # leave at most half of it (whole tmpfs pages).
        filler = small_disk / "filler"
        with filler.open("wb", buffering=0) as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 4096)
        room = min(8192, (biggest.file_size or 0) // 2) // 4096 * 4096
        filler.write_bytes(b"\0" * (filler.stat().st_size - room))
        dest = small_disk / "staging" / biggest.filename
        with pytest.raises(LocalDiskFull) as full:
            await api.download_file(biggest.url, dest)
    message = str(full.value)
    assert "local disk is full" in message and str(dest) in message and "bytes free" in message
    assert "partial file is removed" in message
    assert not full.value.retryable
    assert sorted(p.name for p in dest.parent.iterdir()) == []
