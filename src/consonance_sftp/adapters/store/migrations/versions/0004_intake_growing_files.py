"""Intake ledger: notes on a file's name, and growing files.

* ``outcome`` widens to 32 characters for ``superseded-incomplete`` (a version taken while the
  partner was still writing it; a later, longer version begins with exactly its bytes).
* ``supersedes``: on the later version, the id of the incomplete one it completes.
* ``name_note``: what a person should know about the name (not NFC, mixed scripts that look
  alike, bytes that are not UTF-8); ``name_nfc``: the NFC form when the name is not in it;
  ``raw_name``: the original name's bytes in hex when they are not UTF-8 (``remote_path`` then
  shows them as ``\\xNN``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode: SQLite cannot alter a column in place (it copies the table).
    with op.batch_alter_table("intake_ledger") as batch:
        batch.alter_column(
            "outcome", existing_type=sa.String(length=16), type_=sa.String(length=32)
        )
        batch.add_column(sa.Column("name_note", sa.Text(), nullable=True))
        batch.add_column(sa.Column("name_nfc", sa.Text(), nullable=True))
        batch.add_column(sa.Column("raw_name", sa.Text(), nullable=True))
        batch.add_column(sa.Column("supersedes", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("intake_ledger") as batch:
        batch.drop_column("supersedes")
        batch.drop_column("raw_name")
        batch.drop_column("name_nfc")
        batch.drop_column("name_note")
        batch.alter_column(
            "outcome", existing_type=sa.String(length=32), type_=sa.String(length=16)
        )
