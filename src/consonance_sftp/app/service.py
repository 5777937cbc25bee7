"""The long-running service and manual runs: Consonance changes and schedules -> flows -> engine.

``Service`` joins the pieces the composition root builds:

* **dispatch**: ``flows.registry`` says per flow kind how it plans (its ``plan``, given a
  ``flows.base.FlowContext`` of ports this module builds) and what runs after delivery; a
  planned run's packages become engine deliveries here.
* **triggers** (the rules: ``flows.triggers``): the poller (incremental Consonance change
  detection on an interval; the detector runs a full reconcile on its slower cycle) hands each
  event to the flows whose ``when`` matches, each (event, flow) enqueued as a durable engine
  workflow before the poll's snapshots are saved (``run_event`` plans it); cron schedules
  (``flow.schedule``) tick the flows they belong to.
* **deliveries**: every package becomes one engine delivery (``app.dispatch``).
  Deliveries to a paused partner, or of a paused flow, are held (recorded in the audit trail)
  and released when the pause is lifted.
* **operator controls**: pause/resume of partners and flows live in our own store (a named
  value per control), each change is an audit event with who and why (``app.runner``).

Only one DBOS executor may run per SQLite file. ``DeliveryRunner`` therefore either runs an
in-process engine (nothing else executes on that file) or, when ``serve`` already holds the
file, enqueues through the DBOS client and lets ``serve`` do the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from consonance_sftp.app.delivery import ProgressSink
from consonance_sftp.app.dispatch import folder_of, requests, withdrawal_requests
from consonance_sftp.app.runner import (
    Controls,
    DeliveryRunner,
    Enqueued,
    Held,
    Pause,
    ResendTransport,
    executor_running,
    flow_lock,
    mark_resend,
    with_resends,
)
from consonance_sftp.config import FlowConfig, Settings
from consonance_sftp.engine import FlowSchedule
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.flows import registry, triggers
from consonance_sftp.flows.base import FlowContext, FlowNotAvailable, PlannedRun
from consonance_sftp.flows.changes import (
    ChangeDetector,
    PollReport,
    TitleStates,
    event_from_json,
    event_to_json,
)
from consonance_sftp.formats.wording import counted
from consonance_sftp.logs import get_logger
from consonance_sftp.models import ChangeEvent
from consonance_sftp.ports.consonance import ConsonanceAPI
from consonance_sftp.ports.delivery import DeliveryRequest

if TYPE_CHECKING:
    from consonance_sftp.app import App
    from consonance_sftp.app.intake import InboxReport
    from consonance_sftp.app.reload import ConfigChange
    from consonance_sftp.app.serving import CatalogueProgress

log = get_logger(__name__)

SCOPES = ("partner", "flow")


# --- the service ---------------------------------------------------------------------------


@dataclass(slots=True)
class RunOutcome:
    """What ``run_flow`` did: the plan, and per package the workflow or why it was held."""

    planned: PlannedRun
    enqueued: list[Enqueued] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the log: what was planned, sent, held, failed, skipped."""
        failed = sum(1 for r in self.results.values() if "error" in r)
        done = sum(1 for r in self.results.values() if "sent" in r)
        parts = [
            f"{counted(len(self.planned.outbounds), 'package')} planned",
            f"{len(self.enqueued)} enqueued",
        ]
        if self.results:
            parts.append(f"{done} delivered, {failed} failed")
        if self.held:
            parts.append(f"{len(self.held)} held ({self.held[0].reason})")
        if self.planned.skipped:
            first = self.planned.skipped[0]
            parts.append(f"{len(self.planned.skipped)} skipped ({first.what}: {first.reason})")
        return ", ".join(parts)


class Service:
    """Flows, triggers and deliveries of one config."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.controls = Controls(app)
        self._due_checked: date | None = None  # the day publication windows were last checked

    def is_intake(self, name: str) -> bool:
        return registry.is_intake(self.flow(name))

    def flow(self, name: str) -> FlowConfig:
        return self.app.settings.flow(name)  # a typo is answered with the closest name

    async def plan(
        self,
        name: str,
        *,
        isbns: Sequence[str] = (),
        event: ChangeEvent | None = None,
        api: ConsonanceAPI | None = None,
        force_full: bool = False,
        test: bool = False,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> PlannedRun:
        """What a run of the flow would send. ``now`` (a schedule's tick time) makes the plan
        repeatable: message headers and file names that carry a time use it."""
        flow = self.flow(name)
        plan = registry.plan_for(name, flow)  # a kind this release cannot run says so first
        if not flow.enabled:
            raise ConsonanceSftpError(
                f"flow {name!r} is disabled in the config",
                hint=f"Set enabled = true under [flows.{name}].",
            )
        now = now or datetime.now(UTC)
        if api is not None:
            return await plan(
                self._context(api, now, force_full, test, dry_run), name, flow, isbns, event
            )
        async with self.app.consonance() as client:
            ctx = self._context(client, now, force_full, test, dry_run)
            return await plan(ctx, name, flow, isbns, event)

    def _context(
        self, api: ConsonanceAPI, now: datetime, force_full: bool, test: bool, dry_run: bool
    ) -> FlowContext:
        """The ports a flow plans with: this app's store, state folder and partners."""
        app = self.app
        return FlowContext(
            api=api,
            store=app.store,
            state_dir=app.state_dir,
            folder=lambda flow, partner: folder_of(app, flow, partner),
            now=now,
            force_full=force_full,
            test=test,
            dry_run=dry_run,
        )

    def requests(self, planned: PlannedRun, *, trigger: str) -> list[DeliveryRequest]:
        return requests(self.app, planned.flow, planned.outbounds, trigger=trigger)

    async def run_flow(
        self,
        name: str,
        *,
        dry_run: bool = False,
        isbns: Sequence[str] = (),
        trigger: str | None = None,
        runner: DeliveryRunner | None = None,
        wait: bool = True,
        progress: ProgressSink | None = None,
        force_full: bool = False,
        test: bool = False,
        now: datetime | None = None,
    ) -> RunOutcome:
        """One manual (or scheduled) run of a flow. ``dry_run`` plans and sends nothing.

        A run that sends holds the flow's run lock (``flow_lock``) from its plan to its
        recorded outcome: another run of the same flow, manual or scheduled, in any process,
        waits for it and then plans from what it left (an ONIX baseline and MessageNumber)."""
        # A dry run sends nothing, so it need not wait for a run that does.
        lock = contextlib.nullcontext() if dry_run else flow_lock(self.app, name)
        async with lock:
            planned = await self.plan(
                name, isbns=isbns, force_full=force_full, test=test, dry_run=dry_run, now=now
            )
            outcome = RunOutcome(planned)
            if dry_run:
                return outcome
            if runner is not None:
                await self._submit_all(runner, outcome, trigger=trigger or "manual", wait=wait)
            else:
                async with DeliveryRunner(self.app, progress=progress, quiet=True) as own:
                    trigger = trigger or f"manual:{_user()}"
                    await self._submit_all(own, outcome, trigger=trigger, wait=wait)
        log.info("run of flow %s (%s): %s", name, trigger or "manual", outcome.summary())
        return outcome

    async def poll_inbox_now(
        self, name: str, *, wait: bool = True, progress: ProgressSink | None = None
    ) -> tuple[InboxReport, dict[str, dict[str, Any]]]:
        """``run`` of an intake flow: look into its partners' inboxes now and take in the
        finished files (through ``serve`` when it holds the engine); with ``wait``, until each
        file is stored. Returns the poll's report and each intake's outcome."""
        from consonance_sftp.app.intake import poll_inbox

        config = self.flow(name)
        flow = registry.intake_flow(config)
        if flow is None:
            raise ConsonanceSftpError(f"flow {name!r} ({config.kind}) has no inbox to poll")
        if not flow.enabled:
            raise ConsonanceSftpError(
                f"flow {name!r} is disabled in the config",
                hint=f"Set enabled = true under [flows.{name}].",
            )
        results: dict[str, dict[str, Any]] = {}
        async with DeliveryRunner(self.app, progress=progress, quiet=True) as runner:
            report = await poll_inbox(self.app, runner, name, flow, trigger=f"manual:{_user()}")
            if wait:
                for taken in report.taken:
                    if taken.workflow_id:
                        results[taken.workflow_id] = await runner.wait(taken.workflow_id)
        return report, results

    async def _submit_all(
        self,
        runner: DeliveryRunner,
        outcome: RunOutcome,
        *,
        trigger: str,
        wait: bool,
    ) -> None:
        planned = outcome.planned
        # Deliveries, then a withdrawn title's files off the partners: held alike. A flow's
        # after-delivery hook (an ONIX baseline) runs as the engine's ledger records each file
        # delivered (``app.runner.FlowLedger``), whether or not anyone waits here.
        requests = [
            *self.requests(planned, trigger=trigger),
            *withdrawal_requests(planned, trigger=trigger),
        ]
        for request in requests:
            submitted = await runner.submit(request)
            if isinstance(submitted, Held):
                outcome.held.append(submitted)
            else:
                outcome.enqueued.append(submitted)
        if wait:
            for e in outcome.enqueued:
                outcome.results[e.workflow_id] = await runner.wait(e.workflow_id)

    async def on_events(
        self,
        events: Sequence[ChangeEvent],
        runner: DeliveryRunner,
        states: TitleStates | None = None,
        today: date | None = None,
    ) -> list[str]:
        """Hand each event to every enabled flow whose ``when`` it fires (every other condition
        holding on the title's ``states``): each (event, flow) becomes one durable workflow of
        the engine, which plans the flow and enqueues its packages (``run_event``). Returns
        the workflow IDs. Errors propagate: the poll then saves nothing, and the next one sees
        the same events again (an event enqueued twice is one workflow)."""
        enqueued = []
        state_of = states.state if states is not None else None
        flows = self.app.settings.flows
        for name, flow, event in triggers.fired(flows, events, state_of, today):
            if not registry.can_plan(flow):
                log.warning("flow %s (%s) matched an event but cannot run yet", name, flow.kind)
                continue
            wid = await _enqueue_event(runner, name, event_to_json(event))
            log.info("flow %s fired by %s: its plan is queued as %s", name, _trigger_of(event), wid)
            enqueued.append(wid)
        return enqueued

    async def run_event(
        self, name: str, event: dict[str, Any], *, runner: DeliveryRunner
    ) -> dict[str, Any]:
        """What one event workflow does (the engine's event runner): plan the flow for the
        event, as of the time the event was seen (a re-run plans the same packages and
        attaches to the same deliveries), and enqueue its packages.

        Errors propagate: the engine retries the retryable ones, then ends the workflow failed
        with the reason (``status`` shows it, ``retry`` runs it again)."""
        change = event_from_json(event)
        trigger = _trigger_of(change)
        summary: dict[str, Any] = {"flow": name, "trigger": trigger}
        flow = self.app.settings.flows.get(name)
        if flow is None or not flow.enabled:
            return {**summary, "skipped": "no longer an enabled flow in the config"}
        planned = await self.plan(name, event=change, now=change.detected_at)
        outcome = RunOutcome(planned)
        await self._submit_all(runner, outcome, trigger=trigger, wait=False)
        log.info("flow %s fired by %s: %s", name, trigger, outcome.summary())
        return {
            **summary,
            "deliveries": sorted(e.workflow_id for e in outcome.enqueued),
            "held": [h.reason for h in outcome.held],
            "skipped": [f"{s.what}: {s.reason}" for s in planned.skipped],
        }

    async def poll_once(
        self, detector: ChangeDetector, runner: DeliveryRunner, api: ConsonanceAPI | None = None
    ) -> PollReport:
        """One poll: Consonance's changes, plus (once a day, and when a publication date
        changed) the titles that came within a flow's ``days_before_publication``.

        The work the events fire is enqueued (durably, in the engine) before the poll's
        snapshots are saved: a poll that fails in between is read again, never half-lost.
        ``api`` is not used (each event's plan, in the engine, opens its own client)."""
        pending = await detector.read()
        report = pending.report
        today = datetime.now(UTC).date()
        windows = triggers.publication_windows(self.app.settings.flows.values())
        check_due = triggers.windows_due(windows, self._due_checked, today, report.events)
        if not report.events and not check_due:
            await detector.commit(pending)
            return report
        # The titles' state (every snapshot, this poll's included) is read only when a
        # condition needs it: a window to check, or a flow with more than one condition.
        combined = triggers.needs_title_state(self.app.settings.flows.values())
        if not (check_due or combined):
            if report.mode != "baseline":
                await detector.hand_on(pending)
                await self.on_events(report.events, runner)
            await detector.commit(pending)
            return report
        states = await asyncio.to_thread(TitleStates, self.app.store, pending)
        due: list[tuple[int, ChangeEvent]] = []
        if check_due:
            due = await asyncio.to_thread(
                triggers.newly_due,
                windows,
                lambda days: states.due(days, today),
                self.app.store.get_publication_due,
            )
        if report.mode != "baseline":  # the catalogue as it already is fires nothing
            await detector.hand_on(pending)
            stamped = [replace(e, detected_at=report.started_at) for _days, e in due]
            await self.on_events([*report.events, *stamped], runner, states, today)
        # Remembered only once their work is enqueued (or, on a baseline, passed over).
        for days, event in due:
            await asyncio.to_thread(
                self.app.store.set_publication_due, days, event.product_id or 0, event.new or ""
            )
        if check_due:
            self._due_checked = today
        await detector.commit(pending)
        return report

    async def run_tick(
        self, name: str, tick: datetime, *, runner: DeliveryRunner
    ) -> dict[str, Any]:
        """What one tick of a flow's schedule does (the engine's flow runner): an intake flow
        looks into its partners' inboxes; an outbound flow runs as of the tick time, so a tick
        re-run after a crash plans the same packages and attaches to the same deliveries.

        Errors propagate: the tick's workflow then ends failed with the reason (``status``
        shows it, ``retry`` runs it again); the next tick comes regardless."""
        summary: dict[str, Any] = {"flow": name, "tick": tick.isoformat()}
        done = await self._tick(name, tick, summary, runner)
        log.info(
            "flow %s: tick %s: %s",
            name,
            summary["tick"],
            ", ".join(f"{k} {v}" for k, v in done.items() if k not in summary) or "nothing to do",
        )
        return done

    async def _tick(
        self, name: str, tick: datetime, summary: dict[str, Any], runner: DeliveryRunner
    ) -> dict[str, Any]:
        flow = self.app.settings.flows.get(name)
        if flow is None or not flow.enabled:
            return {**summary, "skipped": "no longer an enabled flow in the config"}
        await asyncio.to_thread(self._record_tick, name, summary)
        if await asyncio.to_thread(self.controls.is_paused, "flow", name):
            return {**summary, "skipped": f"flow {name!r} is paused"}
        trigger = f"schedule:{tick.isoformat()}"
        intake = registry.intake_flow(flow)
        if intake is not None:
            from consonance_sftp.app.intake import poll_inbox

            report = await poll_inbox(self.app, runner, name, intake, trigger=trigger)
            return {**summary, "inbox": report.summary()}
        outcome = await self.run_flow(name, trigger=trigger, runner=runner, wait=True, now=tick)
        return {
            **summary,
            "deliveries": sorted(outcome.results),
            "held": [h.reason for h in outcome.held],
            "failed": {w: r["error"] for w, r in outcome.results.items() if "error" in r},
        }

    def _record_tick(self, name: str, summary: dict[str, Any]) -> None:
        """One ``flow.tick`` audit event per tick, even when the tick's step runs again (a
        retry, or the recovery of a tick a crash interrupted)."""
        recent = self.app.store.list_audit(action="flow.tick", subject=f"flow:{name}", limit=100)
        if any(e.details.get("tick") == summary["tick"] for e in recent):
            log.info(
                "flow %s: tick %s runs again (its step was retried or recovered)",
                name,
                summary["tick"],
            )
            return
        self.app.store.append_audit("schedule", "flow.tick", f"flow:{name}", summary)

    def flow_schedules(self, overrides: dict[str, str] | None = None) -> dict[str, FlowSchedule]:
        """Each enabled flow's schedule as the engine declares it: its cron (intake flows:
        every ``poll_interval``), or a test's override (a six-field cron with seconds). Kinds
        this release cannot run are left out."""
        wanted: dict[str, FlowSchedule] = {}
        for name, flow in self.app.settings.flows.items():
            when = triggers.schedule_of(flow, (overrides or {}).get(name))
            if when is not None:
                wanted[name] = FlowSchedule(*when)
        return wanted

    def event_flows(self) -> list[str]:
        """The enabled flows Consonance events fire (kinds this release can run): each one's
        queue takes its event workflows."""
        return triggers.fires_on_events(dict(self.app.settings.flows))

    async def serve(
        self,
        *,
        stop: asyncio.Event,
        poll_interval_s: float = 60.0,
        reconcile_every: timedelta = timedelta(hours=24),
        schedule_overrides: dict[str, str] | None = None,
        on_ready: Callable[[], None] | None = None,
        triggers: bool = True,
        executor_id: str | None = None,
        sighup: asyncio.Event | None = None,
        watch_config_s: float = 5.0,
        poll_progress: CatalogueProgress | None = None,
    ) -> None:
        """Run the engine, the poller, the schedules and the release of held deliveries until
        ``stop`` is set; then stop at a resumable point (the engine's graceful shutdown).
        The config file is reloaded on ``sighup`` and when it changes (looked at every
        ``watch_config_s``; 0: only on SIGHUP), validated first (``app.reload``).
        ``poll_progress`` hears how far each poll has read the catalogue.

        ``triggers=False`` is a scale-out ``worker``: an executor that runs queued deliveries
        and flow ticks (any executor may dequeue a tick) but polls nothing and declares no
        schedules."""
        # Always this process's own executor: on PostgreSQL it joins the workers; on SQLite
        # a second 'serve' on the same file is refused, naming it, and a one-shot command
        # holding the file ('run', 'retry') is waited for (DeliveryRunner).
        from consonance_sftp.app import serving

        async with DeliveryRunner(self.app, executor=True, executor_id=executor_id) as runner:
            assert runner.engine is not None
            # Deliveries enqueued by other processes (``run``, ``resend`` through the DBOS
            # client) are dequeued only from queues this executor has registered.
            for cap in sorted({p.max_connections for p in self.app.settings.partners.values()}):
                await asyncio.to_thread(runner.engine.ensure_delivery_queue, cap)
            tasks = []
            wanted = self.flow_schedules(schedule_overrides)
            # Event workflows wait on their flow's queue (enqueued by a poll, or left queued
            # by a process that stopped): every executor dequeues them, 'serve' or 'worker'.
            await asyncio.to_thread(runner.engine.ensure_flow_queues, self.event_flows())
            if not triggers:
                # A worker runs ticks too (one at a time per flow): it dequeues them from the
                # flows' queues; 'serve' declares the schedules that fill them.
                await asyncio.to_thread(runner.engine.ensure_flow_queues, wanted)
            else:
                for name, flow in self.app.settings.flows.items():
                    if flow.enabled and flow.schedule is not None and name not in wanted:
                        log.warning(
                            "flow %s is scheduled but its kind (%s) cannot run in this "
                            "release; its schedule is not started",
                            name,
                            flow.kind,
                        )
                await asyncio.to_thread(runner.engine.ensure_flow_schedules, wanted)
                tasks = [
                    asyncio.create_task(
                        serving.poller(
                            self, stop, runner, poll_interval_s, reconcile_every, poll_progress
                        )
                    ),
                    asyncio.create_task(serving.releaser(stop, runner)),
                ]
            if self.app.config_path is not None:
                from consonance_sftp.app.reload import ConfigWatcher

                async def apply(settings: Settings, change: ConfigChange) -> None:
                    await serving.switch_config(
                        self, runner, settings, change, schedule_overrides, triggers=triggers
                    )

                watcher = ConfigWatcher(
                    self.app.config_path,
                    lambda: self.app.settings,
                    apply,
                    interval_s=watch_config_s,
                )
                tasks.append(asyncio.create_task(watcher.run(stop, sighup or asyncio.Event())))
            if on_ready is not None:
                on_ready()
            await stop.wait()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t


async def _enqueue_event(runner: DeliveryRunner, flow: str, event: dict[str, Any]) -> str:
    """Enqueue one (flow, event) workflow on this process's engine, or through the DBOS
    client when another process is the executor."""
    if runner.engine is not None:
        return await runner.engine.enqueue_flow_event(flow, event)
    assert runner.client is not None
    return await asyncio.to_thread(runner.client.enqueue_flow_event, flow, event)


def _trigger_of(event: ChangeEvent) -> str:
    """The trigger a delivery records for the event that fired its flow."""
    return f"consonance: work {event.work_id} {event.kind.value} {event.new}"


def _user() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


__all__ = [
    "Controls",
    "DeliveryRunner",
    "Enqueued",
    "FlowContext",
    "FlowNotAvailable",
    "Held",
    "Pause",
    "PlannedRun",
    "ResendTransport",
    "RunOutcome",
    "Service",
    "executor_running",
    "mark_resend",
    "with_resends",
]
