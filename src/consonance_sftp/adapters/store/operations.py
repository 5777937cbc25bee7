"""The store's operational state: pauses, holds, resend marks and publication-due marks.

Mixed into ``SqlStore``. Each lives in a table of its own (migration 0006), so reading it costs
the same however long the audit trail grows: held deliveries in particular are the open rows of
``holds`` (an index on ``released_at``), not a scan of every ``delivery.held`` event. Every
change of a pause or a hold still goes on the audit trail, in the same transaction as the row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from consonance_sftp.adapters.store.audit_chain import canonical_json
from consonance_sftp.adapters.store.audit_trail import Appender, AuditTrail
from consonance_sftp.adapters.store.base import (
    Tables,
    from_db_time,
    from_db_time_required,
    to_db_time,
    translate_errors,
)
from consonance_sftp.adapters.store.schema import holds, pauses, publication_due_marks, resend_marks
from consonance_sftp.errors import StoreError
from consonance_sftp.models import AuditAction, DeliveryKey
from consonance_sftp.ports.clock import Clock
from consonance_sftp.ports.store import HoldRecord, JsonValue, PauseRecord

HELD = AuditAction.DELIVERY_HELD
RELEASED = AuditAction.DELIVERY_RELEASED
SCOPES = ("partner", "flow")


def hold_key(request: Mapping[str, JsonValue]) -> str:
    """One held request, one key: the digest of its JSON with sorted keys (what told two holds
    apart when they were read from the audit trail; migration 0006 uses the same)."""
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def _pause(row: sa.Row[Any]) -> PauseRecord:
    return PauseRecord(
        scope=row.scope,
        name=row.name,
        paused=bool(row.paused),
        by=row.by,
        reason=row.reason,
        at=from_db_time_required(row.at),
    )


def _hold(row: sa.Row[Any]) -> HoldRecord:
    return HoldRecord(
        id=row.id,
        partner=row.partner,
        flow=row.flow,
        package=row.package,
        request=json.loads(row.request),
        reason=row.reason,
        held_at=from_db_time_required(row.held_at),
        released_at=from_db_time(row.released_at),
        released_by=row.released_by,
        workflow_id=row.workflow_id,
    )


def _upsert(conn: Connection, table: sa.Table, keys: list[str], row: dict[str, Any]) -> None:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table).values(row)
    others = {name: stmt.excluded[name] for name in row if name not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=others))


class Operations(Tables):
    """Pauses, holds and marks (``ports.store.Store``'s operational state)."""

    audit: AuditTrail
    clock: Clock

    def _stamp(self) -> datetime:
        now = to_db_time(self.clock.now())
        assert now is not None
        return now

    # --- pauses ----------------------------------------------------------------------------

    @translate_errors("reading a pause")
    def get_pause(self, scope: str, name: str) -> PauseRecord | None:
        c = pauses.c
        with self.read() as conn:
            row = conn.execute(sa.select(pauses).where(c.scope == scope, c.name == name)).first()
        return None if row is None else _pause(row)

    @translate_errors("listing pauses")
    def list_pauses(self) -> list[PauseRecord]:
        with self.read() as conn:
            rows = conn.execute(sa.select(pauses).order_by(pauses.c.scope, pauses.c.name))
            return [_pause(row) for row in rows]

    @translate_errors("saving a pause")
    def set_pause(
        self, scope: str, name: str, *, paused: bool, by: str, reason: str
    ) -> PauseRecord:
        if scope not in SCOPES:
            raise StoreError(f"a pause is of a partner or a flow, not a {scope!r}")
        record = PauseRecord(
            scope=scope, name=name, paused=paused, by=by, reason=reason, at=self._stamp()
        )

        def save(audit: Appender) -> None:
            row = {"scope": scope, "name": name, "paused": paused, "by": by, "reason": reason}
            _upsert(audit.conn, pauses, ["scope", "name"], {**row, "at": record.at})
            audit.append(
                f"user:{by}",
                AuditAction(f"{scope}.{'paused' if paused else 'resumed'}"),
                f"{scope}:{name}",
                canonical_json({"reason": reason}),
            )

        self.audit.transaction(save)
        return record

    # --- holds -----------------------------------------------------------------------------

    @translate_errors("holding a delivery")
    def hold_delivery(self, request: Mapping[str, JsonValue], reason: str) -> HoldRecord:
        key = hold_key(request)
        partner, package = str(request["partner"]), str(request["package"])
        values = {
            "hold_key": key,
            "partner": partner,
            "flow": str(request["flow"]),
            "package": package,
            "request": json.dumps(request, sort_keys=True),
            "reason": reason,
            "held_at": self._stamp(),
        }
        c = holds.c

        def save(audit: Appender) -> HoldRecord:
            conn = audit.conn
            open_hold = sa.select(holds).where(c.hold_key == key, c.released_at.is_(None))
            row = conn.execute(open_hold).first()
            if row is None:
                conn.execute(holds.insert().values(values))
                row = conn.execute(open_hold).one()
            details = {"reason": reason, "request": dict(request)}
            audit.append("service", HELD, f"{partner}:{package}", canonical_json(details))
            return _hold(row)

        return self.audit.transaction(save)

    @translate_errors("listing held deliveries")
    def open_holds(self) -> list[HoldRecord]:
        c = holds.c
        query = sa.select(holds).where(c.released_at.is_(None)).order_by(c.held_at, c.id)
        with self.read() as conn:
            return [_hold(row) for row in conn.execute(query)]

    @translate_errors("releasing a held delivery")
    def release_hold(
        self,
        hold_id: int,
        *,
        by: str,
        workflow_id: str,
        details: Mapping[str, JsonValue] | None = None,
    ) -> HoldRecord:
        c = holds.c
        now = self._stamp()

        def save(audit: Appender) -> HoldRecord:
            conn = audit.conn
            done = conn.execute(
                holds.update()
                .where(c.id == hold_id, c.released_at.is_(None))
                .values(released_at=now, released_by=by, workflow_id=workflow_id)
            )
            row = conn.execute(sa.select(holds).where(c.id == hold_id)).first()
            if row is None:
                raise StoreError(f"no held delivery with id {hold_id}")
            if done.rowcount:
                hold = _hold(row)
                event = {
                    "workflow_id": workflow_id,
                    "held_at": hold.held_at.isoformat(),
                    **dict(details or {}),
                }
                subject = f"{hold.partner}:{hold.package}"
                audit.append(by, RELEASED, subject, canonical_json(event))
            return _hold(row)

        return self.audit.transaction(save)

    # --- marks -----------------------------------------------------------------------------

    @translate_errors("reading a resend mark")
    def get_resend_mark(self, key: DeliveryKey) -> int | None:
        c = resend_marks.c
        query = sa.select(c.generation).where(
            c.partner == key.partner, c.remote_path == key.remote_path, c.sha256 == key.sha256
        )
        with self.read() as conn:
            value = conn.execute(query).scalar()
        return None if value is None else int(value)

    @translate_errors("saving a resend mark")
    def set_resend_mark(self, key: DeliveryKey, generation: int) -> None:
        row = {
            "partner": key.partner,
            "remote_path": key.remote_path,
            "sha256": key.sha256,
            "generation": generation,
            "marked_at": self._stamp(),
        }
        with self.write() as conn:
            _upsert(conn, resend_marks, ["partner", "remote_path", "sha256"], row)

    @translate_errors("reading a publication-due mark")
    def get_publication_due(self, days: int, product_id: int) -> str | None:
        c = publication_due_marks.c
        query = sa.select(c.publication_date).where(c.days == days, c.product_id == product_id)
        with self.read() as conn:
            value = conn.execute(query).scalar()
        return None if value is None else str(value)

    @translate_errors("saving a publication-due mark")
    def set_publication_due(self, days: int, product_id: int, publication_date: str) -> None:
        row = {
            "days": days,
            "product_id": product_id,
            "publication_date": publication_date,
            "updated_at": self._stamp(),
        }
        with self.write() as conn:
            _upsert(conn, publication_due_marks, ["days", "product_id"], row)
