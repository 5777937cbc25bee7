"""The ingest workflow: take one file in from a partner's inbox, exactly once, nothing lost.

One DBOS workflow per version of a partner's file: its ID is derived from (flow, partner, remote
path, size, mtime) (``ids.ingest_workflow_id``), so the next poll, seeing the same file again,
attaches to this workflow instead of fetching it twice. Checkpointed steps, each safe to re-run
after a crash (steps are at-least-once):

* ``fetch`` downloads into a staging file with a resume journal, checks the remote file did
  not change, fsyncs and renames it into place under the inbox store (or, for a dangerous or
  unacceptable name, under a safe name in the quarantine folder); returns size and SHA-256. A
  re-run after a completed download finds the local file and only hashes it again.
* ``record`` writes the intake ledger row (one per partner, path, size and mtime) with outcome
  ``stored`` or ``quarantined`` and the reason, and the audit event.
* ``hand-off`` gives the stored file to the flow kind's handler when one is bound (none yet:
  the file stays "stored, awaiting processing").
* ``post-action`` only then leaves, deletes or moves the remote file as the partner's settings
  say, and only if the server still holds this very version (a newer upload under the same
  name is left for the next poll).

Retryable errors are retried inside the step with the deliveries' exponential backoff. A
terminal fetch error (or exhausted retries) records a ``failed`` row with the reason and ends the
workflow in DBOS's ``ERROR`` state; the remote file is then untouched. The collaborators are
bound by ``Engine.launch`` (``bind_dependencies``), as for deliveries.
"""

from __future__ import annotations

import asyncio
import posixpath
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dbos import DBOS

from consonance_sftp.errors import ConsonanceSftpError, EngineError
from consonance_sftp.logs import get_logger, log_context
from consonance_sftp.models import IntakeOutcome
from consonance_sftp.ports.store import IntakeRecord, Store

from .contracts import (
    Fence,
    FetchedFile,
    HandOffResult,
    IngestHandler,
    IngestRecord,
    IngestRequest,
    IngestTransport,
    IntakeLedger,
)
from .delivery import MAX_RECOVERY_ATTEMPTS, failure_reason, step_options
from .settings import RetryPolicy

log = get_logger(__name__)

INGEST_WORKFLOW = "consonance.ingest"
MAX_NAME_BYTES = 200
"""Longest name kept as is: the local staging name adds a few characters, and most file
systems stop at 255 bytes."""


class IngestFailed(EngineError):
    """Taking a file in ended for good: a non-retryable error, or retries exhausted. The
    message is the reason the intake ledger and ``status`` show."""


# --- names ---------------------------------------------------------------------------------


def name_problem(name: str) -> str | None:
    """Why a partner's file name is not acceptable as a local name (None: it is).

    Such a file is still taken in, under a safe name in the quarantine folder, with this
    reason on its ledger row: a name that could escape its folder, hide itself, pass as a
    command-line option or break a terminal is never used as is.
    """
    if not name:
        return "the file name is empty"
    if "/" in name or "\\" in name:
        return "the file name contains a path separator"
    if name in (".", "..") or ".." in name.replace("\\", "/").split("/"):
        return "the file name is '.' or '..'"
    bad = sorted({c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")})
    if bad:
        return "the file name contains control characters: " + ", ".join(
            f"U+{ord(c):04X}" for c in bad
        )
    if name.startswith("-"):
        return "the file name starts with '-' (it could pass as a command-line option)"
    if name.startswith("."):
        return "the file name starts with '.' (a hidden file)"
    if name != name.strip():
        return "the file name starts or ends with white space"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return f"the file name is longer than {MAX_NAME_BYTES} bytes"
    return None


_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._+()-]+")


def safe_local_name(name: str) -> str:
    """A harmless local name for a quarantined file: letters, digits and ``._+()-`` only,
    never starting with ``.`` or ``-``, at most 100 characters; the original name stays on the
    ledger row (``remote_path``)."""
    cleaned = _UNSAFE_CHARS.sub("_", name).lstrip(".-_")[:100]
    return cleaned or "file"


# --- collaborators -------------------------------------------------------------------------


@dataclass(slots=True)
class Dependencies:
    transport: IngestTransport
    ledger: IntakeLedger
    fence: Fence
    retry: RetryPolicy
    executor_id: str
    handlers: Mapping[str, IngestHandler] = field(default_factory=dict)


_deps: Dependencies | None = None


def bind_dependencies(deps: Dependencies | None) -> None:
    global _deps
    _deps = deps


def _current() -> Dependencies:
    if _deps is None:
        raise EngineError(
            "the ingest workflow has no transport in this process",
            hint="Start the engine with an ingest transport and intake ledger (App.engine).",
        )
    return _deps


class StoreIntakeLedger:
    """``IntakeLedger`` on the Store port: the intake ledger row and the audit trail."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record(self, record: IngestRecord) -> int:
        req = record.request
        fetched = record.fetched
        wanted = IntakeRecord(
            partner=req.partner,
            remote_path=req.remote_path,
            size=req.size,
            remote_mtime=req.mtime,
            flow=req.flow,
            sha256=fetched.sha256 if fetched else None,
            local_path=fetched.local_path if fetched else None,
            outcome=record.outcome,
            reason=record.reason,
            work_id=record.work_id,
            product_id=record.product_id,
        )
        existing = self.store.find_intake(req.partner, req.remote_path, req.size, req.mtime)
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
        self.event(
            f"intake.{record.outcome.value}",
            req,
            {
                "workflow_id": record.workflow_id,
                "executor": record.executor_id,
                "sha256": wanted.sha256,
                "local_path": wanted.local_path,
                "reason": record.reason,
                "work_id": record.work_id,
                "product_id": record.product_id,
            },
        )
        return row.id

    def event(self, action: str, request: IngestRequest, details: dict[str, Any]) -> None:
        self.store.append_audit(
            actor="engine",
            action=action,
            subject=f"{request.partner}:{request.remote_path}",
            details={
                "flow": request.flow,
                "size": request.size,
                "mtime": request.mtime,
                "trigger": request.trigger,
                **details,
            },
        )


# --- steps ---------------------------------------------------------------------------------


async def _fetch(req: IngestRequest, quarantine: bool) -> dict[str, Any]:
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
    req: IngestRequest,
    fetched: dict[str, Any] | None,
    outcome: str,
    reason: str | None,
    handed: dict[str, Any] | None = None,
) -> int:
    deps = _current()
    record = IngestRecord(
        workflow_id=workflow_id,
        request=req,
        outcome=IntakeOutcome(outcome),
        executor_id=deps.executor_id,
        fetched=FetchedFile.from_dict(fetched) if fetched else None,
        reason=reason,
        work_id=(handed or {}).get("work_id"),
        product_id=(handed or {}).get("product_id"),
    )
    return await asyncio.to_thread(deps.ledger.record, record)


async def _hand_off(req: IngestRequest, fetched: dict[str, Any]) -> dict[str, Any] | None:
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


async def _post_action(workflow_id: str, req: IngestRequest) -> str:
    deps = _current()
    deps.fence.check()
    done = await deps.transport.post_action(req, deps.fence)
    await asyncio.to_thread(
        deps.ledger.event, "intake.post_action", req, {"workflow_id": workflow_id, "done": done}
    )
    return done


async def _note(workflow_id: str, req: IngestRequest, action: str, reason: str) -> None:
    deps = _current()
    await asyncio.to_thread(
        deps.ledger.event, action, req, {"workflow_id": workflow_id, "reason": reason}
    )


# --- the workflow --------------------------------------------------------------------------


@DBOS.workflow(name=INGEST_WORKFLOW, max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
async def ingest(request: dict[str, Any]) -> dict[str, Any]:
    """Take one file version in from one partner; returns where it is kept and what was done
    to the remote file."""
    req = IngestRequest.from_dict(request)
    workflow_id = DBOS.workflow_id or ""
    deps = _current()
    retry = deps.retry
    problem = name_problem(posixpath.basename(req.remote_path))
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
            log.warning("ingest of %s failed: %s", req.remote_path, reason)
            raise IngestFailed(
                f"taking in {req.remote_path!r} from partner {req.partner!r} failed: {reason}",
                hint="The file was left on the partner's server; 'consonance-sftp retry ID' "
                "takes it in again once the cause is fixed.",
            ) from None
        outcome = IntakeOutcome.QUARANTINED if problem else IntakeOutcome.STORED
        await DBOS.run_step_async(
            step_options("record", retry),
            _record,
            workflow_id,
            req,
            fetched,
            outcome.value,
            problem,
        )
        problems: list[str] = []
        handed: dict[str, Any] | None = None
        if problem is None and req.kind in deps.handlers:
            try:
                handed = await DBOS.run_step_async(
                    step_options("hand-off", retry), _hand_off, req, fetched
                )
            except Exception as exc:
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
                "intake.post_action_failed",
                reason,
            )
        if problems:
            raise IngestFailed(
                f"{req.remote_path!r} from partner {req.partner!r} is stored "
                f"({outcome.value}, {fetched['local_path']}), but " + "; ".join(problems),
            )
        return {
            "workflow_id": workflow_id,
            "outcome": outcome.value,
            "reason": problem,
            "local_path": fetched["local_path"],
            "sha256": fetched["sha256"],
            "size": fetched["size"],
            "resumed_from": fetched.get("resumed_from", 0),
            "post_action": done,
        }
