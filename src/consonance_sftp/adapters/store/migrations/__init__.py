"""Alembic migrations of our own tables; ``adapters.store.database.migrate`` runs them on open."""
