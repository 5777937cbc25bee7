"""Sealing what predates the ledger coverage (run once, by migration 0005).

Every existing audit chain is registered in ``audit_registry`` with its head as it is now, and
every existing ledger row gets a digest in a ``ledger.seal`` event of a chain of the
migration's own. The tables are reflected from the database, not taken from ``schema.py``, so
this keeps working when later migrations add columns.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from consonance_sftp.adapters.store.audit_chain import (
    ALG_PLAIN,
    GENESIS,
    canonical_json,
    event_hash,
)
from consonance_sftp.adapters.store.audit_cover import (
    LEDGER_ACTOR,
    LEDGER_SEAL,
    LEDGER_TABLES,
    registry_hash,
    row_image,
    seal_details,
)

SEAL_BATCH = 500
SEAL_WRITER = "migration 0005"


@dataclass(slots=True)
class _Tip:
    """The end of a chain being written."""

    seq: int = 0
    hash: str = GENESIS


def seal_existing(conn: Connection) -> None:
    """Register the existing chains and seal the existing ledger rows, in ``conn``'s transaction."""
    meta = sa.MetaData()
    chains = sa.Table("audit_chains", meta, autoload_with=conn)
    events = sa.Table("audit_events", meta, autoload_with=conn)
    registry = sa.Table("audit_registry", meta, autoload_with=conn)
    checkpoints = sa.Table("audit_checkpoints", meta, autoload_with=conn)
    now = datetime.now(UTC)
    state = _Tip()

    def register(chain_id: str, writer: str, heads: dict[str, int]) -> None:
        seq = state.seq + 1
        details_json = canonical_json({"heads": heads})
        digest = registry_hash(
            prev_hash=state.hash,
            seq=seq,
            chain_id=chain_id,
            ts=now,
            writer=writer,
            alg=ALG_PLAIN,
            details_json=details_json,
            key=None,
        )
        conn.execute(
            registry.insert().values(
                seq=seq,
                chain_id=chain_id,
                ts=now,
                writer=writer,
                alg=ALG_PLAIN,
                details=details_json,
                prev_hash=state.hash,
                hash=digest,
            )
        )
        for cid, head_seq in heads.items():
            conn.execute(checkpoints.insert().values(chain_id=cid, seq=head_seq))
        state.seq, state.hash = seq, digest

    existing = conn.execute(
        sa.select(chains.c.chain_id, chains.c.writer, chains.c.seq).order_by(
            chains.c.started_at, chains.c.chain_id
        )
    ).all()
    for row in existing:
        register(row.chain_id, row.writer, {row.chain_id: row.seq})

    seal_chain = f"seal-0005-{uuid.uuid4().hex}"
    head = _Tip()

    def seal(table_name: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
        seq = head.seq + 1
        details_json = canonical_json(seal_details(table_name, columns, rows))
        subject = f"{table_name}:{rows[0]['id']}..{rows[-1]['id']}"
        digest = event_hash(
            prev_hash=head.hash,
            chain_id=seal_chain,
            seq=seq,
            ts=now,
            actor=LEDGER_ACTOR,
            action=LEDGER_SEAL,
            subject=subject,
            details_json=details_json,
        )
        conn.execute(
            events.insert().values(
                chain_id=seal_chain,
                seq=seq,
                ts=now,
                actor=LEDGER_ACTOR,
                action=LEDGER_SEAL,
                subject=subject,
                details=details_json,
                prev_hash=head.hash,
                hash=digest,
            )
        )
        head.seq, head.hash = seq, digest

    for name in LEDGER_TABLES:
        table = sa.Table(name, meta, autoload_with=conn, resolve_fks=False)
        columns = sorted(c.name for c in table.columns)
        batch: list[dict[str, Any]] = []
        for found in conn.execute(sa.select(table).order_by(table.c.id)).mappings():
            batch.append(row_image({str(k): v for k, v in found.items()}))
            if len(batch) == SEAL_BATCH:
                seal(name, columns, batch)
                batch = []
        if batch:
            seal(name, columns, batch)
    if head.seq:
        conn.execute(
            chains.insert().values(
                chain_id=seal_chain,
                started_at=now,
                writer=SEAL_WRITER,
                seq=head.seq,
                hash=head.hash,
            )
        )
        register(seal_chain, SEAL_WRITER, {seal_chain: head.seq})
