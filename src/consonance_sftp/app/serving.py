"""The serve/worker loop, and everything a poll or a tick does.

``ServeLoop(app).serve`` runs, beside the engine, until it is told to stop:

* **the poller**: every ``poll_interval_s`` one poll of Consonance (``flows.changes``; a full
  reconcile on its slower cycle). ``poll_once`` hands each event to the flows whose ``when``
  it fires (``flows.triggers``) and enqueues each (event, flow) as one durable
  ``consonance.flow_event`` workflow of the engine **before** the poll's snapshots advance; the
  engine's step then calls ``app.dispatch.run_event``, which plans the flow and submits its
  packages. The poller's health is kept by ``app.poller_health``.
* **the schedules**: each flow's cron (intake flows: every ``poll_interval``) is declared to
  the engine (``flow_schedules``); each tick runs ``run_tick``: an intake flow looks into its
  partners' inboxes (``app.intake``), an outbound flow runs (``app.dispatch.run_flow``).
* **the release of held deliveries** (``releaser``), **alerts sent** to the e-mail and
  webhook targets (``app.notify``), **restore drills** of archive flows run when due and
  overdue ones alerted even when no run of the flow happens (``app.archive_drill.drill_loop``),
  and **a reloaded config** put in force (``switch_config``;
  the file is watched by ``app.reload``).

``serve(triggers=False)`` is a scale-out ``worker``: it runs queued work and polls nothing.
The demo narrates the same steps one at a time: ``change_detector`` and ``fired_flows``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from consonance_sftp.app.archive_drill import drill_loop
from consonance_sftp.app.dispatch import run_flow, trigger_of
from consonance_sftp.app.intake import poll_inbox
from consonance_sftp.app.notify import notifier_loop
from consonance_sftp.app.poller_health import record_poll_failure, record_poll_success
from consonance_sftp.app.runner import Controls, DeliveryRunner
from consonance_sftp.app.sales_handler import check_calendar, deliver_imports
from consonance_sftp.engine import FlowSchedule
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.flows import registry, triggers
from consonance_sftp.flows.changes import ChangeDetector, PollReport, TitleStates, event_to_json
from consonance_sftp.logs import get_logger, setup_logging
from consonance_sftp.models import ChangeEvent
from consonance_sftp.ports.consonance import ConsonanceAPI

if TYPE_CHECKING:
    from consonance_sftp.app import App
    from consonance_sftp.app.reload import ConfigChange
    from consonance_sftp.config import Settings

log = get_logger(__name__)

CatalogueProgress = Callable[[str, int, int, bool], None]
"""(poll mode, works read so far, products read so far, done), during a poll."""
PROGRESS_LOG_S = 10.0
"""A poll still reading logs how far it has got this often (the first reads the catalogue)."""


# --- what a poll does ----------------------------------------------------------------------


def change_detector(
    app: App,
    api: ConsonanceAPI,
    *,
    reconcile_every: timedelta = timedelta(hours=24),
    progress: CatalogueProgress | None = None,
) -> ChangeDetector:
    """What reads Consonance's changes for this app: its snapshots are in the app's store."""
    return ChangeDetector(api, app.store, reconcile_every=reconcile_every, progress=progress)


def _fired(
    app: App,
    events: Sequence[ChangeEvent],
    states: TitleStates | None = None,
    today: date | None = None,
) -> Iterator[tuple[str, ChangeEvent]]:
    state_of = states.state if states is not None else None
    for name, flow, event in triggers.fired(app.settings.flows, events, state_of, today):
        if not registry.can_plan(flow):
            log.warning("flow %s (%s) matched an event but cannot run yet", name, flow.kind)
            continue
        yield name, event


def fired_flows(app: App, events: Sequence[ChangeEvent]) -> list[tuple[str, ChangeEvent]]:
    """Each (flow name, event) where the event fires an enabled flow this release can run,
    judged on the event alone (a ``when`` of one condition; ``poll_once`` also reads the
    titles' state when a flow's ``when`` has more)."""
    return list(_fired(app, events))


async def _enqueue_event(runner: DeliveryRunner, flow: str, event: dict[str, Any]) -> str:
    """Enqueue one (flow, event) workflow on this process's engine, or through the DBOS
    client when another process is the executor."""
    if runner.engine is not None:
        return await runner.engine.enqueue_flow_event(flow, event)
    assert runner.client is not None
    return await asyncio.to_thread(runner.client.enqueue_flow_event, flow, event)


class ServeLoop:
    """The serve/worker loop of one app: its polls remember when the publication windows
    were last checked (once a day, and when a publication date moved)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._due_checked: date | None = None  # the day publication windows were last checked

    async def on_events(
        self,
        events: Sequence[ChangeEvent],
        runner: DeliveryRunner,
        states: TitleStates | None = None,
        today: date | None = None,
    ) -> list[str]:
        """Hand each event to every enabled flow whose ``when`` it fires (every other
        condition holding on the title's ``states``): each (event, flow) becomes one durable
        workflow of the engine, which plans the flow and enqueues its packages
        (``app.dispatch.run_event``). Returns the workflow IDs. Errors propagate: the poll then
        saves nothing, and the next one sees the same events again (an event enqueued twice is
        one workflow)."""
        enqueued = []
        for name, event in _fired(self.app, events, states, today):
            wid = await _enqueue_event(runner, name, event_to_json(event))
            log.info("flow %s fired by %s: its plan is queued as %s", name, trigger_of(event), wid)
            enqueued.append(wid)
        return enqueued

    async def poll_once(
        self, detector: ChangeDetector, runner: DeliveryRunner, api: ConsonanceAPI | None = None
    ) -> PollReport:
        """One poll: Consonance's changes, plus (once a day, and when a publication date
        changed) the titles that came within a flow's ``days_before_publication``.

        The work the events fire is enqueued (durably, in the engine) before the poll's
        snapshots are saved: a poll that fails in between is read again, never half-lost.
        ``api`` is not used (each event's plan, in the engine, opens its own client)."""
        settings = self.app.settings
        store = self.app.store
        pending = await detector.read()
        report = pending.report
        today = datetime.now(UTC).date()
        windows = triggers.publication_windows(settings.flows.values())
        check_due = triggers.windows_due(windows, self._due_checked, today, report.events)
        if not report.events and not check_due:
            await detector.commit(pending)
            return report
        # The titles' state (every snapshot, this poll's included) is read only when a
        # condition needs it: a window to check, or a flow with more than one condition.
        combined = triggers.needs_title_state(settings.flows.values())
        if not (check_due or combined):
            if report.mode != "baseline":
                await detector.hand_on(pending)
                await self.on_events(report.events, runner)
            await detector.commit(pending)
            return report
        states = await asyncio.to_thread(TitleStates, store, pending)
        due: list[tuple[int, ChangeEvent]] = []
        if check_due:
            due = await asyncio.to_thread(
                triggers.newly_due,
                windows,
                lambda days: states.due(days, today),
                store.get_publication_due,
            )
        if report.mode != "baseline":  # the catalogue as it already is fires nothing
            await detector.hand_on(pending)
            stamped = [replace(e, detected_at=report.started_at) for _days, e in due]
            await self.on_events([*report.events, *stamped], runner, states, today)
        # Remembered only once their work is enqueued (or, on a baseline, passed over).
        for days, event in due:
            await asyncio.to_thread(
                store.set_publication_due, days, event.product_id or 0, event.new or ""
            )
        if check_due:
            self._due_checked = today
        await detector.commit(pending)
        return report

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
        app = self.app
        # Always this process's own executor: on PostgreSQL it joins the workers; on SQLite
        # a second 'serve' on the same file is refused, naming it, and a one-shot command
        # holding the file ('run', 'retry') is waited for (DeliveryRunner).
        async with DeliveryRunner(app, executor=True, executor_id=executor_id) as runner:
            engine = runner.engine_or_fail()
            # Deliveries enqueued by other processes (``run``, ``resend`` through the DBOS
            # client) are dequeued only from queues this executor has registered.
            for cap in sorted({p.max_connections for p in app.settings.partners.values()}):
                await asyncio.to_thread(engine.ensure_delivery_queue, cap)
            tasks = []
            wanted = flow_schedules(app, schedule_overrides)
            # Event workflows wait on their flow's queue (enqueued by a poll, or left queued
            # by a process that stopped): every executor dequeues them, 'serve' or 'worker'.
            await asyncio.to_thread(engine.ensure_flow_queues, event_flows(app))
            if not triggers:
                # A worker runs ticks too (one at a time per flow): it dequeues them from the
                # flows' queues; 'serve' declares the schedules that fill them.
                await asyncio.to_thread(engine.ensure_flow_queues, wanted)
            else:
                for name, flow in app.settings.flows.items():
                    if flow.enabled and flow.schedule is not None and name not in wanted:
                        log.warning(
                            "flow %s is scheduled but its kind (%s) cannot run in this "
                            "release; its schedule is not started",
                            name,
                            flow.kind,
                        )
                await asyncio.to_thread(engine.ensure_flow_schedules, wanted)
                tasks = [
                    asyncio.create_task(
                        poller(self, stop, runner, poll_interval_s, reconcile_every, poll_progress)
                    ),
                    asyncio.create_task(releaser(stop, runner)),
                    # Alerts to e-mail and webhooks: only 'serve' sends (never a worker).
                    asyncio.create_task(notifier_loop(stop, app)),
                    # Restore drills due, and overdue ones alerted, with or without a run.
                    asyncio.create_task(drill_loop(stop, app)),
                ]
            if app.config_path is not None:
                from consonance_sftp.app.reload import ConfigWatcher

                async def apply(settings: Settings, change: ConfigChange) -> None:
                    await switch_config(
                        app, runner, settings, change, schedule_overrides, triggers=triggers
                    )

                watcher = ConfigWatcher(
                    app.config_path, lambda: app.settings, apply, interval_s=watch_config_s
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


# --- what a tick does ----------------------------------------------------------------------


def flow_schedules(app: App, overrides: dict[str, str] | None = None) -> dict[str, FlowSchedule]:
    """Each enabled flow's schedule as the engine declares it: its cron (intake flows:
    every ``poll_interval``), or a test's override (a six-field cron with seconds). Kinds
    this release cannot run are left out."""
    wanted: dict[str, FlowSchedule] = {}
    for name, flow in app.settings.flows.items():
        when = triggers.schedule_of(flow, (overrides or {}).get(name))
        if when is not None:
            wanted[name] = FlowSchedule(*when)
    return wanted


def event_flows(app: App) -> list[str]:
    """The enabled flows Consonance events fire (kinds this release can run): each one's
    queue takes its event workflows."""
    return triggers.fires_on_events(dict(app.settings.flows))


async def run_tick(
    app: App, name: str, tick: datetime, *, runner: DeliveryRunner
) -> dict[str, Any]:
    """What one tick of a flow's schedule does (the engine's flow runner, bound by
    ``App.bind_work``): an intake flow looks into its partners' inboxes; an outbound flow
    runs as of the tick time, so a tick re-run after a crash plans the same packages and
    attaches to the same deliveries.

    Errors propagate: the tick's workflow then ends failed with the reason (``status``
    shows it, ``retry`` runs it again); the next tick comes regardless."""
    summary: dict[str, Any] = {"flow": name, "tick": tick.isoformat()}
    done = await _tick(app, name, tick, summary, runner)
    log.info(
        "flow %s: tick %s: %s",
        name,
        summary["tick"],
        ", ".join(f"{k} {v}" for k, v in done.items() if k not in summary) or "nothing to do",
    )
    return done


async def _tick(
    app: App, name: str, tick: datetime, summary: dict[str, Any], runner: DeliveryRunner
) -> dict[str, Any]:
    flow = app.settings.flows.get(name)
    if flow is None or not flow.enabled:
        return {**summary, "skipped": "no longer an enabled flow in the config"}
    await asyncio.to_thread(_record_tick, app, name, summary)
    if await asyncio.to_thread(Controls(app).is_paused, "flow", name):
        return {**summary, "skipped": f"flow {name!r} is paused"}
    trigger = f"schedule:{tick.isoformat()}"
    intake = registry.intake_flow(flow)
    if intake is not None:
        report = await poll_inbox(app, runner, name, intake, trigger=trigger)
        done = {**summary, "inbox": report.summary()}
        # A sales_in flow's expected-report calendar is checked at each of its ticks.
        if missing := await asyncio.to_thread(check_calendar, app, name, tick):
            done["missing_reports"] = missing
        # ...and its import files go to its finance partner (deliver_to), each once.
        if sent := await deliver_imports(app, runner, name):
            done["import_deliveries"] = sent
        return done
    outcome = await run_flow(app, name, trigger=trigger, runner=runner, wait=True, now=tick)
    return {
        **summary,
        "deliveries": sorted(outcome.results),
        "held": [h.reason for h in outcome.held],
        "failed": {w: r["error"] for w, r in outcome.results.items() if "error" in r},
        # an ONIX feed blocked by an invalid product, or products skipped (issue 18)
        **({"incomplete": outcome.planned.incomplete} if outcome.planned.incomplete else {}),
    }


def _record_tick(app: App, name: str, summary: dict[str, Any]) -> None:
    """One ``flow.tick`` audit event per tick, even when the tick's step runs again (a
    retry, or the recovery of a tick a crash interrupted)."""
    recent = app.store.list_audit(action="flow.tick", subject=f"flow:{name}", limit=100)
    if any(e.details.get("tick") == summary["tick"] for e in recent):
        log.info(
            "flow %s: tick %s runs again (its step was retried or recovered)",
            name,
            summary["tick"],
        )
        return
    app.store.append_audit("schedule", "flow.tick", f"flow:{name}", summary)


# --- the loops beside the engine -----------------------------------------------------------


def _logging_progress(show: CatalogueProgress | None) -> CatalogueProgress:
    """``show`` (a terminal's display), plus an INFO line every ``PROGRESS_LOG_S`` while a
    poll reads, so a log shows a long catalogue read is moving."""
    last = [time.monotonic()]

    def progress(mode: str, works: int, products: int, done: bool) -> None:
        now = time.monotonic()
        if done:
            last[0] = now
        elif now - last[0] >= PROGRESS_LOG_S:
            last[0] = now
            log.info(
                "Consonance %s poll: reading, %d works and %d products so far",
                mode,
                works,
                products,
            )
        if show is not None:
            show(mode, works, products, done)

    return progress


async def poller(
    loop: ServeLoop,
    stop: asyncio.Event,
    runner: DeliveryRunner,
    interval: float,
    reconcile_every: timedelta,
    progress: CatalogueProgress | None = None,
) -> None:
    """Poll Consonance every ``interval`` until ``stop``; record each poll's outcome."""
    app = loop.app
    while not stop.is_set():
        # A reloaded config with another [consonance] section gets a new client.
        connection = app.settings.consonance
        async with app.consonance() as api:
            shown = _logging_progress(progress)
            detector = change_detector(app, api, reconcile_every=reconcile_every, progress=shown)
            while not stop.is_set() and app.settings.consonance == connection:
                await _poll_and_record(loop, detector, runner, api)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)


async def _poll_and_record(
    loop: ServeLoop, detector: ChangeDetector, runner: DeliveryRunner, api: ConsonanceAPI
) -> None:
    """One poll, its outcome kept as the poller's health. Nothing escapes: a long-running
    loop, one bad poll (or a failed write of its health) must not stop the service's triggers."""
    store = loop.app.store
    try:
        try:
            report = await loop.poll_once(detector, runner, api)
        except ConsonanceSftpError as exc:
            log.warning("Consonance poll failed: %s", exc)
            await asyncio.to_thread(record_poll_failure, store, exc)
        except Exception as exc:
            log.exception("Consonance poll failed unexpectedly")
            unexpected = ConsonanceSftpError(f"unexpected error: {exc!r}", retryable=True)
            await asyncio.to_thread(record_poll_failure, store, unexpected)
        else:
            await asyncio.to_thread(record_poll_success, store, report)
    except Exception:
        log.exception("recording the Consonance poller's health failed")


async def releaser(stop: asyncio.Event, runner: DeliveryRunner) -> None:
    """Every second: enqueue the held deliveries that may go now (``release_held``)."""
    while not stop.is_set():
        try:
            await runner.release_held()
        except ConsonanceSftpError as exc:
            log.warning("releasing held deliveries failed: %s", exc)
        except Exception:
            log.exception("releasing held deliveries failed unexpectedly")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def switch_config(
    app: App,
    runner: DeliveryRunner,
    settings: Settings,
    change: ConfigChange,
    schedule_overrides: dict[str, str] | None,
    *,
    triggers: bool,
) -> None:
    """Put a validated new config in force in this running service: the app reads it from
    now on (changed partners reconnect with it), the queues of new connection caps (and of the
    flows events fire) are registered, the schedules declared again; the poller reconnects by
    itself when ``[consonance]`` changed."""
    old_schedules = flow_schedules(app, schedule_overrides)
    app.reload(settings, change.partners)
    engine = runner.engine_or_fail()
    for cap in sorted({p.max_connections for p in settings.partners.values()}):
        await asyncio.to_thread(engine.ensure_delivery_queue, cap)
    await asyncio.to_thread(engine.ensure_flow_queues, event_flows(app))
    wanted = flow_schedules(app, schedule_overrides)
    if wanted != old_schedules:
        # Only 'serve' declares schedules; a worker registers the flows' tick queues.
        declare = engine.ensure_flow_schedules if triggers else engine.ensure_flow_queues
        await asyncio.to_thread(declare, wanted)
    if "logging" in change.sections:
        setup_logging(settings.logging.level, json_lines=settings.logging.json_lines)
