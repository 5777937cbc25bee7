"""Initial tables: delivery and intake ledgers, asset versions, audit trail, alerts, snapshots.

The audit trail gets triggers that refuse UPDATE, DELETE (and on PostgreSQL TRUNCATE) of its
events, and let a chain head only move forward. They are belt and braces: the hash chain is
the real check, and anyone with DDL rights can drop a trigger.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_GUARDS = (
    """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END""",
    """CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END""",
    """CREATE TRIGGER audit_chains_forward_only BEFORE UPDATE ON audit_chains
       WHEN NEW.seq <= OLD.seq OR NEW.chain_id != OLD.chain_id
       BEGIN SELECT RAISE(ABORT, 'audit chain heads only move forward'); END""",
    """CREATE TRIGGER audit_chains_no_delete BEFORE DELETE ON audit_chains
       BEGIN SELECT RAISE(ABORT, 'audit chain heads are never deleted'); END""",
)
_SQLITE_GUARD_NAMES = (
    "audit_events_no_update",
    "audit_events_no_delete",
    "audit_chains_forward_only",
    "audit_chains_no_delete",
)

_PG_GUARDS = (
    """CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
           USING ERRCODE = 'insufficient_privilege';
       END $$""",
    """CREATE FUNCTION audit_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP <> 'UPDATE' OR NEW.seq <= OLD.seq OR NEW.chain_id <> OLD.chain_id THEN
           RAISE EXCEPTION 'audit chain heads only move forward'
             USING ERRCODE = 'insufficient_privilege';
         END IF;
         RETURN NEW;
       END $$""",
    """CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
       FOR EACH ROW EXECUTE FUNCTION audit_append_only()""",
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
       FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()""",
    """CREATE TRIGGER audit_chains_forward_only BEFORE UPDATE OR DELETE ON audit_chains
       FOR EACH ROW EXECUTE FUNCTION audit_head_forward_only()""",
    """CREATE TRIGGER audit_chains_no_truncate BEFORE TRUNCATE ON audit_chains
       FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()""",
)


def _create_audit_guards() -> None:
    dialect = op.get_bind().dialect.name
    for statement in _PG_GUARDS if dialect == "postgresql" else _SQLITE_GUARDS:
        op.execute(statement)


def _drop_audit_guards() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER IF EXISTS audit_chains_forward_only ON audit_chains")
        op.execute("DROP TRIGGER IF EXISTS audit_chains_no_truncate ON audit_chains")
        op.execute("DROP FUNCTION IF EXISTS audit_append_only()")
        op.execute("DROP FUNCTION IF EXISTS audit_head_forward_only()")
    else:
        for name in _SQLITE_GUARD_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")


def upgrade() -> None:
    """Create every table, then the append-only guards of the audit trail."""
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=100), nullable=False),
        sa.Column("partner", sa.String(length=100), nullable=True),
        sa.Column("flow", sa.String(length=100), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index("ix_alerts_ts", "alerts", ["ts"])

    op.create_table(
        "asset_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("work_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("local_path", sa.Text(), nullable=True),
        sa.Column("derived_from", sa.Integer(), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("superseded_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["derived_from"],
            ["asset_versions.id"],
            name=op.f("fk_asset_versions_derived_from_asset_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["superseded_by"],
            ["asset_versions.id"],
            name=op.f("fk_asset_versions_superseded_by_asset_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_asset_versions")),
    )
    op.create_index("ix_asset_versions_sha256", "asset_versions", ["sha256"])
    op.create_index(
        "uq_asset_versions_scope_version",
        "asset_versions",
        ["work_id", sa.text("coalesce(product_id, 0)"), "kind", "version"],
        unique=True,
    )

    op.create_table(
        "audit_chains",
        sa.Column("chain_id", sa.String(length=100), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("writer", sa.String(length=200), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", name=op.f("pk_audit_chains")),
    )
    op.create_table(
        "audit_events",
        sa.Column("chain_id", sa.String(length=100), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "seq", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_subject", "audit_events", ["subject"])
    op.create_index("ix_audit_events_ts", "audit_events", ["ts"])

    op.create_table(
        "consonance_snapshots",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("record_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("content_hash", sa.String(length=128), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "record_id", name=op.f("pk_consonance_snapshots")),
    )
    op.create_table(
        "intake_ledger",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("flow", sa.String(length=100), nullable=True),
        sa.Column("partner", sa.String(length=100), nullable=False),
        sa.Column("remote_path", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("remote_mtime", sa.Float(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("local_path", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("work_id", sa.Integer(), nullable=True),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intake_ledger")),
        sa.UniqueConstraint(
            "partner",
            "remote_path",
            "size",
            "remote_mtime",
            name=op.f("uq_intake_ledger_partner_remote_path_size_remote_mtime"),
        ),
    )
    op.create_index("ix_intake_ledger_received_at", "intake_ledger", ["received_at"])

    op.create_table(
        "watermarks",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_watermarks")),
    )
    op.create_table(
        "delivery_ledger",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("flow", sa.String(length=100), nullable=False),
        sa.Column("partner", sa.String(length=100), nullable=False),
        sa.Column("remote_path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.Integer(), server_default="0", nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("package_id", sa.String(length=200), nullable=True),
        sa.Column("isbn", sa.String(length=13), nullable=True),
        sa.Column("asset_version_id", sa.Integer(), nullable=True),
        sa.Column("workflow_id", sa.String(length=200), nullable=True),
        sa.Column("trigger", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["asset_version_id"],
            ["asset_versions.id"],
            name=op.f("fk_delivery_ledger_asset_version_id_asset_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_ledger")),
        sa.UniqueConstraint(
            "partner",
            "remote_path",
            "sha256",
            "generation",
            name=op.f("uq_delivery_ledger_partner_remote_path_sha256_generation"),
        ),
    )
    op.create_index("ix_delivery_ledger_created_at", "delivery_ledger", ["created_at"])
    op.create_index("ix_delivery_ledger_flow_created_at", "delivery_ledger", ["flow", "created_at"])
    op.create_index("ix_delivery_ledger_isbn", "delivery_ledger", ["isbn"])
    op.create_index("ix_delivery_ledger_package_id", "delivery_ledger", ["package_id"])
    _create_audit_guards()


def downgrade() -> None:
    """Drop everything (the audit trail too: only for throw-away databases)."""
    _drop_audit_guards()
    for table in (
        "delivery_ledger",
        "watermarks",
        "intake_ledger",
        "consonance_snapshots",
        "audit_events",
        "audit_chains",
        "asset_versions",
        "alerts",
    ):
        op.drop_table(table)
