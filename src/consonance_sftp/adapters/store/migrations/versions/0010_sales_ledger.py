"""The sales ledger: sales and usage reports taken in, their lines exactly once, import files.

* ``sales_reports``: one row per report file taken in (a re-sent copy too, as a duplicate);
* ``sales_lines``: every accepted line no earlier report had, unique on (line_key,
  occurrence), with the import file it went into;
* ``sales_duplicate_lines``: accepted lines an earlier report had, and which report that was;
* ``sales_rejections``: the lines not loaded, and why;
* ``usage_lines``: the lines of usage reports;
* ``sales_imports``: the Consonance sales-import files made from the ledger.

New tables only: nothing older changes, and a downgrade drops them.

Revision ID: 0010
Revises: 0009 (asset versions' origin)
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def _line_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("line_key", sa.LargeBinary(length=16), nullable=False),
        sa.Column("occurrence", sa.Integer(), nullable=False),
        sa.Column("isbn13", sa.String(length=13), nullable=False),
        sa.Column("sales_date", sa.Date(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(length=40), nullable=False),
        sa.Column("return_quantity", sa.Integer(), nullable=False),
        sa.Column("return_value", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("list_price", sa.String(length=40), nullable=True),
        sa.Column("list_price_currency", sa.String(length=3), nullable=True),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("territory", sa.String(length=16), nullable=False),
        sa.Column("transaction_id", sa.Text(), nullable=False),
        sa.Column("channel_id", sa.String(length=100), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "sales_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("flow", sa.String(length=100), nullable=False),
        sa.Column("partner", sa.String(length=100), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("original_path", sa.Text(), nullable=False),
        sa.Column("intake_id", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("layout", sa.String(length=100), nullable=False),
        sa.Column("layout_version", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("period_from", sa.Date(), nullable=True),
        sa.Column("period_to", sa.Date(), nullable=True),
        sa.Column("business_model", sa.String(length=100), nullable=False),
        sa.Column("currencies", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("lines_read", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("duplicate_lines", sa.Integer(), nullable=False),
        sa.Column("duplicate_of", sa.Integer(), nullable=True),
        sa.Column("totals", sa.JSON(), nullable=False),
        sa.Column("stated_totals", sa.JSON(), nullable=False),
        sa.Column("reconciled", sa.Boolean(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("released_at", TS, nullable=True),
        sa.Column("released_by", sa.String(length=200), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["duplicate_of"],
            ["sales_reports.id"],
            name=op.f("fk_sales_reports_duplicate_of_sales_reports"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sales_reports")),
        sa.UniqueConstraint("intake_id", name=op.f("uq_sales_reports_intake_id")),
    )
    op.create_index(
        "ix_sales_reports_partner_sha256", "sales_reports", ["partner", "sha256"], unique=False
    )
    op.create_table(
        "sales_imports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("flow", sa.String(length=100), nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sales_imports")),
    )
    op.create_table(
        "sales_lines",
        *_line_columns(),
        sa.Column("import_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["sales_imports.id"],
            name=op.f("fk_sales_lines_import_id_sales_imports"),
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["sales_reports.id"],
            name=op.f("fk_sales_lines_report_id_sales_reports"),
        ),
        sa.PrimaryKeyConstraint("report_id", "seq", name=op.f("pk_sales_lines")),
        sa.UniqueConstraint(
            "line_key", "occurrence", name=op.f("uq_sales_lines_line_key_occurrence")
        ),
    )
    op.create_index(
        "ix_sales_lines_import_id_report_id_seq",
        "sales_lines",
        ["import_id", "report_id", "seq"],
        unique=False,
        sqlite_where=sa.text("import_id IS NOT NULL"),
        postgresql_where=sa.text("import_id IS NOT NULL"),
    )
    op.create_table(
        "sales_duplicate_lines",
        *_line_columns(),
        sa.Column("duplicate_of_report", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["duplicate_of_report"],
            ["sales_reports.id"],
            name=op.f("fk_sales_duplicate_lines_duplicate_of_report_sales_reports"),
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["sales_reports.id"],
            name=op.f("fk_sales_duplicate_lines_report_id_sales_reports"),
        ),
        sa.PrimaryKeyConstraint("report_id", "seq", name=op.f("pk_sales_duplicate_lines")),
    )
    op.create_index(
        "ix_sales_duplicate_lines_report_id_line_key",
        "sales_duplicate_lines",
        ["report_id", "line_key"],
        unique=False,
    )
    op.create_table(
        "sales_rejections",
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("column", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["sales_reports.id"],
            name=op.f("fk_sales_rejections_report_id_sales_reports"),
        ),
        sa.PrimaryKeyConstraint("report_id", "seq", name=op.f("pk_sales_rejections")),
    )
    op.create_table(
        "usage_lines",
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("isbn13", sa.String(length=13), nullable=False),
        sa.Column("period_from", sa.Date(), nullable=False),
        sa.Column("period_to", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(length=100), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("country", sa.String(length=16), nullable=False),
        sa.Column("institution", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["sales_reports.id"],
            name=op.f("fk_usage_lines_report_id_sales_reports"),
        ),
        sa.PrimaryKeyConstraint("report_id", "seq", name=op.f("pk_usage_lines")),
    )


def downgrade() -> None:
    op.drop_table("usage_lines")
    op.drop_table("sales_rejections")
    op.drop_index("ix_sales_duplicate_lines_report_id_line_key", table_name="sales_duplicate_lines")
    op.drop_table("sales_duplicate_lines")
    op.drop_index("ix_sales_lines_import_id_report_id_seq", table_name="sales_lines")
    op.drop_table("sales_lines")
    op.drop_table("sales_imports")
    op.drop_index("ix_sales_reports_partner_sha256", table_name="sales_reports")
    op.drop_table("sales_reports")
