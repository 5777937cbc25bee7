"""The append-only audit trail: one hash chain per writer, checked by ``verify``.

A writer appends under an in-process lock only (threads of one store share its chain); between
processes nothing is shared, as each ``SqlStore`` has its own chain id. Appending is one
transaction: move the chain head forward from the seq this writer last saw, insert the event.
If the head is not where the writer expected (two processes were given the same chain id), the
append is retried from the head as stored, so the chain stays linear either way. A chain's first
event also registers the chain in the chain of chains (``audit_registry``), in the same
transaction; ledger writes append their covering event in their own transaction
(``transaction``), so a row and the event that covers it commit together or not at all.

See ``audit_chain`` for the hash and what the check proves, ``audit_cover`` for what else the
trail covers.
"""

from __future__ import annotations

import builtins
import json
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from consonance_sftp.adapters.store.audit_chain import (
    ALG_KEYED,
    ALG_PLAIN,
    GENESIS,
    ChainHead,
    StoredEvent,
    canonical_json,
    check_chains,
    event_hash,
)
from consonance_sftp.adapters.store.audit_cover import (
    LEDGER_ACTOR,
    LEDGER_SEAL,
    LEDGER_WRITE,
    Cover,
    CoverCollector,
    RegistryEntry,
    check_chains_registered,
    check_ledger,
    check_registry,
    registry_hash,
    row_image,
    write_details,
)
from consonance_sftp.adapters.store.base import (
    Tables,
    from_db_time_required,
    to_db_time,
    translate_errors,
)
from consonance_sftp.adapters.store.schema import (
    audit_chains,
    audit_checkpoints,
    audit_events,
    audit_registry,
    delivery_ledger,
    intake_ledger,
)
from consonance_sftp.errors import AuditTamperError, StoreError
from consonance_sftp.ports.clock import Clock
from consonance_sftp.ports.store import AuditChainHead, AuditEvent, AuditReport, JsonValue

_APPEND_ATTEMPTS = 5
# Any fixed 64-bit number: the advisory lock that lets one new chain register at a time.
_PG_REGISTRY_LOCK = 0x0C0_A0D17
# Built once: appending is the hot path, and a statement with bound parameters is compiled once.
_INSERT_EVENT = audit_events.insert()
_MOVE_HEAD = (
    audit_chains.update()
    .where(audit_chains.c.chain_id == sa.bindparam("c"))
    .where(audit_chains.c.seq == sa.bindparam("old_seq"))
    .values(seq=sa.bindparam("new_seq"), hash=sa.bindparam("new_hash"))
)

T = TypeVar("T")


class _HeadMoved(Exception):
    """The chain head was not where this writer left it."""


def new_chain_id() -> str:
    return uuid.uuid4().hex


def default_writer() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


def _event(row: sa.Row[tuple[object, ...]]) -> StoredEvent:
    m = row._mapping
    return StoredEvent(
        chain_id=m["chain_id"],
        seq=m["seq"],
        ts=from_db_time_required(m["ts"]),
        actor=m["actor"],
        action=m["action"],
        subject=m["subject"],
        details_json=m["details"],
        prev_hash=m["prev_hash"],
        hash=m["hash"],
    )


def _public(event: StoredEvent) -> AuditEvent:
    return AuditEvent(
        chain_id=event.chain_id,
        seq=event.seq,
        ts=event.ts,
        actor=event.actor,
        action=event.action,
        subject=event.subject,
        details=json.loads(event.details_json),
        prev_hash=event.prev_hash,
        hash=event.hash,
    )


def _insert_ignoring_conflict(conn: Connection, table: sa.Table, values: dict[str, Any]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING; the number of rows inserted (0 or 1)."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    return conn.execute(insert(table).values(**values).on_conflict_do_nothing()).rowcount


def register_chain(
    conn: Connection,
    *,
    chain_id: str,
    ts: datetime,
    writer: str,
    alg: str,
    key: bytes | None,
    heads: Mapping[str, int] | None = None,
) -> None:
    """Add ``chain_id`` to the chain of chains, with the heads that moved since the last entry.

    ``heads``: record exactly these instead (the migration that registers existing chains).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_REGISTRY_LOCK})
    r = audit_registry.c
    last = conn.execute(sa.select(r.seq, r.hash).order_by(r.seq.desc()).limit(1)).first()
    seq, prev_hash = (last.seq + 1, last.hash) if last is not None else (1, GENESIS)
    if heads is None:
        c, k = audit_chains.c, audit_checkpoints.c
        moved = conn.execute(
            sa.select(c.chain_id, c.seq)
            .select_from(audit_chains.outerjoin(audit_checkpoints, k.chain_id == c.chain_id))
            .where(c.chain_id != chain_id, sa.or_(k.seq.is_(None), c.seq > k.seq))
        )
        heads = {row.chain_id: row.seq for row in moved}
    details_json = canonical_json({"heads": dict(heads)})
    digest = registry_hash(
        prev_hash=prev_hash,
        seq=seq,
        chain_id=chain_id,
        ts=ts,
        writer=writer,
        alg=alg,
        details_json=details_json,
        key=key,
    )
    conn.execute(
        audit_registry.insert().values(
            seq=seq,
            chain_id=chain_id,
            ts=ts,
            writer=writer,
            alg=alg,
            details=details_json,
            prev_hash=prev_hash,
            hash=digest,
        )
    )
    if heads:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        stmt = insert(audit_checkpoints)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["chain_id"], set_={"seq": stmt.excluded.seq}
            ),
            [{"chain_id": cid, "seq": s} for cid, s in heads.items()],
        )


class Appender:
    """Appends events to this writer's chain inside one transaction (``AuditTrail.transaction``).

    The head is moved first (``UPDATE ... WHERE seq = <the seq this writer last saw>``), so a
    stale head shows as "no row updated" (retry from the stored head) rather than as a key
    conflict that would be confused with the caller's own.
    """

    def __init__(self, trail: AuditTrail, conn: Connection) -> None:
        self.trail = trail
        self.conn = conn
        self.head = trail._head or trail._load_head(conn)

    def append(self, actor: str, action: str, subject: str, details_json: str) -> StoredEvent:
        trail, conn, head = self.trail, self.conn, self.head
        ts = to_db_time(trail.clock.now())
        assert ts is not None
        seq = head.seq + 1
        digest = event_hash(
            prev_hash=head.hash,
            chain_id=trail.chain_id,
            seq=seq,
            ts=ts,
            actor=actor,
            action=action,
            subject=subject,
            details_json=details_json,
            key=trail.key,
        )
        if head.seq == 0:
            started = {
                "chain_id": trail.chain_id,
                "started_at": ts,
                "writer": trail.writer,
                "seq": seq,
                "hash": digest,
            }
            if not _insert_ignoring_conflict(conn, audit_chains, started):
                raise _HeadMoved  # another process started this chain id meanwhile
            register_chain(
                conn,
                chain_id=trail.chain_id,
                ts=ts,
                writer=trail.writer,
                alg=trail.alg,
                key=trail.key,
            )
        else:
            moved = conn.execute(
                _MOVE_HEAD,
                {"c": trail.chain_id, "old_seq": head.seq, "new_seq": seq, "new_hash": digest},
            )
            if moved.rowcount != 1:
                raise _HeadMoved
        event = StoredEvent(
            trail.chain_id, seq, ts, actor, action, subject, details_json, head.hash, digest
        )
        conn.execute(
            _INSERT_EVENT,
            {
                "chain_id": trail.chain_id,
                "seq": seq,
                "ts": ts,
                "actor": actor,
                "action": action,
                "subject": subject,
                "details": details_json,
                "prev_hash": head.hash,
                "hash": digest,
            },
        )
        self.head = ChainHead(trail.chain_id, seq, digest)
        return event

    def update(
        self, table: sa.Table, row_id: int, changes: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Update one ledger row, bump its ``audit_rev`` and cover it; None when there is no row."""
        updated = (
            self.conn.execute(
                table.update()
                .where(table.c.id == row_id)
                .values(**changes, audit_rev=table.c.audit_rev + 1)
                .returning(*table.c)
            )
            .mappings()
            .first()
        )
        return None if updated is None else self.cover(table, row_id, updated)

    def cover(
        self, table: sa.Table, row_id: int, written: Mapping[Any, Any] | None = None
    ) -> dict[str, Any]:
        """Append the ``ledger.write`` event for a row just written; the row as it now is.

        ``written``: the row as the write returned it (``RETURNING``), saving a query.
        """
        if written is None:
            written = (
                self.conn.execute(sa.select(table).where(table.c.id == row_id)).mappings().one()
            )
        row = {str(name): value for name, value in written.items()}
        details = write_details(table.name, row_image(row))
        self.append(LEDGER_ACTOR, LEDGER_WRITE, f"{table.name}:{row_id}", canonical_json(details))
        return row


class AuditTrail(Tables):
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        chain_id: str | None,
        writer: str | None,
        key: bytes | None = None,
    ) -> None:
        super().__init__(engine)
        self.clock = clock
        self.chain_id = chain_id or new_chain_id()
        self.writer = writer or default_writer()
        self.key = key or None
        self.alg = ALG_KEYED if self.key else ALG_PLAIN
        self._lock = threading.Lock()
        self._head: ChainHead | None = None  # None: not loaded yet

    def _load_head(self, conn: Connection) -> ChainHead:
        row = conn.execute(
            sa.select(audit_chains.c.seq, audit_chains.c.hash).where(
                audit_chains.c.chain_id == self.chain_id
            )
        ).first()
        if row is None:
            return ChainHead(self.chain_id, 0, GENESIS)
        return ChainHead(self.chain_id, row.seq, row.hash)

    def transaction(self, work: Callable[[Appender], T]) -> T:
        """Run ``work`` in one write transaction that may append to this writer's chain.

        The whole transaction (the caller's writes too) is retried when the chain head moved
        under this writer; any other error, the caller's constraint violations included, goes
        out as it came.
        """
        with self._lock:
            for _ in range(_APPEND_ATTEMPTS):
                try:
                    with self.write() as conn:
                        appender = Appender(self, conn)
                        result = work(appender)
                except _HeadMoved:
                    self._head = None  # reload from the database and go again
                    continue
                self._head = appender.head
                return result
        raise StoreError(
            f"audit chain {self.chain_id} keeps moving under this writer",
            hint="Two processes were given the same audit chain id; give each its own.",
            retryable=True,
        )

    @translate_errors("appending to the audit trail")
    def append(
        self,
        actor: str,
        action: str,
        subject: str,
        details: Mapping[str, JsonValue] | None = None,
    ) -> AuditEvent:
        details_json = canonical_json(dict(details or {}))
        event = self.transaction(lambda a: a.append(actor, action, subject, details_json))
        return _public(event)

    @translate_errors("reading the audit trail")
    def list(
        self,
        *,
        subject: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditEvent]:
        query = sa.select(audit_events).order_by(
            audit_events.c.ts.desc(), audit_events.c.chain_id, audit_events.c.seq.desc()
        )
        if subject is not None:
            query = query.where(audit_events.c.subject == subject)
        if action is not None:
            query = query.where(audit_events.c.action == action)
        elif subject is None:
            # The ledger's covering events say what the ledger says: listed when asked for.
            query = query.where(audit_events.c.action.not_in((LEDGER_WRITE, LEDGER_SEAL)))
        if since is not None:
            query = query.where(audit_events.c.ts >= to_db_time(since))
        if limit is not None:
            query = query.limit(limit)
        with self.read() as conn:
            return [_public(_event(row)) for row in conn.execute(query)]

    @translate_errors("verifying the audit trail")
    def verify(self) -> AuditReport:
        # One snapshot for heads, registry, events and ledgers, or a concurrent write looks
        # like tampering.
        with self.read(snapshot=True) as conn:
            if not sa.inspect(conn).has_table(audit_registry.name):
                raise StoreError(
                    "the database predates migration 0005 (ledger rows and chains on the trail) "
                    "and cannot be verified as it is",
                    hint="Keep a copy, then let the service migrate it (any command that opens "
                    "the store, e.g. 'consonance-sftp history'), and verify again.",
                )
            recorded = [
                AuditChainHead(
                    chain_id=row.chain_id,
                    writer=row.writer,
                    started_at=from_db_time_required(row.started_at),
                    seq=row.seq,
                    hash=row.hash,
                )
                for row in conn.execute(sa.select(audit_chains).order_by(audit_chains.c.chain_id))
            ]
            heads = {h.chain_id: ChainHead(h.chain_id, h.seq, h.hash) for h in recorded}
            registry = check_registry(self._registry(conn), self.key)
            covers = CoverCollector()
            checked = check_chains(
                self._stream(conn, covers), heads, keyed=registry.keyed_chains, key=self.key
            )
            problems = list(checked.problems)
            problems += registry.problems
            problems += check_chains_registered(
                registry,
                checked.last_seq,
                {c: h.seq for c, h in heads.items()},
                broken={p.chain_id for p in checked.problems},
                key=self.key,
            )
            counted = [0]  # rows streamed past check_ledger, not held in memory

            def stream(table: sa.Table) -> Iterator[dict[str, Any]]:
                rows = conn.execution_options(yield_per=2000).execute(
                    sa.select(table).order_by(table.c.id)
                )
                for row in rows:
                    counted[0] += 1
                    yield {str(k): v for k, v in row._mapping.items()}

            for table in (delivery_ledger, intake_ledger):
                problems += check_ledger(
                    table.name,
                    stream(table),
                    covers.covers,
                    lambda cover: self._written_image(conn, cover),
                )
        return AuditReport(
            events=checked.events,
            chains=checked.chains,
            problems=tuple(problems),
            heads=tuple(recorded),
            ledger_rows=counted[0],
        )

    def _stream(self, conn: Connection, covers: CoverCollector) -> Iterator[StoredEvent]:
        result = conn.execution_options(yield_per=2000).execute(
            sa.select(audit_events).order_by(audit_events.c.chain_id, audit_events.c.seq)
        )
        for row in result:
            event = _event(row)
            covers.feed(event)
            yield event

    def _registry(self, conn: Connection) -> builtins.list[RegistryEntry]:
        r = audit_registry.c
        return [
            RegistryEntry(
                seq=row.seq,
                chain_id=row.chain_id,
                ts=from_db_time_required(row.ts),
                writer=row.writer,
                alg=row.alg,
                details_json=row.details,
                prev_hash=row.prev_hash,
                hash=row.hash,
            )
            for row in conn.execute(sa.select(audit_registry).order_by(r.seq))
        ]

    @staticmethod
    def _written_image(conn: Connection, cover: Cover) -> Mapping[str, Any] | None:
        details = conn.execute(
            sa.select(audit_events.c.details).where(
                audit_events.c.chain_id == cover.chain_id, audit_events.c.seq == cover.seq
            )
        ).scalar()
        try:
            row = json.loads(details)["row"] if details else None
        except (ValueError, KeyError, TypeError):
            return None
        return row if isinstance(row, dict) else None

    def verify_or_raise(self) -> AuditReport:
        report = self.verify()
        if not report.ok:
            first = report.problems[0]
            more = len(report.problems) - 1
            raise AuditTamperError(
                f"audit trail does not verify: {first}"
                + (f" (and {more} more problems)" if more else ""),
                hint="Run 'consonance-sftp audit verify' for every problem; keep a copy of "
                "the database before anything else.",
            )
        return report
