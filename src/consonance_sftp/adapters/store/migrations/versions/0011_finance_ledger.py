"""The finance ledger: royalty-statement batches taken in and their statements.

* ``finance_batches``: one row per statement batch finance dropped, unique on (flow, name),
  with who approved it and when;
* ``finance_statements``: one row per statement of a batch, unique on (batch_id, file_name):
  its payee, its destinations, its deliveries and its state.

New tables only: nothing older changes, and a downgrade drops them.

Revision ID: 0011
Revises: 0010 (the sales ledger)
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "finance_batches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("flow", sa.String(length=100), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("period", sa.String(length=32), nullable=True),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("approved_at", TS, nullable=True),
        sa.Column("approved_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finance_batches")),
        sa.UniqueConstraint("flow", "name", name=op.f("uq_finance_batches_flow_name")),
    )
    op.create_table(
        "finance_statements",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("original_path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("payee_id", sa.BigInteger(), nullable=True),
        sa.Column("payee_name", sa.Text(), nullable=True),
        sa.Column("destinations", sa.JSON(), nullable=False),
        sa.Column("deliveries", sa.JSON(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["finance_batches.id"],
            name=op.f("fk_finance_statements_batch_id_finance_batches"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finance_statements")),
        sa.UniqueConstraint(
            "batch_id", "file_name", name=op.f("uq_finance_statements_batch_id_file_name")
        ),
    )


def downgrade() -> None:
    op.drop_table("finance_statements")
    op.drop_table("finance_batches")
