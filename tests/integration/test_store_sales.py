"""The sales ledger (migration 0010) on SQLite and PostgreSQL: a report and its lines recorded
in one transaction, each sale once however often and under whatever name it comes, held
reports and their release, import files that claim each line once, usage lines apart; and an
upgrade from 0009."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import tracemalloc
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from consonance_sftp.adapters.store import SqlStore, open_store
from consonance_sftp.adapters.store import sales as sales_store
from consonance_sftp.adapters.store.database import create_engine
from consonance_sftp.errors import StoreError
from consonance_sftp.formats.sales.lines import Rejection, SalesLine, UsageLine
from consonance_sftp.ports.sales import ReportHead, ReportTail, SalesReportRecord
from tests.fixtures.store import migrate_to, table_columns

SALES_TABLES = (
    "sales_reports",
    "sales_lines",
    "sales_duplicate_lines",
    "sales_rejections",
    "usage_lines",
    "sales_imports",
)


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    with open_store(store_url) as s:
        yield s


def sale(n: int, **changes: object) -> SalesLine:
    """A distinct sale per ``n`` (its ISBN and value differ), on line ``n + 1``."""
    line = SalesLine(
        line=n + 1,
        isbn13=f"978{n % 10**9:09d}0",
        sales_date=date(2026, 10, 1 + n % 28),
        quantity=1 + n % 3,
        value=Decimal(n) / 100,
        currency="GBP",
        list_price=Decimal("9.99") if n % 2 else None,
        list_price_currency="GBP" if n % 2 else None,
        channel="Ebook",
        territory="GB",
        channel_id="AMZ",
    )
    return dataclasses.replace(line, **changes)  # type: ignore[arg-type]


def head(name: str = "a.csv", sha: str = "a", **changes: object) -> ReportHead:
    h = ReportHead(
        flow="sales",
        partner="amazon",
        name=name,
        original_path=f"/state/inbox/{name}",
        intake_id=None,
        sha256=sha * 64 if len(sha) == 1 else sha,
        layout="kdp",
        layout_version="2024",
        kind="sales",
    )
    return dataclasses.replace(h, **changes)  # type: ignore[arg-type]


def tail(**changes: object) -> ReportTail:
    t = ReportTail(
        period_from=date(2026, 10, 1),
        period_to=date(2026, 10, 31),
        business_model="agency",
        currencies=("GBP",),
        lines_read=0,
        totals={"GBP": {"value": "1.00"}},
        stated_totals={},
        reconciled=None,
        hold_reason=None,
    )
    return dataclasses.replace(t, **changes)  # type: ignore[arg-type]


def load(
    store: SqlStore,
    items: Iterable[SalesLine | UsageLine | Rejection],
    h: ReportHead | None = None,
    **tail_changes: object,
) -> SalesReportRecord:
    return store.load_sales_report(h or head(), items, lambda: tail(**tail_changes))


def row_counts(store: SqlStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {
            t: conn.execute(sa.select(sa.func.count()).select_from(sa.table(t))).scalar_one()
            for t in SALES_TABLES
        }


def test_a_report_and_its_lines_read_back_as_loaded(store: SqlStore) -> None:
    lines = [
        sale(0),
        sale(1, value=Decimal("1E+2"), return_value=Decimal("0.000")),  # digits kept as given
        sale(2, transaction_id="T-2", return_quantity=1, return_value=Decimal("-0.5")),
    ]
    rejection = Rejection(3, "ISBN", "bad check digit")
    record = load(store, [lines[0], rejection, lines[1], lines[2]], lines_read=4)

    assert (record.status, record.reason, record.accepted, record.rejected) == (
        "loaded",
        None,
        3,
        1,
    )
    assert (record.lines_read, record.duplicate_lines, record.duplicate_of) == (4, 0, None)
    assert (record.period_from, record.currencies, record.totals) == (
        date(2026, 10, 1),
        ("GBP",),
        {"GBP": {"value": "1.00"}},
    )
    assert record.created_at.tzinfo is not None
    stored = list(store.sales_report_lines(record.id))
    assert [s.line for s in stored] == lines  # every field, Decimals and dates exact
    assert [str(s.line.value) for s in stored][1] == "1E+2"
    assert {(s.duplicate_of_report, s.import_id) for s in stored} == {(None, None)}
    assert store.sales_report_rejections(record.id) == [rejection]
    assert store.get_sales_report(record.id) == record
    assert store.find_sales_report("amazon", "a" * 64) == record
    assert store.find_sales_report("google", "a" * 64) is None
    # The key each line is stored under is the one ``line_key`` gives (the bench's bare side
    # and any tool that looks a sale up rely on it).
    prefix = sales_store.line_key_prefix("amazon", "kdp")
    with store.engine.connect() as conn:
        keys = conn.execute(sa.text("SELECT line_key FROM sales_lines ORDER BY seq")).scalars()
        assert [bytes(k) for k in keys] == [sales_store.line_key(prefix, x) for x in lines]


def test_the_same_bytes_under_another_name_load_nothing(store: SqlStore) -> None:
    first = load(store, [sale(0), sale(1)])

    def never() -> Iterator[SalesLine]:
        raise AssertionError("the lines of a copy are not read")
        yield  # pragma: no cover

    copy = store.load_sales_report(head("renamed.csv"), never(), lambda: tail())

    assert (copy.status, copy.duplicate_of, copy.accepted) == ("duplicate", first.id, 0)
    assert copy.reason == f"the same bytes as report {first.id} (a.csv)"
    assert list(store.sales_report_lines(copy.id)) == []
    assert store.find_sales_report("amazon", "a" * 64) == first  # the first, not the copy
    assert row_counts(store)["sales_lines"] == 2


def test_an_overlapping_report_adds_each_line_once_and_names_the_first(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sales_store, "CHUNK", 3)  # the overlap spans chunk boundaries
    first = load(store, [sale(n) for n in range(10)])
    # Another file (other bytes) with lines 6..9 again, then 10..14; lines renumbered.
    second_lines = [sale(n, line=100 + n) for n in range(6, 15)]
    second = load(store, second_lines, head("b.csv", "b"))

    assert (second.status, second.accepted, second.duplicate_lines) == ("loaded", 9, 4)
    assert second.duplicate_of == first.id
    assert second.reason == f"4 of 9 lines were already loaded (first by report {first.id})"
    stored = list(store.sales_report_lines(second.id))
    assert [s.line for s in stored] == second_lines
    assert [s.duplicate_of_report for s in stored] == [first.id] * 4 + [None] * 5
    new_only = list(store.sales_report_lines(second.id, include_duplicates=False))
    assert [s.line for s in new_only] == second_lines[4:]
    # Another partner's identical sales are its own.
    other = load(store, [sale(n) for n in range(3)], head(sha="c", partner="google"))
    assert other.duplicate_lines == 0


def test_equal_lines_in_a_report_are_separate_sales_and_duplicate_one_for_one(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sales_store, "CHUNK", 2)
    same = sale(5)
    first = load(store, [same, sale(1), dataclasses.replace(same, line=9)])
    assert (first.accepted, first.duplicate_lines) == (3, 0)  # two equal sales, both new

    # Three equal lines now: two were loaded, the third is a new sale.
    again = [dataclasses.replace(same, line=n) for n in (1, 2, 3)]
    second = load(store, again, head("b.csv", "b"))
    assert (second.accepted, second.duplicate_lines) == (3, 2)
    assert [s.duplicate_of_report for s in store.sales_report_lines(second.id)] == [
        first.id,
        first.id,
        None,
    ]
    # And a fourth report with four of them adds the fourth only.
    third = load(store, [*again, dataclasses.replace(same, line=4)], head("c.csv", "c"))
    assert (third.duplicate_lines, third.duplicate_of) == (3, first.id)
    with store.engine.connect() as conn:
        occurrences = conn.execute(
            sa.text("SELECT report_id, occurrence FROM sales_lines ORDER BY occurrence")
        ).all()
    assert [tuple(r) for r in occurrences if r[0] != first.id or r[1] > 0] == [
        (first.id, 1),
        (second.id, 2),
        (third.id, 3),
    ]


def test_overlapping_reports_loaded_at_once_still_add_each_sale_once(store_url: str) -> None:
    """Two processes' stores loading overlapping reports of one partner at the same time."""
    barrier = threading.Barrier(2)

    def load_in_thread(first: int, sha: str) -> SalesReportRecord:
        with open_store(store_url) as own:

            def items() -> Iterator[SalesLine]:
                # Both loads start together; the second then waits for the first's lock (an
                # advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite), so the barrier
                # breaks after a moment and each goes on.
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait(timeout=1)
                yield from (sale(n) for n in range(first, first + 3000))

            return load(own, items(), head(f"{sha}.csv", sha))

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(load_in_thread, [0, 2000], ["a", "b"])
    assert sorted([a.duplicate_lines, b.duplicate_lines]) == [0, 1000]
    with open_store(store_url) as store:
        assert row_counts(store)["sales_lines"] == 5000  # 0..4999, each once
        later = a if a.duplicate_lines else b
        first = b if later is a else a
        assert later.duplicate_of == first.id


def test_an_interrupted_load_leaves_nothing(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sales_store, "CHUNK", 4)  # several chunks are written before the error

    def items() -> Iterator[SalesLine | Rejection]:
        for n in range(20):
            yield sale(n)
            yield Rejection(100 + n, None, "no date")
        raise OSError("the file went away mid-read")

    with pytest.raises(OSError, match="went away"):
        load(store, items())
    assert row_counts(store) == dict.fromkeys(SALES_TABLES, 0)

    # And the report loads whole when tried again.
    record = load(store, [sale(n) for n in range(20)])
    assert (record.accepted, record.duplicate_lines) == (20, 0)


def test_a_replayed_hand_off_returns_the_report_it_made(store: SqlStore) -> None:
    first = load(store, [sale(0)], head(intake_id=7))
    again = load(store, [sale(0), sale(1)], head("other.csv", "b", intake_id=7))
    assert again == first
    assert store.find_sales_report_for_intake(7) == first
    assert store.find_sales_report_for_intake(8) is None
    assert row_counts(store)["sales_reports"] == 1


def test_a_held_report_read_again_is_replaced_in_one_transaction(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sales reread``'s ledger side: the held report's lines go and it is withdrawn, in the
    transaction that loads the new read (which takes its intake row); a failed read changes
    nothing; only a held report, and not one whose lines another report counted on."""
    held = load(
        store,
        [sale(0), Rejection(3, "Channel", "unmapped")],
        head(intake_id=7),
        hold_reason="1 line rejected",
    )
    monkeypatch.setattr(sales_store, "CHUNK", 1)

    def broken() -> Iterator[SalesLine]:
        yield sale(0)
        yield sale(1)
        raise OSError("the file went away mid-read")

    with pytest.raises(OSError, match="went away"):
        store.load_sales_report(head(intake_id=7), broken(), tail, replaces=held.id, by="ann")
    assert store.get_sales_report(held.id) == held  # still held, as it was
    assert [s.line for s in store.sales_report_lines(held.id)] == [sale(0)]

    again = store.load_sales_report(
        head(intake_id=7), [sale(0), sale(1)], tail, replaces=held.id, by="ann"
    )
    assert (again.status, again.accepted, again.duplicate_lines) == ("loaded", 2, 0)
    assert store.find_sales_report_for_intake(7) == again
    old = store.get_sales_report(held.id)
    assert old is not None and old.status == "withdrawn"
    assert old.reason == f"read again by ann as report {again.id}"
    assert list(store.sales_report_lines(held.id)) == []
    assert store.sales_report_rejections(held.id) == []
    # The same bytes from the partner again are the new report's duplicate, not the old one's.
    assert store.find_sales_report("amazon", "a" * 64) == again
    with pytest.raises(StoreError, match="only a held report can be read again"):
        store.load_sales_report(head(), [sale(0)], tail, replaces=again.id, by="ann")

    # A held report whose lines a later report counted as duplicates stays as it is.
    first = load(store, [sale(10)], head("b.csv", "b"), hold_reason="held")
    load(store, [sale(10), sale(11)], head("c.csv", "c"))
    with pytest.raises(StoreError, match="has lines it counted as duplicates"):
        store.load_sales_report(head("b.csv", "b"), [sale(10)], tail, replaces=first.id)
    assert store.get_sales_report(first.id) == first


def test_a_held_report_goes_into_no_import_until_released(store: SqlStore) -> None:
    held = load(store, [sale(0), sale(1)], hold_reason="totals do not reconcile: GBP 1.00 != 2.00")
    assert (held.status, held.reason) == ("held", "totals do not reconcile: GBP 1.00 != 2.00")
    assert store.create_sales_import(flow="sales", report_id=held.id).lines == 0

    released = store.release_sales_report(held.id, by="finance")
    assert (released.status, released.released_by) == ("loaded", "finance")
    assert released.released_at is not None
    assert store.release_sales_report(held.id, by="finance") == released  # replayed: unchanged

    made = store.create_sales_import(flow="sales", report_id=held.id)
    assert (made.lines, made.scope, made.path) == (2, f"report:{held.id}", None)
    assert list(store.sales_import_lines(made.id)) == [sale(0), sale(1)]
    # Claimed once: a second import of the same report has nothing left to take.
    assert store.create_sales_import(flow="sales", report_id=held.id).lines == 0

    never_held = load(store, [sale(9)], head("b.csv", "b"))
    with pytest.raises(StoreError, match="is loaded, not held"):
        store.release_sales_report(never_held.id, by="finance")
    with pytest.raises(StoreError, match="no sales report with id 999"):
        store.release_sales_report(999, by="finance")


def test_a_period_import_takes_each_new_line_of_the_period_once(store: SqlStore) -> None:
    october = load(store, [sale(n) for n in range(3)])
    overlap = load(store, [sale(n) for n in range(2, 5)], head("b.csv", "b"))
    november = load(
        store,
        [sale(7)],
        head("c.csv", "c"),
        period_from=date(2026, 11, 1),
        period_to=date(2026, 11, 30),
    )
    held = load(store, [sale(20)], head("d.csv", "d"), hold_reason="3 lines rejected")

    made = store.create_sales_import(flow="sales", period="2026-10")
    assert (made.scope, made.lines) == ("period:2026-10", 5)
    expected = [sale(0), sale(1), sale(2), sale(3), sale(4)]
    assert list(store.sales_import_lines(made.id)) == expected
    assert list(store.sales_import_lines(made.id)) == expected  # the same rows every time
    assert store.create_sales_import(flow="sales", period="2026-10").lines == 0
    assert store.create_sales_import(flow="sales", report_id=october.id).lines == 0

    store.set_sales_import_file(made.id, "/outbox/2026-10.xlsx", "e" * 64)
    [listed] = [i for i in store.list_sales_imports(report_id=overlap.id) if i.id == made.id]
    assert (listed.path, listed.sha256) == ("/outbox/2026-10.xlsx", "e" * 64)
    assert made.id not in {i.id for i in store.list_sales_imports(report_id=november.id)}
    assert [r.id for r in store.list_sales_reports(period="2026-11")] == [november.id]
    assert [r.id for r in store.list_sales_reports(period="2026-10")] == [
        held.id,
        overlap.id,
        october.id,
    ]
    with pytest.raises(StoreError, match="not a month"):
        store.create_sales_import(flow="sales", period="October")
    with pytest.raises(StoreError, match="no sales import with id 999"):
        store.set_sales_import_file(999, "/x", "f" * 64)


def test_usage_lines_are_kept_apart_and_never_imported(store: SqlStore) -> None:
    usage = [
        UsageLine(
            line=n + 2,
            isbn13="9780000000002",
            period_from=date(2026, 10, 1),
            period_to=date(2026, 10, 31),
            metric="Total_Item_Requests",
            count=n * 10,
            country="GB",
            institution="Univ",
            title="A Title",
        )
        for n in range(3)
    ]
    record = load(store, usage, head("jstor.tsv", "d", layout="jstor", kind="usage"))
    assert (record.status, record.accepted) == ("usage", 3)
    assert list(store.usage_lines(record.id)) == usage
    assert store.create_sales_import(flow="sales", period="2026-10").lines == 0
    assert [r.partner for r in store.list_sales_reports(partner="amazon")] == ["amazon"]
    assert store.list_sales_reports(partner="google") == []


def test_foreign_keys_are_checked_again_after_a_load_and_a_claim(tmp_path: object) -> None:
    """A load and an import's claim run without SQLite's per-row foreign-key checks (their
    references hold by construction); the connection checks them again afterwards, also
    after a load that failed."""

    def failing() -> Iterator[SalesLine]:
        yield sale(0)
        raise RuntimeError("the report's disk went away")

    with open_store(f"sqlite:///{tmp_path}/fk.db") as store:
        with pytest.raises((RuntimeError, StoreError)):
            load(store, failing(), head("broken.csv", "b"))
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        record = load(store, [sale(1), sale(2)])
        made = store.create_sales_import(flow="sales", report_id=record.id)
        assert (record.accepted, made.lines) == (2, 2)
        assert row_counts(store)["sales_lines"] == 2  # nothing of the failed load
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            with pytest.raises(sa.exc.IntegrityError):  # a line of no report is refused
                conn.exec_driver_sql(
                    "UPDATE sales_lines SET report_id = 999 WHERE report_id = ?", (record.id,)
                )


def _peak_while_loading(store: SqlStore, lines: int, sha: str, partner: str) -> int:
    tracemalloc.start()
    try:
        load(store, (sale(n) for n in range(lines)), head(f"{sha}.csv", sha, partner=partner))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_however_long_the_report(tmp_path: object) -> None:
    with open_store(f"sqlite:///{tmp_path}/flat.db") as store:
        small = _peak_while_loading(store, 10_000, "a", "amazon")
        large = _peak_while_loading(store, 40_000, "b", "google")
        # And an overlapping report (every line a duplicate, the slow path) likewise.
        again = _peak_while_loading(store, 40_000, "c", "google")
    assert large < small * 1.25, (small, large)
    assert again < small * 2.5, (small, again)


@pytest.fixture
def db_at_0009(empty_url: str) -> str:
    migrate_to(empty_url, "0009")
    engine = create_engine(empty_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO intake_ledger (flow, partner, remote_path, size, remote_mtime, "
                    "sha256, outcome, received_at, audit_rev) VALUES ('sales', 'amazon', "
                    "'/out/a.csv', 3, 1.0, :s, 'stored', :t, 0)"
                ),
                {"s": "a" * 64, "t": datetime(2026, 11, 2, tzinfo=UTC)},
            )
        assert "sales_reports" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    return empty_url


def test_upgrade_from_0009_adds_the_sales_ledger(db_at_0009: str) -> None:
    with open_store(db_at_0009) as store:  # migrates 0009 -> head
        [intake] = store.list_intakes()
        record = load(store, [sale(0)], head(intake_id=intake.id))
        assert store.find_sales_report_for_intake(intake.id) == record
        assert [s.line for s in store.sales_report_lines(record.id)] == [sale(0)]

    migrate_to(db_at_0009, "0009", down=True)
    engine = create_engine(db_at_0009)
    try:
        names = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert names.isdisjoint(SALES_TABLES)
    assert "partner" in table_columns(db_at_0009, "intake_ledger")  # older tables untouched
    migrate_to(db_at_0009, "head")
    assert "line_key" in table_columns(db_at_0009, "sales_lines")
