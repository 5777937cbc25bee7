"""The audit trail under attack, on SQLite and PostgreSQL: triggers refuse edits, and when they
are bypassed the hash chains name the broken row; concurrent writers neither wait on each other
nor break each other's chains; ``audit verify`` exits non-zero on a tampered database."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from consonance_sftp.adapters.store import SqlStore, open_store
from consonance_sftp.adapters.store.audit_chain import event_hash
from consonance_sftp.errors import AuditTamperError
from tests.cli import CLI
from tests.threads import all_at_once


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()


def fill(store: SqlStore, n: int, actor: str = "engine") -> None:
    for i in range(n):
        store.append_audit(actor, "delivery.sent", f"delivery:{i}", {"i": i, "path": f"/out/{i}"})


def bypass_guards(store: SqlStore) -> None:
    """What a tamperer with DDL rights does first: switch the append-only triggers off."""
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
            conn.execute(sa.text("ALTER TABLE audit_chains DISABLE TRIGGER USER"))
        else:
            for name in (
                "audit_events_no_update",
                "audit_events_no_delete",
                "audit_chains_forward_only",
                "audit_chains_no_delete",
            ):
                conn.execute(sa.text(f"DROP TRIGGER {name}"))


def raw(store: SqlStore, sql: str, **params: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def only_problem(store: SqlStore) -> tuple[str, int | None, str]:
    report = store.verify_audit()
    assert len(report.problems) == 1, report
    p = report.problems[0]
    return p.kind, p.seq, p.chain_id


# --- the guards ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2",
        "DELETE FROM audit_events WHERE seq = 3",
        "UPDATE audit_chains SET seq = seq - 1",
        "DELETE FROM audit_chains",
    ],
)
def test_triggers_refuse_edits(store: SqlStore, sql: str) -> None:
    fill(store, 3)
    with pytest.raises(sa.exc.DatabaseError, match=r"append-only|only move forward|never deleted"):
        raw(store, sql)
    assert store.verify_audit().ok


@pytest.mark.postgres
def test_postgres_refuses_truncate(pg_url: str) -> None:
    with open_store(pg_url) as store:
        fill(store, 2)
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            raw(store, "TRUNCATE audit_events")
        assert store.verify_audit().events == 2


# --- the chain, with the guards bypassed -----------------------------------------------------


def test_edited_row_is_named(store: SqlStore) -> None:
    fill(store, 5)
    assert store.verify_audit().ok
    bypass_guards(store)
    raw(
        store,
        "UPDATE audit_events SET details = :d WHERE chain_id = :c AND seq = 3",
        d='{"i":3,"path":"/out/elsewhere"}',
        c=store.chain_id,
    )
    assert only_problem(store) == ("edited", 3, store.chain_id)
    with pytest.raises(AuditTamperError, match=f"chain {store.chain_id} seq 3: edited"):
        store.verify_audit_or_raise()


def test_edited_actor_with_recomputed_own_hash_breaks_the_link(store: SqlStore) -> None:
    """A forger who recomputes the edited row's own hash is caught by the next row's link."""
    fill(store, 4)
    bypass_guards(store)
    row = store.list_audit(subject="delivery:1")[0]
    forged = event_hash(
        prev_hash=row.prev_hash,
        chain_id=row.chain_id,
        seq=row.seq,
        ts=row.ts,
        actor="mallory",
        action=row.action,
        subject=row.subject,
        details_json='{"i":1,"path":"/out/1"}',
    )
    raw(
        store,
        "UPDATE audit_events SET actor = 'mallory', hash = :h WHERE chain_id = :c AND seq = 2",
        h=forged,
        c=store.chain_id,
    )
    assert only_problem(store) == ("reordered", 3, store.chain_id)


def test_deleted_row_is_named(store: SqlStore) -> None:
    fill(store, 5)
    bypass_guards(store)
    raw(store, "DELETE FROM audit_events WHERE chain_id = :c AND seq = 2", c=store.chain_id)
    kind, seq, _ = only_problem(store)
    assert (kind, seq) == ("missing", 3)
    assert "seq 2 missing" in str(store.verify_audit().problems[0])


def test_truncated_tail_is_named(store: SqlStore) -> None:
    fill(store, 6)
    bypass_guards(store)
    raw(store, "DELETE FROM audit_events WHERE chain_id = :c AND seq >= 5", c=store.chain_id)
    kind, seq, _ = only_problem(store)
    assert (kind, seq) == ("truncated", 5)


def test_deleted_head_is_named(store: SqlStore) -> None:
    fill(store, 2)
    bypass_guards(store)
    raw(store, "DELETE FROM audit_chains WHERE chain_id = :c", c=store.chain_id)
    assert only_problem(store)[0] == "head_missing"


def test_swapped_rows_are_found(store: SqlStore) -> None:
    fill(store, 4)
    bypass_guards(store)
    # Move seq 2 and 3 past each other (through a free number, the primary key forbids a clash).
    raw(
        store, "UPDATE audit_events SET seq = 100 WHERE chain_id = :c AND seq = 2", c=store.chain_id
    )
    raw(store, "UPDATE audit_events SET seq = 2 WHERE chain_id = :c AND seq = 3", c=store.chain_id)
    raw(
        store, "UPDATE audit_events SET seq = 3 WHERE chain_id = :c AND seq = 100", c=store.chain_id
    )
    kind, seq, _ = only_problem(store)
    assert (kind, seq) == ("edited", 2)


def test_a_broken_chain_does_not_hide_others(store_url: str) -> None:
    with open_store(store_url) as a, open_store(store_url) as b:
        fill(a, 3, "a")
        fill(b, 4, "b")
        bypass_guards(a)
        raw(
            a, "UPDATE audit_events SET subject = 'x' WHERE chain_id = :c AND seq = 1", c=b.chain_id
        )
        report = a.verify_audit()
        assert (report.events, report.chains) == (7, 2)
        assert [(p.chain_id, p.seq, p.kind) for p in report.problems] == [(b.chain_id, 1, "edited")]


# --- concurrent writers ----------------------------------------------------------------------


def test_two_writers_append_concurrently_and_both_chains_verify(store_url: str) -> None:
    per_writer = 60
    stores = [open_store(store_url), open_store(store_url)]

    def work(s: SqlStore) -> None:
        fill(s, per_writer, actor=s.chain_id)

    errors = all_at_once(work, [(s,) for s in stores])
    try:
        assert not errors, errors
        report = stores[0].verify_audit()
        assert report.ok, report.problems
        assert (report.events, report.chains) == (2 * per_writer, 2)
        assert {h.seq for h in report.heads} == {per_writer}
    finally:
        for s in stores:
            s.close()


_WRITER = """
import sys
from consonance_sftp.adapters.store import open_store
store = open_store(sys.argv[1])  # both processes migrate the fresh database at once
for i in range(int(sys.argv[2])):
    store.append_audit("worker", "delivery.sent", f"delivery:{i}", {"i": i})
print(store.chain_id)
store.close()
"""


@pytest.mark.slow
def test_two_processes_migrate_and_append_at_once(empty_url: str) -> None:
    """Separate processes on a fresh database: one migration wins, both chains are whole."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, empty_url, "80"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    chain_ids = {out.strip() for out, _ in outs}
    with open_store(empty_url) as store:
        report = store.verify_audit()
    assert report.ok, report.problems
    assert (report.events, report.chains) == (160, 2)
    assert {h.chain_id for h in report.heads} == chain_ids


def test_threads_sharing_one_store_share_one_linear_chain(store: SqlStore) -> None:
    threads = [threading.Thread(target=fill, args=(store, 25)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    report = store.verify_audit()
    assert report.ok and (report.events, report.chains) == (100, 1)


def test_two_stores_given_the_same_chain_id_stay_linear(store_url: str) -> None:
    with open_store(store_url) as a:
        fill(a, 2)
        with open_store(store_url, chain_id=a.chain_id) as b:
            fill(b, 2)  # b starts from the stored head, not from scratch
            fill(a, 2)  # a's cached head is stale: it must notice and catch up
            report = b.verify_audit()
    assert report.ok and (report.events, report.chains) == (6, 1)


@pytest.mark.postgres
def test_a_held_chain_head_does_not_block_another_writer(pg_url: str) -> None:
    """Writer A's head is locked by an open transaction; writer B still appends at once.

    The control (A itself is blocked meanwhile) shows the lock is real, so the test can fail.
    """
    a = open_store(pg_url)
    b = open_store(pg_url)
    fill(a, 1)
    fill(b, 1)
    locker = a.engine.connect()
    tx = locker.begin()
    locker.execute(
        sa.text("SELECT seq FROM audit_chains WHERE chain_id = :c FOR UPDATE"), {"c": a.chain_id}
    )
    a_done = threading.Event()
    threading.Thread(target=lambda: (fill(a, 1), a_done.set()), daemon=True).start()
    try:
        started = time.monotonic()
        b.append_audit("b", "x", "y")
        b_seconds = time.monotonic() - started
        assert b_seconds < 1.0
        assert not a_done.wait(0.5), "A should be waiting on its own locked head"
    finally:
        tx.rollback()
        locker.close()
    assert a_done.wait(10)
    report = a.verify_audit()
    assert report.ok and report.events == 4
    a.close()
    b.close()


# --- the command -----------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_cli_audit_verify_ok_then_tampered(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with open_store(url) as store:
        fill(store, 3)
        ok = _cli("audit", "verify", "--db", url, "--heads")
        assert ok.returncode == 0, ok.stderr
        assert "ok: 3 events in 1 chain; 0 ledger rows checked" in ok.stdout
        assert store.chain_id in ok.stdout  # --heads
        bypass_guards(store)
        raw(store, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    bad = _cli("audit", "verify", "--db", url)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"TAMPERED chain {store.chain_id} seq 2: edited" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.postgres
def test_cli_audit_verify_tampered_postgres(pg_url: str) -> None:
    with open_store(pg_url) as store:
        fill(store, 4)
        bypass_guards(store)
        raw(store, "DELETE FROM audit_events WHERE seq = 4")
    bad = _cli("audit", "verify", "--db", pg_url)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"TAMPERED chain {store.chain_id} seq 4: truncated" in bad.stderr


def test_cli_audit_verify_refuses_a_missing_sqlite_file(tmp_path: Path) -> None:
    result = _cli("audit", "verify", "--db", f"sqlite:///{tmp_path / 'typo.db'}")
    assert result.returncode == 1
    assert "no database at" in result.stderr
    assert not (tmp_path / "typo.db").exists()


def test_cli_audit_verify_defaults_to_the_configs_database(tmp_path: Path) -> None:
    from consonance_sftp.config import load_settings
    from consonance_sftp.config.starter import CONFIG_NAME, init_project

    init_project(tmp_path)  # the starter config, as 'consonance-sftp init' writes it
    config = tmp_path / CONFIG_NAME
    before = _cli("--config", str(config), "audit", "verify")
    assert before.returncode == 1 and "no database at" in before.stderr  # not created by verify
    with open_store(load_settings(config).database.url) as store:
        fill(store, 2)
    after = _cli("--config", str(config), "audit", "verify")
    assert after.returncode == 0, after.stderr
    assert "ok: 2 events in 1 chain;" in after.stdout
