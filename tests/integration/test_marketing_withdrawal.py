"""Marketing withdrawals are engine work, like every other remote write: a withdrawn title's
files come off a partner through the engine's transport (the asyncssh fault server here), so a
paused partner or a closed delivery window holds the withdrawal (nothing is removed until it is
released), a changed host key removes nothing, alerts and pauses the partner, and a removal cut
off by the server is retried by the engine and ends with the files gone and one set of audit
events. Planning a withdrawn title removes nothing by itself (a dry run lists it). The SFTP
bridge's ``remove`` says "already gone" on a re-run and removes nothing past a stale fence.

Each test first releases a title for real (Consonance sandbox over HTTP -> the marketing plan ->
the engine -> the fault server), so the ledger and the server hold what a partner was sent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.app import App
from consonance_sftp.app.delivery import SftpDeliveryTransport
from consonance_sftp.app.dispatch import RunOutcome, plan, run_flow, withdrawal_requests
from consonance_sftp.app.operations import Operations
from consonance_sftp.app.runner import Controls, DeliveryRunner, Enqueued
from consonance_sftp.config import Settings
from consonance_sftp.engine import EngineClient
from consonance_sftp.errors import Fenced
from consonance_sftp.flows.marketing import lead_isbn
from consonance_sftp.models import DeliveryOutcome, Work
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from tests.fixtures.consonance_sandbox import SandboxHandle
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.sftp_servers import PARTNER, ClientKeys, EndpointFactory

FLOW = "marketing"
WRONG_PIN = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"


def _releasable(work: Work) -> bool:
    return any(
        r.variant == "FRONT_COVER" and (r.status or "").upper() == "APPROVED" and r.url
        for r in work.supporting_resources
    ) and any(p.isbn13 for p in work.products)


@dataclass
class Rig:
    app: App
    runner: DeliveryRunner
    server: FaultServer
    sandbox: SandboxHandle
    raw: dict[str, Any]
    work: Work
    isbn: str

    async def run(self) -> RunOutcome:
        return await run_flow(self.app, FLOW, isbns=[self.isbn], runner=self.runner, wait=True)

    def on_server(self, partner: str) -> dict[str, bytes]:
        folder = self.server.home(PARTNER) / partner
        return {
            f"/{partner}/{p.relative_to(folder)}": p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    def withdraw_title(self) -> None:
        for product in self.work.products:
            self.sandbox.catalogue.update_product(product.id, publishing_status="11")

    def reconfigure(self, partner: str, **changes: Any) -> None:
        """The config file changed while the service runs (``serve`` reloads it)."""
        self.raw["partners"][partner].update(changes)
        self.app.reload(Settings.model_validate(self.raw), changed_partners=[partner])

    def pause(self, partner: str, paused: bool) -> None:
        Controls(self.app).set("partner", partner, paused=paused, by="tester", reason="maintenance")

    def outcomes(self, partner: str) -> set[DeliveryOutcome]:
        rows = self.app.store.list_deliveries(partner=partner, isbn=self.isbn, flow=FLOW)
        assert rows
        return {r.outcome for r in rows}

    def withdrawn_events(self) -> list[dict[str, Any]]:
        events = self.app.store.list_audit(action="package.withdrawn")
        return [dict(e.details) | {"subject": e.subject} for e in events]


@pytest_asyncio.fixture
async def rig(
    fault_server: FaultServer,
    client_keys: ClientKeys,
    consonance_sandbox_factory: Any,
    tmp_path: Path,
) -> AsyncIterator[Rig]:
    catalogue = generate_catalogue(40, seed=5)
    work = next(w for w in catalogue.works.values() if _releasable(w))
    for product in work.products:
        catalogue.update_product(product.id, publishing_status="04")
    sandbox = consonance_sandbox_factory(catalogue)
    token = tmp_path / "token"
    token.write_text(sandbox.token)
    partners: dict[str, Any] = {}
    for name in ("sales", "agency"):
        (fault_server.home(PARTNER) / name).mkdir()
        partners[name] = {
            "host": "127.0.0.1",
            "port": fault_server.port,
            "user": PARTNER,
            "host_keys": [fault_server.server.known_hosts_line],
            "auth": {"key": str(client_keys.paths["ed25519"])},
            "folders": {"send": f"/{name}"},
            "max_connections": 2,
        }
    assets = ["cover_image", "jacket_copy", "author_bio"]
    raw: dict[str, Any] = {
        "state_dir": str(tmp_path / "var"),
        "consonance": {"base_url": sandbox.url, "token": {"file": str(token)}},
        "partners": partners,
        "flows": {
            FLOW: {
                "kind": "marketing",
                "partners": ["sales", "agency"],
                "embargo": "none",
                "partner_profiles": {
                    "sales": {"assets": assets, "withdraw": True},
                    "agency": {"assets": assets},
                },
            }
        },
        "engine": {
            "retry_max_attempts": 3,
            "retry_initial_interval_s": 0.1,
            "retry_backoff_rate": 2.0,
        },
    }
    app = App(Settings.model_validate(raw))
    runner = DeliveryRunner(app, executor=True, quiet=True)
    await runner.__aenter__()
    try:
        isbn = lead_isbn(work)
        assert isbn is not None
        made = Rig(app, runner, fault_server, sandbox, raw, catalogue.get_work(work.id), isbn)
        released = await made.run()
        assert released.enqueued and all("sent" in r for r in released.results.values())
        assert made.on_server("sales") and made.on_server("agency")
        yield made
    finally:
        await runner.__aexit__(None, None, None)
        app.store.close()


def _sent_paths(rig: Rig) -> list[str]:
    return sorted(rig.on_server("sales"))


async def test_a_paused_partners_withdrawal_is_held_and_removes_nothing_until_resumed(
    rig: Rig,
) -> None:
    sent = rig.on_server("sales")
    rig.withdraw_title()
    rig.pause("sales", True)

    outcome = await rig.run()
    [held] = outcome.held
    assert held.request.withdraws and held.request.partner == "sales"
    assert held.reason == "partner 'sales' is paused"
    assert not outcome.enqueued and not outcome.planned.outbounds
    # Planning and holding removed nothing: the partner still has every file.
    assert rig.on_server("sales") == sent
    assert rig.server.recorder.ops("remove") == []
    assert rig.outcomes("sales") == {DeliveryOutcome.SENT}
    assert rig.withdrawn_events() == []
    # On the record as held work, like a held delivery.
    [hold] = rig.app.store.open_holds()
    assert hold.partner == "sales" and hold.package == f"{rig.isbn} marketing withdrawal"

    rig.pause("sales", False)
    [released] = await rig.runner.release_held()
    result = await rig.runner.wait(released.workflow_id)
    assert released.workflow_id.startswith("wdr-sales-")
    assert result["removed"] == sorted(sent) and result["already_gone"] == []
    assert rig.on_server("sales") == {}
    assert rig.on_server("agency")  # its profile keeps what it has
    assert rig.outcomes("sales") == {DeliveryOutcome.WITHDRAWN}
    assert rig.outcomes("agency") == {DeliveryOutcome.SENT}
    [event] = rig.withdrawn_events()
    assert event["subject"] == f"sales:{rig.isbn}" and event["work_id"] == rig.work.id
    assert event["removed"] == sorted(sent) and event["already_gone"] == []
    kept = rig.app.store.list_audit(action="package.withdraw_kept")
    assert [e.subject for e in kept] == [f"agency:{rig.isbn}"]
    assert rig.app.store.open_holds() == []


async def test_a_withdrawal_outside_the_partners_delivery_window_is_held(rig: Rig) -> None:
    sent = rig.on_server("sales")
    later = datetime.now(UTC) + timedelta(hours=3)
    window = {"start": f"{later:%H}:00", "end": f"{(later + timedelta(hours=1)):%H}:00"}
    rig.reconfigure("sales", delivery_window=window)
    rig.withdraw_title()

    outcome = await rig.run()
    [held] = outcome.held
    assert held.request.withdraws
    assert held.reason.startswith("outside partner 'sales''s delivery window")
    assert rig.on_server("sales") == sent
    assert rig.server.recorder.ops("remove") == []
    assert rig.outcomes("sales") == {DeliveryOutcome.SENT}
    # Still closed: a release attempt leaves it held.
    assert await rig.runner.release_held() == []
    assert rig.on_server("sales") == sent

    rig.reconfigure("sales", delivery_window=None)  # the window is open (here: gone)
    [released] = await rig.runner.release_held()
    result = await rig.runner.wait(released.workflow_id)
    assert result["removed"] == sorted(sent)
    assert rig.on_server("sales") == {}
    assert len(rig.withdrawn_events()) == 1


async def test_a_withdrawal_whose_host_key_changed_removes_nothing_alerts_and_pauses(
    rig: Rig,
) -> None:
    sent = rig.on_server("sales")
    rig.reconfigure("sales", host_keys=[WRONG_PIN])
    rig.withdraw_title()

    outcome = await rig.run()
    [enqueued] = outcome.enqueued
    result = outcome.results[enqueued.workflow_id]
    assert "host key" in result["error"]
    assert rig.on_server("sales") == sent
    assert rig.server.recorder.ops("remove") == []
    alerts = rig.app.store.list_alerts()
    assert [(a.kind, str(a.severity), a.partner) for a in alerts] == [
        ("host_key_mismatch", "critical", "sales")
    ]  # and no second alert for the failed withdrawal
    controls = Controls(rig.app)
    assert controls.hold_reason(FLOW, "sales") == "partner 'sales' is paused"
    assert rig.outcomes("sales") == {DeliveryOutcome.SENT}
    assert rig.withdrawn_events() == []

    # The operator confirms the right key and resumes: the failed withdrawal is named (a
    # resume does not run it), and 'retry' removes the files.
    rig.reconfigure("sales", host_keys=[rig.server.server.known_hosts_line])
    rig.pause("sales", False)
    ops = Operations(rig.app)
    assert await asyncio.to_thread(ops.failed_deliveries, "sales") == [enqueued.workflow_id]
    await asyncio.to_thread(ops.retry, enqueued.workflow_id, by="tester")
    result = await rig.runner.wait(enqueued.workflow_id)
    assert result.get("removed") == sorted(sent), result
    assert rig.on_server("sales") == {}
    assert rig.outcomes("sales") == {DeliveryOutcome.WITHDRAWN}
    assert len(rig.withdrawn_events()) == 1


async def test_a_removal_cut_off_by_the_server_is_retried_and_recorded_once(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    sent = _sent_paths(rig)
    rig.withdraw_title()
    # The first removal happens on the server, but its answer never comes back.
    rig.server.faults.drop_after_remove = True

    with caplog.at_level(logging.WARNING):
        outcome = await rig.run()
    tries = [r.getMessage() for r in caplog.records if "attempt 1 of 3 failed" in r.getMessage()]
    assert len(tries) == 1, tries  # the engine's step retry, said in one line
    assert tries[0].startswith(f"withdrawal of {rig.isbn} marketing withdrawal from partner")
    [enqueued] = outcome.enqueued
    result = outcome.results[enqueued.workflow_id]
    assert "error" not in result, result
    assert rig.server.recorder.drops == 1
    first = sent[0]
    # The engine ran the step again: it found the first file gone and went on.
    assert result["already_gone"] == [first]
    assert result["removed"] == sent[1:]
    assert [a for a, _ in rig.server.recorder.ops("remove")] == sent  # each removed once
    assert rig.on_server("sales") == {}
    assert rig.outcomes("sales") == {DeliveryOutcome.WITHDRAWN}
    [event] = rig.withdrawn_events()
    assert event["removed"] == sent[1:] and event["already_gone"] == [first]
    assert [a.kind for a in rig.app.store.list_alerts()] == []

    # Planned again (the next event for the title): nothing left to withdraw, nothing recorded.
    again = await rig.run()
    assert again.planned.withdrawals == [] and again.enqueued == []
    assert len(rig.withdrawn_events()) == 1


async def test_a_dry_run_shows_the_withdrawal_and_removes_or_records_nothing(rig: Rig) -> None:
    sent = rig.on_server("sales")
    rig.withdraw_title()
    outcome = await run_flow(rig.app, FLOW, isbns=[rig.isbn], dry_run=True)
    [planned] = outcome.planned.withdrawals
    assert planned.partner == "sales" and planned.isbn == rig.isbn
    assert sorted(f.remote_path for f in planned.files) == sorted(sent)
    assert not outcome.enqueued and not outcome.held
    assert rig.on_server("sales") == sent
    assert rig.app.store.list_audit(action="package.withdraw_kept") == []
    assert rig.app.store.open_holds() == [] and rig.withdrawn_events() == []


class _Fence:
    def __init__(self) -> None:
        self.stale = False

    def check(self) -> None:
        if self.stale:
            raise Fenced("this executor's lease is gone")


async def test_the_bridge_removes_once_says_gone_after_and_never_past_the_fence(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    folder = fault_server.home(PARTNER) / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"cover")
    (folder / "b.txt").write_bytes(b"copy")
    transport = SftpDeliveryTransport(
        lambda partner: SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s")
    )
    fence = _Fence()
    try:
        assert await transport.remove("fault-partner", "/in/a.jpg", fence) is True
        assert await transport.remove("fault-partner", "/in/a.jpg", fence) is False  # a re-run
        fence.stale = True  # another executor took this one's work over
        with pytest.raises(Fenced):
            await transport.remove("fault-partner", "/in/b.txt", fence)
    finally:
        await transport.close()
    assert sorted(p.name for p in folder.iterdir()) == ["b.txt"]
    assert [a for a, _ in fault_server.recorder.ops("remove")] == ["/in/a.jpg"]


async def test_a_withdrawal_handed_to_the_running_service_is_followed_to_its_outcome(
    rig: Rig,
) -> None:
    """A command next to ``serve`` enqueues through the DBOS client and reads the outcome back
    from the records (here the rig's engine plays ``serve``)."""
    sent = rig.on_server("sales")
    rig.withdraw_title()
    planned = await plan(rig.app, FLOW, isbns=[rig.isbn])
    [request] = withdrawal_requests(planned, trigger="test")
    beside = DeliveryRunner(rig.app)
    beside.client = EngineClient(rig.app.engine_settings())
    try:
        queued = await beside.submit(request)
        assert isinstance(queued, Enqueued) and queued.workflow_id.startswith("wdr-sales-")
        result = await beside.wait(queued.workflow_id, timeout_s=60)
    finally:
        await beside.__aexit__(None, None, None)
    assert result["status"] == "done" and result["removed"] == sorted(sent), result
    assert rig.on_server("sales") == {}
