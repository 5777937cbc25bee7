"""Our own records (SQLAlchemy 2 + Alembic): delivery and intake ledgers, asset versions, audit
trail, alerts.
"""
