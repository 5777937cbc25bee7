"""The durable workflow each Consonance event runs for each flow it fires.

A poll of Consonance compares what it reads with the snapshots it keeps; once the snapshots
advance, the same change is never seen again. So before they advance, every (event, flow) the
poll fires is enqueued as the workflow ``consonance.flow_event``, under an ID that is a pure
function of the flow and the event (``flow_event_workflow_id``): enqueued twice, it runs once.

The workflow is one checkpointed step that hands the flow's name and the event to the *event
runner* the application bound in this process (``bind_event_runner``), as ``flow_tick`` does
for schedules: the runner plans the flow for the event and enqueues its deliveries. The step
retries retryable failures (Consonance unavailable, a download cut off) per the engine's retry
policy; a plan that fails for good raises one ``flow_event_failed`` alert and ends the workflow
in ``ERROR`` with its reason, so ``status`` lists it and ``retry`` runs it again. A process that
dies mid-plan leaves it ``PENDING``; it is recovered and the step runs again. The runner plans
as of the event's detection time, so a re-run plans the same packages, whose delivery workflow
IDs attach to the deliveries already enqueued instead of sending again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import hashlib
import json
import logging
import re
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from dbos import DBOS

from consonance_sftp.errors import ConsonanceSftpError, EngineError
from consonance_sftp.logs import get_logger, log_context
from consonance_sftp.models import Alert, AlertSeverity
from consonance_sftp.ports.delivery import AlertSink, LogAlertSink

from .delivery import MAX_RECOVERY_ATTEMPTS, attempts_of, last_error, step_options
from .schedules import flow_queue_name
from .settings import RetryPolicy

log = get_logger(__name__)

FLOW_EVENT_WORKFLOW = "consonance.flow_event"
FLOW_EVENT_PREFIX = "evt-"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")

EventRunner = Callable[[str, dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]
"""(flow name, the event as JSON) -> a JSON-able summary of what the flow planned."""


class FlowEventFailed(EngineError):
    """A flow fired by a Consonance event could not be planned, after its last retry."""


class _NoEventTracebacks(logging.Filter):
    """Drop DBOS's traceback for a ``FlowEventFailed``: the alert, ``status`` and the log
    line of the failure say it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        failed = record.exc_info[1] if record.exc_info else None
        return not (
            record.getMessage().startswith("Exception encountered in")
            and isinstance(failed, FlowEventFailed)
        )


logging.getLogger("dbos").addFilter(_NoEventTracebacks())


def flow_event_workflow_id(flow: str, event: Mapping[str, Any]) -> str:
    """``evt-<flow>-<digest>``: the same event firing the same flow is one workflow. The digest
    covers every field of the event, its detection time included, so the same change seen by a
    later poll (a stage that went away and came back) fires again."""
    canonical = json.dumps({"flow": flow, **event}, sort_keys=True, default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:32]
    return f"{FLOW_EVENT_PREFIX}{_SAFE.sub('_', flow)[:60]}-{digest}"


@dataclass(frozen=True, slots=True)
class _Bound:
    runner: EventRunner
    loop: asyncio.AbstractEventLoop
    retry: RetryPolicy
    alerts: AlertSink


_bound: _Bound | None = None


def bind_event_runner(
    runner: EventRunner | None,
    loop: asyncio.AbstractEventLoop | None = None,
    retry: RetryPolicy | None = None,
    alerts: AlertSink | None = None,
) -> None:
    """Make ``runner`` (running on ``loop``, the application's event loop) what event
    workflows call in this process; ``None`` unbinds."""
    global _bound
    if runner is None:
        _bound = None
        return
    if loop is None:
        raise EngineError("an event runner needs the event loop it runs on")
    _bound = _Bound(runner, loop, retry or RetryPolicy(max_attempts=1), alerts or LogAlertSink())


async def _run_event(flow: str, event: dict[str, Any]) -> dict[str, Any]:
    bound = _bound
    if bound is None:
        raise EngineError(
            f"flow {flow!r} was fired by a Consonance event in a process that cannot run flows",
            hint="Run every executor through 'consonance-sftp serve' or 'worker'.",
            retryable=True,
        )
    work = bound.runner(flow, event)
    try:
        if asyncio.get_running_loop() is bound.loop:
            return await work
        # As for flow ticks: the plan runs on the application's loop, in a fresh context, so
        # the deliveries it enqueues are not taken for steps of this workflow.
        future: concurrent.futures.Future[dict[str, Any]] = contextvars.Context().run(
            asyncio.run_coroutine_threadsafe, work, bound.loop
        )
        return await asyncio.wrap_future(future)
    except ConsonanceSftpError as exc:
        # One line per failed attempt (DBOS's own retry warning is filtered out); the last
        # one's reason goes into the alert and the workflow's error.
        kind = "retryable" if exc.retryable else "not retryable"
        log.warning("flow %s fired by %s: plan failed (%s): %s", flow, describe(event), kind, exc)
        raise


async def _alert_failure(workflow_id: str, flow: str, event: dict[str, Any], reason: str) -> None:
    """One alert for an event whose flow could not be planned (after its last retry). Its own
    step: a replay after a crash does not raise it again."""
    sink = _bound.alerts if _bound is not None else LogAlertSink()
    alert = Alert(
        severity=AlertSeverity.WARNING,
        kind="flow_event_failed",
        message=f"flow {flow!r} fired by {describe(event)} could not be planned: {reason}; "
        f"'consonance-sftp retry {workflow_id}' runs it again",
        flow=flow,
        details={"workflow_id": workflow_id, "reason": reason},
    )
    await asyncio.to_thread(sink.raise_alert, alert)


def describe(event: Mapping[str, Any]) -> str:
    """``work 12 work_entered_stage Production approval``: an event in one short phrase."""
    product = f" product {event['product_id']}" if event.get("product_id") else ""
    return f"work {event.get('work_id')}{product} {event.get('kind')} {event.get('new')}"


@DBOS.workflow(name=FLOW_EVENT_WORKFLOW, max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
async def flow_event(flow: str, event: dict[str, Any]) -> dict[str, Any]:
    """Plan ``flow`` for one Consonance ``event`` and enqueue its deliveries."""
    workflow_id = DBOS.workflow_id or ""
    retry = _bound.retry if _bound is not None else None
    with log_context(workflow=workflow_id, flow=flow):
        try:
            summary: dict[str, Any] = await DBOS.run_step_async(
                step_options(f"plan:{flow}", retry), _run_event, flow, event
            )
        except Exception as exc:
            last = last_error(exc)
            tries = attempts_of(exc)
            reason = str(last) + (f" (after {tries} attempts)" if tries > 1 else "")
            await DBOS.run_step_async(
                {"name": "alert"}, _alert_failure, workflow_id, flow, event, reason
            )
            hint = last.hint if isinstance(last, ConsonanceSftpError) else None
            raise FlowEventFailed(
                f"flow {flow!r} fired by {describe(event)}: {reason}", hint=hint
            ) from (last if isinstance(last, Exception) else None)
    return summary


def event_queue_name(flow: str) -> str:
    """Events of a flow go to the flow's tick queue: one plan of a flow at a time, across
    processes, whether a schedule or an event started it."""
    return flow_queue_name(flow)
