"""ONIX feed state: per recipient, the content hash of every product it holds.

One row per (flow, partner, record reference): the SHA-256 of the product as that recipient
last received it in a successful send. A delta feed resends a product only when its hash
changed. Rows are written only after the engine delivered the feed (never for test feeds).

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "onix_feed_hashes",
        sa.Column("flow", sa.String(length=100), nullable=False),
        sa.Column("partner", sa.String(length=100), nullable=False),
        sa.Column("record_reference", sa.String(length=200), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "flow", "partner", "record_reference", name=op.f("pk_onix_feed_hashes")
        ),
    )


def downgrade() -> None:
    op.drop_table("onix_feed_hashes")
