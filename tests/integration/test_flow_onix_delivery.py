"""ONIX feeds end to end: the sandbox Consonance API over HTTP -> the onix_feed flow -> the
durable engine (DBOS on SQLite) -> the sandbox SFTP partner server, with the ledger, and the
delta baseline advancing only after the send. Test feeds land in the test folder and never
advance it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consonance_sftp.app import App
from consonance_sftp.app.dispatch import delivery_request
from consonance_sftp.app.runner import DeliveryRunner, Enqueued
from consonance_sftp.config import OnixFeedFlow, load_settings
from consonance_sftp.config.starter import CONFIG_NAME, init_project
from consonance_sftp.engine import EngineClient
from consonance_sftp.flows.onix_baseline import baseline, last_sent, next_message_number
from consonance_sftp.flows.onix_feed import (
    OnixFeedPackage,
    SpreadsheetPackage,
    prepare_onix_feed,
    record_sent,
)
from consonance_sftp.formats.onix import iter_onix_records
from consonance_sftp.models import DeliveryOutcome, WorkState
from consonance_sftp.sandbox.services import sandbox_services
from consonance_sftp.sandbox.sftp_server import start_configured_sandbox_sftp
from tests.cli import free_port

NAME = "onix-distributor"
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
async def test_a_feed_goes_through_the_engine_once_and_only_then_moves_the_baseline(
    tmp_path: Path,
):
    init_project(tmp_path, sftp_port=free_port(), api_port=free_port())
    settings = load_settings(tmp_path / CONFIG_NAME)
    app = App(settings)
    flow = settings.flows[NAME]
    assert isinstance(flow, OnixFeedFlow)
    partner = app.partner_config("distributor")
    remote_folder = partner.folders[flow.folder]
    staging = app.state_dir / "onix"

    async with sandbox_services(settings) as sb:
        inbox = sb.partner_folder("distributor", remote_folder)
        async with app.consonance() as api:
            [feed], report = await prepare_onix_feed(
                api, app.store, NAME, flow, now=NOW, staging=staging
            )
            [sample], _ = await prepare_onix_feed(
                api,
                app.store,
                NAME,
                flow,
                now=NOW + timedelta(minutes=1),
                staging=staging,
                test=True,
            )
        assert report.ok and feed.kind == "delta" and feed.result.new > 10
        assert baseline(app.store, NAME, "distributor") == {}  # prepared, not yet sent

        engine = app.engine()
        await asyncio.to_thread(engine.launch)
        try:

            async def deliver(pkg: OnixFeedPackage, trigger: str) -> dict[str, list[str]]:
                request = delivery_request(pkg, flow=NAME, folder=remote_folder, trigger=trigger)
                wid = await engine.enqueue_delivery(
                    request, max_connections=partner.max_connections
                )
                result: dict[str, list[str]] = await engine.result(wid, timeout_s=60)
                record_sent(app.store, pkg, folder=remote_folder, workflow_id=wid)
                return result

            first = await deliver(feed, "manual:test")
            assert len(first["sent"]) == 1
            assert baseline(app.store, NAME, "distributor") == feed.state
            # The same package again is the same workflow (ID from the files' keys): its
            # recorded result, no second upload (the folder and ledger below hold one).
            again = await deliver(feed, "manual:test")
            assert again == first

            tested = await deliver(sample, "manual:onboarding")
            assert len(tested["sent"]) == 1
        finally:
            await engine.aclose()

        assert _files(inbox) == [feed.file_name, f"test/{sample.file_name}"]
        landed = inbox / feed.file_name
        assert landed.read_bytes() == feed.plan.files[0].source.read_bytes()  # type: ignore[union-attr]
        assert len(list(iter_onix_records(landed))) == feed.result.products
        assert len(list(iter_onix_records(inbox / "test" / sample.file_name))) == 10

    rows = app.store.list_deliveries(flow=NAME)
    by_path = {r.remote_path: r for r in rows}
    assert len(rows) == 2
    row = by_path[f"{remote_folder}/{feed.file_name}"]
    assert (row.outcome, row.sha256, row.size) == (
        DeliveryOutcome.SENT,
        feed.plan.files[0].sha256,
        feed.plan.files[0].size,
    )
    assert row.package == feed.label and row.trigger == "manual:test"
    test_row = by_path[f"{remote_folder}/test/{sample.file_name}"]
    assert test_row.package == sample.label and sample.label.startswith("onix test ")
    # The test feed did not touch the baseline: still exactly the full delivery's hashes.
    assert baseline(app.store, NAME, "distributor") == feed.state
    actions = [e.action for e in app.store.list_audit(subject=f"distributor:{NAME}")]
    # One send, one event: recording the attached second delivery again changes nothing.
    assert actions.count("onix.feed.sent") == 1 and actions.count("onix.test_feed.sent") == 1
    app.store.close()


@pytest.mark.slow
async def test_a_feed_that_failed_and_was_retried_is_followed_up_once_by_the_ledger(
    tmp_path: Path,
):
    """The partner is down when the feed and its spreadsheet go: both deliveries fail, and the
    baseline, the MessageNumber and the record stay. ``retry`` delivers them once the partner
    is back, with nobody waiting on the run: the engine's ledger runs the flow's after-delivery
    hook (the registry's ``onix_feed.after_delivery``) as it records each file delivered, so
    the baseline advances, and each is on the record as sent, exactly once."""
    init_project(tmp_path, sftp_port=free_port(), api_port=free_port())
    with (tmp_path / CONFIG_NAME).open("a") as out:
        out.write(
            f'\n[flows.{NAME}.spreadsheets.distributor]\nformat = "csv"\n'
            "\n[engine]\nretry_max_attempts = 1\n"
        )
    settings = load_settings(tmp_path / CONFIG_NAME)
    app = App(settings)
    flow = settings.flows[NAME]
    assert isinstance(flow, OnixFeedFlow)
    remote_folder = app.partner_config("distributor").folders[flow.folder]
    back = None
    async with sandbox_services(settings) as sb:
        async with app.consonance() as api:
            packages, report = await prepare_onix_feed(
                api, app.store, NAME, flow, now=NOW, staging=app.state_dir / "onix"
            )
        assert report.ok
        [feed] = [p for p in packages if isinstance(p, OnixFeedPackage)]
        [sheet] = [p for p in packages if isinstance(p, SpreadsheetPackage)]
        sb.sftp.close()  # the partner is down
        await sb.sftp.wait_closed()
        client = EngineClient(app.engine_settings())
        try:
            async with DeliveryRunner(app, quiet=True) as runner:
                wids = []
                for pkg in (feed, sheet):
                    request = delivery_request(pkg, flow=NAME, folder=remote_folder, trigger="t")
                    submitted = await runner.submit(request)
                    assert isinstance(submitted, Enqueued)
                    assert "error" in await runner.wait(submitted.workflow_id, 120)
                    wids.append(submitted.workflow_id)
                assert baseline(app.store, NAME, "distributor") == {}
                assert next_message_number(app.store, NAME, "distributor") == 1

                back = await start_configured_sandbox_sftp(settings)  # the partner is back
                for wid in wids:
                    await asyncio.to_thread(client.retry, wid)
                deadline = asyncio.get_running_loop().time() + 120
                while [await asyncio.to_thread(client.state, w) for w in wids] != [
                    WorkState.DONE
                ] * 2:
                    assert asyncio.get_running_loop().time() < deadline, "retry did not finish"
                    await asyncio.sleep(0.2)
                # The same feed again attaches to the delivered workflow: nothing more.
                request = delivery_request(feed, flow=NAME, folder=remote_folder, trigger="t")
                again = await runner.submit(request)
                assert isinstance(again, Enqueued) and again.workflow_id == wids[0]
                await runner.wait(again.workflow_id, 60)
        finally:
            client.close()
            if back is not None:
                back.close()
                await back.wait_closed()

    rows = app.store.list_deliveries(flow=NAME)
    assert {r.outcome for r in rows} == {DeliveryOutcome.SENT} and len(rows) == 2
    assert baseline(app.store, NAME, "distributor") == feed.state
    assert last_sent(app.store, NAME, "distributor") == NOW
    assert next_message_number(app.store, NAME, "distributor") == 2
    subject = f"distributor:{NAME}"
    sent = app.store.list_audit(action="onix.feed.sent", subject=subject)
    assert [e.details["workflow_id"] for e in sent] == [wids[0]]
    sheets = app.store.list_audit(action="onix.spreadsheet.sent", subject=subject)
    assert [e.details["workflow_id"] for e in sheets] == [wids[1]]
    app.store.close()
