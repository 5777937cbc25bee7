"""Migration 0005 on a database written before it (SQLite and PostgreSQL): the existing chains
are registered and the existing ledger rows sealed, so the upgraded store verifies, and a
forgery of a row or chain that predates the upgrade is still found."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command

from consonance_sftp.adapters.store import open_store
from consonance_sftp.adapters.store.audit_chain import GENESIS, event_hash
from consonance_sftp.adapters.store.database import alembic_config, create_engine
from tests.integration.test_store_audit import _cli

SHA = "b" * 64
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def old_db(empty_url: str) -> str:
    """A database at revision 0003 with 3 deliveries, 1 intake and a 3-event chain in it."""
    engine = create_engine(empty_url)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
        for n in range(3):
            conn.execute(
                sa.text(
                    "INSERT INTO delivery_ledger (flow, partner, remote_path, sha256, "
                    "generation, size, created_at, attempts, outcome) VALUES ('print', "
                    "'printer', :p, :s, 0, :n, :t, 1, 'sent')"
                ),
                {"p": f"/in/{n}.pdf", "s": SHA, "n": 100 + n, "t": T0},
            )
        conn.execute(
            sa.text(
                "INSERT INTO intake_ledger (flow, partner, remote_path, size, remote_mtime, "
                "outcome, received_at) VALUES ('inbox', 'typesetter', '/out/a.pdf', 5, 1.5, "
                "'stored', :t)"
            ),
            {"t": T0},
        )
        prev = GENESIS
        for seq in (1, 2, 3):
            digest = event_hash(
                prev_hash=prev,
                chain_id="old",
                seq=seq,
                ts=T0,
                actor="engine",
                action="delivery.sent",
                subject=f"delivery:{seq}",
                details_json="{}",
            )
            conn.execute(
                sa.text(
                    "INSERT INTO audit_events VALUES ('old', :q, :t, 'engine', 'delivery.sent', "
                    ":s, '{}', :p, :h)"
                ),
                {"q": seq, "t": T0, "s": f"delivery:{seq}", "p": prev, "h": digest},
            )
            prev = digest
        conn.execute(
            sa.text("INSERT INTO audit_chains VALUES ('old', :t, 'host:1', 3, :h)"),
            {"t": T0, "h": prev},
        )
    engine.dispose()
    return empty_url


def test_upgrade_seals_what_was_there_and_verifies(old_db: str) -> None:
    with open_store(old_db) as store:  # migrates 0003 -> head
        report = store.verify_audit()
        assert report.ok, report.problems
        # The old chain, and the migration's own chain of seals (one event per ledger table).
        assert report.chains == 2 and report.events == 3 + 2
        row_id = store.list_deliveries()[0].id
        assert row_id is not None
        store.update_delivery(row_id, attempts=2)  # a write after the upgrade covers as usual
        assert store.verify_audit().ok


def test_a_row_forged_after_the_upgrade_that_predates_it_is_found(old_db: str) -> None:
    with open_store(old_db) as store:
        with store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE delivery_ledger SET sha256 = 'x' WHERE id = 2"))
        [p] = store.verify_audit().problems
        assert (p.table, p.row, p.kind) == ("delivery_ledger", 2, "edited")
        assert "sealed at migration 0005" in p.message


def test_an_old_chain_cut_back_after_the_upgrade_is_found(old_db: str) -> None:
    with open_store(old_db) as store:
        with store.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
                conn.execute(sa.text("ALTER TABLE audit_chains DISABLE TRIGGER USER"))
            else:
                conn.execute(sa.text("DROP TRIGGER audit_events_no_delete"))
                conn.execute(sa.text("DROP TRIGGER audit_chains_forward_only"))
            conn.execute(sa.text("DELETE FROM audit_events WHERE chain_id = 'old' AND seq = 3"))
            conn.execute(
                sa.text(
                    "UPDATE audit_chains SET seq = 2, hash = (SELECT hash FROM audit_events "
                    "WHERE chain_id = 'old' AND seq = 2) WHERE chain_id = 'old'"
                )
            )
        [p] = store.verify_audit().problems
        assert (p.chain_id, p.kind) == ("old", "truncated")


def test_verify_of_a_database_not_yet_upgraded_says_so(old_db: str) -> None:
    result = _cli("audit", "verify", "--db", old_db)
    assert result.returncode == 1
    assert "predates migration 0005" in result.stderr
    assert "Traceback" not in result.stderr
