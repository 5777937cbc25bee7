"""``SqlStore``: the ``Store`` port on SQLAlchemy, for SQLite and PostgreSQL alike.

``open_store(url)`` is the one entry point: it builds the engine, runs the migrations and
returns a store whose audit writes go to a chain of its own. Records go in and come out as the
plain dataclasses of ``ports.store``; times are stored in UTC and come back timezone-aware.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url

from consonance_sftp.adapters.store import database
from consonance_sftp.adapters.store.audit_export import TABLES as AUDIT_TABLES
from consonance_sftp.adapters.store.audit_export import export_rows
from consonance_sftp.adapters.store.audit_trail import AuditTrail
from consonance_sftp.adapters.store.base import (
    Tables,
    from_db_time,
    from_db_time_required,
    not_found,
    to_db_time,
    translate_errors,
)
from consonance_sftp.adapters.store.finance import FinanceLedgerTables
from consonance_sftp.adapters.store.ledgers import Ledgers
from consonance_sftp.adapters.store.operations import Operations
from consonance_sftp.adapters.store.sales import SalesLedgerTables
from consonance_sftp.adapters.store.schema import (
    alerts,
    asset_versions,
    consonance_snapshots,
    onix_feed_hashes,
    watermarks,
)
from consonance_sftp.adapters.store.users import ConsoleUserTables
from consonance_sftp.errors import StoreError
from consonance_sftp.models import (
    Alert,
    AlertSeverity,
)
from consonance_sftp.ports.clock import Clock, SystemClock
from consonance_sftp.ports.snapshots import Snapshot
from consonance_sftp.ports.store import (
    AlertRecord,
    AssetVersion,
    AuditEvent,
    AuditReport,
    JsonValue,
    Store,
)

alert_log = logging.getLogger("consonance_sftp.alerts")
_LOG_LEVEL = {
    AlertSeverity.INFO: logging.INFO,
    AlertSeverity.WARNING: logging.WARNING,
    AlertSeverity.CRITICAL: logging.CRITICAL,
}
_ASSET_ATTEMPTS = 5
_ASSET_LOCK_NAMESPACE = 0x41535354  # "ASST": first key of the advisory lock per asset scope
_SNAPSHOT_BATCH = 500


def open_store(
    url: str,
    *,
    clock: Clock | None = None,
    chain_id: str | None = None,
    writer: str | None = None,
    migrate: bool = True,
    must_exist: bool = False,
    audit_key: bytes | None = None,
) -> SqlStore:
    """Open (and by default migrate) the database at ``url``.

    ``chain_id``: continue an existing audit chain (e.g. a stable executor id) instead of
    starting a new one; ``must_exist``: refuse to create a new SQLite file (for read-only
    commands such as ``audit verify``, where a typo must not look like an empty, valid trail);
    ``audit_key``: write a keyed (HMAC-SHA256) chain, and check keyed chains with this key.
    """
    normalised = database.normalise_url(url)
    parsed = make_url(normalised)
    if must_exist and parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if not path or path == ":memory:" or not Path(path).expanduser().exists():
            raise StoreError(
                f"no database at {path or url!r}",
                hint="Check the database URL (--db or database.url in the config).",
            )
    engine = database.create_engine(normalised)
    try:
        if migrate:
            _migrate(engine)
        return SqlStore(engine, clock=clock, chain_id=chain_id, writer=writer, audit_key=audit_key)
    except BaseException:
        engine.dispose()
        raise


@translate_errors("migrating the database")
def _migrate(engine: Engine) -> None:
    database.migrate(engine)


def _asset(row: sa.Row[Any]) -> AssetVersion:
    m = row._mapping
    return AssetVersion(
        id=m["id"],
        work_id=m["work_id"],
        product_id=m["product_id"],
        kind=m["kind"],
        version=m["version"],
        sha256=m["sha256"],
        size=m["size"],
        source=m["source"],
        local_path=m["local_path"],
        derived_from=m["derived_from"],
        approved_at=from_db_time(m["approved_at"]),
        superseded_by=m["superseded_by"],
        created_at=from_db_time(m["created_at"]),
        isbn=m["isbn"],
        partner=m["partner"],
        original_name=m["original_name"],
        intake_id=m["intake_id"],
    )


def _alert(row: sa.Row[Any]) -> AlertRecord:
    m = row._mapping
    return AlertRecord(
        id=m["id"],
        ts=from_db_time_required(m["ts"]),
        severity=AlertSeverity(m["severity"]),
        kind=m["kind"],
        message=m["message"],
        partner=m["partner"],
        flow=m["flow"],
        details=m["details"] or {},
        acknowledged_at=from_db_time(m["acknowledged_at"]),
        acknowledged_by=m["acknowledged_by"],
    )


def _scope_key(version: AssetVersion) -> int:
    """A signed 32-bit key for one (work, product, kind); collisions only serialise more."""
    digest = zlib.crc32(f"{version.work_id}/{version.product_id or 0}/{version.kind}".encode())
    return digest - (1 << 32) if digest >= (1 << 31) else digest


class SqlStore(
    Ledgers, Operations, SalesLedgerTables, FinanceLedgerTables, ConsoleUserTables, Tables
):
    """Asset versions, audit trail, alerts and poll snapshots; the delivery and intake ledgers
    come from ``Ledgers`` (adapters/store/ledgers.py), pauses, holds and marks from
    ``Operations`` (adapters/store/operations.py), the sales ledger from
    ``SalesLedgerTables`` (adapters/store/sales.py), the finance ledger from
    ``FinanceLedgerTables`` (adapters/store/finance.py), the web console's users and sessions
    from ``ConsoleUserTables`` (adapters/store/users.py)."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock | None = None,
        chain_id: str | None = None,
        writer: str | None = None,
        audit_key: bytes | None = None,
    ) -> None:
        super().__init__(engine)
        self.clock: Clock = clock or SystemClock()
        self.audit = AuditTrail(engine, self.clock, chain_id=chain_id, writer=writer, key=audit_key)

    @property
    def url(self) -> str:
        """The database URL, password hidden (for messages)."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def chain_id(self) -> str:
        """This store's own audit chain."""
        return self.audit.chain_id

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- asset versions --------------------------------------------------------------------

    @staticmethod
    def _asset_scope(work_id: int, product_id: int | None, kind: str) -> sa.ColumnElement[bool]:
        c = asset_versions.c
        return sa.and_(
            c.work_id == work_id,
            sa.func.coalesce(c.product_id, 0) == (product_id or 0),
            c.kind == kind,
        )

    @translate_errors("adding an asset version")
    def add_asset_version(self, version: AssetVersion) -> AssetVersion:
        for _ in range(_ASSET_ATTEMPTS):
            try:
                return self._add_asset_version_once(version)
            except sa.exc.IntegrityError as exc:
                # A concurrent writer took this version number (PostgreSQL); anything else
                # (a bad derived_from) is not worth retrying.
                if "uq_asset_versions_scope_version" not in str(exc.orig) and "UNIQUE" not in str(
                    exc.orig
                ):
                    raise
        raise StoreError(
            f"could not number a new {version.kind} version of work {version.work_id}: "
            "too many concurrent writers",
            retryable=True,
        )

    def _add_asset_version_once(self, version: AssetVersion) -> AssetVersion:
        scope = self._asset_scope(version.work_id, version.product_id, version.kind)
        c = asset_versions.c
        now = self._now()
        with self.write() as conn:
            if conn.dialect.name == "postgresql":
                # Number versions of one asset one writer at a time (SQLite's BEGIN IMMEDIATE
                # does this already); without it concurrent writers keep colliding and retrying.
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:ns, :key)"),
                    {"ns": _ASSET_LOCK_NAMESPACE, "key": _scope_key(version)},
                )
            last = conn.execute(sa.select(sa.func.max(c.version)).where(scope)).scalar()
            number = (last or 0) + 1
            values = {
                f.name: getattr(version, f.name)
                for f in dataclasses.fields(version)
                if f.name not in {"id", "version", "superseded_by", "created_at"}
            }
            values["approved_at"] = to_db_time(version.approved_at)
            new_id = conn.execute(
                asset_versions.insert()
                .values(**values, version=number, created_at=now)
                .returning(c.id)
            ).scalar_one()
            conn.execute(
                asset_versions.update()
                .where(scope, c.id != new_id, c.superseded_by.is_(None))
                .values(superseded_by=new_id)
            )
        return dataclasses.replace(
            version, id=new_id, version=number, superseded_by=None, created_at=now
        )

    @translate_errors("reading an asset version")
    def get_asset_version(self, version_id: int) -> AssetVersion | None:
        with self.read() as conn:
            row = conn.execute(
                sa.select(asset_versions).where(asset_versions.c.id == version_id)
            ).first()
        return None if row is None else _asset(row)

    @translate_errors("listing asset versions")
    def list_asset_versions(
        self, work_id: int, *, product_id: int | None = None, kind: str | None = None
    ) -> list[AssetVersion]:
        c = asset_versions.c
        query = sa.select(asset_versions).where(c.work_id == work_id)
        if product_id is not None:
            query = query.where(c.product_id == product_id)
        if kind is not None:
            query = query.where(c.kind == kind)
        query = query.order_by(c.product_id, c.kind, c.version)
        with self.read() as conn:
            return [_asset(row) for row in conn.execute(query)]

    @translate_errors("reading the current asset version")
    def current_asset_version(
        self, work_id: int, product_id: int | None, kind: str
    ) -> AssetVersion | None:
        c = asset_versions.c
        query = (
            sa.select(asset_versions)
            .where(self._asset_scope(work_id, product_id, kind), c.superseded_by.is_(None))
            .order_by(c.version.desc())
            .limit(1)
        )
        with self.read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _asset(row)

    @translate_errors("finding asset versions by ISBN")
    def asset_scopes_for_isbn(self, isbn13: str) -> list[tuple[int, int | None]]:
        c = asset_versions.c
        query = (
            sa.select(c.work_id, c.product_id, sa.func.max(c.id).label("last"))
            .where(c.isbn == isbn13)
            .group_by(c.work_id, c.product_id)
            .order_by(sa.desc("last"))
        )
        with self.read() as conn:
            return [(row.work_id, row.product_id) for row in conn.execute(query)]

    @translate_errors("approving an asset version")
    def approve_asset_version(self, version_id: int, at: datetime | None = None) -> AssetVersion:
        with self.write() as conn:
            conn.execute(
                asset_versions.update()
                .where(asset_versions.c.id == version_id)
                .values(approved_at=to_db_time(at) or self._now())
            )
            row = conn.execute(
                sa.select(asset_versions).where(asset_versions.c.id == version_id)
            ).first()
        if row is None:
            raise not_found("asset version", version_id)
        return _asset(row)

    # --- audit trail -----------------------------------------------------------------------

    def append_audit(
        self,
        actor: str,
        action: str,
        subject: str,
        details: Mapping[str, JsonValue] | None = None,
    ) -> AuditEvent:
        return self.audit.append(actor, action, subject, details)

    def list_audit(
        self,
        *,
        subject: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditEvent]:
        return self.audit.list(subject=subject, action=action, since=since, limit=limit)

    def verify_audit(self) -> AuditReport:
        return self.audit.verify()

    def verify_audit_or_raise(self) -> AuditReport:
        return self.audit.verify_or_raise()

    @translate_errors("exporting the audit trail")
    def export_audit(self) -> dict[str, list[dict[str, JsonValue]]]:
        with self.read(snapshot=True) as conn:
            return {name: list(export_rows(conn, name)) for name in AUDIT_TABLES}

    # --- alerts ----------------------------------------------------------------------------

    @translate_errors("recording an alert")
    def raise_alert(self, alert: Alert) -> AlertRecord:
        now = self._now()
        with self.write() as conn:
            new_id = conn.execute(
                alerts.insert()
                .values(
                    ts=now,
                    severity=str(alert.severity),
                    kind=alert.kind,
                    partner=alert.partner,
                    flow=alert.flow,
                    message=alert.message,
                    details=dict(alert.details),
                )
                .returning(alerts.c.id)
            ).scalar_one()
        extra = {
            "alert_id": new_id,
            "alert_kind": alert.kind,
            "alert_severity": str(alert.severity),
        }
        if alert.partner:
            extra["partner"] = alert.partner
        if alert.flow:
            extra["flow"] = alert.flow
        alert_log.log(
            _LOG_LEVEL.get(alert.severity, logging.WARNING),
            "alert: %s",
            alert.message,
            extra=extra,
        )
        return AlertRecord(
            id=new_id,
            ts=now,
            severity=alert.severity,
            kind=alert.kind,
            message=alert.message,
            partner=alert.partner,
            flow=alert.flow,
            details=dict(alert.details),
        )

    @translate_errors("listing alerts")
    def list_alerts(
        self,
        *,
        unacknowledged: bool = False,
        partner: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
    ) -> list[AlertRecord]:
        c = alerts.c
        query = sa.select(alerts).order_by(c.ts.desc(), c.id.desc())
        if unacknowledged:
            query = query.where(c.acknowledged_at.is_(None))
        if partner is not None:
            query = query.where(c.partner == partner)
        if kind is not None:
            query = query.where(c.kind == kind)
        if limit is not None:
            query = query.limit(limit)
        with self.read() as conn:
            return [_alert(row) for row in conn.execute(query)]

    @translate_errors("acknowledging an alert")
    def acknowledge_alert(self, alert_id: int, by: str) -> AlertRecord:
        with self.write() as conn:
            conn.execute(
                alerts.update()
                .where(alerts.c.id == alert_id, alerts.c.acknowledged_at.is_(None))
                .values(acknowledged_at=self._now(), acknowledged_by=by)
            )
            row = conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).first()
        if row is None:
            raise not_found("alert", alert_id)
        return _alert(row)

    # --- poll snapshots and watermarks (ports.snapshots.SnapshotStore) ---------------------

    def _upsert(
        self, conn: Connection, table: sa.Table, keys: list[str], rows: list[dict[str, Any]]
    ) -> None:
        if not rows:
            return
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        stmt = insert(table)
        others = {name: stmt.excluded[name] for name in rows[0] if name not in keys}
        conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=others), rows)

    @translate_errors("reading snapshots")
    def load_snapshots(self, kind: str) -> dict[int, Snapshot]:
        c = consonance_snapshots.c
        with self.read() as conn:
            rows = conn.execute(
                sa.select(c.record_id, c.content_hash, c.fields).where(c.kind == kind)
            )
            return {
                int(row.record_id): Snapshot(row.content_hash, dict(row.fields or {}))
                for row in rows
            }

    @translate_errors("saving snapshots")
    def save_snapshots(self, kind: str, snapshots: Mapping[int, Snapshot]) -> None:
        now = self._now()
        rows = [
            {
                "kind": kind,
                "record_id": record_id,
                "content_hash": snap.content_hash,
                "fields": dict(snap.fields),
                "updated_at": now,
            }
            for record_id, snap in snapshots.items()
        ]
        with self.write() as conn:
            for start in range(0, len(rows), _SNAPSHOT_BATCH):
                self._upsert(
                    conn,
                    consonance_snapshots,
                    ["kind", "record_id"],
                    rows[start : start + _SNAPSHOT_BATCH],
                )

    @translate_errors("reading a watermark")
    def get_watermark(self, name: str) -> str | None:
        with self.read() as conn:
            value = conn.execute(
                sa.select(watermarks.c.value).where(watermarks.c.name == name)
            ).scalar()
        return None if value is None else str(value)

    @translate_errors("saving a watermark")
    def set_watermark(self, name: str, value: str) -> None:
        with self.write() as conn:
            self._upsert(
                conn,
                watermarks,
                ["name"],
                [{"name": name, "value": value, "updated_at": self._now()}],
            )

    # --- ONIX feed state (per recipient, per product content hashes) -----------------------

    @translate_errors("reading ONIX feed hashes")
    def load_onix_hashes(self, flow: str, partner: str) -> dict[str, str]:
        c = onix_feed_hashes.c
        with self.read() as conn:
            rows = conn.execute(
                sa.select(c.record_reference, c.content_hash).where(
                    c.flow == flow, c.partner == partner
                )
            )
            return {str(row.record_reference): str(row.content_hash) for row in rows}

    @translate_errors("saving ONIX feed hashes")
    def save_onix_hashes(self, flow: str, partner: str, hashes: Mapping[str, str]) -> None:
        c = onix_feed_hashes.c
        now = self._now()
        with self.write() as conn:
            held = {
                str(row.record_reference): str(row.content_hash)
                for row in conn.execute(
                    sa.select(c.record_reference, c.content_hash).where(
                        c.flow == flow, c.partner == partner
                    )
                )
            }
            gone = [ref for ref in held if ref not in hashes]
            for start in range(0, len(gone), _SNAPSHOT_BATCH):
                conn.execute(
                    onix_feed_hashes.delete().where(
                        c.flow == flow,
                        c.partner == partner,
                        c.record_reference.in_(gone[start : start + _SNAPSHOT_BATCH]),
                    )
                )
            rows = [
                {
                    "flow": flow,
                    "partner": partner,
                    "record_reference": ref,
                    "content_hash": digest,
                    "updated_at": now,
                }
                for ref, digest in hashes.items()
                if held.get(ref) != digest  # unchanged rows are left alone
            ]
            for start in range(0, len(rows), _SNAPSHOT_BATCH):
                self._upsert(
                    conn,
                    onix_feed_hashes,
                    ["flow", "partner", "record_reference"],
                    rows[start : start + _SNAPSHOT_BATCH],
                )


def _implements_the_port(store: SqlStore) -> Store:
    # mypy checks here that SqlStore satisfies ports.store.Store structurally.
    return store
