"""A report file seen as rows of text cells, whatever it arrived as (CSV, TSV, xlsx, xls,
inside gzip or zip). ``read.open_table`` makes one; ``parse`` reads it through a layout."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from consonance_sftp.errors import ConsonanceSftpError


@dataclass(slots=True, kw_only=True)
class Table:
    """One report's rows, streamed: ``rows`` yields ``(line, cells)`` once, in file order.

    ``line`` is what a person finds in the file: the 1-based line of a text file, the 1-based
    row of a sheet. Every cell is text: a number stored in a spreadsheet comes as it reads
    (``9781234567897``, not ``9.781234567897E12`` nor ``9781234567897.0``; ``12.5``), a date
    cell as ``YYYY-MM-DD``; an empty cell is ``""``. Cells are not stripped: the layout decides
    (header cells padded with spaces are a known partner quirk).
    """

    container: str  # "text", "xlsx", "xls"; wrapped: "gzip+text", "zip+xlsx", ...
    encoding: str | None  # text only: "utf-8-sig", "utf-16", "cp1252", ...
    delimiter: str | None  # text only: "\t", ",", ";", "|"
    sheet: str | None  # spreadsheets: the sheet read
    rows: Iterator[tuple[int, list[str]]]
    notes: list[str] = field(default_factory=list)  # what the sniffing decided, for `sales check`


class ReportRefused(ConsonanceSftpError):
    """A report that cannot be read as any known layout: it goes to quarantine with this
    short, stable ``reason_code`` (``unreadable``, ``unknown-layout``, ``header-changed``,
    ``empty-report``...) and the message, which names what was seen (the header, and how it
    differs from the nearest layout)."""

    def __init__(self, reason_code: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason_code = reason_code
