"""The service in-process against the sandbox: each flow's DBOS schedule ticks once per tick, an
ONIX feed goes through the engine to the partner's SFTP folder on the first tick and nothing is
sent again while nothing changed, a paused flow's ticks run nothing, the same tick enqueued twice
runs once, and a kind without an implementation is refused with a hint."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consonance_sftp.app import App
from consonance_sftp.app.dispatch import plan
from consonance_sftp.app.runner import Controls
from consonance_sftp.app.serving import ServeLoop, run_tick
from consonance_sftp.config import load_settings
from consonance_sftp.config.starter import CONFIG_NAME, init_project
from consonance_sftp.engine import EngineClient, FlowSchedule
from consonance_sftp.flows import registry
from consonance_sftp.flows.base import FlowNotAvailable
from consonance_sftp.sandbox.services import sandbox_services
from tests.cli import free_port

ONIX = "onix-distributor"
EVERY_S = 2
EVERY_2_S = "*/2 * * * * *"  # DBOS cron: six fields, seconds first


@pytest.fixture
def app(tmp_path: Path) -> App:
    init_project(tmp_path, sftp_port=free_port(), api_port=free_port())
    config = tmp_path / CONFIG_NAME
    # The starter's archive flow is off; on, with its plan taken out of the registry (a kind
    # this release could not run), its ticks fail, which the retention test needs.
    text = config.read_text()
    config.write_text(text.replace('kind = "archive"\nenabled = false\n', 'kind = "archive"\n'))
    return App(load_settings(config))


@pytest.mark.slow
async def test_schedule_ticks_once_each_and_onix_is_sent_once(app: App) -> None:
    controls = Controls(app)
    async with sandbox_services(app.settings) as sb:
        stop = asyncio.Event()
        task = asyncio.create_task(
            ServeLoop(app).serve(
                stop=stop,
                poll_interval_s=3600,
                schedule_overrides={ONIX: EVERY_2_S},
            )
        )
        await asyncio.sleep(9)
        # A paused flow: its ticks are recorded, nothing runs.
        await asyncio.to_thread(controls.set, "flow", ONIX, paused=True, by="tester", reason="test")
        paused_at = datetime.now(UTC)
        await asyncio.sleep(2 * EVERY_S + 0.5)
        stop.set()
        await asyncio.wait_for(task, 60)
        landed = [p for p in sb.partner_folder("distributor", "/in").rglob("*") if p.is_file()]

    ticks = [
        datetime.fromisoformat(str(e.details["tick"]))
        # This flow's ticks only: the starter's intake flows tick on the minute as well.
        for e in app.store.list_audit(action="flow.tick", subject=f"flow:{ONIX}")
    ]
    assert len(ticks) >= 3, ticks  # 9 s of ticks every 2 s, one of them busy sending
    assert len(ticks) == len(set(ticks)), "a tick ran twice"
    assert all(t.timestamp() % EVERY_S == 0 for t in ticks)
    assert any(t > paused_at for t in ticks), "no tick while the flow was paused"

    rows = app.store.list_deliveries(flow=ONIX)
    assert len(rows) == 1 and rows[0].outcome.value == "sent"
    assert rows[0].trigger is not None and rows[0].trigger.startswith("schedule:")
    assert len(landed) == 1 and landed[0].name.endswith(".xml")
    assert rows[0].remote_path.endswith(landed[0].name)
    # The recipient's baseline advanced once, after the delivery.
    assert len(app.store.list_audit(action="onix.feed.sent")) == 1
    ran_after_pause = [r for r in rows if r.created_at and r.created_at > paused_at]
    assert ran_after_pause == []


def _unwired(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """The registry as a release that has the kind's config but not its plan."""
    entry = dataclasses.replace(registry.REGISTRY[kind], plan=None)
    monkeypatch.setitem(registry.REGISTRY, kind, entry)


async def test_kind_without_implementation_is_refused_with_a_hint(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unwired(monkeypatch, "archive")
    with pytest.raises(FlowNotAvailable) as caught:
        await plan(app, "nightly-archive")
    assert "archive" in str(caught.value)
    assert caught.value.hint and "Implemented kinds" in caught.value.hint


def test_paused_partner_is_recorded_with_who_and_why(app: App) -> None:
    controls = Controls(app)
    controls.set("partner", "printer", paused=True, by="alice", reason="maintenance")
    assert controls.hold_reason("print-files", "printer") == "partner 'printer' is paused"
    controls.set("partner", "printer", paused=False, by="bob", reason="done")
    assert controls.hold_reason("print-files", "printer") is None
    events = app.store.list_audit(subject="partner:printer")
    assert [(e.action, e.actor, e.details["reason"]) for e in reversed(events)] == [
        ("partner.paused", "user:alice", "maintenance"),
        ("partner.resumed", "user:bob", "done"),
    ]
    assert timedelta(0) <= datetime.now(UTC) - events[0].ts < timedelta(minutes=1)


async def test_the_same_tick_twice_runs_once(app: App) -> None:
    """Ticks are DBOS workflows named after the schedule and the tick time: enqueuing the same
    ticks again (as a second process, or a backfill after an outage, would) runs nothing more,
    and a tick that ran is on the record once, with what it did."""
    from consonance_sftp.app.runner import DeliveryRunner

    await asyncio.to_thread(
        Controls(app).set, "flow", ONIX, paused=True, by="tester", reason="no send needed"
    )
    async with DeliveryRunner(app, executor=True) as runner:
        engine = runner.engine
        assert engine is not None
        # A daily schedule that will not fire by itself during the test.
        await asyncio.to_thread(
            engine.ensure_flow_schedules, {ONIX: FlowSchedule("0 6 * * *", "Europe/London")}
        )
        start = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
        end = start + timedelta(days=3)
        first = await asyncio.to_thread(engine.backfill_flow, ONIX, start, end)
        again = await asyncio.to_thread(engine.backfill_flow, ONIX, start, end)
        assert first == again and len(first) == 3
        results = [await engine.result(w, 30) for w in first]
    ticks = sorted(str(e.details["tick"]) for e in app.store.list_audit(action="flow.tick"))
    # 06:00 in London is 06:00 UTC in November: the time zone is applied, once per tick.
    assert ticks == [f"2026-11-{d}T06:00:00+00:00" for d in (21, 22, 23)]
    assert [r["skipped"] for r in results] == [f"flow {ONIX!r} is paused"] * 3


async def test_removed_flow_stops_ticking(app: App) -> None:
    from consonance_sftp.app.runner import DeliveryRunner

    runner = DeliveryRunner(app, executor=True)
    async with runner:
        engine = runner.engine
        assert engine is not None
        every_day = FlowSchedule("0 6 * * *")
        await asyncio.to_thread(engine.ensure_flow_schedules, {ONIX: every_day, "gone": every_day})
        changed = await asyncio.to_thread(engine.ensure_flow_schedules, {ONIX: every_day})
        assert changed == ["flow:gone"]
        assert await asyncio.to_thread(engine.ensure_flow_schedules, {ONIX: every_day}) == []


async def test_finished_ticks_are_pruned_from_engine_history_failed_ones_kept(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention: finished workflows leave DBOS's history after the retention period; a failed
    one stays (with its reason) for an operator to act on; our own records are untouched."""
    from consonance_sftp.app.runner import DeliveryRunner
    from consonance_sftp.engine import prune_history

    await asyncio.to_thread(
        Controls(app).set, "flow", ONIX, paused=True, by="tester", reason="no send needed"
    )
    _unwired(monkeypatch, "archive")
    archive = "nightly-archive"  # a kind this release cannot run: its tick fails
    async with DeliveryRunner(app, executor=True) as runner:
        engine = runner.engine
        assert engine is not None
        daily = FlowSchedule("0 6 * * *")
        await asyncio.to_thread(engine.ensure_flow_schedules, {ONIX: daily, archive: daily})
        start = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
        ok = await asyncio.to_thread(engine.backfill_flow, ONIX, start, start + timedelta(days=2))
        failed = await asyncio.to_thread(
            engine.backfill_flow, archive, start, start + timedelta(days=1)
        )
        for w in ok:
            await engine.result(w, 30)
        with pytest.raises(FlowNotAvailable):
            await engine.result(failed[0], 30)

        # Nothing is older than a day yet; then, seen from two days on, the finished ones are.
        assert await asyncio.to_thread(prune_history, timedelta(days=1)) == 0
        later = datetime.now(UTC) + timedelta(days=2)
        assert await asyncio.to_thread(prune_history, timedelta(days=1), now=later) == 2
        client = EngineClient(app.engine_settings())
        left = client.statuses(prefix="sched-flow:")
        client.close()
    assert left == {failed[0]: "ERROR"}
    assert len(app.store.list_audit(action="flow.tick")) == 3  # the record stays


@pytest.mark.slow
async def test_a_title_entering_its_publication_window_fires_the_flow_once(app: App) -> None:
    """`when = { days_before_publication = 56 }` (the starter's ebook package): a title whose
    publication date moves inside the window is sent on the next poll, once; one moved to
    100 days ahead is not."""
    from consonance_sftp.app.runner import DeliveryRunner
    from consonance_sftp.flows.changes import ChangeDetector
    from consonance_sftp.sandbox.consonance.control import SandboxControl

    service = ServeLoop(app)
    today = datetime.now(UTC).date()
    async with sandbox_services(app.settings) as sb, app.consonance() as api:
        ebooks = [
            p
            async for p in api.iter_products()
            if any(
                f.file_variant == "EPUB" and f.approval_status == "APPROVED"
                for f in p.production_files
            )
        ]
        near, far = ebooks[0], ebooks[1]
        detector = ChangeDetector(api, app.store)
        async with DeliveryRunner(app) as runner:
            await service.poll_once(detector, runner, api)  # the baseline fires nothing
            with SandboxControl(sb.api_url) as control:
                for product, days in ((near, 30), (far, 100)):
                    moved = (today + timedelta(days=days)).isoformat()
                    await asyncio.to_thread(
                        control.update_product, product.id, publication_date=moved
                    )
            await service.poll_once(detector, runner, api)
            await service.poll_once(detector, runner, api)  # nothing new: fires nothing

            client = EngineClient(app.engine_settings())
            for _ in range(150):  # until every delivery the polls started has finished
                statuses = await asyncio.to_thread(client.statuses, "dlv-")
                if statuses and set(statuses.values()) == {"SUCCESS"}:
                    break
                await asyncio.sleep(0.2)
            client.close()
    rows = app.store.list_deliveries(flow="ebook-package")
    assert rows, "the ebook package was not sent"
    assert {r.isbn for r in rows} == {near.isbn13}
    assert {r.outcome.value for r in rows} == {"sent"}
    assert all("publication_due" in (r.trigger or "") for r in rows)
    landed = [p for p in sb.partner_folder("ebook-vendor").rglob("*") if p.is_file()]
    assert sorted(p.name for p in landed) == sorted(r.remote_path.rsplit("/", 1)[1] for r in rows)


async def test_a_tick_step_run_again_is_recorded_once(app: App) -> None:
    """DBOS may run a tick's step again (a retry, or recovery after a crash): the audit trail
    still has one ``flow.tick`` per tick."""
    from consonance_sftp.app.runner import DeliveryRunner

    await asyncio.to_thread(
        Controls(app).set, "flow", ONIX, paused=True, by="tester", reason="no send needed"
    )
    tick = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    runner = DeliveryRunner(app)  # not entered: a paused flow never reaches it
    for moment in (tick, tick, tick + timedelta(days=1)):
        await run_tick(app, ONIX, moment, runner=runner)
    ticks = [e.details["tick"] for e in app.store.list_audit(action="flow.tick")]
    assert sorted(ticks) == [tick.isoformat(), (tick + timedelta(days=1)).isoformat()]


async def test_each_tick_logs_one_info_line_with_its_outcome(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    from consonance_sftp.app.runner import DeliveryRunner

    await asyncio.to_thread(
        Controls(app).set, "flow", ONIX, paused=True, by="tester", reason="no send needed"
    )
    tick = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    with caplog.at_level(logging.INFO, logger="consonance_sftp.app.serving"):
        await run_tick(app, ONIX, tick, runner=DeliveryRunner(app))
    lines = [r.getMessage() for r in caplog.records if r.name == "consonance_sftp.app.serving"]
    assert lines == [f"flow {ONIX}: tick {tick.isoformat()}: skipped flow {ONIX!r} is paused"]
