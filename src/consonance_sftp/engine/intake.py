"""The intake workflow: take one file in from a partner's inbox, exactly once, nothing lost.

One DBOS workflow per version of a partner's file: its ID is derived from (flow, partner, remote
path, size, mtime) (``ids.intake_workflow_id``), so the next poll, seeing the same file again,
attaches to this workflow instead of fetching it twice. Checkpointed steps, each safe to re-run
after a crash (steps are at-least-once):

* ``fetch`` downloads into a staging file with a resume journal, checks the remote file did
  not change, fsyncs and renames it into place under the inbox store (or, for a dangerous or
  unacceptable name, under a safe name in the quarantine folder); returns size and SHA-256. A
  re-run after a completed download finds the local file and only hashes it again.
* ``screen`` checks the stored file (when a screen is bound, as ``app`` does): empty, over the
  flow's size limit, an archive (not accepted, or hostile: zip-slip, links, encryption, a
  bomb), malware (clamd). A refusal quarantines the file with its reason code (the bytes stay
  where ``fetch`` put them); a file that could not be screened is quarantined too (and the
  workflow alerts), never processed unscreened. Not run for a name already quarantined.
* ``record`` writes the intake ledger row (one per partner, path, size and mtime) with outcome
  ``stored`` or ``quarantined``, the reason and its code, and the audit event.
* ``hand-off`` gives the stored file to the flow kind's handler when one is bound (none yet:
  the file stays "stored, awaiting processing").
* ``post-action`` only then leaves, deletes or moves the remote file as the partner's settings
  say, and only if the server still holds this very version (a newer upload under the same
  name is left for the next poll).
* ``acknowledge`` (when the partner asks for acknowledgements, ``intake_ack``), last: once the
  file's outcome is known (stored or attached: ``<name>.accepted``; quarantined:
  ``<name>.quarantined`` with the reason), the acknowledgement is uploaded to the partner's
  server. It is retried like every step; a final failure is an ``intake.ack_failed`` event on
  the file's record, never a failed intake (the file is stored and recorded already).

Retryable errors are retried inside the step with the deliveries' exponential backoff. A
terminal fetch error (or exhausted retries) records a ``failed`` row with the reason and ends the
workflow in DBOS's ``ERROR`` state; the remote file is then untouched. The collaborators are
bound by ``Engine.launch`` (``bind_dependencies``), as for deliveries.
"""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbos import DBOS

from consonance_sftp.errors import ConsonanceSftpError, EngineError
from consonance_sftp.formats.names import (
    MAX_NAME_BYTES,
    is_utf8,
    name_notes,
    name_problem,
    name_refusal,
    printable_path,
    raw_bytes,
    safe_local_name,
)
from consonance_sftp.logs import get_logger, log_context
from consonance_sftp.models import Alert, AlertSeverity, AuditAction, IntakeOutcome
from consonance_sftp.ports.delivery import Fence
from consonance_sftp.ports.intake import (
    Acknowledgement,
    FetchedFile,
    HandOffResult,
    IntakeHandler,
    IntakeLedger,
    IntakeLedgerEntry,
    IntakeRequest,
    IntakeScreen,
    IntakeTransport,
    Refusal,
)
from consonance_sftp.ports.store import IntakeRecord, Store

from .delivery import MAX_RECOVERY_ATTEMPTS, failure_reason, step_options
from .settings import RetryPolicy

log = get_logger(__name__)

INTAKE_WORKFLOW = "consonance.ingest"
"""The intake workflow's DBOS name. Persisted: DBOS records it with every workflow and recovers
a pending workflow by it, so it keeps the word it had before the intake path had one name (a
new name would orphan the intakes an older version left pending)."""


class IntakeFailed(EngineError):
    """Taking a file in ended for good: a non-retryable error, or retries exhausted. The
    message is the reason the intake ledger and ``status`` show."""


# --- names ---------------------------------------------------------------------------------
# The rules live in ``formats.names`` (the archive screening in ``flows`` applies them to each
# entry); they are re-exported here, where the workflow applies them to each file.

__all__ = [
    "INTAKE_WORKFLOW",
    "MAX_NAME_BYTES",
    "Dependencies",
    "IntakeFailed",
    "StoreIntakeLedger",
    "bind_dependencies",
    "intake",
    "is_utf8",
    "name_notes",
    "name_problem",
    "name_refusal",
    "printable_path",
    "raw_bytes",
    "safe_local_name",
]


# --- collaborators -------------------------------------------------------------------------


@dataclass(slots=True)
class Dependencies:
    transport: IntakeTransport
    ledger: IntakeLedger
    fence: Fence
    retry: RetryPolicy
    executor_id: str
    handlers: Mapping[str, IntakeHandler] = field(default_factory=dict)
    screen: IntakeScreen | None = None


_deps: Dependencies | None = None


def bind_dependencies(deps: Dependencies | None) -> None:
    global _deps
    _deps = deps


def _current() -> Dependencies:
    if _deps is None:
        raise EngineError(
            "the intake workflow has no transport in this process",
            hint="Start the engine with an intake transport and intake ledger (App.engine).",
        )
    return _deps


class StoreIntakeLedger:
    """``IntakeLedger`` on the Store port: the intake ledger row, the audit trail and alerts.

    Rows and events carry the path as ``printable_path`` shows it (a name that is not UTF-8
    could not be stored as text), with the original bytes in ``raw_name``.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, record: IntakeLedgerEntry) -> int:
        req = record.request
        fetched = record.fetched
        shown = printable_path(req.remote_path)
        name = posixpath.basename(req.remote_path)
        note, nfc = name_notes(name)
        wanted = IntakeRecord(
            partner=req.partner,
            remote_path=shown,
            size=req.size,
            remote_mtime=req.mtime,
            flow=req.flow,
            sha256=fetched.sha256 if fetched else None,
            local_path=fetched.local_path if fetched else None,
            outcome=record.outcome,
            # An error message may quote the name as the server has it.
            reason=None if record.reason is None else printable_path(record.reason),
            work_id=record.work_id,
            product_id=record.product_id,
            name_note=note,
            name_nfc=nfc,
            raw_name=None if is_utf8(name) else raw_bytes(name).hex(),
        )
        existing = self.store.find_intake(req.partner, shown, req.size, req.mtime)
        row = existing or self.store.record_intake(wanted)
        assert row.id is not None
        changed = [
            name
            for name in ("outcome", "reason", "sha256", "local_path", "work_id", "product_id")
            if getattr(wanted, name) is not None and getattr(row, name) != getattr(wanted, name)
        ]
        clear_reason = record.reason is None and bool(row.reason)
        if existing is not None and not changed and not clear_reason:
            return row.id  # a replayed step: already recorded, and on the audit trail
        if changed or clear_reason:
            # A retried file that succeeded clears the old reason ("" clears, None keeps).
            self.store.update_intake(
                row.id,
                outcome=wanted.outcome,
                reason="" if clear_reason else wanted.reason,
                sha256=wanted.sha256,
                local_path=wanted.local_path,
                work_id=wanted.work_id,
                product_id=wanted.product_id,
            )
        details: dict[str, Any] = {
            "workflow_id": record.workflow_id,
            "executor": record.executor_id,
            "sha256": wanted.sha256,
            "local_path": wanted.local_path,
            "reason": wanted.reason,
            "work_id": record.work_id,
            "product_id": record.product_id,
        }
        if record.reason_code:
            details["reason_code"] = record.reason_code
        if note:
            details["name_note"] = note
        if nfc:
            details["name_nfc"] = nfc
        if wanted.raw_name:
            details["raw_name"] = wanted.raw_name
        self.event(AuditAction(f"intake.{record.outcome.value}"), req, details)
        if record.outcome is IntakeOutcome.FAILED:
            # Once per failure: a replayed step returned above, before this.
            self.alert(req, wanted.reason or "unknown error", record.workflow_id)
        return row.id

    def event(self, action: str, request: IntakeRequest, details: dict[str, Any]) -> None:
        if isinstance(details.get("reason"), str):
            details = {**details, "reason": printable_path(details["reason"])}
        self.store.append_audit(
            actor="engine",
            action=action,
            subject=f"{request.partner}:{printable_path(request.remote_path)}",
            details={
                "flow": request.flow,
                "size": request.size,
                "mtime": request.mtime,
                "trigger": request.trigger,
                **details,
            },
        )

    def alert(self, request: IntakeRequest, reason: str, workflow_id: str) -> None:
        """One alert for a final failure of taking a file in (after the last retry)."""
        shown = printable_path(request.remote_path)
        reason = printable_path(reason)
        self.store.raise_alert(
            Alert(
                severity=AlertSeverity.WARNING,
                kind="intake_failed",
                message=(
                    f"taking in {shown} from partner {request.partner!r} (flow "
                    f"{request.flow!r}) failed: {reason}"
                ),
                partner=request.partner,
                flow=request.flow,
                details={"path": shown, "workflow_id": workflow_id, "reason": reason},
            )
        )

    def supersede_incomplete(self, request: IntakeRequest, fetched: FetchedFile) -> list[int]:
        """Mark the earlier versions of this file that were taken before it was whole.

        An earlier row of the same partner and path, smaller, whose SHA-256 is the SHA-256 of
        this version's first bytes, was a copy of a file still being written (the partner
        paused longer than ``stable_interval``). It becomes ``superseded-incomplete``, with an
        audit event; this version's row names it in ``supersedes``. Returns their ids.
        """
        shown = printable_path(request.remote_path)
        earlier = [
            row
            for row in self.store.list_intakes(partner=request.partner, remote_path=shown)
            if row.outcome in (IntakeOutcome.STORED, IntakeOutcome.QUARANTINED)
            and row.sha256
            and 0 < row.size < fetched.size
        ]
        if not earlier:
            return []
        this = self.store.find_intake(request.partner, shown, request.size, request.mtime)
        prefixes = _prefix_hashes(Path(fetched.local_path), sorted({r.size for r in earlier}))
        marked: list[int] = []
        for row in earlier:
            assert row.id is not None
            if prefixes.get(row.size) != row.sha256:
                continue  # a different file under the same name, not a growing one
            reason = (
                f"incomplete: taken at {row.size:,} bytes while the partner was still writing "
                f"it; the later version ({fetched.size:,} bytes"
                + (f", intake #{this.id}" if this is not None else "")
                + ") begins with exactly these bytes"
            )
            self.store.update_intake(
                row.id, outcome=IntakeOutcome.SUPERSEDED_INCOMPLETE, reason=reason
            )
            self.event(
                AuditAction.INTAKE_SUPERSEDED_INCOMPLETE,
                request,
                {
                    "intake_id": row.id,
                    "incomplete_size": row.size,
                    "incomplete_sha256": row.sha256,
                    "incomplete_mtime": row.remote_mtime,
                    "superseded_by": this.id if this is not None else None,
                    "reason": reason,
                },
            )
            log.warning(
                "intake #%s of %s from %s was incomplete (%s of %s bytes): superseded",
                row.id,
                shown,
                request.partner,
                row.size,
                fetched.size,
            )
            marked.append(row.id)
        if marked and this is not None and this.id is not None:
            self.store.update_intake(this.id, supersedes=max(marked))
        return marked


def _prefix_hashes(path: Path, sizes: list[int]) -> dict[int, str]:
    """SHA-256 of the first ``size`` bytes of ``path``, for each size, in one read."""
    digest = hashlib.sha256()
    out: dict[int, str] = {}
    done = 0
    with path.open("rb") as fh:
        for size in sizes:
            while done < size:
                chunk = fh.read(min(size - done, 4 * 1024 * 1024))
                if not chunk:
                    return out
                digest.update(chunk)
                done += len(chunk)
            out[size] = digest.copy().hexdigest()
    return out


# --- steps ---------------------------------------------------------------------------------


async def _fetch(req: IntakeRequest, quarantine: bool) -> dict[str, Any]:
    deps = _current()
    deps.fence.check()
    fetched = await deps.transport.fetch(req, quarantine=quarantine, fence=deps.fence)
    if fetched.size != req.size:
        raise ConsonanceSftpError(
            f"fetched {fetched.size} bytes of {req.remote_path!r} from partner "
            f"{req.partner!r}, listed as {req.size}",
            retryable=False,
        )
    return fetched.to_dict()


async def _record(
    workflow_id: str,
    req: IntakeRequest,
    fetched: dict[str, Any] | None,
    outcome: str,
    reason: str | None,
    handed: dict[str, Any] | None = None,
    reason_code: str | None = None,
) -> int:
    deps = _current()
    record = IntakeLedgerEntry(
        workflow_id=workflow_id,
        request=req,
        outcome=IntakeOutcome(outcome),
        executor_id=deps.executor_id,
        fetched=FetchedFile.from_dict(fetched) if fetched else None,
        reason=reason,
        work_id=(handed or {}).get("work_id"),
        product_id=(handed or {}).get("product_id"),
        reason_code=reason_code,
    )
    return await asyncio.to_thread(deps.ledger.record, record)


async def _screen(req: IntakeRequest, fetched: dict[str, Any]) -> dict[str, str] | None:
    screen = _current().screen
    if screen is None:
        return None
    refusal = await screen.screen(req, FetchedFile.from_dict(fetched))
    return None if refusal is None else refusal.to_dict()


async def _hand_off(req: IntakeRequest, fetched: dict[str, Any]) -> dict[str, Any] | None:
    handler = _current().handlers.get(req.kind)
    if handler is None:
        return None
    result: HandOffResult = await handler.handle(req, FetchedFile.from_dict(fetched))
    return {
        "outcome": result.outcome.value,
        "reason": result.reason,
        "work_id": result.work_id,
        "product_id": result.product_id,
    }


def _handles(handler: IntakeHandler | None, req: IntakeRequest) -> bool:
    """Whether the hand-off runs for this file: a handler is bound for its kind and does not
    say it leaves this flow's files alone (``applies``, read from the config: an intake flow
    without ``match`` only stores). A config reload between a crash and its recovery may change
    the answer; the steps after it are then re-run, which each of them allows."""
    if handler is None:
        return False
    applies = getattr(handler, "applies", None)
    return applies is None or bool(applies(req))


async def _post_action(workflow_id: str, req: IntakeRequest) -> str:
    deps = _current()
    deps.fence.check()
    done = await deps.transport.post_action(req, deps.fence)
    await asyncio.to_thread(
        deps.ledger.event,
        AuditAction.INTAKE_POST_ACTION,
        req,
        {"workflow_id": workflow_id, "done": done},
    )
    return done


async def _acknowledge(
    workflow_id: str, req: IntakeRequest, ack: dict[str, Any], outcome: str
) -> str:
    deps = _current()
    deps.fence.check()
    written = await deps.transport.acknowledge(
        req,
        Acknowledgement(
            verdict=str(ack["verdict"]),
            outcome=IntakeOutcome(outcome),
            size=int(ack["size"]),
            sha256=str(ack["sha256"]),
            reason=ack.get("reason"),
        ),
        deps.fence,
    )
    if written:
        await asyncio.to_thread(
            deps.ledger.event,
            AuditAction.INTAKE_ACKNOWLEDGED,
            req,
            {"workflow_id": workflow_id, "ack": printable_path(written), "outcome": outcome},
        )
    return written


async def _send_acknowledgement(
    workflow_id: str,
    req: IntakeRequest,
    outcome: IntakeOutcome,
    reason: str | None,
    fetched: dict[str, Any],
    retry: RetryPolicy,
) -> str | None:
    """The ``acknowledge`` step, when the partner asks for acknowledgements and the file's
    outcome is decided; returns the acknowledgement's remote path ("" when the partner no
    longer asks), ``"failed"``, or None when none is due. A final failure is recorded as an
    ``intake.ack_failed`` event and the workflow goes on: the file is stored and recorded."""
    if not req.acknowledge:
        return None
    if outcome is IntakeOutcome.QUARANTINED:
        verdict = "quarantined"
    elif outcome in (IntakeOutcome.STORED, IntakeOutcome.ATTACHED):
        verdict = "accepted"
    else:
        return None
    ack = {
        "verdict": verdict,
        "size": fetched["size"],
        "sha256": fetched["sha256"],
        "reason": reason,
    }
    try:
        written: str = await DBOS.run_step_async(
            step_options("acknowledge", retry), _acknowledge, workflow_id, req, ack, outcome.value
        )
        return written
    except Exception as exc:
        why = f"acknowledgement failed: {failure_reason(exc)}"
        await DBOS.run_step_async(
            step_options("record-ack-failure", retry),
            _note,
            workflow_id,
            req,
            AuditAction.INTAKE_ACK_FAILED,
            why,
        )
        log.warning("intake of %s from %s: %s", printable_path(req.remote_path), req.partner, why)
        return "failed"


async def _note(workflow_id: str, req: IntakeRequest, action: AuditAction, reason: str) -> None:
    deps = _current()
    await asyncio.to_thread(
        deps.ledger.event, action, req, {"workflow_id": workflow_id, "reason": reason}
    )


async def _alert(workflow_id: str, req: IntakeRequest, reason: str) -> None:
    await asyncio.to_thread(_current().ledger.alert, req, reason, workflow_id)


async def _check_growth(req: IntakeRequest, fetched: dict[str, Any]) -> list[int]:
    ledger = _current().ledger
    return await asyncio.to_thread(ledger.supersede_incomplete, req, FetchedFile.from_dict(fetched))


async def _screened(
    workflow_id: str, req: IntakeRequest, fetched: dict[str, Any]
) -> tuple[Refusal | None, str | None]:
    """The ``screen`` step: (refusal, None), or, when the file could not be screened (the
    malware scanner unreachable after the retries), a quarantine that says so and the failure
    for the workflow's alert: a file is never processed unscreened, and never lost."""
    try:
        found = await DBOS.run_step_async(
            step_options("screen", _current().retry), _screen, req, fetched
        )
    except Exception as exc:
        reason = f"screening failed: {failure_reason(exc)}"
        shown = printable_path(req.remote_path)
        log.warning("intake of %s from %s: %s", shown, req.partner, reason)
        return Refusal("screen-failed", f"{reason}; kept in quarantine, unscreened"), reason
    return (None if found is None else Refusal.from_dict(found)), None


# --- the workflow --------------------------------------------------------------------------


@DBOS.workflow(name=INTAKE_WORKFLOW, max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
async def intake(request: dict[str, Any]) -> dict[str, Any]:
    """Take one file version in from one partner; returns where it is kept and what was done
    to the remote file."""
    req = IntakeRequest.from_dict(request)
    workflow_id = DBOS.workflow_id or ""
    deps = _current()
    retry = deps.retry
    naming = name_refusal(posixpath.basename(req.remote_path))
    problem = None if naming is None else naming.detail
    shown = printable_path(req.remote_path)
    with log_context(workflow=workflow_id, partner=req.partner, flow=req.flow):
        try:
            fetched: dict[str, Any] = await DBOS.run_step_async(
                step_options("fetch", retry), _fetch, req, problem is not None
            )
        except Exception as exc:
            reason = failure_reason(exc)
            await DBOS.run_step_async(
                step_options("record-failure", retry),
                _record,
                workflow_id,
                req,
                None,
                IntakeOutcome.FAILED.value,
                reason,
            )
            log.warning("intake of %s from %s failed: %s", shown, req.partner, reason)
            raise IntakeFailed(
                f"taking in {shown!r} from partner {req.partner!r} failed: {reason}",
                hint="The file was left on the partner's server; 'consonance-sftp retry ID' "
                "takes it in again once the cause is fixed.",
            ) from None
        problems: list[str] = []
        refusal = None if naming is None else Refusal(naming.code, naming.detail)
        if refusal is None and deps.screen is not None:
            # Screened before it is recorded, so the row's first outcome is its real one.
            refusal, failure = await _screened(workflow_id, req, fetched)
            if failure:
                problems.append(failure)
        outcome = IntakeOutcome.QUARANTINED if refusal else IntakeOutcome.STORED
        why = None if refusal is None else refusal.detail
        code = None if refusal is None else refusal.reason_code
        await DBOS.run_step_async(
            step_options("record", retry),
            _record,
            workflow_id,
            req,
            fetched,
            outcome.value,
            why,
            None,
            code,
        )
        handed: dict[str, Any] | None = None
        handed_off = True  # False: processing failed; the outcome is not decided yet
        if refusal is None and _handles(deps.handlers.get(req.kind), req):
            try:
                handed = await DBOS.run_step_async(
                    step_options("hand-off", retry), _hand_off, req, fetched
                )
            except Exception as exc:
                handed_off = False
                reason = f"processing failed: {failure_reason(exc)}"
                problems.append(reason)
                await DBOS.run_step_async(
                    step_options("record-hand-off-failure", retry),
                    _record,
                    workflow_id,
                    req,
                    fetched,
                    outcome.value,
                    reason,
                )
            if handed is not None:
                outcome = IntakeOutcome(handed["outcome"])
                await DBOS.run_step_async(
                    step_options("record-hand-off", retry),
                    _record,
                    workflow_id,
                    req,
                    fetched,
                    outcome.value,
                    handed.get("reason"),
                    handed,
                )
        # The file is stored, checksummed and recorded: only now may the remote copy go.
        try:
            done: str = await DBOS.run_step_async(
                step_options("post-action", retry), _post_action, workflow_id, req
            )
        except Exception as exc:
            reason = f"post-action failed: {failure_reason(exc)}"
            problems.append(reason)
            done = "failed"
            await DBOS.run_step_async(
                step_options("record-post-action-failure", retry),
                _note,
                workflow_id,
                req,
                AuditAction.INTAKE_POST_ACTION_FAILED,
                reason,
            )
        # Last, so workflows started by an earlier build (without this step) replay cleanly.
        superseded: list[int] = await DBOS.run_step_async(
            step_options("check-growth", retry), _check_growth, req, fetched
        )
        # After every step an earlier build had, so its workflows replay cleanly.
        acked = (
            await _send_acknowledgement(
                workflow_id,
                req,
                outcome,
                why or (handed or {}).get("reason"),
                fetched,
                retry,
            )
            if handed_off
            else None
        )
        if problems:
            reason = "; ".join(problems)
            await DBOS.run_step_async(
                step_options("alert", retry), _alert, workflow_id, req, reason
            )
            log.warning("intake of %s from %s: stored, but %s", shown, req.partner, reason)
            raise IntakeFailed(
                f"{shown!r} from partner {req.partner!r} is stored "
                f"({outcome.value}, {fetched['local_path']}), but {reason}",
            )
        note, nfc = name_notes(posixpath.basename(req.remote_path))
        log.info(
            "intake of %s from %s (flow %s): %s, %s bytes%s%s%s",
            shown,
            req.partner,
            req.flow,
            outcome.value,
            fetched["size"],
            f" ({why})" if why else "",
            f"; note: {note}" if note else "",
            f"; completes incomplete intake #{', #'.join(map(str, superseded))}"
            if superseded
            else "",
        )
        return {
            "workflow_id": workflow_id,
            "outcome": outcome.value,
            # Why it was quarantined, or what the hand-off did (``run`` prints it).
            "reason": why or (handed or {}).get("reason"),
            "reason_code": code,
            "local_path": fetched["local_path"],
            "sha256": fetched["sha256"],
            "size": fetched["size"],
            "resumed_from": fetched.get("resumed_from", 0),
            "post_action": done,
            "name_note": note,
            "name_nfc": nfc,
            "supersedes": superseded,
            "ack": acked,
        }
