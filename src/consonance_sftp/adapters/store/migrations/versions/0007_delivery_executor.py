"""Delivery ledger: which engine process recorded a row's outcome.

``executor_id`` (the engine's executor: ``<hostname>-<instance>``, or
``$CONSONANCE_EXECUTOR_ID``) is written with each outcome the engine records, so the row says
which process sent, skipped or failed the file, as the audit trail's ``engine:<executor>``
actor already did. Rows recorded before this revision keep it empty.

The downgrade drops the column. Rows written since the upgrade were covered on the audit trail
with their executor, so ``audit verify`` on the downgraded database reports those rows as
edited: downgrade only to go back to a release without it, and expect that report.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("delivery_ledger", sa.Column("executor_id", sa.String(length=200), nullable=True))


def downgrade() -> None:
    # Batch mode: older SQLite cannot drop a column in place (it copies the table).
    with op.batch_alter_table("delivery_ledger") as batch:
        batch.drop_column("executor_id")
