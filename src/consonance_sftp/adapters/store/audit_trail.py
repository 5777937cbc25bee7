"""The append-only audit trail: one hash chain per writer, checked by ``verify``.

A writer appends under an in-process lock only (threads of one store share its chain); between
processes nothing is shared, as each ``SqlStore`` has its own chain id. Appending is one
transaction: insert the event, move the chain head forward from the seq this writer last saw.
If the head is not where the writer expected (two processes were given the same chain id), the
append is retried from the head as stored, so the chain stays linear either way.

See ``audit_chain`` for the hash and what the check proves.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from consonance_sftp.adapters.store.audit_chain import (
    GENESIS,
    ChainHead,
    StoredEvent,
    canonical_json,
    check_chains,
    event_hash,
)
from consonance_sftp.adapters.store.base import (
    Tables,
    from_db_time_required,
    to_db_time,
    translate_errors,
)
from consonance_sftp.adapters.store.schema import audit_chains, audit_events
from consonance_sftp.errors import AuditTamperError, StoreError
from consonance_sftp.ports.clock import Clock
from consonance_sftp.ports.store import AuditChainHead, AuditEvent, AuditReport, JsonValue

_APPEND_ATTEMPTS = 5
# Built once: appending is the hot path, and a statement with bound parameters is compiled once.
_INSERT_EVENT = audit_events.insert()
_INSERT_HEAD = audit_chains.insert()
_MOVE_HEAD = (
    audit_chains.update()
    .where(audit_chains.c.chain_id == sa.bindparam("c"))
    .where(audit_chains.c.seq == sa.bindparam("old_seq"))
    .values(seq=sa.bindparam("new_seq"), hash=sa.bindparam("new_hash"))
)


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


class AuditTrail(Tables):
    def __init__(
        self, engine: Engine, clock: Clock, *, chain_id: str | None, writer: str | None
    ) -> None:
        super().__init__(engine)
        self.clock = clock
        self.chain_id = chain_id or new_chain_id()
        self.writer = writer or default_writer()
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

    @translate_errors("appending to the audit trail")
    def append(
        self,
        actor: str,
        action: str,
        subject: str,
        details: Mapping[str, JsonValue] | None = None,
    ) -> AuditEvent:
        details_json = canonical_json(dict(details or {}))
        with self._lock:
            for _ in range(_APPEND_ATTEMPTS):
                try:
                    return self._append_once(actor, action, subject, details_json)
                except (_HeadMoved, sa.exc.IntegrityError):
                    self._head = None  # reload from the database and go again
        raise StoreError(
            f"audit chain {self.chain_id} keeps moving under this writer",
            hint="Two processes were given the same audit chain id; give each its own.",
            retryable=True,
        )

    def _append_once(self, actor: str, action: str, subject: str, details_json: str) -> AuditEvent:
        ts = to_db_time(self.clock.now())
        assert ts is not None
        with self.write() as conn:
            head = self._head or self._load_head(conn)
            seq = head.seq + 1
            digest = event_hash(
                prev_hash=head.hash,
                chain_id=self.chain_id,
                seq=seq,
                ts=ts,
                actor=actor,
                action=action,
                subject=subject,
                details_json=details_json,
            )
            conn.execute(
                _INSERT_EVENT,
                {
                    "chain_id": self.chain_id,
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
            if head.seq == 0:
                conn.execute(
                    _INSERT_HEAD,
                    {
                        "chain_id": self.chain_id,
                        "started_at": ts,
                        "writer": self.writer,
                        "seq": seq,
                        "hash": digest,
                    },
                )
            else:
                moved = conn.execute(
                    _MOVE_HEAD,
                    {"c": self.chain_id, "old_seq": head.seq, "new_seq": seq, "new_hash": digest},
                )
                if moved.rowcount != 1:
                    raise _HeadMoved
        self._head = ChainHead(self.chain_id, seq, digest)
        return _public(
            StoredEvent(
                self.chain_id, seq, ts, actor, action, subject, details_json, head.hash, digest
            )
        )

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
        if since is not None:
            query = query.where(audit_events.c.ts >= to_db_time(since))
        if limit is not None:
            query = query.limit(limit)
        with self.read() as conn:
            return [_public(_event(row)) for row in conn.execute(query)]

    @translate_errors("verifying the audit trail")
    def verify(self) -> AuditReport:
        # One snapshot for heads and events, or a concurrent append looks like tampering.
        with self.read(snapshot=True) as conn:
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
            events, chains, problems = check_chains(self._stream(conn), heads)
        return AuditReport(
            events=events, chains=chains, problems=tuple(problems), heads=tuple(recorded)
        )

    def _stream(self, conn: Connection) -> Iterator[StoredEvent]:
        result = conn.execution_options(yield_per=2000).execute(
            sa.select(audit_events).order_by(audit_events.c.chain_id, audit_events.c.seq)
        )
        for row in result:
            yield _event(row)

    def verify_or_raise(self) -> AuditReport:
        report = self.verify()
        if not report.ok:
            first = report.problems[0]
            more = len(report.problems) - 1
            raise AuditTamperError(
                f"audit trail does not verify: {first}"
                + (f" (and problems in {more} more chains)" if more else ""),
                hint="Run 'consonance-sftp audit verify' for every broken chain; keep a copy of "
                "the database before anything else.",
            )
        return report
