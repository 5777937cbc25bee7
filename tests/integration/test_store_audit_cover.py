"""What the audit trail covers besides its own events, on SQLite and PostgreSQL: the ledger rows
(a forged SHA-256 in the delivery ledger is named), whole chains (one deleted with its head is
named, so is a tail cut back below a head the chain of chains recorded), and the keyed chain
(an attacker without the key cannot recompute a chain that verifies)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from consonance_sftp.adapters.store import SqlStore, open_store
from consonance_sftp.adapters.store.audit_chain import event_hash
from consonance_sftp.adapters.store.schema import audit_chains, audit_events
from consonance_sftp.models import DeliveryOutcome, IntakeOutcome
from consonance_sftp.ports.delivery import DeliveryRecord
from consonance_sftp.ports.store import AuditProblem, IntakeRecord
from tests.integration.test_store_audit import _cli, bypass_guards, fill, raw
from tests.threads import all_at_once

SHA = "a" * 64
FORGED = "f" * 64


def delivery(n: int = 0, partner: str = "printer") -> DeliveryRecord:
    return DeliveryRecord(
        flow="print",
        partner=partner,
        remote_path=f"/in/{n}.pdf",
        sha256=SHA,
        size=1000 + n,
        outcome=DeliveryOutcome.PLANNED,
    )


def intake(n: int = 0) -> IntakeRecord:
    return IntakeRecord(
        flow="inbox",
        partner="typesetter",
        remote_path=f"/out/{n}.pdf",
        size=50 + n,
        remote_mtime=1_700_000_000.25 + n,
        outcome=IntakeOutcome.STORED,
        sha256=SHA,
    )


def problems(store: SqlStore) -> list[AuditProblem]:
    report = store.verify_audit()
    return list(report.problems)


def sent(store: SqlStore, n: int = 0) -> int:
    row = store.record_delivery(delivery(n))
    assert row.id is not None
    store.update_delivery(row.id, outcome=DeliveryOutcome.SENT, attempts=1)
    return row.id


# --- an untouched store verifies -----------------------------------------------------------


def test_ledger_writes_verify_and_stay_out_of_the_listing(store_url: str) -> None:
    with open_store(store_url) as store:
        ids = [sent(store, n) for n in range(3)]
        got = store.record_intake(intake())
        assert got.id is not None
        store.update_intake(got.id, outcome=IntakeOutcome.ATTACHED, work_id=7)
        store.append_audit("alice", "partner.trust", "partner:printer")
        report = store.verify_audit()
        assert report.ok, report.problems
        assert report.events == 3 * 2 + 2 + 1  # one covering event per ledger write
        assert report.ledger_rows == 3 + 1
        assert [e.action for e in store.list_audit()] == ["partner.trust"]
        covers = store.list_audit(action="ledger.write", subject=f"delivery_ledger:{ids[0]}")
        assert [e.details["rev"] for e in covers] == [2, 1]
        assert covers[0].details["row"]["outcome"] == "sent"


# --- ledger forgeries ------------------------------------------------------------------------


def test_forged_delivery_sha256_is_named(store_url: str) -> None:
    with open_store(store_url) as store:
        row_id = sent(store)
        sent(store, 1)
        raw(store, "UPDATE delivery_ledger SET sha256 = :s WHERE id = :i", s=FORGED, i=row_id)
        [p] = problems(store)
        assert (p.table, p.row, p.kind) == ("delivery_ledger", row_id, "edited")
        assert f"sha256 is '{FORGED}', the trail has '{SHA}'" in p.message
        assert str(p).startswith(f"delivery_ledger row {row_id}: edited: ")


def test_forged_intake_row_is_named(store_url: str) -> None:
    with open_store(store_url) as store:
        row = store.record_intake(intake())
        raw(
            store,
            "UPDATE intake_ledger SET size = 1, outcome = 'quarantined' WHERE id = :i",
            i=row.id,
        )
        [p] = problems(store)
        assert (p.table, p.row, p.kind) == ("intake_ledger", row.id, "edited")
        assert "outcome is 'quarantined', the trail has 'stored'" in p.message
        assert "size is 1, the trail has 50" in p.message


def test_a_whole_second_mtime_verifies_and_a_forged_one_is_named(store_url: str) -> None:
    # SFTP servers give whole-second mtimes; SQLite returns such a REAL as an int from the
    # write's RETURNING (the trail) and as a float from the verify's SELECT (the row).
    with open_store(store_url) as store:
        row = store.record_intake(
            IntakeRecord(partner="typesetter", remote_path="/out/x.pdf", size=5, remote_mtime=1.7e9)
        )
        assert row.id is not None
        store.update_intake(row.id, outcome=IntakeOutcome.ATTACHED, work_id=7, product_id=8)
        assert problems(store) == []
        raw(store, "UPDATE intake_ledger SET remote_mtime = 1700000001.0 WHERE id = :i", i=row.id)
        [p] = problems(store)
        assert (p.table, p.row, p.kind) == ("intake_ledger", row.id, "edited")
        assert "remote_mtime" in p.message


def test_rolled_back_row_added_row_and_deleted_row_are_named(store_url: str) -> None:
    with open_store(store_url) as store:
        rolled, gone = sent(store, 0), sent(store, 1)
        # Back to how it was before the send (a forger restoring an old copy of the row).
        raw(
            store,
            "UPDATE delivery_ledger SET outcome = 'planned', attempts = 0, audit_rev = 1 "
            "WHERE id = :i",
            i=rolled,
        )
        raw(store, "DELETE FROM delivery_ledger WHERE id = :i", i=gone)
        raw(
            store,
            "INSERT INTO delivery_ledger (id, flow, partner, remote_path, sha256, generation, "
            "size, created_at, attempts, outcome, audit_rev) VALUES (99, 'print', 'printer', "
            "'/in/x.pdf', :s, 0, 1, :t, 1, 'sent', 1)",
            s=FORGED,
            t=datetime(2026, 1, 1, tzinfo=UTC),
        )
        found = {(p.row, p.kind) for p in problems(store)}
        assert found == {(rolled, "rolled_back"), (gone, "deleted"), (99, "uncovered")}


def test_a_row_and_its_cover_commit_together(store_url: str) -> None:
    """A ledger insert refused by its unique key leaves no covering event behind."""
    with open_store(store_url) as store, open_store(store_url) as other:
        first = store.record_delivery(delivery())
        # ``other`` does not see the row when it looks first (as if both raced to insert it).
        look = other._first_delivery
        calls: list[object] = []

        def first_misses(query: sa.Select[tuple[object, ...]]) -> DeliveryRecord | None:
            calls.append(query)
            return None if len(calls) == 1 else look(query)

        other._first_delivery = first_misses  # type: ignore[method-assign]
        again = other.record_delivery(delivery())
        assert again.id == first.id
        report = store.verify_audit()
        assert report.ok and report.events == 1, report


# --- chains deleted or cut back -------------------------------------------------------------


def test_a_deleted_one_event_chain_and_its_head_are_named(store_url: str) -> None:
    with open_store(store_url) as a, open_store(store_url) as b:
        fill(a, 2)
        fill(b, 1)
        bypass_guards(a)
        raw(a, "DELETE FROM audit_events WHERE chain_id = :c", c=b.chain_id)
        raw(a, "DELETE FROM audit_chains WHERE chain_id = :c", c=b.chain_id)
        report = a.verify_audit()
        assert [(p.table, p.chain_id, p.kind) for p in report.problems] == [
            ("audit_registry", b.chain_id, "chain_deleted")
        ]
        assert "its events and head are gone" in report.problems[0].message


def test_a_cut_back_tail_with_a_rewound_head_is_named(store_url: str) -> None:
    """The head rewound to match: only the chain of chains, written later, still knows."""
    with open_store(store_url) as a:
        fill(a, 5)
        with open_store(store_url) as later:
            fill(later, 1)  # registering this chain records a's head, seq 5
        bypass_guards(a)
        raw(a, "DELETE FROM audit_events WHERE chain_id = :c AND seq > 3", c=a.chain_id)
        raw(
            a,
            "UPDATE audit_chains SET seq = 3, hash = (SELECT hash FROM audit_events "
            "WHERE chain_id = :c AND seq = 3) WHERE chain_id = :c",
            c=a.chain_id,
        )
        [p] = problems(a)
        assert (p.chain_id, p.kind) == (a.chain_id, "truncated")
        assert "recorded this chain at seq 5, it ends at seq 3" in p.message


def test_an_added_chain_is_named(store_url: str) -> None:
    with open_store(store_url) as a:
        fill(a, 1)
        ts = datetime(2026, 1, 1, tzinfo=UTC)
        digest = event_hash(
            prev_hash="0" * 64,
            chain_id="forged",
            seq=1,
            ts=ts,
            actor="alice",
            action="partner.trust",
            subject="partner:x",
            details_json="{}",
        )
        raw(
            a,
            "INSERT INTO audit_events VALUES ('forged', 1, :ts, 'alice', 'partner.trust', "
            "'partner:x', '{}', :g, :h)",
            ts=ts,
            g="0" * 64,
            h=digest,
        )
        raw(
            a,
            "INSERT INTO audit_chains VALUES ('forged', :ts, 'me', 1, :h)",
            ts=ts,
            h=digest,
        )
        report = a.verify_audit()
        assert [(p.chain_id, p.kind) for p in report.problems] == [("forged", "unregistered")]


def test_the_registry_refuses_edits(store_url: str) -> None:
    with open_store(store_url) as a:
        fill(a, 1)
        for sql in ("UPDATE audit_registry SET writer = 'x'", "DELETE FROM audit_registry"):
            with pytest.raises(sa.exc.DatabaseError, match="append-only"):
                raw(a, sql)


# --- concurrent writers ---------------------------------------------------------------------


def test_concurrent_ledger_writers_verify(store_url: str) -> None:
    stores = [open_store(store_url) for _ in range(3)]

    def work(s: SqlStore, base: int) -> None:
        for n in range(base, base + 15):
            row_id = sent(s, n)
            s.update_delivery(row_id, error="")  # a second update of the same row
            s.append_audit("engine", "delivery.sent", f"delivery:{row_id}")

    # Two threads per store (sharing its chain) and three stores (three chains).
    errors = all_at_once(
        work, [(s, 100 * i + 50 * j) for i, s in enumerate(stores) for j in range(2)], timeout=120
    )
    try:
        assert not errors, errors
        report = stores[0].verify_audit()
        assert report.ok, report.problems
        assert report.chains == 3
        assert len(stores[0].list_deliveries()) == 6 * 15
    finally:
        for s in stores:
            s.close()


# --- the keyed chain ------------------------------------------------------------------------

KEY = b"k" * 32


def _forge_actor_and_rehash(store: SqlStore) -> None:
    """Edit event 2 of the store's chain and recompute every hash, head included, with plain
    SHA-256: what someone with write access but without the key can do."""
    c = audit_events.c
    with store.engine.begin() as conn:
        conn.execute(
            audit_events.update()
            .where(c.chain_id == store.chain_id, c.seq == 2)
            .values(actor="mallory")
        )
        rows = conn.execute(
            sa.select(audit_events).where(c.chain_id == store.chain_id).order_by(c.seq)
        ).all()
        prev = "0" * 64
        for row in rows:
            digest = event_hash(
                prev_hash=prev,
                chain_id=row.chain_id,
                seq=row.seq,
                ts=row.ts,
                actor=row.actor,
                action=row.action,
                subject=row.subject,
                details_json=row.details,
            )
            conn.execute(
                audit_events.update()
                .where(c.chain_id == row.chain_id, c.seq == row.seq)
                .values(prev_hash=prev, hash=digest)
            )
            prev = digest
        conn.execute(
            audit_chains.update().where(audit_chains.c.chain_id == store.chain_id).values(hash=prev)
        )


def test_an_unkeyed_chain_can_be_reforged_which_the_key_prevents(store_url: str) -> None:
    """What the docs say: without a key a full recomputation verifies; with one it cannot."""
    with open_store(store_url) as plain:
        fill(plain, 3)
        bypass_guards(plain)
        _forge_actor_and_rehash(plain)
        assert plain.list_audit()[1].actor == "mallory"
        assert plain.verify_audit().ok  # the limit of an unkeyed chain, as documented
    with open_store(store_url, audit_key=KEY) as keyed:
        fill(keyed, 3)
        assert keyed.verify_audit().problems == ()
        _forge_actor_and_rehash(keyed)
        report = keyed.verify_audit()
        assert [(p.chain_id, p.seq, p.kind) for p in report.problems] == [
            (keyed.chain_id, 1, "edited")
        ]


def test_keyed_chains_need_the_key_and_the_right_one(store_url: str) -> None:
    with open_store(store_url, audit_key=KEY) as keyed:
        fill(keyed, 2)
        sent(keyed)
        assert keyed.verify_audit().ok
    with open_store(store_url) as without:
        kinds = {(p.table, p.kind) for p in without.verify_audit().problems}
        assert kinds == {("audit_events", "key_needed"), ("audit_registry", "key_needed")}
    with open_store(store_url, audit_key=b"wrong" * 8) as wrong:
        kinds = {(p.table, p.kind) for p in wrong.verify_audit().problems}
        assert ("audit_events", "edited") in kinds


def test_an_unkeyed_writer_after_keying_began_is_named(store_url: str) -> None:
    with open_store(store_url, audit_key=KEY) as keyed:
        fill(keyed, 1)
        with open_store(store_url) as plain:
            fill(plain, 1)
        report = keyed.verify_audit()
        assert [(p.chain_id, p.kind) for p in report.problems] == [(plain.chain_id, "unkeyed")]


# --- the command -----------------------------------------------------------------------------


def test_cli_names_a_forged_sha256(store_url: str) -> None:
    with open_store(store_url) as store:
        row_id = sent(store)
        ok = _cli("audit", "verify", "--db", store_url)
        assert ok.returncode == 0, ok.stderr
        assert "ok: 2 events in 1 chain; 1 ledger row checked against the trail" in ok.stdout
        raw(store, "UPDATE delivery_ledger SET sha256 = :s WHERE id = :i", s=FORGED, i=row_id)
    bad = _cli("audit", "verify", "--db", store_url)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"TAMPERED delivery_ledger row {row_id}: edited: row differs from the trail: " in (
        bad.stderr
    )
    assert f"sha256 is '{FORGED}'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_uses_the_configs_audit_key(tmp_path: Path) -> None:
    from consonance_sftp.config import load_settings
    from consonance_sftp.config.starter import CONFIG_NAME, init_project

    init_project(tmp_path)
    config = tmp_path / CONFIG_NAME
    key_file = tmp_path / "audit.key"
    key_file.write_text("a secret kept outside the database\n")
    key_file.chmod(0o600)
    with config.open("a") as f:
        f.write('\n[audit]\nkey = {file = "audit.key"}\n')
    settings = load_settings(config)
    assert settings.audit.key is not None
    with open_store(
        settings.database.url, audit_key=settings.audit.key.get_secret_value().encode()
    ) as store:
        fill(store, 2)
    ok = _cli("--config", str(config), "audit", "verify")
    assert ok.returncode == 0, ok.stderr
    no_key = _cli("audit", "verify", "--db", settings.database.url)
    assert no_key.returncode == 1 and "key_needed" in no_key.stderr


_LEDGER_WRITER = """
import sys
from consonance_sftp.adapters.store import open_store
from consonance_sftp.models import DeliveryOutcome
from consonance_sftp.ports.delivery import DeliveryRecord
store = open_store(sys.argv[1])
base = int(sys.argv[2])
for n in range(base, base + 30):
    row = store.record_delivery(DeliveryRecord(flow="f", partner="p", remote_path=f"/{n}",
                                               sha256="c" * 64, size=n,
                                               outcome=DeliveryOutcome.PLANNED))
    store.update_delivery(row.id, outcome=DeliveryOutcome.SENT, attempts=1)
store.close()
"""


@pytest.mark.slow
def test_two_processes_write_the_ledger_at_once_and_it_verifies(store_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _LEDGER_WRITER, store_url, str(base)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for base in (0, 1000)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    with open_store(store_url) as store:
        report = store.verify_audit()
    assert report.ok, report.problems
    assert (report.ledger_rows, report.events, report.chains) == (60, 120, 2)
