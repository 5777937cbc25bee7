"""The delivery ledger and alerts of the engine, on the Store port.

``StoreLedger`` adapts ``ports.store.Store`` (the service's own database) to what the delivery
workflow needs: "was this key and generation already sent?" and "record this outcome", with one
row per (partner, remote path, SHA-256, generation) however often a step replays; and to what
the withdrawal workflow needs: "these files are off the partner's server now".
"""

from __future__ import annotations

from datetime import UTC, datetime

from consonance_sftp.models import AuditAction, DeliveryKey, DeliveryOutcome
from consonance_sftp.ports.store import DeliveryRecord as LedgerRow
from consonance_sftp.ports.store import Store

from .contracts import DeliveryRecord, WithdrawalRecord

_DONE = {DeliveryOutcome.SENT, DeliveryOutcome.SKIPPED}


class StoreLedger:
    """``DeliveryLedger`` on the Store port (``app`` passes the real ``SqlStore``)."""

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
            subject=f"{record.key.partner}:{record.key.remote_path}",
            details={
                "sha256": record.key.sha256,
                "size": record.size,
                "generation": record.generation,
                "workflow_id": record.workflow_id,
                "flow": record.flow,
                "package": record.package,
                "isbn": record.isbn,
                "trigger": record.trigger,
                "reason": record.reason,
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
                self.store.update_delivery(row.id, outcome=DeliveryOutcome.WITHDRAWN)
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
        """Write the row; False when it already held exactly this outcome and reason."""
        existing = self.store.find_delivery(record.key, record.generation)
        if existing is not None and _same(existing, record):
            return False
        now = datetime.now(UTC)
        row = existing or self.store.record_delivery(
            LedgerRow(
                flow=record.flow,
                partner=record.key.partner,
                remote_path=record.key.remote_path,
                sha256=record.key.sha256,
                size=record.size,
                generation=record.generation,
                workflow_id=record.workflow_id,
                trigger=record.trigger,
                attempts=record.attempts,
                outcome=record.outcome,
                error=record.reason,
                started_at=record.started_at,
                finished_at=now,
                asset_version_id=record.asset_version_id,
                package_id=record.package,
                isbn=record.isbn,
                source=record.source,
            )
        )
        if row.id is not None and not _same(row, record):
            # The row existed (a failed attempt, then ``retry``): move it to the new outcome.
            self.store.update_delivery(
                row.id,
                outcome=record.outcome,
                error=record.reason or "",
                workflow_id=record.workflow_id,
                finished_at=now,
                attempts=row.attempts + record.attempts,
            )
        return True


def _same(row: LedgerRow, record: DeliveryRecord) -> bool:
    return row.outcome == record.outcome and (row.error or None) == record.reason
