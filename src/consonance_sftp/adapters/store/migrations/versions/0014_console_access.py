"""The console's access control: tokens that expire, users that can be disabled, and login
throttling counted in the shared database.

* ``api_tokens.expires_at``: when the token stops working (null: never, only when asked for
  explicitly with ``users token NAME --expires-in never``). A token made before this revision
  gets the default lifetime, 90 days from when it was made: no token lives forever by accident.
* ``api_tokens.revoked_why``: why it was revoked (``revoked``, ``password changed``, ``user
  disabled``).
* ``console_users.disabled_at``: when the user was disabled (``users disable``); a disabled
  user cannot log in, and has no session and no live token.
* ``login_failures``: one row per failed login and per count it adds to (the user name tried,
  the client's address), so every console process on the database sees the same counts and a
  restart clears none; rows older than the throttle's window are deleted as new ones come.
* ``login_refusals_noted``: per user name and client address, when a throttled login last went
  on the audit trail (once per window, whichever process refused it).

The downgrade drops them again (tokens lose their expiry: they become unlimited as before).

Revision ID: 0014
Revises: 0013 (the console's JSON API tokens)
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
DEFAULT_LIFETIME = timedelta(days=90)  # app.console.DEFAULT_TOKEN_LIFETIME when this was written


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("expires_at", TS, nullable=True))
    op.add_column("api_tokens", sa.Column("revoked_why", sa.String(length=100), nullable=True))
    op.add_column("console_users", sa.Column("disabled_at", TS, nullable=True))
    tokens = sa.table(
        "api_tokens",
        sa.column("id", sa.Integer()),
        sa.column("created_at", TS),
        sa.column("expires_at", TS),
    )
    conn = op.get_bind()
    for token_id, created in conn.execute(sa.select(tokens.c.id, tokens.c.created_at)).all():
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)  # SQLite hands back naive UTC
        conn.execute(
            tokens.update()
            .where(tokens.c.id == token_id)
            .values(expires_at=created.astimezone(UTC) + DEFAULT_LIFETIME)
        )
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("failed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    op.create_index(
        "ix_login_failures_scope_name_failed_at",
        "login_failures",
        ["scope", "name", "failed_at"],
    )
    op.create_index("ix_login_failures_failed_at", "login_failures", ["failed_at"])
    op.create_table(
        "login_refusals_noted",
        sa.Column("user_name", sa.String(length=100), nullable=False),
        sa.Column("client", sa.String(length=200), nullable=False),
        sa.Column("noted_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("user_name", "client", name=op.f("pk_login_refusals_noted")),
    )


def downgrade() -> None:
    op.drop_table("login_refusals_noted")
    op.drop_index("ix_login_failures_failed_at", table_name="login_failures")
    op.drop_index("ix_login_failures_scope_name_failed_at", table_name="login_failures")
    op.drop_table("login_failures")
    # Batch mode: older SQLite cannot drop a column in place (it copies the table).
    with op.batch_alter_table("console_users") as batch:
        batch.drop_column("disabled_at")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("revoked_why")
        batch.drop_column("expires_at")
