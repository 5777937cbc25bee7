"""The delivery ledger and alerts of the engine, on the Store port.

``StoreLedger`` is the engine's ``DeliveryLedger`` and ``WithdrawalLedger`` on
``ports.store.Store`` (the service's own database): "was this key and generation already
sent?" and "record this outcome", with one row per (partner, remote path, SHA-256, generation)
however often a step replays; and "these files are off the partner's server now". The engine
builds the row itself (``ports.delivery.DeliveryRecord``); this writes it, or moves an existing
row to the new outcome, and puts every change of outcome on the audit trail.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from consonance_sftp.models import AuditAction, DeliveryKey, DeliveryOutcome
from consonance_sftp.ports.delivery import DeliveryRecord, WithdrawalRecord
from consonance_sftp.ports.store import Store

_DONE = {DeliveryOutcome.SENT, DeliveryOutcome.SKIPPED}


class StoreLedger:
    """``DeliveryLedger`` and ``WithdrawalLedger`` on the Store port (``app`` passes the real
    ``SqlStore``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def already_sent(self, key: DeliveryKey, generation: int) -> bool:
        row = self.store.find_delivery(key, generation)
        return row is not None and row.outcome in _DONE

    def record(self, record: DeliveryRecord) -> None:
        if not self._write(record):
            return  # a replayed step: the row already says this, and so does the audit trail
        # Every change of outcome is on the append-only audit trail too.
        self.store.append_audit(
            actor=f"engine:{record.executor_id or 'unknown'}",
            action=AuditAction(f"delivery.{record.outcome.value}"),
            subject=f"{record.partner}:{record.remote_path}",
            details={
                "sha256": record.sha256,
                "size": record.size,
                "generation": record.generation,
                "workflow_id": record.workflow_id,
                "flow": record.flow,
                "package": record.package,
                "isbn": record.isbn,
                "trigger": record.trigger,
                "reason": record.error,
                # Only where known: events of rows without it keep their earlier shape.
                **({"verified_by": str(record.verified_by)} if record.verified_by else {}),
            },
        )

    def withdrawn(self, record: WithdrawalRecord) -> bool:
        """The ledger's ``sent`` rows of the withdrawn paths (this flow, partner and title,
        any generation or version: a replaced cover was sent twice to one path) say
        ``withdrawn``, and one ``package.withdrawn`` event says what was removed and what was
        already gone. Its ``workflow_id`` makes a replay of the step a no-op."""
        req = record.request
        subject = f"{req.partner}:{req.isbn}"
        events = self.store.list_audit(subject=subject, action=AuditAction.PACKAGE_WITHDRAWN)
        if any(e.details.get("workflow_id") == record.workflow_id for e in events):
            return False
        paths = {f.remote_path for f in req.files}
        rows = self.store.list_deliveries(
            isbn=req.isbn, partner=req.partner, flow=req.flow, outcome=DeliveryOutcome.SENT
        )
        for row in rows:
            if row.id is not None and row.remote_path in paths:
                self.store.update_delivery(
                    row.id,
                    outcome=DeliveryOutcome.WITHDRAWN,
                    executor_id=record.executor_id or None,
                )
        self.store.append_audit(
            actor=f"engine:{record.executor_id or 'unknown'}",
            action=AuditAction.PACKAGE_WITHDRAWN,
            subject=subject,
            details={
                "work_id": req.work_id,
                "removed": list(record.removed),
                "already_gone": list(record.already_gone),
                "generation": req.generation,
                "workflow_id": record.workflow_id,
                "trigger": req.trigger,
            },
        )
        return True

    def _write(self, record: DeliveryRecord) -> bool:
        """Write the row; False when it already held exactly this outcome and error."""
        existing = self.store.find_delivery(record.key, record.generation)
        if existing is not None and _same(existing, record):
            return False
        if record.finished_at is None:  # an outcome is recorded as it is known
            record = dataclasses.replace(record, finished_at=datetime.now(UTC))
        row = existing or self.store.record_delivery(record)
        if row.id is not None and not _same(row, record):
            # The row existed (a failed attempt, then ``retry``): move it to the new outcome.
            self.store.update_delivery(
                row.id,
                outcome=record.outcome,
                error=record.error or "",
                workflow_id=record.workflow_id,
                executor_id=record.executor_id,
                verified_by=record.verified_by,
                finished_at=record.finished_at,
                attempts=row.attempts + record.attempts,
            )
        return True


def _same(row: DeliveryRecord, record: DeliveryRecord) -> bool:
    return row.outcome == record.outcome and (row.error or None) == (record.error or None)
