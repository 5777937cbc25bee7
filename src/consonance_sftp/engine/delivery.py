"""The delivery workflow: stage and verify each file, then publish (rename) them all and record.

One DBOS workflow per package and partner. Every step is checkpointed in the DBOS system
database, so after a crash the workflow resumes after the last completed step; the step that was
interrupted runs again, which is why each step is idempotent:

* ``plan`` asks the ledger and the remote server what is already done (nothing is sent twice);
* ``upload:<path>`` is the transport's ``stage``: it writes the file under its temporary name,
  resuming from the bytes already there, then verifies it by hash (by size only where the
  partner's ``checksum = "size"`` says so): a file is checkpointed as uploaded only once
  verified, with how (``{"sent": bytes, "verified_by": ...}``; the previous release
  checkpointed the bytes alone, which still replays), and nothing has its final name yet;
* ``commit`` is the transport's ``publish`` of every staged file (the rename to its final
  name), in the package's order, then writes the package's ledger rows. It runs only once every
  file of the package is staged and verified, so a package whose last file fails shows the
  partner none of its files (``retry`` stages that file and publishes all). A publish succeeds
  without doing anything if the final name already holds the bytes, and the ledger upserts one
  row per file key and generation, so a crash between a rename and the ledger write (or its
  checkpoint) does not send again. Each ``sent`` or ``skipped`` row says how its bytes were
  verified (``verified_by``), from the upload checkpoints and the plan.

A file of a one-file package costs three checkpoints (``plan``, ``upload:<path>``, ``commit``)
besides DBOS's own start and result: each checkpoint is a write transaction in the system
database, the engine's main cost per delivery (see docs/reference/performance.md).

Retryable errors (``ConsonanceSftpError.retryable``) are retried by DBOS with exponential backoff
inside the step, each failed attempt logged as one WARNING line (which attempt, the cause, when
the next try is). Anything else, or exhausted retries, records ``failed`` rows with the reason,
raises one alert, and ends the workflow in DBOS's ``ERROR`` state with a ``DeliveryFailed`` whose
message is that reason: the last underlying error (DBOS's ``DBOSMaxStepRetriesExceeded`` is
unwrapped), so "cannot connect to host:port: connection refused" reaches the operator. This
holds for a failing ``plan`` too (an unreachable partner): every file of the package gets its
``failed`` row. Files ``commit`` renamed before it failed keep their ``sent`` rows (it records
them as it stops); only the others are marked ``failed``.

The collaborators (transport, ledger, alerts, fence) are injected by ``Engine`` through
``bind_dependencies``: DBOS workflows are module-level functions, called by DBOS on its own event
loop, so they cannot take them as arguments.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, ParamSpec, TypeVar

from dbos import DBOS, StepOptions
from dbos._error import DBOSMaxStepRetriesExceeded

from consonance_sftp.errors import (
    ConsonanceSftpError,
    DeliveryFailed,
    HostKeyMismatch,
    RetriesExhausted,
    TransportError,
)
from consonance_sftp.logs import get_logger, log_context
from consonance_sftp.models import Alert, AlertSeverity, DeliveryOutcome
from consonance_sftp.ports.delivery import (
    AlertSink,
    DeliveryLedger,
    DeliveryRecord,
    DeliveryRequest,
    DeliveryTransport,
    Fence,
    FileToSend,
    StageResult,
    WithdrawalLedger,
    verification,
)

from .settings import RetryPolicy

log = get_logger(__name__)


class _NoDeliveryTracebacks(logging.Filter):
    """Drop DBOS's tracebacks for what the delivery workflow reports itself: the "Step being
    automatically retried" warning (each attempt is logged as one line with its cause and next
    try) and "Exception encountered in ... workflow" for a ``DeliveryFailed`` (the alert, the
    ledger and the command say it in one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Step being automatically retried"):
            return False
        failed = record.exc_info[1] if record.exc_info else None
        return not (
            message.startswith("Exception encountered in") and isinstance(failed, DeliveryFailed)
        )


logging.getLogger("dbos").addFilter(_NoDeliveryTracebacks())

DELIVER_WORKFLOW = "consonance.deliver"
MAX_RECOVERY_ATTEMPTS = 50
R = TypeVar("R")
P = ParamSpec("P")


@dataclass(slots=True)
class Dependencies:
    transport: DeliveryTransport
    ledger: DeliveryLedger
    alerts: AlertSink
    fence: Fence
    retry: RetryPolicy
    executor_id: str
    withdrawals: WithdrawalLedger | None = None  # records withdrawals (``engine.withdrawal``)


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


def last_error(exc: BaseException) -> BaseException:
    """The error that ended a step: the last attempt's, inside DBOS's retries-exceeded error."""
    while isinstance(exc, DBOSMaxStepRetriesExceeded) and exc.errors:
        exc = exc.errors[-1]
    return exc


def attempts_of(exc: BaseException) -> int:
    """How many times the failed step ran."""
    if isinstance(exc, RetriesExhausted):
        return exc.attempts
    return len(exc.errors) if isinstance(exc, DBOSMaxStepRetriesExceeded) and exc.errors else 1


def failure_reason(exc: BaseException, partner: str | None = None) -> str:
    """The message an operator sees: the last underlying error, and how many tries it took
    (without repeating ``partner`` when the line names it already)."""
    last = last_error(exc)
    if partner is not None and isinstance(last, TransportError):
        text = last.without_partner(partner)
    else:
        text = str(last) or type(last).__name__
    if isinstance(exc, DBOSMaxStepRetriesExceeded):
        return f"{text} (gave up after {attempts_of(exc)} attempts)"
    return text


def _reporting_attempts(
    step: str,
    req: DeliveryRequest,
    retry: RetryPolicy | None,
    fn: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """``fn`` as a step body that logs each failed attempt DBOS will retry: which attempt, the
    cause and when the next try is, so an unreachable partner is not silence while it backs
    off. The final failure is not logged here: the workflow reports it once."""
    attempts = retry.max_attempts if retry is not None else 1
    attempt = 0
    first_began: float | None = None

    async def body(*args: P.args, **kwargs: P.kwargs) -> R:
        nonlocal attempt, first_began
        attempt += 1
        began = time.monotonic()
        if first_began is None:
            first_began = began
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            if attempt < attempts and is_retryable(exc):
                assert retry is not None
                wait = retry.initial_interval_s * retry.backoff_rate ** (attempt - 1)
                cause = exc.without_partner(req.partner) if isinstance(exc, TransportError) else exc
                now = time.monotonic()
                # A try that would end past the schedule's total time is not made.
                if retry.max_total_s is not None and (
                    now + wait + (now - began) - first_began > retry.max_total_s
                ):
                    raise RetriesExhausted(
                        f"{cause} (gave up after {attempt} attempts in {now - first_began:.0f} s)",
                        attempts=attempt,
                        hint=exc.hint if isinstance(exc, ConsonanceSftpError) else None,
                    ) from exc
                log.warning(
                    "%s of %s %s partner %r: %s attempt %d of %d failed: %s; next try in %g s",
                    "withdrawal" if req.withdraws else "delivery",
                    req.package,
                    "from" if req.withdraws else "to",
                    req.partner,
                    step,
                    attempt,
                    attempts,
                    cause,
                    wait,
                    extra={"attempt": attempt},
                )
            raise

    return body


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


async def _plan(req: DeliveryRequest) -> dict[str, Any]:
    """Which files to send, which are already at their final name, which the ledger has; and
    when the delivery started (checkpointed with the plan, so a replay keeps it)."""
    deps = _current()
    send: list[int] = []
    present: list[int] = []
    recorded: list[int] = []
    verified: dict[str, str] = {}  # file index -> how a file found in place was verified

    def ledger_has() -> list[bool]:
        return [deps.ledger.already_sent(f.key(req.partner), req.generation) for f in req.files]

    # One trip to a worker thread for the whole package's ledger lookups.
    known = await asyncio.to_thread(ledger_has)
    for i, f in enumerate(req.files):
        if known[i]:
            recorded.append(i)
            continue
        state = await deps.transport.remote_state(req.partner, f)
        (present if state.final_matches else send).append(i)
        if state.final_matches and state.verified_by is not None:
            verified[str(i)] = state.verified_by.value
    started = datetime.now(UTC).isoformat()
    return {
        "send": send,
        "present": present,
        "recorded": recorded,
        "started_at": started,
        "verified_by": verified,
    }


async def _upload(partner: str, f: FileToSend) -> dict[str, Any]:
    """Stage the file: upload to the temporary name and verify it, one checkpoint for both (a
    re-run after a crash resumes the upload, which finds every byte there, and verifies
    again). Nothing is published here. The checkpoint is ``StageResult.to_dict``."""
    deps = _current()
    deps.fence.check()
    staged = await deps.transport.stage(partner, f, deps.fence)
    # A transport of the previous release's shape returns the bytes sent alone.
    return StageResult.from_checkpoint(staged).to_dict()


def _records(
    deps: Dependencies,
    workflow_id: str,
    req: DeliveryRequest,
    outcomes: list[tuple[int, str]],
    error: str | None,
    started_at: str | None = None,
    attempts: int = 1,
    verified: dict[str, Any] | None = None,
) -> list[DeliveryRecord]:
    """The package's ledger rows for these outcomes (file index, outcome); ``verified``: how
    each file was verified, by index (a JSON key), as the plan's ``verified_by``."""
    started = datetime.fromisoformat(started_at) if started_at else None
    finished = datetime.now(UTC)
    verified = verified or {}
    return [
        DeliveryRecord(
            flow=req.flow,
            partner=req.partner,
            remote_path=req.files[i].remote_path,
            sha256=req.files[i].sha256,
            size=req.files[i].size,
            generation=req.generation,
            source=req.files[i].source,
            package=req.package,
            isbn=req.isbn,
            asset_version_id=req.files[i].asset_version_id,
            workflow_id=workflow_id,
            executor_id=deps.executor_id,
            trigger=req.trigger,
            started_at=started,
            finished_at=finished,
            attempts=attempts,
            outcome=DeliveryOutcome(outcome),
            error=error,
            verified_by=verification(verified.get(str(i))),
        )
        for i, outcome in outcomes
    ]


async def _write(deps: Dependencies, records: list[DeliveryRecord]) -> None:
    def write_all() -> None:
        for record in records:
            deps.ledger.record(record)

    # One trip to a worker thread for the whole package's rows.
    await asyncio.to_thread(write_all)


async def _commit(workflow_id: str, req: DeliveryRequest, plan: dict[str, Any]) -> int:
    """Publish every staged file (all were staged and verified before the first rename), then
    record the package: ``sent`` for the renamed files, ``skipped`` for those already in place.
    If a rename fails, the files renamed before it are recorded ``sent`` before the error goes
    on."""
    deps = _current()
    # How each file was verified: found in place (the plan), staged (its upload checkpoint).
    # A plan of the previous release has none: its rows say nothing.
    verified: dict[str, Any] = plan.get("verified_by") or {}
    renamed: list[int] = []
    try:
        for i in plan["send"]:
            deps.fence.check()
            await deps.transport.publish(req.partner, req.files[i], deps.fence)
            renamed.append(i)
    except Exception:
        if renamed:
            sent = [(i, DeliveryOutcome.SENT.value) for i in renamed]
            records = _records(
                deps, workflow_id, req, sent, None, plan.get("started_at"), 1, verified
            )
            await _write(deps, records)
        raise
    outcomes = [(i, DeliveryOutcome.SENT.value) for i in renamed] + [
        (i, DeliveryOutcome.SKIPPED.value) for i in plan["present"]
    ]
    records = _records(deps, workflow_id, req, outcomes, None, plan.get("started_at"), 1, verified)
    await _write(deps, records)
    return len(outcomes)


async def _alert_failure(workflow_id: str, req: DeliveryRequest, reason: str) -> None:
    """One alert for a delivery that failed for good (after its last retry), with the reason.
    Its own step, run once per failure: a replay after a crash does not raise it again."""
    deps = _current()
    alert = Alert(
        severity=AlertSeverity.WARNING,
        kind="delivery_failed",
        message=f"delivery of {req.package} to partner {req.partner!r} failed: {reason}",
        partner=req.partner,
        flow=req.flow,
        details={"workflow_id": workflow_id, "package": req.package, "reason": reason},
    )
    await asyncio.to_thread(deps.alerts.raise_alert, alert)


async def _record_failure(
    workflow_id: str,
    req: DeliveryRequest,
    unsent: list[int],
    reason: str,
    attempts: int = 1,
    started_at: str | None = None,
) -> int:
    """``failed`` rows, with the reason, for the files of the plan not recorded ``sent`` (a
    rename that succeeded before ``commit`` failed keeps its ``sent`` row)."""
    deps = _current()

    def still_unsent() -> list[int]:
        return [
            i
            for i in unsent
            if not deps.ledger.already_sent(req.files[i].key(req.partner), req.generation)
        ]

    failed = await asyncio.to_thread(still_unsent)
    outcomes = [(i, DeliveryOutcome.FAILED.value) for i in failed]
    records = _records(deps, workflow_id, req, outcomes, reason, started_at, attempts)
    await _write(deps, records)
    return len(failed)


# --- the workflow --------------------------------------------------------------------------


async def fail_for_good(
    what: str,
    last: BaseException,
    reason: str,
    alert: Callable[[str, DeliveryRequest, str], Awaitable[None]],
    workflow_id: str,
    req: DeliveryRequest,
) -> NoReturn:
    """End a delivery (or withdrawal) workflow that failed after its last retry: one alert (its
    own step, so a replay does not raise it again), then ``DeliveryFailed`` with the reason.
    A changed host key raised its own (critical) alert and paused the partner already."""
    if isinstance(last, HostKeyMismatch):
        log.warning("%s failed: %s", what, reason)
    else:
        # The alert is logged as it is recorded: one line for the final failure.
        await DBOS.run_step_async({"name": "alert"}, alert, workflow_id, req, reason)
    hint = last.hint if isinstance(last, ConsonanceSftpError) else None
    raise DeliveryFailed(f"{what} failed: {reason}", hint=hint) from (
        last if isinstance(last, Exception) else None
    )


@DBOS.workflow(name=DELIVER_WORKFLOW, max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
async def deliver(request: dict[str, Any]) -> dict[str, Any]:
    """Deliver one package to one partner; returns per-file outcomes."""
    req = DeliveryRequest.from_dict(request)
    workflow_id = DBOS.workflow_id or ""
    retry = _current().retry
    with log_context(workflow=workflow_id, partner=req.partner, flow=req.flow):
        # Until the plan is known, every file of the package is unsent.
        unsent = list(range(len(req.files)))
        plan: dict[str, Any] = {"send": [], "present": [], "recorded": []}
        try:
            plan = await DBOS.run_step_async(
                step_options("plan", retry), _reporting_attempts("plan", req, retry, _plan), req
            )
            unsent = plan["send"]
            verified = dict(plan.get("verified_by") or {})
            for i in plan["send"]:
                f = req.files[i]
                staged = await DBOS.run_step_async(
                    step_options(f"upload:{f.remote_path}", retry),
                    _reporting_attempts(f"upload of {f.remote_path}", req, retry, _upload),
                    req.partner,
                    f,
                )
                how = StageResult.from_checkpoint(staged).verified_by
                if how is not None:
                    verified[str(i)] = how.value
            plan = {**plan, "verified_by": verified}
            await DBOS.run_step_async(
                step_options("commit", retry),
                _reporting_attempts("commit", req, retry, _commit),
                workflow_id,
                req,
                plan,
            )
        except Exception as exc:
            last = last_error(exc)
            reason = failure_reason(exc, req.partner)
            await DBOS.run_step_async(
                step_options("record-failure", retry),
                _record_failure,
                workflow_id,
                req,
                unsent,
                reason,
                attempts_of(exc),
                plan.get("started_at"),
            )
            what = f"delivery of {req.package} to partner {req.partner!r}"
            await fail_for_good(what, last, reason, _alert_failure, workflow_id, req)
        return {
            "workflow_id": workflow_id,
            "sent": [req.files[i].remote_path for i in plan["send"]],
            "already_present": [req.files[i].remote_path for i in plan["present"]],
            "already_recorded": [req.files[i].remote_path for i in plan["recorded"]],
        }
