"""A flow fired by a Consonance event keeps its trigger when its plan fails.

The poll saves its snapshots, so the next poll never sees the same change again. The work the
event causes must therefore be durable before that: each (event, flow) is an engine workflow
(``consonance.flow_event``) that retries its plan, ends failed and visible when the retries
run out, and is sent by ``retry``. Real parts: the Consonance sandbox over HTTP (failing the
next file downloads through its control API), the sandbox SFTP partners, the engine on SQLite.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from consonance_sftp.app import App
from consonance_sftp.app.dispatch import run_event
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.app.serving import ServeLoop
from consonance_sftp.config import load_settings
from consonance_sftp.config.starter import CONFIG_NAME, init_project
from consonance_sftp.engine import EngineClient
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.flows.changes import ChangeDetector, PendingPoll, event_to_json
from consonance_sftp.models import ChangeEvent, ChangeKind
from consonance_sftp.ports.consonance import ConsonanceAPI
from consonance_sftp.sandbox.consonance.control import SandboxControl
from consonance_sftp.sandbox.services import sandbox_services
from tests.cli import free_port

FLOW = "print-files"
STAGE = "Production approval"

pytestmark = pytest.mark.slow


def _app(folder: Path, attempts: int) -> App:
    init_project(folder, sftp_port=free_port(), api_port=free_port())
    config = folder / CONFIG_NAME
    with config.open("a") as out:
        out.write(f"\n[engine]\nretry_max_attempts = {attempts}\nretry_initial_interval_s = 0.2\n")
    return App(load_settings(config), config)


async def _printable_work(api: ConsonanceAPI) -> tuple[int, str]:
    """A work not yet at the stage, with a print product whose interior and cover are
    approved (what the starter's print-files flow sends)."""
    async for work in api.iter_works():
        if not work.production_runs or work.project_stage == STAGE:
            continue
        for p in work.products:
            approved = {
                f.file_variant for f in p.production_files if f.approval_status == "APPROVED"
            }
            if (
                p.typename == "PhysicalBookProduct"
                and p.isbn13
                and approved >= {"INTERIOR", "COVER"}
            ):
                return work.id, p.isbn13
    raise AssertionError("the sandbox catalogue has no printable title")


async def _until(check: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _statuses(app: App, prefix: str) -> dict[str, str]:
    client = EngineClient(app.engine_settings())
    try:
        return client.statuses(prefix)
    finally:
        client.close()


def _event_workflows(app: App) -> dict[str, str]:
    return _statuses(app, "evt-")


def _sent(app: App, isbn: str) -> set[str]:
    rows = app.store.list_deliveries(flow=FLOW)
    return {r.remote_path for r in rows if r.isbn == isbn and r.outcome.value == "sent"}


async def _stage_events(
    service: ServeLoop, detector: ChangeDetector, runner: DeliveryRunner
) -> list[ChangeEvent]:
    report = await service.poll_once(detector, runner, detector.api)
    return [e for e in report.events if e.kind is ChangeKind.WORK_ENTERED_STAGE]


async def _poll(service: ServeLoop, detector: ChangeDetector, runner: DeliveryRunner) -> list[int]:
    return [e.work_id for e in await _stage_events(service, detector, runner)]


async def test_a_plan_that_fails_once_is_retried_and_delivered(tmp_path: Path) -> None:
    """The first download of the plan fails; the poll after the stage change does not see the
    change again (its snapshot advanced), yet the flow is planned again and the title sent."""
    app = _app(tmp_path, attempts=3)
    service = ServeLoop(app)
    async with sandbox_services(app.settings) as sb, app.consonance() as api:
        with SandboxControl(sb.api_url) as control:
            detector = ChangeDetector(api, app.store)
            async with DeliveryRunner(app) as runner:
                assert await _poll(service, detector, runner) == []  # the baseline
                work_id, isbn = await _printable_work(api)
                await asyncio.to_thread(control.move_stage, work_id, STAGE)
                await asyncio.to_thread(control.fail_downloads, 1)
                faults_before = (await asyncio.to_thread(control.stats))["faults_served"]
                [event] = await _stage_events(service, detector, runner)
                assert event.work_id == work_id
                assert await _poll(service, detector, runner) == []  # never seen again
                await _until(lambda: len(_sent(app, isbn)) >= 2, f"{isbn} sent to the printer")
                stats = await asyncio.to_thread(control.stats)
                wids = {r.workflow_id for r in app.store.list_deliveries(flow=FLOW)}
                for wid in wids:  # the package's last files (its marker) recorded too
                    assert "error" not in await runner.wait(wid)
                rows_before = len(app.store.list_deliveries(flow=FLOW))
                # The event's step run again (a recovery after a crash): the same plan, whose
                # deliveries attach to the ones that ran instead of sending again.
                again = await run_event(app, FLOW, event_to_json(event), runner=runner)
                assert set(again["deliveries"]) == wids, again
                for wid in again["deliveries"]:
                    assert "error" not in await runner.wait(wid)
    assert stats["faults_served"] == faults_before + 1, "the download never failed"
    assert {p.rsplit("/", 1)[1] for p in _sent(app, isbn)} >= {
        f"{isbn}_interior.pdf",
        f"{isbn}_cover.pdf",
    }
    landed = {p.name for p in sb.partner_folder("printer").rglob("*") if p.is_file()}
    assert f"{isbn}_interior.pdf" in landed
    statuses = _event_workflows(app)
    assert list(statuses.values()) == ["SUCCESS"], statuses
    assert not app.store.list_alerts(kind="flow_event_failed")
    assert len(app.store.list_deliveries(flow=FLOW)) == rows_before, "sent twice"


async def _cli(app: App, *args: str) -> str:
    """The real command line, in its own process (the sandbox keeps serving in this one)."""
    assert app.config_path is not None
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consonance_sftp",
        "--config",
        str(app.config_path),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "USER": "tester", "COLUMNS": "200"},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 180)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "Traceback" not in text, text
    return text


async def test_a_plan_out_of_retries_is_failed_in_status_and_retry_sends_it(
    tmp_path: Path,
) -> None:
    """Every attempt's download fails: the event's workflow ends failed with the reason, one
    alert is raised, ``status`` lists it, and ``retry`` (the downloads working again) plans
    it again and sends the title, once."""
    app = _app(tmp_path, attempts=2)
    service = ServeLoop(app)
    async with sandbox_services(app.settings) as sb, app.consonance() as api:
        with SandboxControl(sb.api_url) as control:
            detector = ChangeDetector(api, app.store)
            async with DeliveryRunner(app) as runner:
                await _poll(service, detector, runner)  # the baseline
                work_id, isbn = await _printable_work(api)
                await asyncio.to_thread(control.move_stage, work_id, STAGE)
                await asyncio.to_thread(control.fail_downloads, 2)  # one per attempt
                assert await _poll(service, detector, runner) == [work_id]
                await _until(
                    lambda: "ERROR" in _event_workflows(app).values(), "the event's failure"
                )
                assert await _poll(service, detector, runner) == []  # never seen again
            [(wid, state)] = _event_workflows(app).items()
            assert state == "ERROR"
            client = EngineClient(app.engine_settings())
            try:
                reason = client.error(wid) or ""
            finally:
                client.close()
            assert "download" in reason and "HTTP 500" in reason, reason
            assert _sent(app, isbn) == set()
            alerts = app.store.list_alerts(kind="flow_event_failed")
            assert len(alerts) == 1 and wid in alerts[0].message, alerts

            status = await _cli(app, "status")
            assert "flow events" in status and wid in status and FLOW in status, status
            assert "failed 1" in status, status

            retried = await _cli(app, "retry", wid, "--by", "alice")
    sent = _sent(app, isbn)
    assert f"done {wid}: {len(sent)} files sent" in retried, retried
    assert {p.rsplit("/", 1)[1] for p in sent} >= {f"{isbn}_interior.pdf", f"{isbn}_cover.pdf"}
    rows = [r for r in app.store.list_deliveries(flow=FLOW) if r.isbn == isbn]
    assert len(rows) == len({r.remote_path for r in rows}), "a file was sent twice"
    assert set(_event_workflows(app).values()) == {"SUCCESS"}
    assert len(app.store.list_alerts(kind="flow_event_failed")) == 1


class _SaveFailsOnce(ChangeDetector):
    """A detector whose first save of a poll fails, as when the process dies after the poll's
    events were handed to the engine and before its snapshots were saved."""

    saves_failed = 0

    async def commit(self, pending: PendingPoll) -> None:
        if not self.saves_failed:
            self.saves_failed += 1
            raise ConsonanceSftpError("the snapshots could not be saved", retryable=True)
        await super().commit(pending)


async def test_a_poll_not_saved_fires_the_same_work_again_not_new_work(tmp_path: Path) -> None:
    """The poll's event workflow is enqueued, then saving its snapshots fails: the next poll
    reads the change again and fires it under the same workflow ID, so the title is planned
    and sent once."""
    app = _app(tmp_path, attempts=3)
    service = ServeLoop(app)
    async with sandbox_services(app.settings) as sb, app.consonance() as api:
        with SandboxControl(sb.api_url) as control:
            detector = _SaveFailsOnce(api, app.store)
            async with DeliveryRunner(app) as runner:
                detector.saves_failed = 1  # the baseline saves
                assert await _poll(service, detector, runner) == []
                detector.saves_failed = 0
                work_id, isbn = await _printable_work(api)
                await asyncio.to_thread(control.move_stage, work_id, STAGE)
                with pytest.raises(ConsonanceSftpError, match="could not be saved"):
                    await _poll(service, detector, runner)
                first = set(await asyncio.to_thread(_event_workflows, app))
                assert len(first) == 1, first
                await asyncio.sleep(1.5)  # the first plan runs meanwhile
                assert await _poll(service, detector, runner) == [work_id]  # seen again
                assert await _poll(service, detector, runner) == []  # saved now
                await _until(lambda: len(_sent(app, isbn)) >= 2, f"{isbn} sent to the printer")
                await _until(
                    lambda: set(_event_workflows(app).values()) == {"SUCCESS"}, "the plans' end"
                )
                await asyncio.sleep(2)  # time for a second package, if one was enqueued
                await _until(
                    lambda: set(_statuses(app, "dlv-").values()) <= {"SUCCESS"},
                    "the deliveries' end",
                )
    assert set(_event_workflows(app)) == first, "the change fired new work the second time"
    rows = [r for r in app.store.list_deliveries(flow=FLOW) if r.isbn == isbn]
    assert rows
    assert len(rows) == len({r.remote_path for r in rows}), "a file was sent twice"
