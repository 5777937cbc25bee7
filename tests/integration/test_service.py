"""The service in-process against the sandbox: schedules tick each flow once per tick, an ONIX
feed goes through the engine to the partner's SFTP folder on the first tick and nothing is sent
again while nothing changed, a paused flow's ticks run nothing, and a kind without an
implementation is refused with a hint."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consonance_sftp.app import App
from consonance_sftp.app.service import FlowNotAvailable, Service
from consonance_sftp.config import load_settings
from consonance_sftp.config.starter import CONFIG_NAME, init_project
from consonance_sftp.sandbox.services import sandbox_services

ONIX = "onix-distributor"
EVERY_S = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _every(seconds: int):  # type: ignore[no-untyped-def]
    def next_after(moment: datetime) -> datetime:
        epoch = int(moment.timestamp()) // seconds * seconds + seconds
        return datetime.fromtimestamp(epoch, UTC)

    return next_after


@pytest.fixture
def app(tmp_path: Path) -> App:
    init_project(tmp_path, sftp_port=_free_port(), api_port=_free_port())
    return App(load_settings(tmp_path / CONFIG_NAME))


@pytest.mark.slow
async def test_schedule_ticks_once_each_and_onix_is_sent_once(app: App) -> None:
    service = Service(app)
    async with sandbox_services(app.settings) as sb:
        stop = asyncio.Event()
        task = asyncio.create_task(
            service.serve(
                stop=stop,
                poll_interval_s=3600,
                schedule_overrides={ONIX: _every(EVERY_S)},
            )
        )
        await asyncio.sleep(9)
        # A paused flow: its ticks are recorded, nothing runs.
        await asyncio.to_thread(
            service.controls.set, "flow", ONIX, paused=True, by="tester", reason="test"
        )
        paused_at = datetime.now(UTC)
        await asyncio.sleep(2 * EVERY_S + 0.5)
        stop.set()
        await asyncio.wait_for(task, 60)
        landed = [p for p in sb.partner_folder("distributor", "/in").rglob("*") if p.is_file()]

    ticks = [
        datetime.fromisoformat(str(e.details["tick"]))
        for e in app.store.list_audit(action="flow.tick")
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


async def test_kind_without_implementation_is_refused_with_a_hint(app: App) -> None:
    with pytest.raises(FlowNotAvailable) as caught:
        await Service(app).plan("design-intake")
    assert "intake" in str(caught.value)
    assert caught.value.hint and "Implemented kinds" in caught.value.hint


def test_paused_partner_is_recorded_with_who_and_why(app: App) -> None:
    service = Service(app)
    service.controls.set("partner", "printer", paused=True, by="alice", reason="maintenance")
    assert service.controls.hold_reason("print-files", "printer") == "partner 'printer' is paused"
    service.controls.set("partner", "printer", paused=False, by="bob", reason="done")
    assert service.controls.hold_reason("print-files", "printer") is None
    events = app.store.list_audit(subject="partner:printer")
    assert [(e.action, e.actor, e.details["reason"]) for e in reversed(events)] == [
        ("partner.paused", "user:alice", "maintenance"),
        ("partner.resumed", "user:bob", "done"),
    ]
    assert timedelta(0) <= datetime.now(UTC) - events[0].ts < timedelta(minutes=1)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_tick_is_claimed_by_one_process_only(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The claim behind "each tick runs once across processes": many stores (as many
    processes would have) race for the same ticks; each tick has exactly one winner."""
    from concurrent.futures import ThreadPoolExecutor

    from consonance_sftp.adapters.store import open_store

    url = (
        f"sqlite:///{tmp_path}/claims.db"
        if backend == "sqlite"
        else str(request.getfixturevalue("pg_url"))
    )
    stores = [open_store(url) for _ in range(4)]
    try:
        ticks = [f"schedule.feed.2026-11-24T10:{m:02d}:00+00:00" for m in range(10)]
        jobs = [(s, t) for t in ticks for s in stores]
        with ThreadPoolExecutor(8) as pool:
            won = list(pool.map(lambda job: job[0].claim_watermark(job[1], "x"), jobs))
        per_tick = {
            t: sum(w for (_s, tt), w in zip(jobs, won, strict=True) if tt == t) for t in ticks
        }
        assert per_tick == {t: 1 for t in ticks}
        assert stores[0].claim_watermark(ticks[0], "again") is False
        assert stores[1].get_watermark(ticks[0]) == "x"
    finally:
        for s in stores:
            s.close()


async def test_the_same_tick_twice_runs_once(app: App) -> None:
    from consonance_sftp.app.runner import DeliveryRunner

    service = Service(app)
    await asyncio.to_thread(
        service.controls.set, "flow", ONIX, paused=True, by="tester", reason="no send needed"
    )
    tick = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    runner = DeliveryRunner(app)  # not entered: a paused flow never reaches it
    await service.scheduled_tick(ONIX, tick, runner)
    await service.scheduled_tick(ONIX, tick, runner)
    await service.scheduled_tick(ONIX, tick + timedelta(days=1), runner)
    ticks = [e.details["tick"] for e in app.store.list_audit(action="flow.tick")]
    assert sorted(ticks) == [tick.isoformat(), (tick + timedelta(days=1)).isoformat()]
