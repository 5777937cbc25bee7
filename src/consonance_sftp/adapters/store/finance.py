"""The finance ledger of ``SqlStore`` (``ports.finance.FinanceLedger``): royalty-statement
batches taken in, each statement's payee, destinations and state, and the approval.

Mixed into ``SqlStore`` (adapters/store/sql_store.py). Every write commits together with the
audit events that say what it did (``AuditTrail.transaction``), as pauses and holds do:

* ``finance.batch_received`` (subject ``batch:<id>``, actor the flow): the batch and every
  statement taken in (id, file, SHA-256, size);
* ``finance.statement_<state>`` (subject ``statement:<id>``, actor the caller's): a statement
  moved to ``<state>``, from which state, with its batch, file, SHA-256, payee, reason and what
  the caller adds (``details``); approval writes one per statement it approves;
* ``finance.batch_approved`` (subject ``batch:<id>``, actor ``user:<who>``): the statements it
  approved, and the batch's counts after.

A failure anywhere in a write (a constraint, the audit append) leaves nothing of it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from consonance_sftp.adapters.store.audit_chain import canonical_json
from consonance_sftp.adapters.store.audit_trail import Appender, AuditTrail
from consonance_sftp.adapters.store.base import (
    Tables,
    from_db_time,
    from_db_time_required,
    not_found,
    to_db_time,
    translate_errors,
)
from consonance_sftp.adapters.store.schema import finance_batches, finance_statements
from consonance_sftp.errors import ConsonanceSftpError, StoreError
from consonance_sftp.models import AuditAction
from consonance_sftp.ports.clock import Clock
from consonance_sftp.ports.finance import (
    STATEMENT_STATES,
    BatchRecord,
    Destination,
    NewStatement,
    StatementRecord,
    StatementState,
)

BATCH_RECEIVED = AuditAction.FINANCE_BATCH_RECEIVED
BATCH_APPROVED = AuditAction.FINANCE_BATCH_APPROVED
_IN_BATCH = 500  # ids per ``IN (...)``: under SQLite's and PostgreSQL's parameter limits
_NAMED = 5  # file names a refusal names before "and N more"


def statement_action(state: StatementState) -> AuditAction:
    """The audit action of a statement moved to ``state``: ``finance.statement_<state>``."""
    return AuditAction(f"finance.statement_{state}")


def _destination(value: Mapping[str, Any]) -> Destination:
    return Destination(partner=value["partner"], folder=value["folder"], role=value["role"])


def _destination_json(d: Destination) -> dict[str, str]:
    return {"partner": d.partner, "folder": d.folder, "role": d.role}


def _statement(row: sa.Row[Any]) -> StatementRecord:
    m = row._mapping
    return StatementRecord(
        id=m["id"],
        batch_id=m["batch_id"],
        file_name=m["file_name"],
        original_path=m["original_path"],
        sha256=m["sha256"],
        size=m["size"],
        state=m["state"],
        reason=m["reason"],
        payee_id=m["payee_id"],
        payee_name=m["payee_name"],
        destinations=tuple(_destination(d) for d in m["destinations"] or ()),
        deliveries=dict(m["deliveries"] or {}),
        updated_at=from_db_time(m["updated_at"]),
    )


def _ordered_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """Statements per state, in the states' order (only the states some statement is in)."""
    known = {s: counts[s] for s in STATEMENT_STATES if counts.get(s)}
    return known | {s: n for s, n in sorted(counts.items()) if s not in known and n}


def _batches(conn: Connection, query: sa.Select[Any]) -> list[BatchRecord]:
    """The batches ``query`` selects (whole ``finance_batches`` rows), each with its counts."""
    rows = conn.execute(query).all()
    ids = [row.id for row in rows]
    counts: dict[int, Counter[str]] = {i: Counter() for i in ids}
    s = finance_statements.c
    for start in range(0, len(ids), _IN_BATCH):
        for batch_id, state, n in conn.execute(
            sa.select(s.batch_id, s.state, sa.func.count())
            .where(s.batch_id.in_(ids[start : start + _IN_BATCH]))
            .group_by(s.batch_id, s.state)
        ):
            counts[batch_id][state] = n
    return [
        BatchRecord(
            id=row.id,
            flow=row.flow,
            name=row.name,
            source=row.source,
            period=row.period,
            received_at=from_db_time_required(row.received_at),
            approved_at=from_db_time(row.approved_at),
            approved_by=row.approved_by,
            counts=_ordered_counts(counts[row.id]),
        )
        for row in rows
    ]


def _one_batch(conn: Connection, where: sa.ColumnElement[bool]) -> BatchRecord | None:
    found = _batches(conn, sa.select(finance_batches).where(where).limit(1))
    return found[0] if found else None


def _named(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMED])
    return shown + (f" and {len(names) - _NAMED} more" if len(names) > _NAMED else "")


class FinanceLedgerTables(Tables):
    """The finance ledger (``ports.finance.FinanceLedger``)."""

    audit: AuditTrail
    clock: Clock

    def _finance_now(self) -> datetime:
        now = to_db_time(self.clock.now())
        assert now is not None
        return now

    # --- batches ---------------------------------------------------------------------------

    @translate_errors("recording a finance batch")
    def add_finance_batch(
        self,
        *,
        flow: str,
        name: str,
        source: str,
        period: str | None,
        statements: list[NewStatement],
    ) -> BatchRecord:
        b = finance_batches.c
        where = sa.and_(b.flow == flow, b.name == name)
        twice = sorted(n for n, k in Counter(s.file_name for s in statements).items() if k > 1)
        now = self._finance_now()

        def save(audit: Appender) -> BatchRecord:
            conn = audit.conn
            done = _one_batch(conn, where)
            if done is not None:
                return done  # a replayed tick: the batch is recorded already
            if twice:
                raise StoreError(
                    f"finance batch {name!r} of flow {flow} holds more than one statement "
                    f"named {_named(twice)}",
                    hint="Each statement of a batch needs a file name of its own; export the "
                    "batch again.",
                )
            batch_id: int = conn.execute(
                finance_batches.insert()
                .values(flow=flow, name=name, source=source, period=period, received_at=now)
                .returning(b.id)
            ).scalar_one()
            if statements:
                conn.execute(
                    finance_statements.insert(),
                    [
                        {
                            "batch_id": batch_id,
                            "file_name": s.file_name,
                            "original_path": s.original_path,
                            "sha256": s.sha256,
                            "size": s.size,
                            "state": "received",
                            "destinations": [],
                            "deliveries": {},
                            "updated_at": now,
                        }
                        for s in statements
                    ],
                )
            taken = self._statements(conn, batch_id)
            details = {
                "flow": flow,
                "name": name,
                "source": source,
                "period": period,
                "statements": [
                    {"id": t.id, "file": t.file_name, "sha256": t.sha256, "size": t.size}
                    for t in taken
                ],
            }
            audit.append(flow, BATCH_RECEIVED, f"batch:{batch_id}", canonical_json(details))
            record = _one_batch(conn, b.id == batch_id)
            assert record is not None
            return record

        try:
            return self.audit.transaction(save)
        except sa.exc.IntegrityError:
            # Another process recorded the same (flow, name) in between: that batch is the one.
            existing = self.find_finance_batch(flow, name)
            if existing is None:
                raise
            return existing

    @translate_errors("finding a finance batch")
    def find_finance_batch(self, flow: str, name: str) -> BatchRecord | None:
        b = finance_batches.c
        with self.read() as conn:
            return _one_batch(conn, sa.and_(b.flow == flow, b.name == name))

    @translate_errors("reading a finance batch")
    def get_finance_batch(self, batch_id: int) -> BatchRecord | None:
        with self.read() as conn:
            return _one_batch(conn, finance_batches.c.id == batch_id)

    @translate_errors("listing finance batches")
    def list_finance_batches(
        self, *, flow: str | None = None, limit: int = 200
    ) -> list[BatchRecord]:
        b = finance_batches.c
        query = sa.select(finance_batches).order_by(b.received_at.desc(), b.id.desc()).limit(limit)
        if flow is not None:
            query = query.where(b.flow == flow)
        with self.read() as conn:
            return _batches(conn, query)

    @translate_errors("approving a finance batch")
    def approve_finance_batch(self, batch_id: int, *, by: str) -> BatchRecord:
        s = finance_statements.c
        now = self._finance_now()
        actor = f"user:{by}"

        def save(audit: Appender) -> BatchRecord:
            conn = audit.conn
            # The batch row locked (PostgreSQL): two approvals of one batch go one at a time.
            batch = conn.execute(
                sa.select(finance_batches).where(finance_batches.c.id == batch_id).with_for_update()
            ).first()
            if batch is None:
                raise not_found("finance batch", batch_id)
            waiting = sorted(
                conn.scalars(
                    sa.select(s.file_name).where(s.batch_id == batch_id, s.state == "received")
                )
            )
            if waiting:
                raise ConsonanceSftpError(
                    f"finance batch {batch_id} ({batch.name}) cannot be approved: "
                    f"{len(waiting)} statement(s) not read yet ({_named(waiting)})",
                    hint="Let the flow read them first (each becomes resolved, held or "
                    "quarantined), check 'consonance-sftp finance show "
                    f"{batch_id}', then approve again.",
                )
            approved = sorted(
                conn.execute(
                    finance_statements.update()
                    .where(s.batch_id == batch_id, s.state == "resolved")
                    .values(state="approved", updated_at=now)
                    .returning(*finance_statements.c)
                ),
                key=lambda row: row.file_name,
            )
            conn.execute(
                finance_batches.update()
                .where(finance_batches.c.id == batch_id)
                .values(approved_at=now, approved_by=by)
            )
            for row in approved:
                statement = _statement(row)
                audit.append(
                    actor,
                    statement_action("approved"),
                    f"statement:{statement.id}",
                    canonical_json(_statement_event(statement, "resolved")),
                )
            record = _one_batch(conn, finance_batches.c.id == batch_id)
            assert record is not None
            details = {
                "flow": record.flow,
                "name": record.name,
                "approved": [row.id for row in approved],
                "counts": record.counts,
                "again": batch.approved_at is not None,
            }
            audit.append(actor, BATCH_APPROVED, f"batch:{batch_id}", canonical_json(details))
            return record

        return self.audit.transaction(save)

    # --- statements ------------------------------------------------------------------------

    @staticmethod
    def _statements(
        conn: Connection, batch_id: int, states: tuple[StatementState, ...] | None = None
    ) -> list[StatementRecord]:
        s = finance_statements.c
        query = sa.select(finance_statements).where(s.batch_id == batch_id)
        if states is not None:
            query = query.where(s.state.in_(states))
        # Sorted here, not by the database: PostgreSQL's collation would order names by its
        # locale, SQLite by code point; this is the same on both.
        return sorted((_statement(row) for row in conn.execute(query)), key=lambda r: r.file_name)

    @translate_errors("listing a finance batch's statements")
    def list_statements(
        self, batch_id: int, *, states: tuple[StatementState, ...] | None = None
    ) -> list[StatementRecord]:
        with self.read() as conn:
            return self._statements(conn, batch_id, states)

    @translate_errors("reading a finance statement")
    def get_statement(self, statement_id: int) -> StatementRecord | None:
        with self.read() as conn:
            row = conn.execute(
                sa.select(finance_statements).where(finance_statements.c.id == statement_id)
            ).first()
        return None if row is None else _statement(row)

    @translate_errors("updating a finance statement")
    def set_statement(
        self,
        statement_id: int,
        state: StatementState,
        *,
        actor: str,
        reason: str | None = None,
        payee_id: int | None = None,
        payee_name: str | None = None,
        destinations: tuple[Destination, ...] | None = None,
        deliveries: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> StatementRecord:
        if state not in STATEMENT_STATES:
            raise StoreError(
                f"not a statement state: {state!r}",
                hint=f"A statement is one of: {', '.join(STATEMENT_STATES)}.",
            )
        s = finance_statements.c
        now = self._finance_now()

        def save(audit: Appender) -> StatementRecord:
            conn = audit.conn
            row = conn.execute(
                sa.select(finance_statements).where(s.id == statement_id).with_for_update()
            ).first()
            if row is None:
                raise not_found("finance statement", statement_id)
            before = _statement(row)
            values: dict[str, Any] = {"state": state, "updated_at": now}
            if reason is not None:
                values["reason"] = reason or None  # "" clears it
            if payee_id is not None:
                values["payee_id"] = payee_id
            if payee_name is not None:
                values["payee_name"] = payee_name
            if destinations is not None:
                values["destinations"] = [_destination_json(d) for d in destinations]
            if deliveries:
                values["deliveries"] = {**before.deliveries, **deliveries}
            after = _statement(
                conn.execute(
                    finance_statements.update()
                    .where(s.id == statement_id)
                    .values(**values)
                    .returning(*finance_statements.c)
                ).one()
            )
            event = _statement_event(after, before.state)
            if destinations is not None:
                event["destinations"] = values["destinations"]
            if deliveries:
                event["deliveries"] = dict(deliveries)
            if details:
                event["details"] = dict(details)
            audit.append(
                actor,
                statement_action(state),
                f"statement:{statement_id}",
                canonical_json(event),
            )
            return after

        return self.audit.transaction(save)


def _statement_event(statement: StatementRecord, was: str) -> dict[str, Any]:
    """What every ``finance.statement_<state>`` event says of its statement."""
    return {
        "batch": statement.batch_id,
        "file": statement.file_name,
        "sha256": statement.sha256,
        "from": was,
        "payee_id": statement.payee_id,
        "payee_name": statement.payee_name,
        "reason": statement.reason,
    }
