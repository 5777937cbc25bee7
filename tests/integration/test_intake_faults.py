"""Retries of the intake workflow against the fault-injecting asyncssh server: dropped
connections are retried, first by the adapter, then by the engine with its backoff (a step run
again), and a partner that keeps dropping ends in a failed row with the reason while its file
stays where it was."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_asyncio

from consonance_sftp.app import App
from consonance_sftp.app.intake import poll_inbox
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.config import Settings
from consonance_sftp.config.flows import IntakeFlow
from consonance_sftp.models import IntakeOutcome
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.sftp_servers import PARTNER, ClientKeys
from tests.settings import offline_settings

SIZE = 3 * 1024 * 1024
ADAPTER_ATTEMPTS = 3  # SftpRemoteFS retries a dropped download twice itself
ENGINE_ATTEMPTS = 3  # engine.retry_max_attempts below


@dataclass
class Rig:
    app: App
    runner: DeliveryRunner
    server: FaultServer
    inbox: Path

    async def take(self) -> tuple[str, dict[str, Any]]:
        flow = self.app.settings.flows["art"]
        assert isinstance(flow, IntakeFlow)
        report = await poll_inbox(self.app, self.runner, "art", flow, trigger="test")
        [taken] = report.taken
        assert taken.workflow_id is not None
        return taken.workflow_id, await self.runner.wait(taken.workflow_id, timeout_s=60)


@pytest_asyncio.fixture
async def rig(
    fault_server: FaultServer, client_keys: ClientKeys, tmp_path: Path
) -> AsyncIterator[Rig]:
    inbox = fault_server.home(PARTNER) / "out"
    inbox.mkdir()
    settings = Settings.model_validate(
        offline_settings(
            tmp_path,
            partners={
                "artist": {
                    "host": "127.0.0.1",
                    "port": fault_server.port,
                    "user": PARTNER,
                    "host_keys": [fault_server.server.known_hosts_line],
                    "auth": {"key": str(client_keys.paths["ed25519"])},
                    "folders": {"receive": "/out"},
                    "transfer": {
                        "stable_interval": 0,
                        "segment_size": 1024 * 1024,
                        # One small read in flight: a read still under way when the connection
                        # drops cannot reach the next attempt's drop threshold.
                        "max_requests": 1,
                        "block_size": 65536,
                        "post_action": "delete",
                    },
                }
            },
            flows={"art": {"kind": "intake", "partners": ["artist"]}},
            engine={
                "retry_max_attempts": ENGINE_ATTEMPTS,
                "retry_initial_interval_s": 0.1,
                "retry_backoff_rate": 2.0,
            },
        )
    )
    app = App(settings)
    runner = DeliveryRunner(app, executor=True, quiet=True)
    await runner.__aenter__()
    try:
        yield Rig(app, runner, fault_server, inbox)
    finally:
        await runner.__aexit__(None, None, None)
        app.store.close()


def _put(path: Path) -> bytes:
    data = os.urandom(SIZE)
    path.write_bytes(data)
    then = time.time() - 30
    os.utime(path, (then, then))
    return data


async def _keep_dropping(server: FaultServer, times: int | None) -> None:
    """Drop the connection a little into every download attempt (less than a segment, so no
    attempt makes durable progress), ``times`` times (None: for ever). Armed again as soon as
    a drop happened, i.e. during the adapter's backoff, before the next attempt connects."""
    seen = -1
    while times is None or server.recorder.drops < times:
        if server.recorder.drops > seen and server.faults.drop_after_read_bytes is None:
            seen = server.recorder.drops
            server.faults.drop_after_read_bytes = server.recorder.bytes_read + 300_000
        await asyncio.sleep(0.002)


async def test_dropped_connections_are_retried_by_the_engine_step_too(rig: Rig) -> None:
    data = _put(rig.inbox / "cover.psd")
    drops = ADAPTER_ATTEMPTS + 1  # more than one run of the fetch step can absorb
    chaos = asyncio.create_task(_keep_dropping(rig.server, drops))
    try:
        _, result = await rig.take()
    finally:
        chaos.cancel()
    assert "error" not in result, result
    assert rig.server.recorder.drops == drops
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert Path(result["local_path"]).read_bytes() == data
    [row] = rig.app.store.list_intakes()
    assert (row.outcome, row.reason or None) == (IntakeOutcome.STORED, None)
    assert not (rig.inbox / "cover.psd").exists()


async def test_a_partner_that_keeps_dropping_ends_in_a_failed_row_and_keeps_its_file(
    rig: Rig,
) -> None:
    data = _put(rig.inbox / "cover.psd")
    chaos = asyncio.create_task(_keep_dropping(rig.server, None))
    try:
        workflow_id, result = await rig.take()
    finally:
        chaos.cancel()
    assert f"gave up after {ENGINE_ATTEMPTS} attempts" in result["error"]
    assert rig.server.recorder.drops == ADAPTER_ATTEMPTS * ENGINE_ATTEMPTS
    [row] = rig.app.store.list_intakes()
    assert row.outcome is IntakeOutcome.FAILED
    assert row.reason and f"gave up after {ENGINE_ATTEMPTS} attempts" in row.reason
    assert (rig.inbox / "cover.psd").read_bytes() == data  # never deleted
    assert workflow_id.startswith("ing-artist-")
    # One alert for the final failure, with the reason (not one per retry).
    [alert] = rig.app.store.list_alerts(kind="intake_failed")
    assert alert.partner == "artist" and alert.flow == "art"
    assert "/out/cover.psd" in alert.message
    assert f"gave up after {ENGINE_ATTEMPTS} attempts" in alert.message


async def test_a_name_that_is_not_utf8_is_quarantined_and_the_rest_taken(rig: Rig) -> None:
    """A name the server holds as bytes that are not UTF-8 must not stop the partner's inbox:
    the file is quarantined under a safe name with its bytes on the record, the others are
    stored."""
    odd = b"r\xe9sum\xe9 final.pdf"  # Latin-1, as an old Windows tool writes it
    odd_data = os.urandom(5000)
    with open(os.path.join(bytes(rig.inbox), odd), "wb") as fh:
        fh.write(odd_data)
    then = time.time() - 30
    os.utime(os.path.join(bytes(rig.inbox), odd), (then, then))
    good = os.urandom(4000)
    (rig.inbox / "good.pdf").write_bytes(good)
    os.utime(rig.inbox / "good.pdf", (then, then))

    flow = rig.app.settings.flows["art"]
    assert isinstance(flow, IntakeFlow)
    report = await poll_inbox(rig.app, rig.runner, "art", flow, trigger="test")
    assert report.errors == {}
    shown = {f.path: f for f in report.taken}
    assert set(shown) == {"/out/good.pdf", "/out/r\\xe9sum\\xe9 final.pdf"}
    results = {
        p: await rig.runner.wait(f.workflow_id or "", timeout_s=60) for p, f in shown.items()
    }
    assert results["/out/good.pdf"]["outcome"] == "stored"
    odd_result = results["/out/r\\xe9sum\\xe9 final.pdf"]
    assert odd_result["outcome"] == "quarantined", odd_result
    assert "not valid UTF-8" in odd_result["reason"]
    local = Path(odd_result["local_path"])
    assert local.read_bytes() == odd_data
    assert local.is_relative_to(rig.app.state_dir / "quarantine" / "art" / "artist")
    local.name.encode("ascii")  # a safe, plain name
    rows = {r.remote_path: r for r in rig.app.store.list_intakes()}
    row = rows["/out/r\\xe9sum\\xe9 final.pdf"]
    assert row.outcome is IntakeOutcome.QUARANTINED
    assert row.raw_name == odd.hex() and bytes.fromhex(row.raw_name) == odd
    assert row.sha256 == hashlib.sha256(odd_data).hexdigest()
    assert rows["/out/good.pdf"].outcome is IntakeOutcome.STORED
    # post_action "delete" removed both, the odd one by its own bytes.
    assert sorted(os.listdir(bytes(rig.inbox))) == []
    again = await poll_inbox(rig.app, rig.runner, "art", flow, trigger="test")
    assert again.errors == {} and again.taken == []
