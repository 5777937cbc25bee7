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
from consonance_sftp.config import OnixFeedFlow, load_settings
from consonance_sftp.config.starter import CONFIG_NAME, init_project
from consonance_sftp.flows.onix_feed import (
    OnixFeedPackage,
    baseline,
    prepare_onix_feed,
    record_sent,
)
from consonance_sftp.formats.onix import iter_onix_records
from consonance_sftp.models import DeliveryOutcome
from consonance_sftp.sandbox.services import sandbox_services
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
