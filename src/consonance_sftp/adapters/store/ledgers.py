"""The delivery and intake ledgers of ``SqlStore``: one row per file sent to a partner, one per
file taken in from a partner's inbox.

Mixed into ``SqlStore`` (adapters/store/sql_store.py). Every insert and update of a ledger row
commits together with the audit event that covers it (``AuditTrail.transaction``); a second
process recording the same key at once finds the row the first one wrote.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa

from consonance_sftp.adapters.store.audit_trail import Appender, AuditTrail
from consonance_sftp.adapters.store.base import (
    Tables,
    from_db_time,
    not_found,
    to_db_time,
    translate_errors,
)
from consonance_sftp.adapters.store.schema import delivery_ledger, intake_ledger
from consonance_sftp.models import DeliveryKey, DeliveryOutcome, IntakeOutcome, Verification
from consonance_sftp.ports.clock import Clock
from consonance_sftp.ports.delivery import DeliveryRecord, verification
from consonance_sftp.ports.store import IntakeRecord

# Built once, with bound parameters: compiled once and cached (ledger writes are hot paths).
# RETURNING the whole row: the audit event that covers the write carries it.
_INSERT_DELIVERY = delivery_ledger.insert().returning(*delivery_ledger.c)
_INSERT_INTAKE = intake_ledger.insert().returning(*intake_ledger.c)


def _mapping(row: sa.Row[Any] | Mapping[str, Any]) -> Mapping[str, Any]:
    return cast("Mapping[str, Any]", row._mapping) if isinstance(row, sa.Row) else row


def _delivery(row: sa.Row[Any] | Mapping[str, Any]) -> DeliveryRecord:
    m = _mapping(row)
    return DeliveryRecord(
        id=m["id"],
        flow=m["flow"],
        partner=m["partner"],
        remote_path=m["remote_path"],
        sha256=m["sha256"],
        generation=m["generation"],
        size=m["size"],
        source=m["source"],
        package=m["package_id"],
        isbn=m["isbn"],
        asset_version_id=m["asset_version_id"],
        workflow_id=m["workflow_id"],
        executor_id=m["executor_id"],
        trigger=m["trigger"],
        started_at=from_db_time(m["started_at"]),
        finished_at=from_db_time(m["finished_at"]),
        attempts=m["attempts"],
        outcome=DeliveryOutcome(m["outcome"]),
        error=m["error"],
        verified_by=verification(m["verified_by"]),
        created_at=from_db_time(m["created_at"]),
    )


def _intake(row: sa.Row[Any] | Mapping[str, Any]) -> IntakeRecord:
    m = _mapping(row)
    return IntakeRecord(
        id=m["id"],
        flow=m["flow"],
        partner=m["partner"],
        remote_path=m["remote_path"],
        size=m["size"],
        remote_mtime=m["remote_mtime"],
        sha256=m["sha256"],
        local_path=m["local_path"],
        outcome=IntakeOutcome(m["outcome"]),
        reason=m["reason"],
        work_id=m["work_id"],
        product_id=m["product_id"],
        received_at=from_db_time(m["received_at"]),
        name_note=m["name_note"],
        name_nfc=m["name_nfc"],
        raw_name=m["raw_name"],
        supersedes=m["supersedes"],
    )


class Ledgers(Tables):
    """The delivery ledger and the intake ledger (``ports.store.Store``'s ledgers)."""

    audit: AuditTrail
    clock: Clock

    def _now(self) -> datetime:
        now = to_db_time(self.clock.now())
        assert now is not None
        return now

    # --- delivery ledger -------------------------------------------------------------------

    def _delivery_where(
        self, partner: str, remote_path: str, sha256: str
    ) -> sa.ColumnElement[bool]:
        c = delivery_ledger.c
        return sa.and_(c.partner == partner, c.remote_path == remote_path, c.sha256 == sha256)

    @translate_errors("recording a delivery")
    def record_delivery(self, record: DeliveryRecord) -> DeliveryRecord:
        where = sa.and_(
            self._delivery_where(record.partner, record.remote_path, record.sha256),
            delivery_ledger.c.generation == record.generation,
        )
        existing = self._first_delivery(sa.select(delivery_ledger).where(where))
        if existing is not None:
            return existing
        values = {
            f.name: getattr(record, f.name)
            for f in dataclasses.fields(record)
            if f.name not in {"id", "created_at"}
        }
        values["package_id"] = values.pop("package")  # the column's name since the first schema
        values["outcome"] = str(record.outcome)
        values["verified_by"] = None if record.verified_by is None else str(record.verified_by)
        values["started_at"] = to_db_time(record.started_at)
        values["finished_at"] = to_db_time(record.finished_at)
        values["created_at"] = self._now()
        values["audit_rev"] = 1

        def insert(audit: Appender) -> int:
            row = audit.conn.execute(_INSERT_DELIVERY, values).mappings().one()
            new_id: int = row["id"]
            audit.cover(delivery_ledger, new_id, row)  # the row and its audit event commit together
            return new_id

        try:
            new_id = self.audit.transaction(insert)
        except sa.exc.IntegrityError:
            # Another process recorded the same key in between: that row is the one.
            existing = self._first_delivery(sa.select(delivery_ledger).where(where))
            if existing is None:
                raise
            return existing
        return dataclasses.replace(record, id=new_id, created_at=values["created_at"])

    def _first_delivery(self, query: sa.Select[Any]) -> DeliveryRecord | None:
        with self.read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _delivery(row)

    @translate_errors("updating a delivery")
    def update_delivery(
        self,
        delivery_id: int,
        *,
        outcome: DeliveryOutcome | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        attempts: int | None = None,
        error: str | None = None,
        workflow_id: str | None = None,
        executor_id: str | None = None,
        verified_by: Verification | None = None,
    ) -> DeliveryRecord:
        changes: dict[str, Any] = {
            "outcome": None if outcome is None else str(outcome),
            "started_at": to_db_time(started_at),
            "finished_at": to_db_time(finished_at),
            "attempts": attempts,
            "error": error,
            "workflow_id": workflow_id,
            "executor_id": executor_id,
            "verified_by": None if verified_by is None else str(verified_by),
        }
        changes = {k: v for k, v in changes.items() if v is not None}
        if error == "":
            changes["error"] = None
        if not changes:
            row = self._first_delivery(
                sa.select(delivery_ledger).where(delivery_ledger.c.id == delivery_id)
            )
            if row is None:
                raise not_found("delivery", delivery_id)
            return row
        written = self.audit.transaction(
            lambda audit: audit.update(delivery_ledger, delivery_id, changes)
        )
        if written is None:
            raise not_found("delivery", delivery_id)
        return _delivery(written)

    @translate_errors("reading a delivery")
    def get_delivery(self, delivery_id: int) -> DeliveryRecord | None:
        return self._first_delivery(
            sa.select(delivery_ledger).where(delivery_ledger.c.id == delivery_id)
        )

    @translate_errors("finding a delivery")
    def find_delivery(
        self, key: DeliveryKey, generation: int | None = None
    ) -> DeliveryRecord | None:
        query = sa.select(delivery_ledger).where(
            self._delivery_where(key.partner, key.remote_path, key.sha256)
        )
        if generation is None:
            query = query.order_by(delivery_ledger.c.generation.desc()).limit(1)
        else:
            query = query.where(delivery_ledger.c.generation == generation)
        return self._first_delivery(query)

    @translate_errors("listing deliveries")
    def list_deliveries(
        self,
        *,
        isbn: str | None = None,
        partner: str | None = None,
        flow: str | None = None,
        outcome: DeliveryOutcome | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        package: str | None = None,
        limit: int | None = None,
    ) -> list[DeliveryRecord]:
        c = delivery_ledger.c
        when = sa.func.coalesce(c.started_at, c.created_at)
        query = sa.select(delivery_ledger).order_by(when.desc(), c.id.desc())
        for column, value in (
            (c.isbn, isbn),
            (c.partner, partner),
            (c.flow, flow),
            (c.package_id, package),
            (c.outcome, None if outcome is None else str(outcome)),
        ):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(when >= to_db_time(since))
        if until is not None:
            query = query.where(when < to_db_time(until))
        if limit is not None:
            query = query.limit(limit)
        with self.read() as conn:
            return [_delivery(row) for row in conn.execute(query)]

    # --- intake ledger ---------------------------------------------------------------------

    def _intake_where(
        self, partner: str, remote_path: str, size: int, remote_mtime: float
    ) -> sa.ColumnElement[bool]:
        c = intake_ledger.c
        return sa.and_(
            c.partner == partner,
            c.remote_path == remote_path,
            c.size == size,
            c.remote_mtime == remote_mtime,
        )

    def _first_intake(self, query: sa.Select[Any]) -> IntakeRecord | None:
        with self.read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _intake(row)

    @translate_errors("recording an intake")
    def record_intake(self, record: IntakeRecord) -> IntakeRecord:
        where = self._intake_where(
            record.partner, record.remote_path, record.size, record.remote_mtime
        )
        existing = self._first_intake(sa.select(intake_ledger).where(where))
        if existing is not None:
            return existing
        values = {
            f.name: getattr(record, f.name) for f in dataclasses.fields(record) if f.name != "id"
        }
        values["outcome"] = str(record.outcome)
        values["received_at"] = to_db_time(record.received_at) or self._now()
        values["audit_rev"] = 1

        def insert(audit: Appender) -> int:
            row = audit.conn.execute(_INSERT_INTAKE, values).mappings().one()
            new_id: int = row["id"]
            audit.cover(intake_ledger, new_id, row)  # the row and its audit event commit together
            return new_id

        try:
            new_id = self.audit.transaction(insert)
        except sa.exc.IntegrityError:
            existing = self._first_intake(sa.select(intake_ledger).where(where))
            if existing is None:
                raise
            return existing
        return dataclasses.replace(
            record, id=new_id, received_at=from_db_time(values["received_at"])
        )

    @translate_errors("updating an intake")
    def update_intake(
        self,
        intake_id: int,
        *,
        outcome: IntakeOutcome | None = None,
        reason: str | None = None,
        sha256: str | None = None,
        local_path: str | None = None,
        work_id: int | None = None,
        product_id: int | None = None,
        supersedes: int | None = None,
    ) -> IntakeRecord:
        changes: dict[str, Any] = {
            "outcome": None if outcome is None else str(outcome),
            "reason": reason,
            "sha256": sha256,
            "local_path": local_path,
            "work_id": work_id,
            "product_id": product_id,
            "supersedes": supersedes,
        }
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            row = self._first_intake(
                sa.select(intake_ledger).where(intake_ledger.c.id == intake_id)
            )
            if row is None:
                raise not_found("intake", intake_id)
            return row
        written = self.audit.transaction(
            lambda audit: audit.update(intake_ledger, intake_id, changes)
        )
        if written is None:
            raise not_found("intake", intake_id)
        return _intake(written)

    @translate_errors("finding an intake")
    def find_intake(
        self, partner: str, remote_path: str, size: int, remote_mtime: float
    ) -> IntakeRecord | None:
        return self._first_intake(
            sa.select(intake_ledger).where(
                self._intake_where(partner, remote_path, size, remote_mtime)
            )
        )

    @translate_errors("listing intakes")
    def list_intakes(
        self,
        *,
        partner: str | None = None,
        remote_path: str | None = None,
        outcome: IntakeOutcome | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[IntakeRecord]:
        c = intake_ledger.c
        query = sa.select(intake_ledger).order_by(c.received_at.desc(), c.id.desc())
        if partner is not None:
            query = query.where(c.partner == partner)
        if remote_path is not None:
            query = query.where(c.remote_path == remote_path)
        if outcome is not None:
            query = query.where(c.outcome == str(outcome))
        if since is not None:
            query = query.where(c.received_at >= to_db_time(since))
        if until is not None:
            query = query.where(c.received_at < to_db_time(until))
        if limit is not None:
            query = query.limit(limit)
        with self.read() as conn:
            return [_intake(row) for row in conn.execute(query)]
