"""Table definitions (SQLAlchemy Core) for our own records: the one description of the schema.

The Alembic migrations in ``migrations/versions`` create exactly these tables; a test compares
the two so they cannot drift. Everything here works the same on SQLite and PostgreSQL: enums are
stored as their string values (adding a value needs no migration), times as timezone-aware
timestamps (SQLite keeps them as UTC text; the store normalises on read).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TS = sa.DateTime(timezone=True)

asset_versions = sa.Table(
    "asset_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("work_id", sa.Integer, nullable=False),
    sa.Column("product_id", sa.Integer, nullable=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("source", sa.String(200), nullable=True),
    sa.Column("local_path", sa.Text, nullable=True),
    sa.Column("derived_from", sa.Integer, sa.ForeignKey("asset_versions.id"), nullable=True),
    sa.Column("approved_at", TS, nullable=True),
    sa.Column("superseded_by", sa.Integer, sa.ForeignKey("asset_versions.id"), nullable=True),
    sa.Column("created_at", TS, nullable=False),
    # Migration 0009: where the version came from (a partner's upload), for ``assets ISBN``.
    sa.Column("isbn", sa.String(13), nullable=True),
    sa.Column("partner", sa.String(100), nullable=True),
    sa.Column("original_name", sa.Text, nullable=True),
    sa.Column("intake_id", sa.Integer, nullable=True),
    # product_id NULL means "the work itself"; COALESCE so NULLs collide (they are distinct in
    # a plain unique constraint on both databases).
    sa.Index(
        "uq_asset_versions_scope_version",
        "work_id",
        sa.func.coalesce(sa.column("product_id"), 0),
        "kind",
        "version",
        unique=True,
    ),
    sa.Index("ix_asset_versions_sha256", "sha256"),
    sa.Index("ix_asset_versions_isbn", "isbn"),
)

delivery_ledger = sa.Table(
    "delivery_ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(100), nullable=False),
    sa.Column("partner", sa.String(100), nullable=False),
    sa.Column("remote_path", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("generation", sa.Integer, nullable=False, server_default="0"),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("source", sa.Text, nullable=True),
    sa.Column("package_id", sa.String(200), nullable=True),
    sa.Column("isbn", sa.String(13), nullable=True),
    sa.Column("asset_version_id", sa.Integer, sa.ForeignKey("asset_versions.id"), nullable=True),
    sa.Column("workflow_id", sa.String(200), nullable=True),
    sa.Column("trigger", sa.String(200), nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("started_at", TS, nullable=True),
    sa.Column("finished_at", TS, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    # The engine process that recorded the outcome (migration 0007); empty on older rows.
    sa.Column("executor_id", sa.String(200), nullable=True),
    # How the partner's copy was proven to be these bytes (``models.Verification``: a hash
    # method, or ``size`` where configured so; migration 0008); empty on older and failed rows.
    sa.Column("verified_by", sa.String(32), nullable=True),
    # Bumped by every write; the audit event of that write carries the row as written (migration
    # 0005), so ``audit verify`` finds a row edited, rolled back or added outside the store.
    sa.Column("audit_rev", sa.Integer, nullable=False, server_default="0"),
    sa.UniqueConstraint("partner", "remote_path", "sha256", "generation"),
    sa.Index("ix_delivery_ledger_isbn", "isbn"),
    sa.Index("ix_delivery_ledger_flow_created_at", "flow", "created_at"),
    sa.Index("ix_delivery_ledger_package_id", "package_id"),
    sa.Index("ix_delivery_ledger_created_at", "created_at"),
)

intake_ledger = sa.Table(
    "intake_ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(100), nullable=True),
    sa.Column("partner", sa.String(100), nullable=False),
    sa.Column("remote_path", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("remote_mtime", sa.Float, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("local_path", sa.Text, nullable=True),
    sa.Column("outcome", sa.String(32), nullable=False),  # 32: "superseded-incomplete"
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("work_id", sa.Integer, nullable=True),
    sa.Column("product_id", sa.Integer, nullable=True),
    sa.Column("received_at", TS, nullable=False),
    # Migration 0004: what to know about the name, and the version this one completes.
    sa.Column("name_note", sa.Text, nullable=True),
    sa.Column("name_nfc", sa.Text, nullable=True),
    sa.Column("raw_name", sa.Text, nullable=True),
    sa.Column("supersedes", sa.Integer, nullable=True),
    sa.Column("audit_rev", sa.Integer, nullable=False, server_default="0"),  # as delivery_ledger
    sa.UniqueConstraint("partner", "remote_path", "size", "remote_mtime"),
    sa.Index("ix_intake_ledger_received_at", "received_at"),
)

# The audit trail: one hash chain per writer, so writers never wait on each other's head.
audit_chains = sa.Table(
    "audit_chains",
    metadata,
    sa.Column("chain_id", sa.String(100), primary_key=True),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("writer", sa.String(200), nullable=False),  # host and pid, for the operator
    sa.Column("seq", sa.Integer, nullable=False),  # last seq appended (0: none yet)
    sa.Column("hash", sa.String(64), nullable=False),  # hash of that last event
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("chain_id", sa.String(100), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ts", TS, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(200), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # canonical JSON, exactly as hashed
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_audit_events_ts", "ts"),
    sa.Index("ix_audit_events_subject", "subject"),
)

# The chain of chains (migration 0005): one hash-chained entry per audit chain, written in the
# transaction of the chain's first event. Each entry also records the heads of the chains that
# moved since the previous entry, so a chain deleted whole, or cut back below a recorded head,
# is found.
audit_registry = sa.Table(
    "audit_registry",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("chain_id", sa.String(100), nullable=False, unique=True),
    sa.Column("ts", TS, nullable=False),
    sa.Column("writer", sa.String(200), nullable=False),
    sa.Column("alg", sa.String(16), nullable=False),  # "sha256" or "hmac-sha256" (keyed chain)
    sa.Column("details", sa.Text, nullable=False),  # canonical JSON, exactly as hashed
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# Which head each chain had when the registry last recorded it: only a cache that keeps the
# registry entries small (a wrong value here makes an entry record more or fewer heads, never
# a wrong one), so it is neither chained nor guarded.
audit_checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("chain_id", sa.String(100), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", TS, nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(100), nullable=False),
    sa.Column("partner", sa.String(100), nullable=True),
    sa.Column("flow", sa.String(100), nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("acknowledged_at", TS, nullable=True),
    sa.Column("acknowledged_by", sa.String(200), nullable=True),
    sa.Index("ix_alerts_ts", "ts"),
)

consonance_snapshots = sa.Table(
    "consonance_snapshots",
    metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("record_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("content_hash", sa.String(128), nullable=False),
    sa.Column("fields", sa.JSON, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

watermarks = sa.Table(
    "watermarks",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

# ONIX feeds: per recipient (flow, partner), the content hash of each product as last sent.
onix_feed_hashes = sa.Table(
    "onix_feed_hashes",
    metadata,
    sa.Column("flow", sa.String(100), primary_key=True),
    sa.Column("partner", sa.String(100), primary_key=True),
    sa.Column("record_reference", sa.String(200), primary_key=True),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

# --- operational state (migration 0006): what operators and the service decided ------------

# A pause of a partner or a flow, as last set (a resume keeps the row, paused false, who and
# why). Every change is also an audit event.
pauses = sa.Table(
    "pauses",
    metadata,
    sa.Column("scope", sa.String(16), primary_key=True),  # "partner" or "flow"
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("paused", sa.Boolean, nullable=False),
    sa.Column("by", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", TS, nullable=False),
)

# A delivery held by a pause or a closed delivery window. Open while ``released_at`` is null;
# ``hold_key`` names the held request (its canonical JSON's digest): one open hold per key.
holds = sa.Table(
    "holds",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("hold_key", sa.String(64), nullable=False),
    sa.Column("partner", sa.String(100), nullable=False),
    sa.Column("flow", sa.String(100), nullable=False),
    sa.Column("package", sa.Text, nullable=False),
    sa.Column("request", sa.Text, nullable=False),  # the delivery request, canonical JSON
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("held_at", TS, nullable=False),
    sa.Column("released_at", TS, nullable=True),
    sa.Column("released_by", sa.String(200), nullable=True),
    sa.Column("workflow_id", sa.String(200), nullable=True),  # what the release enqueued
    sa.Index("ix_holds_released_at", "released_at"),
    sa.Index("ix_holds_hold_key", "hold_key"),
)

# An explicit resend: until the ledger shows this generation delivered, the file goes again
# even when the partner still holds identical bytes.
resend_marks = sa.Table(
    "resend_marks",
    metadata,
    sa.Column("partner", sa.String(100), primary_key=True),
    sa.Column("remote_path", sa.Text, primary_key=True),
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("marked_at", TS, nullable=False),
)

# The publication date a product was last found due for (per ``days_before_publication``
# window): each date fires once, a moved date again.
publication_due_marks = sa.Table(
    "publication_due_marks",
    metadata,
    sa.Column("days", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("product_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("publication_date", sa.String(32), nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

# --- the sales ledger (migration 0010): sales and usage reports taken in, exactly once ------

# One row per report file taken in (a report re-sent with the same bytes is a row too, status
# ``duplicate``, pointing at the first). Lists and totals are JSON; money as decimal strings.
sales_reports = sa.Table(
    "sales_reports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(100), nullable=False),
    sa.Column("partner", sa.String(100), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("original_path", sa.Text, nullable=False),
    sa.Column("intake_id", sa.Integer, nullable=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("layout", sa.String(100), nullable=False),
    sa.Column("layout_version", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("period_from", sa.Date, nullable=True),
    sa.Column("period_to", sa.Date, nullable=True),
    sa.Column("business_model", sa.String(100), nullable=False),
    sa.Column("currencies", sa.String(200), nullable=False),  # ISO 4217 codes, comma-separated
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("lines_read", sa.Integer, nullable=False),
    sa.Column("accepted", sa.Integer, nullable=False),
    sa.Column("rejected", sa.Integer, nullable=False),
    sa.Column("duplicate_lines", sa.Integer, nullable=False),
    sa.Column("duplicate_of", sa.Integer, sa.ForeignKey("sales_reports.id"), nullable=True),
    sa.Column("totals", sa.JSON, nullable=False),
    sa.Column("stated_totals", sa.JSON, nullable=False),
    sa.Column("reconciled", sa.Boolean, nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("released_at", TS, nullable=True),
    sa.Column("released_by", sa.String(200), nullable=True),
    sa.Column("details", sa.JSON, nullable=False),
    # An intake row is loaded as one report at most: a replayed hand-off finds it.
    sa.UniqueConstraint("intake_id"),
    sa.Index("ix_sales_reports_partner_sha256", "partner", "sha256"),
)

# One row per Consonance sales-import file made (or to be made) from the ledger's lines.
sales_imports = sa.Table(
    "sales_imports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(100), nullable=False),
    sa.Column("scope", sa.String(64), nullable=False),  # "report:<id>" or "period:YYYY-MM"
    sa.Column("lines", sa.Integer, nullable=False),
    sa.Column("path", sa.Text, nullable=True),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("created_at", TS, nullable=False),
)


def _line_columns() -> list[sa.Column[object]]:
    """The columns of an accepted sales line, shared by the new and the duplicate lines."""
    return [
        sa.Column("report_id", sa.Integer, sa.ForeignKey("sales_reports.id"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),  # order in report
        # The line's key: BLAKE2b-128 of (partner, layout, SalesLine.identity); with
        # ``occurrence`` (how many equal lines came before it in its report) it names one sale.
        sa.Column("line_key", sa.LargeBinary(16), nullable=False),
        sa.Column("occurrence", sa.Integer, nullable=False),
        # The line: first the fields the loader binds as they are, then the date and the money
        # it converts (the loader builds its rows in this order).
        sa.Column("line", sa.Integer, nullable=False),  # line number in the file
        sa.Column("isbn13", sa.String(13), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("return_quantity", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("list_price_currency", sa.String(3), nullable=True),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("territory", sa.String(16), nullable=False),
        sa.Column("transaction_id", sa.Text, nullable=False),
        sa.Column("channel_id", sa.String(100), nullable=False),
        sa.Column("sales_date", sa.Date, nullable=False),
        sa.Column("value", sa.String(40), nullable=False),  # str(Decimal): exact both ways
        sa.Column("return_value", sa.String(40), nullable=False),
        sa.Column("list_price", sa.String(40), nullable=True),
    ]


# Every accepted line that no earlier report had: each (line_key, occurrence) once, ever, so a
# sale cannot be loaded twice. ``import_id``: the import file it went into (each line once).
sales_lines = sa.Table(
    "sales_lines",
    metadata,
    *_line_columns(),
    sa.Column("import_id", sa.Integer, sa.ForeignKey("sales_imports.id"), nullable=True),
    sa.UniqueConstraint("line_key", "occurrence"),
    # Partial: lines not yet in an import (all of them at load time) cost the index nothing.
    sa.Index(
        "ix_sales_lines_import_id_report_id_seq",
        "import_id",
        "report_id",
        "seq",
        sqlite_where=sa.text("import_id IS NOT NULL"),
        postgresql_where=sa.text("import_id IS NOT NULL"),
    ),
)

# Accepted lines an earlier report had already loaded: kept (to show which report duplicated
# which), never put into an import file.
sales_duplicate_lines = sa.Table(
    "sales_duplicate_lines",
    metadata,
    *_line_columns(),
    sa.Column("duplicate_of_report", sa.Integer, sa.ForeignKey("sales_reports.id"), nullable=False),
    sa.Index("ix_sales_duplicate_lines_report_id_line_key", "report_id", "line_key"),
)

sales_rejections = sa.Table(
    "sales_rejections",
    metadata,
    sa.Column("report_id", sa.Integer, sa.ForeignKey("sales_reports.id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("column", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
)

# Usage reports (COUNTER/IRUS, JSTOR, MUSE): counts, never money, never in an import file.
usage_lines = sa.Table(
    "usage_lines",
    metadata,
    sa.Column("report_id", sa.Integer, sa.ForeignKey("sales_reports.id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("isbn13", sa.String(13), nullable=False),
    sa.Column("period_from", sa.Date, nullable=False),
    sa.Column("period_to", sa.Date, nullable=False),
    sa.Column("metric", sa.String(100), nullable=False),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("country", sa.String(16), nullable=False),
    sa.Column("institution", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
)

# --- the finance ledger (migration 0011): royalty-statement batches and their statements ----

# One row per statement batch finance dropped (a folder or a zip of PDFs): a replayed tick finds
# its (flow, name) and takes nothing twice.
finance_batches = sa.Table(
    "finance_batches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(100), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("period", sa.String(32), nullable=True),  # "YYYY-MM..YYYY-MM" when known
    sa.Column("received_at", TS, nullable=False),
    sa.Column("approved_at", TS, nullable=True),
    sa.Column("approved_by", sa.String(200), nullable=True),
    sa.UniqueConstraint("flow", "name"),
)

# One row per statement of a batch: its payee, where its copies go, its state. Every change of
# state is also an audit event (``finance.statement_<state>``), in the same transaction.
finance_statements = sa.Table(
    "finance_statements",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.Integer, sa.ForeignKey("finance_batches.id"), nullable=False),
    sa.Column("file_name", sa.Text, nullable=False),
    sa.Column("original_path", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("payee_id", sa.BigInteger, nullable=True),  # the Consonance contact ID
    sa.Column("payee_name", sa.Text, nullable=True),
    # [{"partner": ..., "folder": ..., "role": ...}, ...]
    sa.Column("destinations", sa.JSON, nullable=False),
    sa.Column("deliveries", sa.JSON, nullable=False),  # {partner: workflow id}
    sa.Column("updated_at", TS, nullable=False),
    # A batch's statements by file name, each name once (also what lists them in order).
    sa.UniqueConstraint("batch_id", "file_name"),
)

# Migration 0012: the web console's local users and their login sessions (ports.users).
console_users = sa.Table(
    "console_users",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("disabled_at", TS, nullable=True),  # migration 0014
)

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column(
        "user_name",
        sa.String(100),
        sa.ForeignKey("console_users.name", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Index("ix_console_sessions_expires_at", "expires_at"),
)

# Migration 0013: the console's JSON API tokens (ports.users), one row per token.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column(
        "user_name",
        sa.String(100),
        sa.ForeignKey("console_users.name", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("revoked_at", TS, nullable=True),
    sa.Column("expires_at", TS, nullable=True),  # migration 0014; null: never
    sa.Column("revoked_why", sa.String(100), nullable=True),  # migration 0014
)

# Migration 0014: failed console logins counted in the shared database (web.auth.LoginThrottle),
# one row per failure and scope ("user": the name tried, "client": the client's address).
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("scope", sa.String(8), nullable=False),
    sa.Column("name", sa.String(300), nullable=False),
    sa.Column("failed_at", TS, nullable=False),
    sa.Index("ix_login_failures_scope_name_failed_at", "scope", "name", "failed_at"),
    sa.Index("ix_login_failures_failed_at", "failed_at"),
)

# Migration 0014: when a throttled login of (user name, client) last went on the audit trail.
login_refusals_noted = sa.Table(
    "login_refusals_noted",
    metadata,
    sa.Column("user_name", sa.String(100), primary_key=True),
    sa.Column("client", sa.String(200), primary_key=True),
    sa.Column("noted_at", TS, nullable=False),
)
