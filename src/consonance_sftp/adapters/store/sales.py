"""The sales ledger of ``SqlStore`` (``ports.sales.SalesLedger``): sales and usage reports taken
in, their lines exactly once, and the Consonance import files made from them.

Mixed into ``SqlStore`` (adapters/store/sql_store.py).

How a line is loaded once: each accepted line gets a key, BLAKE2b-128 of (partner, layout,
``SalesLine.identity``), and an ``occurrence`` (how many equal lines came before it in its
report). ``sales_lines`` is unique on (key, occurrence): the same sale in a report re-sent under
another name, or in a later report that overlaps an earlier one, finds its key taken and is
kept in ``sales_duplicate_lines`` with the report that has it. Two equal lines in one report
are two sales (occurrences 0 and 1), and a later report with the same two lines duplicates
both.

Speed: a report is loaded in one transaction, its lines inserted in chunks sorted by key (Core
``insert`` executemany, ``ON CONFLICT DO NOTHING`` on the key). A chunk whose every row went in (the
common case: the insert's row count says so) costs nothing more; only a chunk with a taken
key is looked at again, and only its missing rows. Memory holds one chunk, however long the
report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import operator
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from consonance_sftp.adapters.store.base import (
    Tables,
    from_db_time,
    from_db_time_required,
    not_found,
    to_db_time,
    translate_errors,
)
from consonance_sftp.adapters.store.schema import (
    sales_duplicate_lines,
    sales_imports,
    sales_lines,
    sales_rejections,
    sales_reports,
    usage_lines,
)
from consonance_sftp.errors import StoreError
from consonance_sftp.formats.sales.lines import Rejection, SalesLine, UsageLine
from consonance_sftp.formats.sales.validate import month_period
from consonance_sftp.ports.clock import Clock
from consonance_sftp.ports.sales import (
    ReportHead,
    ReportTail,
    SalesImportRecord,
    SalesReportRecord,
    StoredSalesLine,
)

# Rows per executemany. Each chunk goes in sorted by line key: the unique index on the random
# keys is the insert's main cost, and sorted keys land on neighbouring index pages (1,000,000
# rows into SQLite: 7.6 s CPU in unsorted 5,000-row chunks, 6.2 s in sorted 10,000-row ones,
# 5.2 s in sorted 50,000-row ones). Not larger: a chunk costs about 0.6 KB of memory a row.
CHUNK = 10_000
_PAGE = 5000  # rows per read of a streamed listing
_IN_BATCH = 500  # keys per ``IN (...)``: under SQLite's and PostgreSQL's parameter limits
_LOCK_NAMESPACE = 0x53414C45  # "SALE": first key of the advisory lock per partner (PostgreSQL)
_SEP = "\x1f"  # between the identity's fields: a unit separator no report's text holds
_MEMO_LIMIT = 10_000  # distinct values kept converted while loading or reading (memory flat)


def line_key_prefix(partner: str, layout: str) -> Any:
    """The hash state every line key of (partner, layout) starts from (``.copy()`` it)."""
    return hashlib.blake2b(f"{partner}\x1e{layout}\x1e".encode(), digest_size=16)


def line_key(prefix: Any, line: SalesLine) -> bytes:
    """A line's key: its ``identity`` under the (partner, layout) ``prefix``."""
    h = prefix.copy()
    h.update(_SEP.join(line.identity).encode())
    digest: bytes = h.digest()
    return digest


def _report(row: sa.Row[Any]) -> SalesReportRecord:
    m = row._mapping
    currencies = m["currencies"]
    return SalesReportRecord(
        id=m["id"],
        flow=m["flow"],
        partner=m["partner"],
        name=m["name"],
        original_path=m["original_path"],
        intake_id=m["intake_id"],
        sha256=m["sha256"],
        layout=m["layout"],
        layout_version=m["layout_version"],
        kind=m["kind"],
        period_from=m["period_from"],
        period_to=m["period_to"],
        business_model=m["business_model"],
        currencies=tuple(currencies.split(",")) if currencies else (),
        status=m["status"],
        reason=m["reason"],
        lines_read=m["lines_read"],
        accepted=m["accepted"],
        rejected=m["rejected"],
        duplicate_lines=m["duplicate_lines"],
        duplicate_of=m["duplicate_of"],
        totals=m["totals"] or {},
        stated_totals=m["stated_totals"] or {},
        reconciled=m["reconciled"],
        created_at=from_db_time_required(m["created_at"]),
        details=m["details"] or {},
        released_at=from_db_time(m["released_at"]),
        released_by=m["released_by"],
    )


def _import(row: sa.Row[Any]) -> SalesImportRecord:
    m = row._mapping
    return SalesImportRecord(
        id=m["id"],
        flow=m["flow"],
        scope=m["scope"],
        lines=m["lines"],
        path=m["path"],
        sha256=m["sha256"],
        created_at=from_db_time_required(m["created_at"]),
    )


_NOT_A_COPY = ("duplicate", "withdrawn")  # reports whose bytes another report may have

# SalesLine's fields: the columns a line is read back from, in this order
_READ_COLUMNS = tuple(f.name for f in dataclasses.fields(SalesLine))
_READ_VALUES = operator.attrgetter(*_READ_COLUMNS)  # a result row's, in that order
_RAW_IMPORT_PAGE = (
    f"SELECT {', '.join(_READ_COLUMNS)}, report_id, seq FROM sales_lines"  # noqa: S608
    " WHERE import_id = ? AND (report_id, seq) > (?, ?) ORDER BY report_id, seq LIMIT ?"
)


def _line_maker() -> Callable[..., SalesLine]:
    """A function making a line from its columns in ``_READ_COLUMNS`` order (any after them
    ignored): money as decimal text, the date as a date (SQLAlchemy) or ISO text (SQLite's own
    cursor). Each distinct date is converted once per maker (a report has about thirty; up to
    ``_MEMO_LIMIT``). Money is converted each time: a memo of amounts, which hardly repeat,
    cost more than it saved (bench/sales.py, 1,000,000 lines)."""
    days: dict[Any, date] = {}

    def make(
        line: int,
        isbn13: str,
        sales_date: date | str,
        quantity: int,
        value: str,
        return_quantity: int,
        return_value: str,
        currency: str,
        list_price: str | None,
        list_price_currency: str | None,
        channel: str,
        territory: str,
        transaction_id: str,
        channel_id: str,
        *_: Any,
    ) -> SalesLine:
        day = days.get(sales_date)
        if day is None:
            day = date.fromisoformat(sales_date) if isinstance(sales_date, str) else sales_date
            if len(days) < _MEMO_LIMIT:
                days[sales_date] = day
        return SalesLine(
            line=line,
            isbn13=isbn13,
            sales_date=day,
            quantity=quantity,
            value=Decimal(value),
            return_quantity=return_quantity,
            return_value=Decimal(return_value),
            currency=currency,
            list_price=None if list_price is None else Decimal(list_price),
            list_price_currency=list_price_currency,
            channel=channel,
            territory=territory,
            transaction_id=transaction_id,
            channel_id=channel_id,
        )

    return make


def _overlaps(period: str) -> sa.ColumnElement[bool]:
    try:
        first, last = month_period(period)
    except ValueError as exc:
        raise StoreError(f"not a month: {period!r}", hint="Give the period as YYYY-MM.") from exc
    c = sales_reports.c
    return sa.and_(c.period_from <= last, c.period_to >= first)


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= (1 << 31) else value


# The columns of a line row, in table order (the rows below are tuples in this order).
_LINE_COLUMNS = tuple(c.name for c in sales_lines.c if c.name != "import_id")
_DUPLICATE_COLUMNS = (*_LINE_COLUMNS, "duplicate_of_report")
_SEQ, _KEY, _OCCURRENCE = (_LINE_COLUMNS.index(n) for n in ("seq", "line_key", "occurrence"))
_BY_KEY = operator.itemgetter(_KEY)


class _Inserter:
    """An executemany of positional rows through one compiled Core ``insert``.

    On SQLite the compiled statement goes to the driver as it is (``exec_driver_sql``), the
    rows already in the driver's types: SQLAlchemy's per-row parameter processing would cost
    more than SQLite's own insert. Elsewhere the rows go through ``Connection.execute``.
    """

    def __init__(self, conn: Connection, stmt: sa.Insert, columns: tuple[str, ...]) -> None:
        self.conn = conn
        self.stmt = stmt
        self.columns = columns
        self.raw = conn.dialect.name == "sqlite"
        if self.raw:
            compiled = stmt.compile(dialect=conn.dialect, column_keys=list(columns))
            assert compiled.positiontup == list(columns), compiled.positiontup
            self.sql = str(compiled)

    def __call__(self, rows: list[tuple[Any, ...]]) -> int:
        if self.raw:
            result = self.conn.exec_driver_sql(self.sql, rows)
        else:
            named = [dict(zip(self.columns, row, strict=True)) for row in rows]
            result = self.conn.execute(self.stmt, named)
        return result.rowcount


class _Loader:
    """The rows of one report on their way in, a chunk at a time."""

    def __init__(self, conn: Connection, report_id: int, head: ReportHead) -> None:
        self.conn = conn
        self.report_id = report_id
        self.prefix = line_key_prefix(head.partner, head.layout)
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        self.insert_new = _Inserter(
            conn,
            dialect.insert(sales_lines).on_conflict_do_nothing(
                index_elements=["line_key", "occurrence"]
            ),
            _LINE_COLUMNS,
        )
        self.insert_line = _Inserter(conn, sales_lines.insert(), _LINE_COLUMNS)
        self.insert_duplicate = _Inserter(conn, sales_duplicate_lines.insert(), _DUPLICATE_COLUMNS)
        # SQLite takes dates as ISO text (what SQLAlchemy's Date would have sent it).
        self.day: Callable[[date], Any] = (
            date.isoformat if conn.dialect.name == "sqlite" else _same_date
        )
        self.sane_rowcount = conn.dialect.supports_sane_multi_rowcount
        self.raw_taken: str | None = None
        if conn.dialect.name == "sqlite":
            c = sales_lines.c
            compiled = (
                sa.select(c.seq)
                .where(
                    c.report_id == sa.bindparam("r"),
                    c.seq.between(sa.bindparam("a"), sa.bindparam("b")),
                )
                .compile(dialect=conn.dialect)
            )
            assert compiled.positiontup == ["r", "a", "b"], compiled.positiontup
            self.raw_taken = str(compiled)
        self.sales: list[tuple[Any, ...]] = []
        self.usage: list[dict[str, Any]] = []
        self.rejections: list[dict[str, Any]] = []
        self.accepted = 0
        self.rejected = 0
        self.usage_count = 0
        self.duplicates = 0
        self.first_duplicate_of: int | None = None

    def run(self, items: Iterable[SalesLine | UsageLine | Rejection]) -> None:
        """Every item in, a chunk at a time. The sales lines' path is written out in this one
        loop, names bound to locals, most of a line's fields taken by one ``attrgetter``: per
        line it is most of what a load costs beyond SQLite's own insert. The key's text is
        ``SalesLine.identity`` joined, built here from the texts the row needs anyway (each
        ``str(Decimal)`` and ISO date made once; a test holds it equal to ``line_key``)."""
        report_id, prefix, plain = self.report_id, self.prefix, _PLAIN_FIELDS
        iso_dates = self.day is date.isoformat  # SQLite: dates as ISO text, else as dates
        isos: dict[date, str] = {}
        sales = self.sales
        append = sales.append
        seq = self.accepted
        for item in items:
            if type(item) is SalesLine:
                sales_date = item.sales_date
                iso = isos.get(sales_date)
                if iso is None:
                    iso = sales_date.isoformat()
                    if len(isos) < _MEMO_LIMIT:
                        isos[sales_date] = iso
                # str(Decimal) is exact both ways (Decimal(str(d)) == d).
                value, return_value = str(item.value), str(item.return_value)
                list_price = item.list_price
                price = None if list_price is None else str(list_price)
                key = prefix.copy()
                key.update(
                    (
                        item.transaction_id
                        or f"{item.isbn13}{_SEP}{iso}{_SEP}{item.quantity}{_SEP}{value}{_SEP}"
                        f"{item.return_quantity}{_SEP}{return_value}{_SEP}{item.currency}{_SEP}"
                        f"{item.channel}{_SEP}{item.territory}{_SEP}{price or ''}"
                    ).encode()
                )
                append(
                    (
                        report_id,
                        seq,
                        key.digest(),
                        0,  # occurrence: the first of its key, unless the insert says not
                        *plain(item),
                        iso if iso_dates else sales_date,
                        value,
                        return_value,
                        price,
                    )
                )
                seq += 1
                if len(sales) >= CHUNK:
                    self._flush_sales(sales)
                    sales.clear()
            elif type(item) is Rejection:
                self._add_rejection(item)
            elif type(item) is UsageLine:
                self._add_usage(item)
            else:
                raise TypeError(f"not a report line: {item!r}")
        if sales:
            self._flush_sales(sales)
            sales.clear()
        self.accepted = seq
        if self.usage:
            self.conn.execute(usage_lines.insert(), self.usage)
            self.usage = []
        if self.rejections:
            self._flush_rejections()

    def _add_rejection(self, item: Rejection) -> None:
        self.rejections.append(
            {
                "report_id": self.report_id,
                "seq": self.rejected,
                "line": item.line,
                "column": item.column,
                "reason": item.reason,
            }
        )
        self.rejected += 1
        if len(self.rejections) >= CHUNK:
            self._flush_rejections()

    def _add_usage(self, item: UsageLine) -> None:
        self.usage.append(
            {
                "report_id": self.report_id,
                "seq": self.usage_count,
                "line": item.line,
                "isbn13": item.isbn13,
                "period_from": item.period_from,
                "period_to": item.period_to,
                "metric": item.metric,
                "count": item.count,
                "country": item.country,
                "institution": item.institution,
                "title": item.title,
            }
        )
        self.usage_count += 1
        if len(self.usage) >= CHUNK:
            self.conn.execute(usage_lines.insert(), self.usage)
            self.usage = []

    def _flush_rejections(self) -> None:
        self.conn.execute(sales_rejections.insert(), self.rejections)
        self.rejections = []

    def _flush_sales(self, rows: list[tuple[Any, ...]]) -> None:
        # Sorted by key (stable: equal lines keep file order, the first takes occurrence 0).
        inserted = self.insert_new(sorted(rows, key=_BY_KEY))
        if not self.sane_rowcount:
            c = sales_lines.c
            inserted = self.conn.execute(
                sa.select(sa.func.count()).where(
                    c.report_id == self.report_id,
                    c.seq.between(rows[0][_SEQ], rows[-1][_SEQ]),
                )
            ).scalar_one()
        if inserted != len(rows):
            self._resolve(rows)

    def _taken(self, first: int, last: int) -> set[int]:
        """The ``seq`` of this report's lines in [first, last] that went in. On SQLite read
        straight from the driver: a chunk's worth of rows through SQLAlchemy's result
        processing costs more than the query."""
        if self.raw_taken is None:
            c = sales_lines.c
            return set(
                self.conn.scalars(
                    sa.select(c.seq).where(
                        c.report_id == self.report_id, c.seq.between(first, last)
                    )
                )
            )
        driver = self.conn.connection.driver_connection
        assert driver is not None
        return {seq for (seq,) in driver.execute(self.raw_taken, (self.report_id, first, last))}

    def _resolve(self, rows: list[tuple[Any, ...]]) -> None:
        """The rows of a chunk whose key was taken: a later equal line of this report (next
        occurrence), or a line an earlier report loaded (a duplicate of that report)."""
        c, d = sales_lines.c, sales_duplicate_lines.c
        report_id = self.report_id
        taken = self._taken(rows[0][_SEQ], rows[-1][_SEQ])
        missing = [row for row in rows if row[_SEQ] not in taken]
        keys = list({row[_KEY] for row in missing})
        holders: dict[bytes, dict[int, int]] = defaultdict(dict)  # key -> occurrence -> report
        ours_duplicated: Counter[bytes] = Counter()  # key -> this report's duplicate lines
        for start in range(0, len(keys), _IN_BATCH):
            batch = keys[start : start + _IN_BATCH]
            for key, occurrence, holder in self.conn.execute(
                sa.select(c.line_key, c.occurrence, c.report_id).where(c.line_key.in_(batch))
            ):
                holders[key][occurrence] = holder
            for key, count in self.conn.execute(
                sa.select(d.line_key, sa.func.count())
                .where(d.report_id == report_id, d.line_key.in_(batch))
                .group_by(d.line_key)
            ):
                ours_duplicated[key] = count
        new: list[tuple[Any, ...]] = []
        duplicated: list[tuple[Any, ...]] = []
        for row in missing:  # in file order: occurrences count up as the file does
            key = row[_KEY]
            held = holders[key]
            occurrence = ours_duplicated[key] + sum(1 for r in held.values() if r == report_id)
            placed = (*row[:_OCCURRENCE], occurrence, *row[_OCCURRENCE + 1 :])
            holder = held.get(occurrence)
            if holder is None:
                held[occurrence] = report_id
                new.append(placed)
            else:
                ours_duplicated[key] += 1
                duplicated.append((*placed, holder))
                if self.first_duplicate_of is None:
                    self.first_duplicate_of = holder
        if new:
            self.insert_line(new)
        if duplicated:
            self.insert_duplicate(duplicated)
            self.duplicates += len(duplicated)


# The fields of a line bound as they are, taken in one C call (the columns after the key and
# before the date and the money, in table order).
_PLAIN_FIELDS = operator.attrgetter(*_LINE_COLUMNS[4 : _LINE_COLUMNS.index("sales_date")])
assert _LINE_COLUMNS[-4:] == ("sales_date", "value", "return_value", "list_price")


def _same_date(day: date) -> date:
    return day


class SalesLedgerTables(Tables):
    """The sales ledger (``ports.sales.SalesLedger``)."""

    clock: Clock

    def _sales_now(self) -> datetime:
        now = to_db_time(self.clock.now())
        assert now is not None
        return now

    @contextmanager
    def _write_unchecked(self) -> Iterator[Connection]:
        """``write()``, but on SQLite with its foreign-key checks off for the transaction.

        For the two writes of every line: a report's load (each line's ``report_id`` is the
        report row this same transaction inserted first) and an import's claim of its lines
        (each ``import_id`` the import row it inserted first), so the references hold by
        construction; SQLite's check of each would cost about half of the claim's UPDATE
        (bench/sales.py). SQLite takes the setting only outside a transaction: it is turned
        off on the connection before ``BEGIN`` and back on after the transaction ends,
        whatever its outcome. PostgreSQL keeps its checks."""
        if self.engine.dialect.name != "sqlite":
            with self.write() as conn:
                yield conn
            return
        with self.engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.execute("PRAGMA foreign_keys=OFF")
            try:
                with conn.begin():
                    yield conn
            finally:
                driver.execute("PRAGMA foreign_keys=ON")

    def _one_report(
        self, conn: Connection, where: sa.ColumnElement[bool]
    ) -> SalesReportRecord | None:
        row = conn.execute(
            sa.select(sales_reports).where(where).order_by(sales_reports.c.id).limit(1)
        ).first()
        return None if row is None else _report(row)

    # --- reports ---------------------------------------------------------------------------

    @translate_errors("finding a sales report")
    def find_sales_report(self, partner: str, sha256: str) -> SalesReportRecord | None:
        c = sales_reports.c
        with self.read() as conn:
            return self._one_report(
                conn,
                sa.and_(c.partner == partner, c.sha256 == sha256, c.status.not_in(_NOT_A_COPY)),
            )

    @translate_errors("finding the sales report of an intake file")
    def find_sales_report_for_intake(self, intake_id: int) -> SalesReportRecord | None:
        with self.read() as conn:
            return self._one_report(conn, sales_reports.c.intake_id == intake_id)

    @translate_errors("reading a sales report")
    def get_sales_report(self, report_id: int) -> SalesReportRecord | None:
        with self.read() as conn:
            return self._one_report(conn, sales_reports.c.id == report_id)

    @translate_errors("listing sales reports")
    def list_sales_reports(
        self, *, partner: str | None = None, period: str | None = None, limit: int = 200
    ) -> list[SalesReportRecord]:
        c = sales_reports.c
        query = sa.select(sales_reports).order_by(c.id.desc()).limit(limit)
        if partner is not None:
            query = query.where(c.partner == partner)
        if period is not None:
            query = query.where(_overlaps(period))
        with self.read() as conn:
            return [_report(row) for row in conn.execute(query)]

    @translate_errors("loading a sales report")
    def load_sales_report(
        self,
        head: ReportHead,
        items: Iterable[SalesLine | UsageLine | Rejection],
        finish: Callable[[], ReportTail],
        *,
        replaces: int | None = None,
        by: str = "",
    ) -> SalesReportRecord:
        c = sales_reports.c
        with self._write_unchecked() as conn:
            if conn.dialect.name == "postgresql":
                # One load per partner at a time: line keys and "the first report of these
                # bytes" are decided against what earlier loads committed (SQLite's BEGIN
                # IMMEDIATE serialises every writer already).
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:ns, :key)"),
                    {"ns": _LOCK_NAMESPACE, "key": _signed32(zlib.crc32(head.partner.encode()))},
                )
            if replaces is not None:
                self._withdraw(conn, replaces, by)
            if head.intake_id is not None:
                done = self._one_report(conn, c.intake_id == head.intake_id)
                if done is not None:
                    return done  # a replayed hand-off: the work is done
            values: dict[str, Any] = {
                "flow": head.flow,
                "partner": head.partner,
                "name": head.name,
                "original_path": head.original_path,
                "intake_id": head.intake_id,
                "sha256": head.sha256,
                "layout": head.layout,
                "layout_version": head.layout_version,
                "kind": head.kind,
                "business_model": "",
                "currencies": "",
                "lines_read": 0,
                "accepted": 0,
                "rejected": 0,
                "duplicate_lines": 0,
                "totals": {},
                "stated_totals": {},
                "created_at": self._sales_now(),
                "details": {},
            }
            first = self._one_report(
                conn,
                sa.and_(
                    c.partner == head.partner,
                    c.sha256 == head.sha256,
                    c.status.not_in(_NOT_A_COPY),
                ),
            )
            if first is not None:
                report_id = self._insert_duplicate(conn, values, first)
            else:
                report_id = self._load(conn, head, values, items, finish)
            if replaces is not None:
                conn.execute(
                    sales_reports.update()
                    .where(c.id == replaces)
                    .values(reason=f"read again by {by or 'unknown'} as report {report_id}")
                )
            record = self._one_report(conn, c.id == report_id)
        assert record is not None
        return record

    def _withdraw(self, conn: Connection, report_id: int, by: str) -> None:
        """A held report's lines, duplicates and rejections removed and the report marked
        ``withdrawn`` (its intake row freed for the report read again in its place), in the
        caller's transaction: if the new read fails, the held report is back as it was."""
        c = sales_reports.c
        old = self._one_report(conn, c.id == report_id)
        if old is None:
            raise not_found("sales report", report_id)
        if old.status != "held":
            raise StoreError(
                f"sales report {report_id} ({old.name}) is {old.status}: only a held report "
                "can be read again (its lines went into no import file)"
            )
        d = sales_duplicate_lines.c
        relied_on = conn.execute(
            sa.select(d.report_id).where(d.duplicate_of_report == report_id).limit(1)
        ).scalar()
        if relied_on is not None:
            raise StoreError(
                f"sales report {report_id} ({old.name}) cannot be read again: report "
                f"{relied_on} has lines it counted as duplicates of this one's"
            )
        for table in (sales_lines, sales_duplicate_lines, sales_rejections, usage_lines):
            conn.execute(table.delete().where(table.c.report_id == report_id))
        conn.execute(
            sales_reports.update()
            .where(c.id == report_id)
            .values(
                status="withdrawn",
                intake_id=None,
                reason=f"read again by {by or 'unknown'}",
                details={**old.details, "intake_id": old.intake_id, "withdrawn_by": by},
            )
        )

    def _insert_duplicate(
        self, conn: Connection, values: dict[str, Any], first: SalesReportRecord
    ) -> int:
        """The same bytes again: a row that says whose copy it is, and no lines."""
        values.update(
            status="duplicate",
            duplicate_of=first.id,
            reason=f"the same bytes as report {first.id} ({first.name})",
            period_from=first.period_from,
            period_to=first.period_to,
            business_model=first.business_model,
            currencies=",".join(first.currencies),
        )
        new_id: int = conn.execute(
            sales_reports.insert().values(**values).returning(sales_reports.c.id)
        ).scalar_one()
        return new_id

    def _load(
        self,
        conn: Connection,
        head: ReportHead,
        values: dict[str, Any],
        items: Iterable[SalesLine | UsageLine | Rejection],
        finish: Callable[[], ReportTail],
    ) -> int:
        # The row goes in first (the lines refer to it); the rest once the file is read. All
        # in the caller's transaction: an error from ``items`` leaves nothing.
        report_id: int = conn.execute(
            sales_reports.insert()
            .values(**values, status="held", reason="loading")
            .returning(sales_reports.c.id)
        ).scalar_one()
        loader = _Loader(conn, report_id, head)
        loader.run(items)
        tail = finish()
        reason: str | None = None
        if head.kind != "sales":
            status = "usage"
        elif tail.hold_reason is not None:
            status, reason = "held", tail.hold_reason
        else:
            status = "loaded"
        if loader.duplicates and reason is None:
            reason = (
                f"{loader.duplicates} of {loader.accepted} lines were already loaded "
                f"(first by report {loader.first_duplicate_of})"
            )
        conn.execute(
            sales_reports.update()
            .where(sales_reports.c.id == report_id)
            .values(
                status=status,
                reason=reason,
                period_from=tail.period_from,
                period_to=tail.period_to,
                business_model=tail.business_model,
                currencies=",".join(tail.currencies),
                lines_read=tail.lines_read,
                accepted=loader.accepted + loader.usage_count,
                rejected=loader.rejected,
                duplicate_lines=loader.duplicates,
                duplicate_of=loader.first_duplicate_of,
                totals=tail.totals,
                stated_totals=tail.stated_totals,
                reconciled=tail.reconciled,
            )
        )
        return report_id

    @translate_errors("reading a sales report's lines")
    def sales_report_lines(
        self, report_id: int, *, include_duplicates: bool = True
    ) -> Iterator[StoredSalesLine]:
        c, d = sales_lines.c, sales_duplicate_lines.c
        start = 0
        while True:
            # A window of ``seq`` at a time from both tables, each read short: memory stays
            # flat and no read transaction is held while the caller works.
            end = start + _PAGE
            with self.read() as conn:
                total = conn.execute(
                    sa.select(sales_reports.c.accepted).where(sales_reports.c.id == report_id)
                ).scalar()
                if total is None:
                    raise not_found("sales report", report_id)
                make = _line_maker()
                page: list[tuple[int, StoredSalesLine]] = [
                    (
                        row.seq,
                        StoredSalesLine(
                            report_id=report_id,
                            line=make(*_READ_VALUES(row)),
                            duplicate_of_report=None,
                            import_id=row.import_id,
                        ),
                    )
                    for row in conn.execute(
                        sa.select(sales_lines).where(
                            c.report_id == report_id, c.seq >= start, c.seq < end
                        )
                    )
                ]
                if include_duplicates:
                    page.extend(
                        (
                            row.seq,
                            StoredSalesLine(
                                report_id=report_id,
                                line=make(*_READ_VALUES(row)),
                                duplicate_of_report=row.duplicate_of_report,
                                import_id=None,
                            ),
                        )
                        for row in conn.execute(
                            sa.select(sales_duplicate_lines).where(
                                d.report_id == report_id, d.seq >= start, d.seq < end
                            )
                        )
                    )
            page.sort(key=lambda pair: pair[0])
            for _, stored in page:
                yield stored
            start = end
            if start >= total:
                return

    @translate_errors("reading a sales report's rejected lines")
    def sales_report_rejections(self, report_id: int) -> list[Rejection]:
        c = sales_rejections.c
        with self.read() as conn:
            rows = conn.execute(
                sa.select(c.line, c.column, c.reason)
                .where(c.report_id == report_id)
                .order_by(c.seq)
            )
            return [Rejection(row.line, row.column, row.reason) for row in rows]

    @translate_errors("reading a usage report's lines")
    def usage_lines(self, report_id: int) -> Iterator[UsageLine]:
        c = usage_lines.c
        last = -1
        while True:
            with self.read() as conn:
                rows = conn.execute(
                    sa.select(usage_lines)
                    .where(c.report_id == report_id, c.seq > last)
                    .order_by(c.seq)
                    .limit(_PAGE)
                ).all()
            for row in rows:
                m = row._mapping
                yield UsageLine(
                    line=m["line"],
                    isbn13=m["isbn13"],
                    period_from=m["period_from"],
                    period_to=m["period_to"],
                    metric=m["metric"],
                    count=m["count"],
                    country=m["country"],
                    institution=m["institution"],
                    title=m["title"],
                )
            if len(rows) < _PAGE:
                return
            last = rows[-1].seq

    @translate_errors("releasing a sales report")
    def release_sales_report(self, report_id: int, by: str) -> SalesReportRecord:
        c = sales_reports.c
        with self.write() as conn:
            record = self._one_report(conn, c.id == report_id)
            if record is None:
                raise not_found("sales report", report_id)
            if record.status == "loaded" and record.released_at is not None:
                return record  # released already (a replayed command)
            if record.status != "held":
                raise StoreError(
                    f"sales report {report_id} ({record.name}) is {record.status}, not held: "
                    "there is nothing to release"
                )
            conn.execute(
                sales_reports.update()
                .where(c.id == report_id)
                .values(status="loaded", released_at=self._sales_now(), released_by=by)
            )
            released = self._one_report(conn, c.id == report_id)
        assert released is not None
        return released

    # --- import files ----------------------------------------------------------------------

    @translate_errors("creating a sales import")
    def create_sales_import(
        self, *, flow: str, report_id: int | None = None, period: str | None = None
    ) -> SalesImportRecord:
        if (report_id is None) == (period is None):
            raise StoreError("a sales import is of one report or of one period, not both/none")
        r, lines = sales_reports.c, sales_lines.c
        with self._write_unchecked() as conn:
            if report_id is not None:
                if self._one_report(conn, r.id == report_id) is None:
                    raise not_found("sales report", report_id)
                scope = f"report:{report_id}"
                where = sa.and_(r.id == report_id, r.status == "loaded")
            else:
                assert period is not None
                scope = f"period:{period}"
                where = sa.and_(r.status == "loaded", _overlaps(period))
            reports = list(conn.scalars(sa.select(r.id).where(where).order_by(r.id)))
            import_id: int = conn.execute(
                sales_imports.insert()
                .values(flow=flow, scope=scope, lines=0, created_at=self._sales_now())
                .returning(sales_imports.c.id)
            ).scalar_one()
            count = 0
            for rid in reports:
                # ``import_id IS NULL``: a line goes into one import, ever (PostgreSQL re-checks
                # the condition after waiting on a concurrent claim of the same rows).
                count += conn.execute(
                    sales_lines.update()
                    .where(lines.report_id == rid, lines.import_id.is_(None))
                    .values(import_id=import_id)
                ).rowcount
            conn.execute(
                sales_imports.update().where(sales_imports.c.id == import_id).values(lines=count)
            )
            row = conn.execute(
                sa.select(sales_imports).where(sales_imports.c.id == import_id)
            ).one()
        return _import(row)

    @translate_errors("reading a sales import's lines")
    def sales_import_lines(self, import_id: int) -> Iterator[SalesLine]:
        # A million-line import is read here for its file: the columns a SalesLine needs, and
        # on SQLite the page straight from the driver (SQLAlchemy's per-row result processing
        # cost more than the query).
        c = sales_lines.c
        columns = [getattr(c, name) for name in _READ_COLUMNS]
        query = (
            sa.select(*columns, c.report_id, c.seq)
            .where(
                c.import_id == sa.bindparam("import_id"),
                sa.tuple_(c.report_id, c.seq) > sa.tuple_(sa.bindparam("r"), sa.bindparam("s")),
            )
            .order_by(c.report_id, c.seq)
            .limit(_PAGE)
        )
        after = (-1, -1)
        make = _line_maker()
        while True:
            with self.read() as conn:
                if conn.dialect.name == "sqlite":
                    driver = conn.connection.driver_connection
                    assert driver is not None
                    rows = driver.execute(_RAW_IMPORT_PAGE, (import_id, *after, _PAGE)).fetchall()
                else:
                    params = {"import_id": import_id, "r": after[0], "s": after[1]}
                    rows = [tuple(row) for row in conn.execute(query, params)]
            for row in rows:
                yield make(*row)
            if len(rows) < _PAGE:
                return
            after = (rows[-1][-2], rows[-1][-1])

    @translate_errors("recording a sales import's file")
    def set_sales_import_file(self, import_id: int, path: str, sha256: str) -> None:
        with self.write() as conn:
            updated = conn.execute(
                sales_imports.update()
                .where(sales_imports.c.id == import_id)
                .values(path=path, sha256=sha256)
            ).rowcount
        if not updated:
            raise not_found("sales import", import_id)

    @translate_errors("listing sales imports")
    def list_sales_imports(self, *, report_id: int | None = None) -> list[SalesImportRecord]:
        i = sales_imports.c
        query = sa.select(sales_imports).order_by(i.id.desc())
        if report_id is not None:
            holding = (
                sa.select(sales_lines.c.import_id)
                .where(sales_lines.c.report_id == report_id, sales_lines.c.import_id.is_not(None))
                .distinct()
            )
            query = query.where(sa.or_(i.scope == f"report:{report_id}", i.id.in_(holding)))
        with self.read() as conn:
            return [_import(row) for row in conn.execute(query)]
