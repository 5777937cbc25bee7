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

Writer: the xlsx is written here (``ImportRows``): a zip of the few fixed parts a workbook
needs and the sheet's XML, its rows built one by one with f-strings as the lines come, put in a
temporary file, then deflated (level 1) into the zip behind the sheet's header once their
number is known, so memory stays flat. Cells are what XlsxWriter wrote before (inline strings,
numbers as ``<v>`` values, no styles on cells). Measured about 8 times faster than
XlsxWriter's ``constant_memory`` mode, the fastest well-kept Python writer that streams (about
6 µs a row against 47, summary and read-back included; figures and command in
``docs/reference/performance.md``, "The import file's writer").
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import secrets
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import IO

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
        raise _no_channel_id(line)
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


def _no_channel_id(line: SalesLine) -> ImportFileError:
    return ImportFileError(
        f"line {line.line} ({line.isbn13}) has no Consonance channel ID",
        hint="Map the partner's channel or territory to a Consonance channel in the flow's "
        "channel map (or give it a default).",
    )


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
    with ImportRows(path.parent, house_currency=house_currency, source=source) as rows:
        rows.add(lines)
        return rows.write(path, summary_path=summary_path)


class ImportRows:
    """An import file's rows, made as the lines come and kept in an anonymous temporary file
    in ``folder`` (gone with the process, whatever ends it), until ``write`` makes them the
    import file or ``close`` drops them. The sales flow fills one while a report loads, so the
    file is not made again from the ledger afterwards.

    The first line that cannot be written (no channel ID, a character an xlsx cannot hold, one
    line too many) is kept in ``error`` and no more lines are taken; ``write`` raises it."""

    def __init__(self, folder: Path, *, house_currency: str, source: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.house_currency = house_currency
        self.count = 0
        self.error: ImportFileError | None = None
        self.summary: dict[tuple[str, str, str], _Sums] = {}
        self._texts: dict[str, str] = {}  # text -> its escaped ``<is>`` element
        self._dates: dict[date, str] = {}
        self._source_xml = ""
        if source:
            try:
                self._source_xml = _is(source, self._texts, 0, "Source")
            except ImportFileError as refused:
                self.error = refused
        # closed by ``close`` (the owner's ``with``); unnamed, so nothing is left if not
        self._file: IO[bytes] = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115

    def __enter__(self) -> ImportRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def add(self, lines: Iterable[SalesLine]) -> None:
        """The rows of ``lines``, after those already added (none once ``error`` is set)."""
        if self.error is None:
            try:
                self._add(lines)
            except ImportFileError as refused:
                self.error = refused

    def write(self, path: Path, *, summary_path: Path | None = None) -> ImportFile:
        """The import file at ``path`` (and the summary CSV at ``summary_path``), each under a
        temporary name first, renamed once complete; the xlsx's headers read back."""
        if self.error is not None:
            raise self.error
        path.parent.mkdir(parents=True, exist_ok=True)
        with _partial(path) as partial:
            self._write_xlsx(partial)
            _check_headers(partial)
            _sync(partial)
            os.replace(partial, path)
        _sync_dir(path.parent)
        if summary_path is not None:
            _write_summary_csv(self.summary, summary_path)
        size, digest = sha256_file(path)
        totals: dict[str, _Sums] = {}
        for (_isbn, _channel, currency), sums in self.summary.items():
            totals.setdefault(currency, _Sums()).merge(sums)
        return ImportFile(
            path=path,
            rows=self.count,
            size=size,
            sha256=digest,
            summary_path=summary_path,
            totals={currency: totals[currency].as_dict() for currency in sorted(totals)},
        )

    def _write_xlsx(self, partial: Path) -> None:
        """The workbook: its fixed parts, then the sheet deflated into the zip: its start
        (which states how many rows it has), the rows from the temporary file, its end.

        The rows wait in a temporary file because the sheet starts with its ``<dimension>``
        (how many rows it has), known only once every line is read; readers that size a sheet
        by it would otherwise read the whole sheet to find its size (openpyxl's read-only
        mode, as ``_check_headers`` uses it: about 3 s more for 100,000 rows) or cut rows
        short. XlsxWriter's ``constant_memory`` mode does the same; it costs about 0.1-0.4 µs
        a row."""
        rows_file = self._file
        with zipfile.ZipFile(
            partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=_DEFLATE_LEVEL
        ) as book:
            for name, xml in _fixed_parts():
                # A ZipInfo's own date is fixed (1980-01-01): the same lines, the same bytes.
                book.writestr(zipfile.ZipInfo(name), xml, zipfile.ZIP_DEFLATED, _DEFLATE_LEVEL)
            start = _sheet_start(self.count + 1)
            size = len(start) + rows_file.seek(0, os.SEEK_END) + len(_SHEET_END)
            rows_file.seek(0)
            # Zip64 fields only for a sheet that needs them (past 2 GiB, as zipfile counts):
            # a plain zip entry otherwise, as XlsxWriter wrote, for every reader.
            with book.open(_SHEET_PART, "w", force_zip64=size * 1.05 > _ZIP64_LIMIT) as sheet:
                sheet.write(start)
                shutil.copyfileobj(rows_file, sheet, _COPY_BLOCK)
                sheet.write(_SHEET_END)
            rows_file.seek(0, os.SEEK_END)  # more rows could still follow

    def _add(self, lines: Iterable[SalesLine]) -> None:
        """The sheet's rows for ``lines``, one ``<row>`` per line, cell by cell what
        ``import_row`` gives (this is that function unrolled for speed; a test holds them
        equal). Text is inline (``t="inlineStr"``), numbers are ``<v>`` values, empty cells are
        left out. Rows are joined and written to the temporary file in chunks."""
        texts, dates, summary = self._texts, self._dates, self.summary
        house_currency, source_xml, out = self.house_currency, self._source_xml, self._file
        text = texts.get
        chunk: list[str] = []
        count = self.count
        row = count + 1
        for line in lines:
            count += 1
            if count > MAX_LINES:
                raise ImportFileError(
                    f"more than {MAX_LINES:,} lines for one import file "
                    f"(an xlsx sheet holds {MAX_LINES + 1:,} rows and Consonance reads one sheet)",
                    hint="Make one import file per report instead of one per period.",
                )
            row += 1
            isbn, channel_id, currency = line.isbn13, line.channel_id, line.currency
            if not channel_id:
                raise _no_channel_id(line)
            quantity, value = line.quantity, line.value
            return_quantity, return_value = line.return_quantity, line.return_value
            has_returns = bool(return_quantity or return_value)
            has_sales = bool(quantity or value) or not has_returns
            day = dates.get(line.sales_date)
            if day is None:
                day = dates[line.sales_date] = _is(line.sales_date.isoformat(), texts, 0, "")
            n = line.line
            isbn_xml = text(isbn) or _is(isbn, texts, n, "Product ID")
            channel_xml = text(channel_id) or _is(channel_id, texts, n, "Channel ID")
            territory = line.territory
            country = ""
            if territory:
                country_xml = text(territory) or _is(territory, texts, n, "Country code")
                country = f'<c r="K{row}" t="inlineStr">{country_xml}</c>'
            source_cell = f'<c r="F{row}" t="inlineStr">{source_xml}</c>' if source_xml else ""
            price = ""
            list_price = line.list_price
            if list_price is not None and (line.list_price_currency or currency) == house_currency:
                price = f'<c r="E{row}"><v>{_number(list_price, n)}</v></c>'
            # counts are ints (the ledger's INTEGER columns): written as they are, checked by
            # ``_number`` only when out of a double's range
            sold = returned = ""
            if has_sales:
                sold_text = (
                    str(quantity)
                    if type(quantity) is int and -_DOUBLE_MAX < quantity < _DOUBLE_MAX
                    else _number(quantity, n)
                )
                sold = f'<c r="G{row}"><v>{sold_text}</v></c>'
            if has_returns:
                returned_text = (
                    str(return_quantity)
                    if type(return_quantity) is int and -_DOUBLE_MAX < return_quantity < _DOUBLE_MAX
                    else _number(return_quantity, n)
                )
                returned = f'<c r="I{row}"><v>{returned_text}</v></c>'
            if currency == house_currency:
                sold_value = f'<c r="H{row}"><v>{_number(value, n)}</v></c>' if has_sales else ""
                returned_value = ""
                if has_returns:
                    returned_value = f'<c r="J{row}"><v>{_number(return_value, n)}</v></c>'
                original = ""
            else:
                sold_value = returned_value = ""
                currency_xml = text(currency) or _is(currency, texts, n, "Original currency")
                original = f'<c r="L{row}" t="inlineStr">{currency_xml}</c>'
                if has_sales:
                    original += f'<c r="M{row}"><v>{_number(value, n)}</v></c>'
                if has_returns:
                    original += f'<c r="N{row}"><v>{_number(return_value, n)}</v></c>'
            chunk.append(
                f'<row r="{row}"><c r="A{row}" t="inlineStr"><is><t>ISBN</t></is></c>'
                f'<c r="B{row}" t="inlineStr">{isbn_xml}</c>'
                f'<c r="C{row}" t="inlineStr">{channel_xml}</c>'
                f'<c r="D{row}" t="inlineStr">{day}</c>{price}{source_cell}'
                f"{sold}{sold_value}{returned}{returned_value}{country}{original}</row>"
            )
            if len(chunk) == _CHUNK_ROWS:
                out.write("".join(chunk).encode())
                chunk.clear()
            key = (isbn, channel_id, currency)
            sums = summary.get(key)
            if sums is None:
                sums = summary[key] = _Sums()
            # _Sums.add, inlined (a call a row)
            sums.lines += 1
            sums.quantity += line.quantity
            sums.value += value
            sums.return_quantity += line.return_quantity
            sums.return_value += return_value
        out.write("".join(chunk).encode())
        self.count = count


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


_CHUNK_ROWS = 2000
"""Rows joined per write into the zip: large enough that deflate and CRC run on big blocks,
small enough to keep memory flat (about 1 MB)."""

_TEXT_CACHE_MAX = 16_384
"""Distinct texts kept escaped (titles, channels, countries, dates): beyond it, escaped anew."""

# XML 1.0 cannot hold these at all (C0 controls other than tab, LF, CR; U+FFFE, U+FFFF; lone
# surrogates): a cell holding one is refused, not silently changed.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
# What needs escaping in element text; ``_xHHHH_`` is an escape in OOXML strings (Excel and
# calamine decode it), so a literal one has its underscore escaped, as XlsxWriter does; a CR
# would become a LF when parsed, so it is a character reference.
_SPECIAL = re.compile("[&<>\r]|_(?=x[0-9A-Fa-f]{4}_)")
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;", "_": "_x005F_"}


def _is(text: str, cache: dict[str, str], line: int, column: str) -> str:
    """``text`` as an inline string's ``<is>`` element, escaped; kept in ``cache``. Refuses
    characters XML cannot hold, naming the line and column."""
    bad = _NOT_XML.search(text)
    if bad:
        where = f"line {line}, column {column!r}" if line else "the import file"
        raise ImportFileError(
            f"{where}: the text {text!r} holds the control character "
            f"U+{ord(bad.group()):04X}, which an xlsx file cannot hold",
            hint="Correct the text at its source (the report, or the flow's config).",
        )
    escaped = _SPECIAL.sub(lambda m: _ESCAPES[m.group()], text)
    # Excel drops leading and trailing spaces of a text unless told to keep them.
    space = ' xml:space="preserve"' if text[:1].isspace() or text[-1:].isspace() else ""
    xml = f"<is><t{space}>{escaped}</t></is>"
    if len(cache) < _TEXT_CACHE_MAX:
        cache[text] = xml
    return xml


def _number(number: int | Decimal, line: int) -> str:
    """A quantity or an amount as a ``<v>`` value: its own digits (a ``Decimal``'s as given, so
    a reader gets the double nearest the exact amount). Refuses what a double cannot hold (NaN,
    infinities, beyond 1E+308)."""
    if isinstance(number, int):
        if -_DOUBLE_MAX < number < _DOUBLE_MAX:
            return str(number)
    elif number.is_finite() and number.adjusted() < _DOUBLE_DIGITS:
        return str(number)
    raise ImportFileError(f"line {line}: the amount {number} cannot be written in an xlsx file")


_DOUBLE_DIGITS = 308
_DOUBLE_MAX = 10**_DOUBLE_DIGITS


_SHEET_PART = "xl/worksheets/sheet1.xml"
_XML_DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_HEADER_ROW = (
    '<row r="1">'
    + "".join(
        f'<c r="{chr(ord("A") + column)}1" t="inlineStr"><is><t>{header}</t></is></c>'
        for column, header in enumerate(IMPORT_HEADERS)
    )
    + "</row>"
)


def _sheet_start(rows: int) -> bytes:
    last_column = chr(ord("A") + len(IMPORT_HEADERS) - 1)
    return (
        f'{_XML_DECL}<worksheet xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}">'
        f'<dimension ref="A1:{last_column}{rows}"/>'
        '<sheetViews><sheetView tabSelected="1" workbookViewId="0"/></sheetViews>'
        f'<sheetFormatPr defaultRowHeight="15"/><sheetData>{_HEADER_ROW}'
    ).encode()


_COPY_BLOCK = 1 << 20
_ZIP64_LIMIT = (1 << 31) - 1  # zipfile's own threshold (``zipfile.ZIP64_LIMIT``)
_SHEET_END = (
    b'</sheetData><pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" '
    b'footer="0.3"/></worksheet>'
)


def _fixed_parts() -> list[tuple[str, str]]:
    """The workbook's parts other than the sheet, as XlsxWriter wrote them (less its theme and
    document properties, which no reader needs): one sheet named ``SHEET_NAME``, one style."""
    office = "application/vnd.openxmlformats-officedocument.spreadsheetml"
    types = (
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        f'<Override PartName="/xl/workbook.xml" ContentType="{office}.sheet.main+xml"/>'
        f'<Override PartName="/{_SHEET_PART}" ContentType="{office}.worksheet+xml"/>'
        f'<Override PartName="/xl/styles.xml" ContentType="{office}.styles+xml"/>'
        "</Types>"
    )
    package_rels = (
        f'<Relationships xmlns="{_PKG_REL_NS}"><Relationship Id="rId1" '
        f'Type="{_REL_NS}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
    )
    workbook = (
        f'<workbook xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}">'
        "<bookViews><workbookView/></bookViews>"
        f'<sheets><sheet name="{_xml_attr(SHEET_NAME)}" sheetId="1" r:id="rId1"/></sheets>'
        "</workbook>"
    )
    workbook_rels = (
        f'<Relationships xmlns="{_PKG_REL_NS}">'
        f'<Relationship Id="rId1" Type="{_REL_NS}/worksheet" Target="worksheets/sheet1.xml"/>'
        f'<Relationship Id="rId2" Type="{_REL_NS}/styles" Target="styles.xml"/>'
        "</Relationships>"
    )
    styles = (
        f'<styleSheet xmlns="{_MAIN_NS}">'
        '<fonts count="1"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
        '</fonts><fills count="2"><fill><patternFill patternType="none"/></fill>'
        '<fill><patternFill patternType="gray125"/></fill></fills>'
        '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
        '</cellStyleXfs><cellXfs count="1">'
        '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/></cellXfs>'
        '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
        "</styleSheet>"
    )
    parts = [
        ("[Content_Types].xml", types),
        ("_rels/.rels", package_rels),
        ("xl/workbook.xml", workbook),
        ("xl/_rels/workbook.xml.rels", workbook_rels),
        ("xl/styles.xml", styles),
    ]
    return [(name, _XML_DECL + xml) for name, xml in parts]


def _xml_attr(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


_DEFLATE_LEVEL = 1
"""Measured: level 1 deflates the sheet in about 1.3 µs a row, the default 6 in 4.3 µs, for a
file about 22 % larger (5.3 MB against 4.4 MB for 100,000 rows)."""


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
