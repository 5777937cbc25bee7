"""The quarantine, as ``consonance-sftp quarantine`` acts on it: list, show, assign, reject.

A quarantined file is an intake ledger row with outcome ``quarantined``, its bytes kept under
``state_dir/inbox`` (or, for a dangerous name, under a safe name in ``state_dir/quarantine``).

* ``assign`` gives it the ISBN and kind a person read from it and runs the intake flow's own
  processor (``flows.intake.IntakeProcessor.process``, the engine's hand-off) on the stored
  bytes: matched, content-checked, versioned, attached and the to-do completed exactly as if a
  rule had matched it. The row takes the outcome, the audit trail records who and what
  (``intake.assigned``). It runs in this process (Consonance over HTTP, the store), not as an
  engine workflow: each of its steps is safe to repeat, so an interrupted ``assign`` is simply
  run again.
* ``reject`` closes it: outcome ``rejected``, with who and why on the row and the trail
  (``intake.rejected``). The bytes stay where they are (nothing taken in is ever dropped).
"""

from __future__ import annotations

import asyncio
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consonance_sftp.app.intake_handler import intake_processor
from consonance_sftp.errors import ConsonanceSftpError, ValidationFailed
from consonance_sftp.flows import intake_match as m
from consonance_sftp.flows.intake import file_sha256
from consonance_sftp.models import AuditAction, IntakeOutcome
from consonance_sftp.ports.intake import FetchedFile, HandOffResult, IntakeRequest
from consonance_sftp.ports.store import AuditEvent, IntakeRecord

if TYPE_CHECKING:
    from consonance_sftp.app import App

ACTIONABLE = (IntakeOutcome.QUARANTINED, IntakeOutcome.FAILED)
"""Rows ``assign`` and ``reject`` act on: quarantined, or failed in Consonance (stored)."""


@dataclass(frozen=True, slots=True)
class QuarantinedFile:
    """One quarantined file, as ``quarantine show`` presents it."""

    row: IntakeRecord
    label: str  # the reason's label: unmatched, ambiguous, bad checksum...
    events: list[AuditEvent]  # its audit trail, oldest first

    def to_dict(self) -> dict[str, Any]:
        r = self.row
        return {
            "id": r.id,
            "partner": r.partner,
            "flow": r.flow,
            "original_name": posixpath.basename(r.remote_path),
            "remote_path": r.remote_path,
            "size": r.size,
            "sha256": r.sha256,
            "local_path": r.local_path,
            "outcome": r.outcome.value,
            "label": self.label,
            "reason": r.reason,
            "received_at": r.received_at.isoformat() if r.received_at else None,
        }


def label_of(reason: str | None) -> str:
    """The reason's label (the words before its first colon), for a list."""
    if not reason:
        return ""
    head = reason.split(":", 1)[0]
    return head if head in m.REASON_LABELS else "name" if "name" in head else head[:40]


def quarantined(app: App, *, partner: str | None = None) -> list[IntakeRecord]:
    """The files waiting in quarantine, newest first."""
    return app.store.list_intakes(partner=partner, outcome=IntakeOutcome.QUARANTINED)


def _row(app: App, intake_id: int) -> IntakeRecord:
    for row in app.store.list_intakes():
        if row.id == intake_id:
            return row
    raise ValidationFailed(
        f"no intake #{intake_id}",
        hint="'consonance-sftp quarantine list' shows the quarantined files and their ids.",
    )


def show(app: App, intake_id: int) -> QuarantinedFile:
    row = _row(app, intake_id)
    subject = f"{row.partner}:{row.remote_path}"
    events = list(reversed(app.store.list_audit(subject=subject, limit=50)))
    return QuarantinedFile(row=row, label=label_of(row.reason), events=events)


def _actionable(row: IntakeRecord, verb: str) -> None:
    if row.outcome not in ACTIONABLE:
        raise ValidationFailed(
            f"intake #{row.id} is {row.outcome.value}, not quarantined (nor failed): nothing "
            f"to {verb}",
            hint="'consonance-sftp quarantine list' shows the files waiting in quarantine.",
        )


async def assign(app: App, intake_id: int, *, isbn: str, kind: str, by: str) -> HandOffResult:
    """Process a quarantined file as if a rule had matched it to ``isbn`` as ``kind``."""
    row = await asyncio.to_thread(_row, app, intake_id)
    _actionable(row, "assign")
    isbn13 = m.to_isbn13(isbn)
    if isinstance(isbn13, m.Refusal):
        raise ValidationFailed(isbn13.reason)
    chosen = m.normalise_kind(kind)
    if chosen is None:
        raise ValidationFailed(f"unknown kind {kind!r}", hint=f"Use one of: {', '.join(m.KINDS)}.")
    if not row.local_path or not await asyncio.to_thread(Path(row.local_path).is_file):
        raise ValidationFailed(
            f"intake #{intake_id}: its stored copy {row.local_path!r} is missing",
            hint="Restore the file from a backup; the row keeps its SHA-256 to check it.",
        )
    size, sha = await asyncio.to_thread(file_sha256, Path(row.local_path))
    if row.sha256 and sha != row.sha256:
        raise ValidationFailed(
            f"intake #{intake_id}: its stored copy no longer has the SHA-256 recorded "
            f"({sha} instead of {row.sha256}); not assigned"
        )
    # A dangerous name was kept under a safe one: that is the name Consonance gets.
    local_name = posixpath.basename(row.local_path)
    remote = row.remote_path
    if posixpath.basename(remote) != local_name:
        remote = posixpath.join(posixpath.dirname(remote), local_name)
    request = IntakeRequest(
        flow=row.flow or "",
        kind="intake",
        partner=row.partner,
        remote_path=remote,
        size=row.size,
        mtime=row.remote_mtime,
        trigger=f"user:{by}",
    )
    fetched = FetchedFile(local_path=row.local_path, size=size, sha256=sha)
    claim = m.Claim(rule="assigned", isbn=isbn13, kind=chosen, evidence=f"assigned by {by}")
    try:
        result = await intake_processor(app).process(request, fetched, assigned=claim)
    except ConsonanceSftpError as exc:
        raise ConsonanceSftpError(
            f"intake #{intake_id} not assigned: {exc.message}",
            hint="Nothing was recorded; run the same command again once Consonance answers.",
            retryable=exc.retryable,
        ) from exc
    await asyncio.to_thread(_record_assignment, app, row, result, isbn13, chosen, by)
    return result


def _record_assignment(
    app: App, row: IntakeRecord, result: HandOffResult, isbn: str, kind: str, by: str
) -> None:
    assert row.id is not None
    reason = f"assigned by {by}: {result.reason}" if result.reason else f"assigned by {by}"
    app.store.update_intake(
        row.id,
        outcome=result.outcome,
        reason=reason,
        work_id=result.work_id,
        product_id=result.product_id,
    )
    app.store.append_audit(
        actor=f"user:{by}",
        action=AuditAction.INTAKE_ASSIGNED,
        subject=f"{row.partner}:{row.remote_path}",
        details={
            "intake_id": row.id,
            "by": by,
            "isbn": isbn,
            "kind": kind,
            "outcome": result.outcome.value,
            "reason": result.reason,
            "was": row.reason,
            "work_id": result.work_id,
            "product_id": result.product_id,
        },
    )


def reject(app: App, intake_id: int, *, reason: str, by: str) -> IntakeRecord:
    """Close a quarantined file for good, with who and why; its bytes are kept."""
    if not reason.strip():
        raise ValidationFailed("say why the file is rejected (--reason)")
    row = _row(app, intake_id)
    _actionable(row, "reject")
    assert row.id is not None
    updated = app.store.update_intake(
        row.id, outcome=IntakeOutcome.REJECTED, reason=f"rejected by {by}: {reason.strip()}"
    )
    app.store.append_audit(
        actor=f"user:{by}",
        action=AuditAction.INTAKE_REJECTED_ROW,
        subject=f"{row.partner}:{row.remote_path}",
        details={"intake_id": row.id, "by": by, "reason": reason.strip(), "was": row.reason},
    )
    return updated
