"""Cron schedules stored in the DBOS system database, so each tick runs once across processes,
and the durable workflow each flow's tick runs.

DBOS gives each tick the workflow ID ``sched-<name>-<tick time>``; a second process that fires
the same tick finds the ID taken and enqueues nothing, so the tick runs once however many
executors run the schedule thread. ``ensure_schedule`` is idempotent, so every process can
declare the schedules it knows about at start-up.

A flow's tick is the workflow ``consonance.flow_tick``: one checkpointed step that hands the
flow's name and the tick time to the *flow runner* the application bound in this process
(``bind_flow_runner``). A process that dies mid-tick leaves the workflow PENDING; it is
recovered like a delivery (same executor restarted, or takeover) and the step runs again. The
runner must therefore be idempotent for a given tick: it plans with the tick time as "now", so
the same catalogue gives the same packages, whose delivery workflow IDs attach to the deliveries
already enqueued instead of sending again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from dbos import DBOS
from dbos._error import DBOSException

from consonance_sftp.errors import EngineError
from consonance_sftp.logs import get_logger, log_context

from .delivery import MAX_RECOVERY_ATTEMPTS, step_options
from .settings import RetryPolicy

log = get_logger(__name__)

FLOW_TICK_WORKFLOW = "consonance.flow_tick"
FLOW_SCHEDULE_PREFIX = "flow:"

FlowRunner = Callable[[str, datetime], Coroutine[Any, Any, dict[str, Any]]]
"""(flow name, tick time) -> a JSON-able summary of what the tick did."""


@dataclass(frozen=True, slots=True)
class FlowSchedule:
    """When a flow ticks: a cron expression (five fields, or six with seconds first) read in
    an IANA time zone."""

    cron: str
    timezone: str = "UTC"

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment`` (aware in, aware out), as DBOS reads it."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        tick: datetime = croniter(self.cron, local, second_at_beginning=True).get_next(datetime)
        return tick


def ensure_schedule(
    name: str,
    workflow: Any,
    cron: str,
    *,
    timezone: str | None = None,
    context: Any = None,
    queue_name: str | None = None,
    backfill: bool = False,
) -> bool:
    """Create the schedule unless one with this name already has this definition; a changed
    definition replaces it. Returns True if it was created or replaced.

    ``backfill``: on start-up, run the ticks missed while no process was running (DBOS's
    ``automatic_backfill``); by default missed ticks are skipped and the next one runs.
    """
    existing = DBOS.get_schedule(name)
    if existing is not None:
        same = (
            existing["schedule"] == cron
            and existing.get("cron_timezone") == timezone
            and bool(existing.get("automatic_backfill")) == backfill
            and existing.get("queue_name") == queue_name
            and existing["workflow_name"] == getattr(workflow, "dbos_function_name", None)
            and existing.get("context") == context
        )
        if same:
            return False
        DBOS.delete_schedule(name)
    try:
        DBOS.create_schedule(
            schedule_name=name,
            workflow_fn=workflow,
            schedule=cron,
            context=context,
            cron_timezone=timezone,
            queue_name=queue_name,
            automatic_backfill=backfill,
        )
    except DBOSException as exc:
        if "already exists" in str(exc):
            # Another process created it between our read and our write: same outcome.
            return False
        raise EngineError(f"schedule {name!r} ({cron!r}) could not be created: {exc}") from exc
    log.info("schedule created", extra={"schedule": name, "cron": cron})
    return True


# --- flow ticks ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Bound:
    runner: FlowRunner
    loop: asyncio.AbstractEventLoop
    retry: RetryPolicy


_bound: _Bound | None = None


def bind_flow_runner(
    runner: FlowRunner | None,
    loop: asyncio.AbstractEventLoop | None = None,
    retry: RetryPolicy | None = None,
) -> None:
    """Make ``runner`` (running on ``loop``, the application's event loop) what flow ticks call
    in this process; ``None`` unbinds."""
    global _bound
    if runner is None:
        _bound = None
        return
    if loop is None:
        raise EngineError("a flow runner needs the event loop it runs on")
    _bound = _Bound(runner, loop, retry or RetryPolicy(max_attempts=1))


async def _run_flow(flow: str, tick: datetime) -> dict[str, Any]:
    bound = _bound
    if bound is None:
        raise EngineError(
            f"flow {flow!r} ticked in a process that cannot run flows",
            hint="Run every executor through 'consonance-sftp serve' or 'worker'.",
        )
    work = bound.runner(flow, tick)
    if asyncio.get_running_loop() is bound.loop:
        return await work
    # The flow runs on the application's loop (its clients and runner live there), in a fresh
    # context: DBOS's workflow/step context must not follow it, or the deliveries it enqueues
    # would be taken for steps of this workflow.
    future: concurrent.futures.Future[dict[str, Any]] = contextvars.Context().run(
        asyncio.run_coroutine_threadsafe, work, bound.loop
    )
    return await asyncio.wrap_future(future)


@DBOS.workflow(name=FLOW_TICK_WORKFLOW, max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
async def flow_tick(scheduled_at: datetime, context: Any) -> dict[str, Any]:
    """One tick of one flow's schedule: run the flow as of ``scheduled_at``."""
    flow = str(context["flow"])
    retry = _bound.retry if _bound is not None else None
    with log_context(workflow=DBOS.workflow_id or "", flow=flow):
        summary: dict[str, Any] = await DBOS.run_step_async(
            step_options(f"run:{flow}", retry), _run_flow, flow, scheduled_at
        )
    return summary


def flow_schedule_name(flow: str) -> str:
    return f"{FLOW_SCHEDULE_PREFIX}{flow}"


def flow_queue_name(flow: str) -> str:
    """The queue of a flow's ticks (one tick of a flow at a time, across processes)."""
    return f"flow-{flow}"


def ensure_flow_schedules(schedules: Mapping[str, FlowSchedule]) -> list[str]:
    """Declare one DBOS schedule per flow (idempotent; its ticks go to the flow's queue, which
    must be registered) and delete the schedules of flows that are no longer scheduled, so a
    removed flow stops ticking. Returns the names changed."""
    changed = []
    for flow, when in schedules.items():
        name = flow_schedule_name(flow)
        if ensure_schedule(
            name,
            flow_tick,
            when.cron,
            timezone=when.timezone,
            context={"flow": flow},
            queue_name=flow_queue_name(flow),
        ):
            changed.append(name)
    wanted = {flow_schedule_name(f) for f in schedules}
    for existing in DBOS.list_schedules(schedule_name_prefix=FLOW_SCHEDULE_PREFIX):
        if existing["schedule_name"] not in wanted:
            DBOS.delete_schedule(existing["schedule_name"])
            changed.append(existing["schedule_name"])
            log.info("schedule removed", extra={"schedule": existing["schedule_name"]})
    return changed
