"""Consonance's sales-import file (xlsx) and its per-title, per-channel summary (CSV), written
from a stream of ``SalesLine``s.

The import file follows Consonance's template: one sheet (the importer reads the first sheet
only), the template's headers spelled and ordered exactly as the template has them (it refuses
changed or added headers), dates as ``YYYY-MM-DD`` text, a sale and a return on one row in
their own columns. Money in another currency than the publisher's house currency goes in the
``Original currency`` / ``Original sales value`` / ``Original return value`` columns with
``Sales value`` left empty, so Consonance converts it at its own rate (what Consonance's own
converter, ``GeneralProducts/payment-reports``, does without a rate); a list price is written
only when it is in the house currency (list-price royalties are computed from it).

Both files are written under a temporary name in the destination folder, flushed to disk and
renamed: a reader never sees half a file under its final name. Lines are streamed: memory stays
flat however many there are (the summary keeps one entry per title, channel and currency).

Writer choice, measured (1,000,000 rows, 2-core shared machine; figures and command in
``docs/reference/performance.md``, "Sales reports"): XlsxWriter in ``constant_memory`` mode,
one typed call per non-empty cell. openpyxl's write-only mode took about twice as long at
the same flat memory; PyExcelerate keeps the whole sheet in memory (84 MB at 100,000 rows);
the young Rust bindings were faster but are single-maintainer 0.x packages.
"""

from __future__ import annotations

import contextlib
import csv
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import xlsxwriter
from openpyxl import load_workbook

from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.formats.packaging import sha256_file
from consonance_sftp.formats.sales.lines import SalesLine

IMPORT_HEADERS: tuple[str, ...] = (
    "Product ID type",
    "Product ID",
    "Channel ID",
    "Sales date",
    "List price",
    "Source",
    "Sales quantity",
    "Sales value",
    "Return quantity",
    "Return value",
    "Country code",
    "Original currency",
    "Original sales value",
    "Original return value",
)
"""Consonance's sales-import template headers, in template order (book-industry notes §3.1;
the order of ``payment-reports``' ``generate_import_file.rb``, without its own ``File`` and
``Notes`` audit columns, which the template does not have)."""

SUMMARY_HEADERS: tuple[str, ...] = (
    "ISBN",
    "Channel ID",
    "Currency",
    "Lines",
    "Sales quantity",
    "Sales value",
    "Return quantity",
    "Return value",
    "Net quantity",
    "Net value",
)

ALL_TITLES = "All titles"
ALL_CHANNELS = "All channels"

MAX_LINES = 1_048_575
"""An xlsx sheet holds 1,048,576 rows, one of them the header; the importer reads one sheet."""

SHEET_NAME = "Sales"

# Column positions, named once so the row writer below stays readable.
_TYPE, _ID, _CHANNEL, _DATE, _LIST_PRICE, _SOURCE = 0, 1, 2, 3, 4, 5
_QTY, _VALUE, _RET_QTY, _RET_VALUE, _COUNTRY = 6, 7, 8, 9, 10
_ORIG_CURRENCY, _ORIG_VALUE, _ORIG_RET_VALUE = 11, 12, 13


class ImportFileError(ConsonanceSftpError):
    """An import file that cannot be written as Consonance's template requires."""


@dataclass(slots=True)
class _Sums:
    lines: int = 0
    quantity: int = 0
    value: Decimal = Decimal(0)
    return_quantity: int = 0
    return_value: Decimal = Decimal(0)

    def add(self, line: SalesLine) -> None:
        self.lines += 1
        self.quantity += line.quantity
        self.value += line.value
        self.return_quantity += line.return_quantity
        self.return_value += line.return_value

    def merge(self, other: _Sums) -> None:
        self.lines += other.lines
        self.quantity += other.quantity
        self.value += other.value
        self.return_quantity += other.return_quantity
        self.return_value += other.return_value

    def as_dict(self) -> dict[str, Decimal]:
        return {
            "lines": Decimal(self.lines),
            "quantity": Decimal(self.quantity),
            "value": self.value,
            "return_quantity": Decimal(self.return_quantity),
            "return_value": self.return_value,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportFile:
    """What was written: the import file, its row count and checksum, the summary (if asked
    for), and the sums of what went in, per currency (``lines``, ``quantity``, ``value``,
    ``return_quantity``, ``return_value``), in each line's own currency."""

    path: Path
    rows: int
    size: int
    sha256: str
    summary_path: Path | None
    totals: dict[str, dict[str, Decimal]] = field(default_factory=dict)


def import_row(
    line: SalesLine, *, house_currency: str, source: str
) -> list[str | int | float | None]:
    """One line as a template row, cell by cell in ``IMPORT_HEADERS`` order (``None``: the cell
    stays empty). Raises ``ImportFileError`` for a line without a Consonance channel ID."""
    if not line.channel_id:
        raise ImportFileError(
            f"line {line.line} ({line.isbn13}) has no Consonance channel ID",
            hint="Map the partner's channel or territory to a Consonance channel in the flow's "
            "channel map (or give it a default).",
        )
    in_house = line.currency == house_currency
    has_returns = bool(line.return_quantity or line.return_value)
    # A row with no sale and no return still needs one value cell filled (the importer's rule);
    # a pure return leaves the sales cells empty so no zero sale is created next to it.
    has_sales = bool(line.quantity or line.value) or not has_returns
    list_price: float | None = None
    if line.list_price is not None and (line.list_price_currency or line.currency) == (
        house_currency
    ):
        list_price = float(line.list_price)
    row: list[str | int | float | None] = [None] * len(IMPORT_HEADERS)
    row[_TYPE] = "ISBN"
    row[_ID] = line.isbn13
    row[_CHANNEL] = line.channel_id
    row[_DATE] = line.sales_date.isoformat()
    row[_LIST_PRICE] = list_price
    row[_SOURCE] = source or None
    if has_sales:
        row[_QTY] = line.quantity
    if has_returns:
        row[_RET_QTY] = line.return_quantity
    row[_COUNTRY] = line.territory or None
    if in_house:
        if has_sales:
            row[_VALUE] = float(line.value)
        if has_returns:
            row[_RET_VALUE] = float(line.return_value)
    else:
        row[_ORIG_CURRENCY] = line.currency
        if has_sales:
            row[_ORIG_VALUE] = float(line.value)
        if has_returns:
            row[_ORIG_RET_VALUE] = float(line.return_value)
    return row


def write_import_file(
    lines: Iterable[SalesLine],
    path: Path,
    *,
    house_currency: str,
    source: str,
    summary_path: Path | None = None,
) -> ImportFile:
    """Write ``lines`` (streamed, read once) as Consonance's sales-import xlsx at ``path`` and,
    when ``summary_path`` is given, the per-title, per-channel summary CSV there; each under a
    temporary name first, renamed once complete and its headers read back.

    ``source`` fills the template's ``Source`` column (Consonance matches it to a company
    contact by organisation name: the partner's name). ``house_currency`` is the publisher's
    default currency in Consonance (ISO 4217)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    summary: dict[tuple[str, str, str], _Sums] = {}
    with _partial(path) as partial:
        rows = _write_xlsx(lines, partial, house_currency, source, summary)
        _check_headers(partial)
        _sync(partial)
        os.replace(partial, path)
    _sync_dir(path.parent)
    if summary_path is not None:
        _write_summary_csv(summary, summary_path)
    size, digest = sha256_file(path)
    totals: dict[str, _Sums] = {}
    for (_isbn, _channel, currency), sums in summary.items():
        totals.setdefault(currency, _Sums()).merge(sums)
    return ImportFile(
        path=path,
        rows=rows,
        size=size,
        sha256=digest,
        summary_path=summary_path,
        totals={currency: totals[currency].as_dict() for currency in sorted(totals)},
    )


def _write_summary_csv(summary: dict[tuple[str, str, str], _Sums], path: Path) -> None:
    """The summary CSV: one row per (ISBN, channel ID, currency), then each channel's total over
    all titles, then each currency's total; net = sales − returns. Written atomically."""
    by_channel: dict[tuple[str, str], _Sums] = {}
    by_currency: dict[str, _Sums] = {}
    for (_isbn, channel, currency), sums in summary.items():
        by_channel.setdefault((channel, currency), _Sums()).merge(sums)
        by_currency.setdefault(currency, _Sums()).merge(sums)
    rows: list[tuple[str, str, str, _Sums]] = [
        (isbn, channel, currency, summary[isbn, channel, currency])
        for isbn, channel, currency in sorted(summary)
    ]
    rows += [(ALL_TITLES, ch, cur, by_channel[ch, cur]) for ch, cur in sorted(by_channel)]
    rows += [(ALL_TITLES, ALL_CHANNELS, cur, by_currency[cur]) for cur in sorted(by_currency)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with _partial(path) as partial:
        with partial.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(SUMMARY_HEADERS)
            for isbn, channel, currency, s in rows:
                writer.writerow(
                    [
                        isbn,
                        _csv_text(channel),
                        currency,
                        s.lines,
                        s.quantity,
                        format(s.value, "f"),
                        s.return_quantity,
                        format(s.return_value, "f"),
                        s.quantity - s.return_quantity,
                        format(s.value - s.return_value, "f"),
                    ]
                )
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    _sync_dir(path.parent)


# --- internals -----------------------------------------------------------------------------


def _write_xlsx(
    lines: Iterable[SalesLine],
    partial: Path,
    house_currency: str,
    source: str,
    summary: dict[tuple[str, str, str], _Sums],
) -> int:
    # constant_memory: each row goes to a temporary file as soon as the next one starts, so
    # memory is flat; its temporary files go next to the output (same disk, same permissions).
    workbook = xlsxwriter.Workbook(
        str(partial), {"constant_memory": True, "tmpdir": str(partial.parent)}
    )
    try:
        sheet = workbook.add_worksheet(SHEET_NAME)
        sheet.write_row(0, 0, IMPORT_HEADERS)
        # One typed call per non-empty cell: measured ~20 % faster than write_row's dispatch.
        write_string, write_number = sheet.write_string, sheet.write_number
        count = 0
        for line in lines:
            count += 1
            if count > MAX_LINES:
                raise ImportFileError(
                    f"more than {MAX_LINES:,} lines for one import file "
                    f"(an xlsx sheet holds {MAX_LINES + 1:,} rows and Consonance reads one sheet)",
                    hint="Make one import file per report instead of one per period.",
                )
            cells = import_row(line, house_currency=house_currency, source=source)
            for column, cell in enumerate(cells):
                if cell is None:
                    continue
                if type(cell) is str:
                    write_string(count, column, cell)
                else:
                    write_number(count, column, cell)
            key = (line.isbn13, line.channel_id, line.currency)
            sums = summary.get(key)
            if sums is None:
                sums = summary[key] = _Sums()
            sums.add(line)
    finally:
        workbook.close()
    return count


def _check_headers(path: Path) -> None:
    """Read the written file back (openpyxl, read-only: the first row only) and check it has
    the template's headers on its first sheet: what the importer will look at."""
    # A handle, not the path: openpyxl judges a path by its extension (ours is ``.partial``).
    with path.open("rb") as handle:
        book = load_workbook(handle, read_only=True)
        try:
            first = book.worksheets[0]
            header = next(first.iter_rows(min_row=1, max_row=1, values_only=True), ())
        finally:
            book.close()
    if tuple(header) != IMPORT_HEADERS:
        raise ImportFileError(f"the import file written reads back with headers {header!r}")


@contextlib.contextmanager
def _partial(path: Path) -> Iterator[Path]:
    """A temporary name next to ``path`` (not created here, so the file gets the usual
    permissions), removed unless the caller renamed it into place."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(6)}.partial")
    try:
        yield partial
    finally:
        partial.unlink(missing_ok=True)


def _sync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _sync_dir(path: Path) -> None:
    # The rename itself is durable only once the folder's entry is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _csv_text(text: str) -> str:
    # A spreadsheet opening the CSV would run a cell starting with these as a formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
