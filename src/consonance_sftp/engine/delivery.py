"""The delivery workflow: plan, upload each file, verify, rename, record.

One DBOS workflow per package and partner. Every step is checkpointed in the DBOS system
database, so after a crash the workflow resumes after the last completed step; the step that was
interrupted runs again, which is why each step is idempotent:

* ``plan`` asks the ledger and the remote server what is already done (nothing is sent twice);
* ``upload:<path>`` resumes from the bytes already under the temporary name;
* ``verify:<path>`` re-reads size (and hash where the server allows);
* ``rename:<path>`` succeeds without doing anything if the final name already holds the bytes
  (a crash between the rename and its checkpoint does not send again);
* ``record`` upserts one ledger row per file key and generation.

Retryable errors (``ConsonanceSftpError.retryable``) are retried by DBOS with exponential backoff
inside the step; anything else, or exhausted retries, records ``failed`` rows with the reason and
ends the workflow in DBOS's ``ERROR`` state with a ``DeliveryFailed`` whose message is that
reason.

The collaborators (transport, ledger, alerts, fence) are injected by ``Engine`` through
``bind_dependencies``: DBOS workflows are module-level functions, called by DBOS on its own event
loop, so they cannot take them as arguments.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from dbos import DBOS, StepOptions
from dbos._error import DBOSMaxStepRetriesExceeded

from consonance_sftp.errors import ConsonanceSftpError, DeliveryFailed
from consonance_sftp.logs import get_logger, log_context
from consonance_sftp.models import DeliveryOutcome

from .contracts import (
    AlertSink,
    DeliveryLedger,
    DeliveryRecord,
    DeliveryRequest,
    DeliveryTransport,
    Fence,
    FileToSend,
)
from .settings import RetryPolicy

log = get_logger(__name__)

DELIVER_WORKFLOW = "consonance.deliver"
MAX_RECOVERY_ATTEMPTS = 50


@dataclass(slots=True)
class Dependencies:
    transport: DeliveryTransport
    ledger: DeliveryLedger
    alerts: AlertSink
    fence: Fence
    retry: RetryPolicy
    executor_id: str


_deps: Dependencies | None = None


def bind_dependencies(deps: Dependencies | None) -> None:
    global _deps
    _deps = deps


def _current() -> Dependencies:
    if _deps is None:
        raise ConsonanceSftpError("the engine is not running in this process (no dependencies)")
    return _deps


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ConsonanceSftpError) and exc.retryable


def failure_reason(exc: BaseException) -> str:
    """The message an operator sees: the last underlying error, and how many tries it took."""
    if isinstance(exc, DBOSMaxStepRetriesExceeded):
        last = exc.errors[-1] if exc.errors else exc
        return f"{last} (gave up after {len(exc.errors)} attempts)"
    return str(exc) or type(exc).__name__


def step_options(name: str, retry: RetryPolicy | None) -> StepOptions:
    if retry is None or retry.max_attempts <= 1:
        return {"name": name}
    return {
        "name": name,
        "retries_allowed": True,
        "max_attempts": retry.max_attempts,
        "interval_seconds": retry.initial_interval_s,
        "backoff_rate": retry.backoff_rate,
        "should_retry": is_retryable,
    }


# --- steps ---------------------------------------------------------------------------------


async def _plan(req: DeliveryRequest) -> dict[str, list[int]]:
    """Which files to send, which are already at their final name, which the ledger has."""
    deps = _current()
    send: list[int] = []
    present: list[int] = []
    recorded: list[int] = []
    for i, f in enumerate(req.files):
        if await asyncio.to_thread(deps.ledger.already_sent, f.key(req.partner), req.generation):
            recorded.append(i)
            continue
        state = await deps.transport.remote_state(req.partner, f)
        (present if state.final_matches else send).append(i)
    return {"send": send, "present": present, "recorded": recorded}


async def _upload(partner: str, f: FileToSend) -> int:
    deps = _current()
    deps.fence.check()
    return await deps.transport.upload(partner, f, deps.fence)


async def _verify(partner: str, f: FileToSend) -> None:
    await _current().transport.verify(partner, f)


async def _rename(partner: str, f: FileToSend) -> None:
    deps = _current()
    deps.fence.check()
    await deps.transport.commit(partner, f, deps.fence)


async def _record(
    workflow_id: str,
    req: DeliveryRequest,
    outcomes: list[tuple[int, str]],
    reason: str | None,
) -> int:
    deps = _current()
    for i, outcome in outcomes:
        f = req.files[i]
        record = DeliveryRecord(
            workflow_id=workflow_id,
            flow=req.flow,
            key=f.key(req.partner),
            size=f.size,
            generation=req.generation,
            outcome=DeliveryOutcome(outcome),
            trigger=req.trigger,
            executor_id=deps.executor_id,
            reason=reason,
            package=req.package,
            isbn=req.isbn,
            source=f.source,
        )
        await asyncio.to_thread(deps.ledger.record, record)
    return len(outcomes)


# --- the workflow --------------------------------------------------------------------------


@DBOS.workflow(name=DELIVER_WORKFLOW, max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
async def deliver(request: dict[str, Any]) -> dict[str, Any]:
    """Deliver one package to one partner; returns per-file outcomes."""
    req = DeliveryRequest.from_dict(request)
    workflow_id = DBOS.workflow_id or ""
    retry = _current().retry
    with log_context(workflow=workflow_id, partner=req.partner, flow=req.flow):
        plan: dict[str, list[int]] = await DBOS.run_step_async(
            step_options("plan", retry), _plan, req
        )
        sent: list[int] = []
        try:
            for i in plan["send"]:
                f = req.files[i]
                await DBOS.run_step_async(
                    step_options(f"upload:{f.remote_path}", retry), _upload, req.partner, f
                )
                await DBOS.run_step_async(
                    step_options(f"verify:{f.remote_path}", retry), _verify, req.partner, f
                )
            for i in plan["send"]:
                f = req.files[i]
                await DBOS.run_step_async(
                    step_options(f"rename:{f.remote_path}", retry), _rename, req.partner, f
                )
                sent.append(i)
        except Exception as exc:
            reason = failure_reason(exc)
            unsent = [i for i in plan["send"] if i not in sent]
            await DBOS.run_step_async(
                step_options("record-failure", retry),
                _record,
                workflow_id,
                req,
                [(i, DeliveryOutcome.FAILED.value) for i in unsent]
                + [(i, DeliveryOutcome.SENT.value) for i in sent],
                reason,
            )
            log.warning("delivery failed: %s", reason)
            raise DeliveryFailed(
                f"delivery of {req.package} to partner {req.partner!r} failed: {reason}"
            ) from None
        outcomes = [(i, DeliveryOutcome.SENT.value) for i in sent] + [
            (i, DeliveryOutcome.SKIPPED.value) for i in plan["present"]
        ]
        await DBOS.run_step_async(
            step_options("record", retry), _record, workflow_id, req, outcomes, None
        )
        return {
            "workflow_id": workflow_id,
            "sent": [req.files[i].remote_path for i in sent],
            "already_present": [req.files[i].remote_path for i in plan["present"]],
            "already_recorded": [req.files[i].remote_path for i in plan["recorded"]],
        }
