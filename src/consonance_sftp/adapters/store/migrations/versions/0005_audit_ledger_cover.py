"""Audit coverage of the ledgers, and a chain of chains.

Adds ``audit_rev`` to ``delivery_ledger`` and ``intake_ledger`` (every write bumps it and
appends an event carrying the row as written), ``audit_registry`` (a hash chain with one entry
per audit chain, append-only like ``audit_events``) and ``audit_checkpoints`` (a cache of the
heads last recorded there).

Existing data is sealed: every existing chain is registered, with its head as it is now, and
every existing ledger row gets its digest in ``ledger.seal`` events of a chain of the migration's
own. From here on an edited, rolled back, added or deleted ledger row is found by
``audit verify``, and so is a chain deleted whole. What was changed before the upgrade cannot be
told apart from the truth: the seal records the rows as they are.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_GUARDS = (
    """CREATE TRIGGER audit_registry_no_update BEFORE UPDATE ON audit_registry
       BEGIN SELECT RAISE(ABORT, 'audit_registry is append-only'); END""",
    """CREATE TRIGGER audit_registry_no_delete BEFORE DELETE ON audit_registry
       BEGIN SELECT RAISE(ABORT, 'audit_registry is append-only'); END""",
)
_PG_GUARDS = (
    # audit_append_only() comes from migration 0001.
    """CREATE TRIGGER audit_registry_append_only BEFORE UPDATE OR DELETE ON audit_registry
       FOR EACH ROW EXECUTE FUNCTION audit_append_only()""",
    """CREATE TRIGGER audit_registry_no_truncate BEFORE TRUNCATE ON audit_registry
       FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()""",
)


def upgrade() -> None:
    for table in ("delivery_ledger", "intake_ledger"):
        op.add_column(
            table, sa.Column("audit_rev", sa.Integer(), server_default="0", nullable=False)
        )
    op.create_table(
        "audit_registry",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("chain_id", sa.String(length=100), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("writer", sa.String(length=200), nullable=False),
        sa.Column("alg", sa.String(length=16), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_registry")),
        sa.UniqueConstraint("chain_id", name=op.f("uq_audit_registry_chain_id")),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("chain_id", sa.String(length=100), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", name=op.f("pk_audit_checkpoints")),
    )
    bind = op.get_bind()
    for statement in _PG_GUARDS if bind.dialect.name == "postgresql" else _SQLITE_GUARDS:
        op.execute(statement)
    # Imported here: the store's code is only needed to seal, and loads the current schema.
    from consonance_sftp.adapters.store.audit_seal import seal_existing

    seal_existing(bind)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_registry_append_only ON audit_registry")
        op.execute("DROP TRIGGER IF EXISTS audit_registry_no_truncate ON audit_registry")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_registry_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_registry_no_delete")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_registry")
    for table in ("delivery_ledger", "intake_ledger"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("audit_rev")
