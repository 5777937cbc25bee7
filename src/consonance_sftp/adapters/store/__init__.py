"""Our own records (SQLAlchemy 2 + Alembic): delivery and intake ledgers, asset versions, audit
trail, alerts, poll snapshots.

``open_store(url)`` opens SQLite (``sqlite:///path.db``, the default) or PostgreSQL
(``postgresql+psycopg://...``), migrates it to the newest schema and returns a ``SqlStore``
implementing ``ports.store.Store``.
"""

from consonance_sftp.adapters.store.sql_store import SqlStore, open_store

__all__ = ["SqlStore", "open_store"]
