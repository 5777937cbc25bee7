"""Migration 0007 on a database written before it (SQLite and PostgreSQL): the delivery ledger
gains ``executor_id``; a row recorded before it reads back without one, still verifies, and
says which executor recorded its next outcome; a downgrade drops the column again."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from consonance_sftp.adapters.store import open_store
from consonance_sftp.adapters.store.database import create_engine
from consonance_sftp.engine import StoreLedger
from consonance_sftp.models import DeliveryOutcome
from tests.fixtures.store import migrate_to, table_columns

SHA = "e" * 64
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def old_db(empty_url: str) -> str:
    """A database at revision 0006 with one failed delivery, written (at 0004) before the
    ledger's audit cover, and sealed by 0005."""
    migrate_to(empty_url, "0004")
    engine = create_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO delivery_ledger (flow, partner, remote_path, sha256, generation, "
                    "size, package_id, workflow_id, created_at, attempts, outcome, error) VALUES "
                    "('print', 'printer', '/in/a.pdf', :s, 0, 100, '9780000000001 production', "
                    "'dlv-1', :t, 3, 'failed', 'connection refused')"
                ),
                {"s": SHA, "t": T0},
            )
    finally:
        engine.dispose()
    migrate_to(empty_url, "0006")
    assert "executor_id" not in table_columns(empty_url, "delivery_ledger")
    return empty_url


def test_upgrade_adds_the_executor_and_an_older_row_moves_on_and_verifies(old_db: str) -> None:
    with open_store(old_db) as store:  # migrates 0006 -> head
        [row] = store.list_deliveries()
        assert (row.outcome, row.error, row.executor_id, row.package) == (
            DeliveryOutcome.FAILED,
            "connection refused",
            None,
            "9780000000001 production",
        )
        # ``retry`` on an executor of the new release: the same row, now with its executor.
        StoreLedger(store).record(
            dataclasses.replace(
                row,
                id=None,
                created_at=None,
                outcome=DeliveryOutcome.SENT,
                error=None,
                attempts=1,
                executor_id="host-a-0",
            )
        )
        [sent] = store.list_deliveries()
        assert (sent.id, sent.outcome, sent.executor_id, sent.attempts) == (
            row.id,
            DeliveryOutcome.SENT,
            "host-a-0",
            4,
        )
        report = store.verify_audit()
        assert report.ok, report.problems

    migrate_to(old_db, "0006", down=True)
    assert "executor_id" not in table_columns(old_db, "delivery_ledger")
    migrate_to(old_db, "head")
    assert "executor_id" in table_columns(old_db, "delivery_ledger")
