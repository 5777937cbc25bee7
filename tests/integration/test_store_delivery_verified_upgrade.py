"""Migration 0008 on a database written before it (SQLite and PostgreSQL): the delivery ledger
gains ``verified_by``; a row recorded before it reads back without one, still verifies, and
says how its file was verified once a retry sends it; a downgrade drops the column again."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from consonance_sftp.adapters.store import open_store
from consonance_sftp.adapters.store.database import create_engine
from consonance_sftp.engine import StoreLedger
from consonance_sftp.models import DeliveryOutcome, Verification
from tests.fixtures.store import migrate_to, table_columns

SHA = "f" * 64
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def old_db(empty_url: str) -> str:
    """A database at revision 0007 with one failed delivery recorded by the store of that
    release (so its audit cover has no ``verified_by``)."""
    migrate_to(empty_url, "0007")
    engine = create_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO delivery_ledger (flow, partner, remote_path, sha256, generation, "
                    "size, package_id, workflow_id, created_at, attempts, outcome, error, "
                    "executor_id) VALUES ('print', 'printer', '/in/b.pdf', :s, 0, 100, "
                    "'9780000000002 production', 'dlv-2', :t, 2, 'failed', 'connection reset', "
                    "'host-a-0')"
                ),
                {"s": SHA, "t": T0},
            )
    finally:
        engine.dispose()
    assert "verified_by" not in table_columns(empty_url, "delivery_ledger")
    return empty_url


def test_upgrade_adds_verified_by_and_an_older_row_takes_it_when_sent(old_db: str) -> None:
    with open_store(old_db) as store:  # migrates 0007 -> head
        [row] = store.list_deliveries()
        assert (row.outcome, row.verified_by, row.executor_id) == (
            DeliveryOutcome.FAILED,
            None,
            "host-a-0",
        )
        # ``retry`` on an executor of the new release: the same row, now sent and verified.
        StoreLedger(store).record(
            dataclasses.replace(
                row,
                id=None,
                created_at=None,
                outcome=DeliveryOutcome.SENT,
                error=None,
                attempts=1,
                verified_by=Verification.READ_BACK,
            )
        )
        [sent] = store.list_deliveries()
        assert (sent.id, sent.outcome, sent.verified_by, sent.attempts) == (
            row.id,
            DeliveryOutcome.SENT,
            Verification.READ_BACK,
            3,
        )
        report = store.verify_audit()
        assert report.ok, report.problems

    migrate_to(old_db, "0007", down=True)
    assert "verified_by" not in table_columns(old_db, "delivery_ledger")
    migrate_to(old_db, "head")
    assert "verified_by" in table_columns(old_db, "delivery_ledger")
