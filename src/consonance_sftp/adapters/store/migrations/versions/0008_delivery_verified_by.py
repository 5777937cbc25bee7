"""Delivery ledger: how each file sent was verified on the partner's server.

``verified_by`` names the proof that the partner's copy holds the bytes whose SHA-256 the row
records (``models.Verification``): ``check_file``, ``shell`` (sha256sum), ``shell-sha1``,
``shell-md5``, ``read_back``, or ``size`` where the partner's ``checksum = "size"`` asked for a
size check only. A row is recorded ``sent`` only with a hash match or that explicit setting, and
the row now says which. Rows recorded before this revision, and failed rows, keep it empty.

The downgrade drops the column. Rows written since the upgrade were covered on the audit trail
with it, so ``audit verify`` on the downgraded database reports those rows as edited: downgrade
only to go back to a release without it, and expect that report.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("delivery_ledger", sa.Column("verified_by", sa.String(length=32), nullable=True))


def downgrade() -> None:
    # Batch mode: older SQLite cannot drop a column in place (it copies the table).
    with op.batch_alter_table("delivery_ledger") as batch:
        batch.drop_column("verified_by")
