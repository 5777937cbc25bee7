"""Operational state in tables of its own: pauses, holds, resend marks, publication-due marks.

Until now pauses, resend marks and publication-due marks were JSON or text in the generic
``watermarks`` table, and held deliveries were worked out on every read from the whole audit
trail (``delivery.held`` events not followed by a ``delivery.released`` of the same subject),
a cost that grew with the trail. The upgrade moves the watermark rows into their tables (and
removes them from ``watermarks``) and records each delivery still held as an open hold. The
audit trail itself is not touched: it keeps every pause, hold and release as before.

The downgrade puts pauses and marks back into ``watermarks``; holds need nothing, as the
older code reads them from the audit trail, which still has them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
_PAUSE = "operator.paused."
_RESEND = "resend.force."
_DUE = "publication_due."

_watermarks = sa.table(
    "watermarks",
    sa.column("name", sa.String),
    sa.column("value", sa.Text),
    sa.column("updated_at", TS),
)
_events = sa.table(
    "audit_events",
    sa.column("chain_id", sa.String),
    sa.column("seq", sa.Integer),
    sa.column("ts", TS),
    sa.column("action", sa.String),
    sa.column("subject", sa.Text),
    sa.column("details", sa.Text),
)


def _aware(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _hold_key(request: Any) -> str:
    # The same digest the store gives a held request (adapters/store/operations.py).
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def upgrade() -> None:
    pauses = op.create_table(
        "pauses",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("scope", "name", name=op.f("pk_pauses")),
    )
    holds = op.create_table(
        "holds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("hold_key", sa.String(length=64), nullable=False),
        sa.Column("partner", sa.String(length=100), nullable=False),
        sa.Column("flow", sa.String(length=100), nullable=False),
        sa.Column("package", sa.Text(), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("held_at", TS, nullable=False),
        sa.Column("released_at", TS, nullable=True),
        sa.Column("released_by", sa.String(length=200), nullable=True),
        sa.Column("workflow_id", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
    )
    op.create_index("ix_holds_released_at", "holds", ["released_at"])
    op.create_index("ix_holds_hold_key", "holds", ["hold_key"])
    resend_marks = op.create_table(
        "resend_marks",
        sa.Column("partner", sa.String(length=100), nullable=False),
        sa.Column("remote_path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("marked_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("partner", "remote_path", "sha256", name=op.f("pk_resend_marks")),
    )
    due_marks = op.create_table(
        "publication_due_marks",
        sa.Column("days", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("product_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("publication_date", sa.String(length=32), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("days", "product_id", name=op.f("pk_publication_due_marks")),
    )
    conn = op.get_bind()
    _move_marks(conn, pauses, resend_marks, due_marks)
    _open_holds(conn, holds)


def _move_marks(
    conn: sa.Connection, pauses: sa.Table, resend_marks: sa.Table, due_marks: sa.Table
) -> None:
    w = _watermarks.c
    rows = conn.execute(
        sa.select(w.name, w.value, w.updated_at).where(
            sa.or_(w.name.startswith(_PAUSE), w.name.startswith(_RESEND), w.name.startswith(_DUE))
        )
    ).all()
    moved: list[str] = []
    for name, value, updated in rows:
        if name.startswith(_PAUSE):
            scope, _, target = name.removeprefix(_PAUSE).partition(".")
            data = json.loads(value)
            conn.execute(
                pauses.insert().values(
                    scope=scope,
                    name=target,
                    paused=bool(data["paused"]),
                    by=str(data["by"]),
                    reason=str(data["reason"]),
                    at=_aware(datetime.fromisoformat(data["at"])),
                )
            )
        elif name.startswith(_RESEND):
            # "<partner>:<remote path>:<sha256>"; the path may hold ':', the others do not.
            partner, _, rest = name.removeprefix(_RESEND).partition(":")
            path, _, sha = rest.rpartition(":")
            conn.execute(
                resend_marks.insert().values(
                    partner=partner,
                    remote_path=path,
                    sha256=sha,
                    generation=int(value),
                    marked_at=_aware(updated),
                )
            )
        else:
            days, _, product = name.removeprefix(_DUE).partition(".")
            conn.execute(
                due_marks.insert().values(
                    days=int(days),
                    product_id=int(product),
                    publication_date=value,
                    updated_at=_aware(updated),
                )
            )
        moved.append(name)
    if moved:
        conn.execute(_watermarks.delete().where(w.name.in_(moved)))


def _open_holds(conn: sa.Connection, holds: sa.Table) -> None:
    """Each delivery still held, as the audit trail tells it: a ``delivery.held`` event with
    no ``delivery.released`` of the same subject at or after its latest one."""
    e = _events.c
    events = conn.execute(
        sa.select(e.ts, e.action, e.subject, e.details)
        .where(e.action.in_(("delivery.held", "delivery.released")))
        .order_by(e.ts, e.chain_id, e.seq)
    ).all()
    released: dict[str, datetime] = {}
    for ts, action, subject, _details in events:
        if action == "delivery.released":
            released[subject] = max(released.get(subject, _aware(ts)), _aware(ts))
    found: dict[str, dict[str, Any]] = {}
    for ts, action, subject, details in events:
        if action != "delivery.held":
            continue
        data = json.loads(details)
        request = data.get("request")
        if not isinstance(request, dict):
            continue
        at = _aware(ts)
        last_release = released.get(subject)
        if last_release is not None and last_release >= at:
            continue  # released since
        key = _hold_key(request)
        if key in found:
            continue  # held again while held: the first hold stands
        found[key] = {
            "hold_key": key,
            "partner": str(request.get("partner", "")),
            "flow": str(request.get("flow", "")),
            "package": str(request.get("package", "")),
            "request": json.dumps(request, sort_keys=True),
            "reason": str(data.get("reason", "")),
            "held_at": at,
        }
    if found:
        conn.execute(holds.insert(), list(found.values()))


def downgrade() -> None:
    conn = op.get_bind()
    now = datetime.now(UTC)
    back: list[dict[str, Any]] = []
    pauses = sa.table(
        "pauses",
        *(sa.column(n) for n in ("scope", "name", "paused", "by", "reason")),
        sa.column("at", TS),
    )
    for row in conn.execute(sa.select(pauses)):
        value = {"paused": bool(row.paused), "by": row.by, "reason": row.reason}
        value["at"] = _aware(row.at).isoformat()
        back.append({"name": f"{_PAUSE}{row.scope}.{row.name}", "value": json.dumps(value)})
    marks = sa.table(
        "resend_marks", *(sa.column(n) for n in ("partner", "remote_path", "sha256", "generation"))
    )
    for row in conn.execute(sa.select(marks)):
        name = f"{_RESEND}{row.partner}:{row.remote_path}:{row.sha256}"
        back.append({"name": name, "value": str(row.generation)})
    due = sa.table(
        "publication_due_marks", *(sa.column(n) for n in ("days", "product_id", "publication_date"))
    )
    for row in conn.execute(sa.select(due)):
        back.append({"name": f"{_DUE}{row.days}.{row.product_id}", "value": row.publication_date})
    if back:
        conn.execute(_watermarks.insert(), [{**b, "updated_at": now} for b in back])
    op.drop_table("publication_due_marks")
    op.drop_table("resend_marks")
    op.drop_index("ix_holds_hold_key", table_name="holds")
    op.drop_index("ix_holds_released_at", table_name="holds")
    op.drop_table("holds")
    op.drop_table("pauses")
