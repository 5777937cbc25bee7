"""The finance ledger (migration 0011) on SQLite and PostgreSQL: a statement batch taken in
once, its statements' states and counts, each change of state on the audit trail in its own
transaction, the approval and its refusal, a write failing part-way leaving nothing; and an
upgrade from 0010."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from consonance_sftp.adapters.store import SqlStore, open_store
from consonance_sftp.adapters.store.audit_trail import Appender
from consonance_sftp.adapters.store.database import create_engine
from consonance_sftp.errors import ConsonanceSftpError, StoreError
from consonance_sftp.ports.finance import BatchRecord, Destination, NewStatement
from consonance_sftp.ports.store import Store
from tests.fixtures.store import migrate_to, table_columns
from tests.threads import all_at_once

FINANCE_TABLES = ("finance_batches", "finance_statements")
AGENT = Destination(partner="agent-a", folder="/send/501-jane-doe", role="agent:Agent A")
FINANCE = Destination(partner="finance", folder="/statements/2026-H1", role="finance")


class StepClock:
    """A clock that moves one second per reading, so orderings are deterministic."""

    def __init__(self) -> None:
        self.t = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    with open_store(store_url, clock=StepClock()) as s:
        yield s


def statement(name: str, n: int = 0) -> NewStatement:
    return NewStatement(
        file_name=name,
        original_path=f"/state/finance/batch/{name}",
        sha256=f"{n:064x}",
        size=1000 + n,
    )


def add(
    store: Store, name: str = "2026-H1", files: tuple[str, ...] = ("b.pdf", "a.pdf"), **kw: object
) -> BatchRecord:
    values: dict[str, object] = {
        "flow": "royalties",
        "source": f"/state/finance/{name}",
        "period": "2026-01..2026-06",
    }
    values.update(kw)
    return store.add_finance_batch(
        name=name,
        statements=[statement(f, n) for n, f in enumerate(files)],
        **values,  # type: ignore[arg-type]
    )


def row_counts(store: SqlStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {
            t: conn.execute(sa.select(sa.func.count()).select_from(sa.table(t))).scalar_one()
            for t in (*FINANCE_TABLES, "audit_events")
        }


def test_a_batch_is_taken_in_once_with_its_event(store: SqlStore) -> None:
    batch = add(store, files=("b.pdf", "a.pdf", "A.pdf"))
    assert (batch.flow, batch.name, batch.source, batch.period) == (
        "royalties",
        "2026-H1",
        "/state/finance/2026-H1",
        "2026-01..2026-06",
    )
    assert batch.received_at.tzinfo is not None
    assert (batch.approved_at, batch.approved_by, batch.counts) == (None, None, {"received": 3})
    statements = store.list_statements(batch.id)
    assert [s.file_name for s in statements] == ["A.pdf", "a.pdf", "b.pdf"]  # code points
    first = store.get_statement(statements[0].id)
    assert first == statements[0]
    assert (first.state, first.batch_id, first.sha256, first.size) == (
        "received",
        batch.id,
        f"{2:064x}",
        1002,
    )
    assert (first.payee_id, first.destinations, first.deliveries, first.reason) == (
        None,
        (),
        {},
        None,
    )
    [event] = store.list_audit(action="finance.batch_received")
    assert (event.actor, event.subject) == ("royalties", f"batch:{batch.id}")
    assert event.details["name"] == "2026-H1"
    assert [(s["id"], s["file"], s["sha256"]) for s in event.details["statements"]] == [
        (s.id, s.file_name, s.sha256) for s in statements
    ]

    # A replayed tick (even one that read the folder differently) takes nothing twice.
    before = row_counts(store)
    again = add(store, files=("c.pdf",), source="/elsewhere", period=None)
    assert again == batch
    assert row_counts(store) == before
    assert store.find_finance_batch("royalties", "2026-H1") == batch
    assert store.get_finance_batch(batch.id) == batch
    assert store.find_finance_batch("other-flow", "2026-H1") is None
    assert store.get_finance_batch(batch.id + 100) is None
    # The same name in another flow is another batch.
    other = add(store, flow="royalties-us")
    assert other.id != batch.id
    assert store.verify_audit().ok


def test_states_and_counts(store: SqlStore) -> None:
    batch = add(store, files=("a.pdf", "b.pdf", "c.pdf", "d.pdf"))
    a, b, c, _d = store.list_statements(batch.id)
    resolved = store.set_statement(
        a.id,
        "resolved",
        actor="royalties",
        payee_id=501,
        payee_name="Jane Doe",
        destinations=(AGENT, FINANCE),
    )
    assert (resolved.state, resolved.payee_id, resolved.payee_name) == (
        "resolved",
        501,
        "Jane Doe",
    )
    assert resolved.destinations == (AGENT, FINANCE)
    assert resolved.updated_at is not None and resolved.updated_at > a.updated_at  # type: ignore[operator]
    store.set_statement(b.id, "held", actor="royalties", payee_id=502, reason="no destination")
    store.set_statement(c.id, "quarantined", actor="royalties", reason="names two payees")

    assert store.get_statement(a.id) == resolved
    assert store.get_finance_batch(batch.id).counts == {  # type: ignore[union-attr]
        "received": 1,
        "resolved": 1,
        "held": 1,
        "quarantined": 1,
    }
    assert [s.file_name for s in store.list_statements(batch.id, states=("held", "resolved"))] == [
        "a.pdf",
        "b.pdf",
    ]
    assert store.list_statements(batch.id, states=("sent",)) == []

    # Fields not given are kept; "" clears the reason.
    released = store.set_statement(b.id, "resolved", actor="user:alice", destinations=(AGENT,))
    assert (released.payee_id, released.reason, released.destinations) == (
        502,
        "no destination",
        (AGENT,),
    )
    cleared = store.set_statement(b.id, "resolved", actor="user:alice", reason="")
    assert cleared.reason is None
    with pytest.raises(StoreError, match="not a statement state"):
        store.set_statement(a.id, "lost", actor="x")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="no finance statement with id"):
        store.set_statement(a.id + 100, "sent", actor="x")


def test_set_statement_merges_deliveries_and_writes_its_event(store: SqlStore) -> None:
    batch = add(store, files=("a.pdf",))
    [a] = store.list_statements(batch.id)
    store.set_statement(
        a.id, "resolved", actor="royalties", payee_id=501, payee_name="Jane Doe",
        destinations=(AGENT, FINANCE),
    )  # fmt: skip
    store.approve_finance_batch(batch.id, by="alice")
    store.set_statement(
        a.id, "failed", actor="engine:x1", reason="connection reset",
        deliveries={"agent-a": "wf-1", "finance": "wf-2"},
    )  # fmt: skip
    sent = store.set_statement(
        a.id,
        "sent",
        actor="engine:x1",
        reason="",
        deliveries={"agent-a": "wf-3"},
        details={"attempt": 2},
    )
    assert sent.deliveries == {"agent-a": "wf-3", "finance": "wf-2"}  # merged, not replaced
    assert (sent.state, sent.reason, sent.payee_name) == ("sent", None, "Jane Doe")

    events = store.list_audit(subject=f"statement:{a.id}")[::-1]  # oldest first
    assert [(e.action, e.actor) for e in events] == [
        ("finance.statement_resolved", "royalties"),
        ("finance.statement_approved", "user:alice"),
        ("finance.statement_failed", "engine:x1"),
        ("finance.statement_sent", "engine:x1"),
    ]
    resolved, _approved, failed, last = (e.details for e in events)
    assert resolved["destinations"] == [
        {"partner": "agent-a", "folder": "/send/501-jane-doe", "role": "agent:Agent A"},
        {"partner": "finance", "folder": "/statements/2026-H1", "role": "finance"},
    ]
    assert (failed["from"], failed["reason"]) == ("approved", "connection reset")
    assert last == {
        "batch": batch.id,
        "file": "a.pdf",
        "sha256": a.sha256,
        "from": "failed",
        "payee_id": 501,
        "payee_name": "Jane Doe",
        "reason": None,
        "deliveries": {"agent-a": "wf-3"},
        "details": {"attempt": 2},
    }
    assert store.verify_audit().ok


def test_approval_moves_only_resolved_statements_and_records_who(store: SqlStore) -> None:
    batch = add(store, files=("a.pdf", "b.pdf", "c.pdf", "d.pdf", "e.pdf"))
    a, b, c, d, e = store.list_statements(batch.id)
    for s in (a, b):
        store.set_statement(s.id, "resolved", actor="royalties", payee_id=s.id)
    store.set_statement(c.id, "held", actor="royalties", payee_id=9, reason="no destination")
    store.set_statement(d.id, "quarantined", actor="royalties", reason="no text layer")

    # e.pdf is still received: nothing may be approved.
    before = row_counts(store)
    with pytest.raises(ConsonanceSftpError, match=r"1 statement.*not read yet.*e\.pdf") as refused:
        store.approve_finance_batch(batch.id, by="alice")
    assert refused.value.hint and "finance show" in refused.value.hint
    assert row_counts(store) == before
    assert store.get_finance_batch(batch.id).approved_at is None  # type: ignore[union-attr]
    assert store.get_statement(a.id).state == "resolved"  # type: ignore[union-attr]

    store.set_statement(e.id, "resolved", actor="royalties", payee_id=e.id)
    approved = store.approve_finance_batch(batch.id, by="alice")
    assert (approved.approved_by, approved.counts) == (
        "alice",
        {"held": 1, "quarantined": 1, "approved": 3},
    )
    assert approved.approved_at is not None
    states = {s.file_name: s.state for s in store.list_statements(batch.id)}
    assert states == {
        "a.pdf": "approved",
        "b.pdf": "approved",
        "c.pdf": "held",
        "d.pdf": "quarantined",
        "e.pdf": "approved",
    }
    [event] = store.list_audit(action="finance.batch_approved")
    assert (event.actor, event.subject) == ("user:alice", f"batch:{batch.id}")
    assert (event.details["approved"], event.details["again"]) == ([a.id, b.id, e.id], False)
    assert {ev.subject for ev in store.list_audit(action="finance.statement_approved")} == {
        f"statement:{s.id}" for s in (a, b, e)
    }

    # Released from hold, then approved again: only that one moves; the last approver shows.
    store.set_statement(c.id, "resolved", actor="user:bob", reason="", destinations=(AGENT,))
    again = store.approve_finance_batch(batch.id, by="bob")
    assert (again.approved_by, again.counts) == ("bob", {"quarantined": 1, "approved": 4})
    assert again.approved_at > approved.approved_at  # type: ignore[operator]
    latest = store.list_audit(action="finance.batch_approved")[0]
    assert (latest.actor, latest.details["approved"], latest.details["again"]) == (
        "user:bob",
        [c.id],
        True,
    )
    assert store.get_finance_batch(batch.id) == again
    with pytest.raises(StoreError, match="no finance batch with id"):
        store.approve_finance_batch(batch.id + 100, by="alice")
    assert store.verify_audit().ok


def test_batches_are_listed_newest_first_with_their_counts(store: SqlStore) -> None:
    first = add(store, "2025-H2", files=("a.pdf",))
    second = add(store, "2026-H1-us", flow="royalties-us", files=())
    third = add(store, "2026-H1", files=("a.pdf", "b.pdf"))
    store.set_statement(store.list_statements(third.id)[0].id, "quarantined", actor="royalties")

    listed = store.list_finance_batches()
    assert [b.id for b in listed] == [third.id, second.id, first.id]
    assert [b.counts for b in listed] == [
        {"received": 1, "quarantined": 1},
        {},
        {"received": 1},
    ]
    assert [b.id for b in store.list_finance_batches(flow="royalties")] == [third.id, first.id]
    assert [b.id for b in store.list_finance_batches(limit=1)] == [third.id]
    assert store.list_finance_batches(flow="none") == []


def test_a_failure_inside_a_write_leaves_nothing(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = row_counts(store)
    # Two statements of one name: refused, nothing recorded.
    with pytest.raises(StoreError, match=r"more than one statement named a\.pdf"):
        add(store, files=("a.pdf", "b.pdf", "a.pdf"))
    # A statement the table refuses (no size), after the batch row went in.
    bad = NewStatement(file_name="c.pdf", original_path="/x", sha256="c" * 64, size=None)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="recording a finance batch"):
        store.add_finance_batch(
            flow="royalties",
            name="2026-H1",
            source="/s",
            period=None,
            statements=[statement("a.pdf"), bad],
        )
    assert row_counts(store) == empty

    # The audit append failing, after the batch and its statements went in.
    def broken(*_: object) -> None:
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(Appender, "append", broken)
        with pytest.raises(OSError, match="disk full"):
            add(store)
    assert row_counts(store) == empty

    # Nothing stuck: the batch goes in whole now, and the trail verifies.
    batch = add(store)
    [a, b] = store.list_statements(batch.id)
    a = store.set_statement(a.id, "quarantined", actor="royalties", reason="no payee")
    b = store.set_statement(b.id, "resolved", actor="royalties", payee_id=2)
    batch = store.get_finance_batch(batch.id)  # type: ignore[assignment]
    with monkeypatch.context() as patch:
        patch.setattr(Appender, "append", broken)
        with pytest.raises(OSError, match="disk full"):
            store.set_statement(a.id, "resolved", actor="royalties", payee_id=1)
        with pytest.raises(OSError, match="disk full"):
            store.approve_finance_batch(batch.id, by="alice")
    assert store.list_statements(batch.id) == [a, b]
    assert store.get_finance_batch(batch.id) == batch
    assert batch.approved_at is None
    assert store.verify_audit().ok


def test_the_same_batch_added_at_once_is_one_batch(store_url: str) -> None:
    """Four processes' stores taking in the same batch at the same moment."""
    stores = [open_store(store_url) for _ in range(4)]
    results: list[BatchRecord] = []
    try:
        errors = all_at_once(lambda s: results.append(add(s)), [(s,) for s in stores])
    finally:
        for s in stores:
            s.close()
    assert errors == []
    assert len({r.id for r in results}) == 1
    with open_store(store_url) as store:
        counts = row_counts(store)
        assert (counts["finance_batches"], counts["finance_statements"]) == (1, 2)
        assert len(store.list_audit(action="finance.batch_received")) == 1
        assert store.verify_audit().ok


@pytest.fixture
def db_at_0010(empty_url: str) -> str:
    migrate_to(empty_url, "0010")
    engine = create_engine(empty_url)
    try:
        assert "finance_batches" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    return empty_url


def test_upgrade_from_0010_adds_the_finance_ledger(db_at_0010: str) -> None:
    with open_store(db_at_0010) as store:  # migrates 0010 -> head
        batch = add(store)
        assert store.get_finance_batch(batch.id) == batch

    migrate_to(db_at_0010, "0010", down=True)
    engine = create_engine(db_at_0010)
    try:
        names = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert names.isdisjoint(FINANCE_TABLES)
    assert "line_key" in table_columns(db_at_0010, "sales_lines")  # older tables untouched
    migrate_to(db_at_0010, "head")
    assert "deliveries" in table_columns(db_at_0010, "finance_statements")
