"""Asset versions: where a version came from, so ``assets ISBN`` can say who sent it.

* ``isbn``: the product's ISBN-13 when the version was matched to one (an intake file), so the
  versions of a title are found by ISBN from our own records, without asking Consonance;
* ``partner``: the partner that sent the file (an intake version; empty for our own);
* ``original_name``: the file's name as the partner uploaded it (the local copy may be kept
  under another name);
* ``intake_id``: the intake ledger row the version was taken in as.

Rows written before this revision keep all four empty (``source`` still says
``intake:<partner>`` for those that came from a partner).

The columns are added (and dropped) with plain ``ALTER TABLE``, not a batch copy of the table:
SQLite has both since 3.35, and a batch copy would lose the expression index
``uq_asset_versions_scope_version``, which reflection cannot read back.

Revision ID: 0009
Revises: 0008 (the delivery ledger's verified_by)
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("intake_id", "original_name", "partner", "isbn")


def upgrade() -> None:
    op.add_column("asset_versions", sa.Column("isbn", sa.String(length=13), nullable=True))
    op.add_column("asset_versions", sa.Column("partner", sa.String(length=100), nullable=True))
    op.add_column("asset_versions", sa.Column("original_name", sa.Text(), nullable=True))
    op.add_column("asset_versions", sa.Column("intake_id", sa.Integer(), nullable=True))
    op.create_index("ix_asset_versions_isbn", "asset_versions", ["isbn"])


def downgrade() -> None:
    op.drop_index("ix_asset_versions_isbn", table_name="asset_versions")
    for column in _COLUMNS:
        # Plain DROP COLUMN on both databases (see the module docstring for why not batch).
        op.execute(sa.text(f"ALTER TABLE asset_versions DROP COLUMN {column}"))
