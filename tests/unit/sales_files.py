"""Report files built in test code for the sales tests: text in any encoding, delimiter and
line end, xlsx with a ``Details`` sheet, and a helper that reads one through ``parse_report``."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import openpyxl

from consonance_sftp.formats.sales.layouts import LAYOUTS, Layout
from consonance_sftp.formats.sales.lines import Rejection, SalesLine
from consonance_sftp.formats.sales.parse import ParsedReport, parse_report
from consonance_sftp.formats.sales.read import open_table

A, B, C, D = "9780306406157", "9781861972712", "9791090000001", "9783161484100"
D10 = "316148410X"  # D as an ISBN-10
BAD = "9780306406158"  # A with a wrong check digit


def layout(name: str, version: str | None = None) -> Layout:
    return next(x for x in LAYOUTS if x.name == name and (version is None or x.version == version))


def text_file(
    path: Path,
    rows: Sequence[Sequence[str]],
    *,
    delimiter: str = ",",
    encoding: str = "utf-8",
    newline: str = "\n",
    quoting: int = csv.QUOTE_MINIMAL,
) -> Path:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator=newline, quoting=quoting).writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def xlsx_file(path: Path, rows: Sequence[Sequence[object]], *, sheet: str = "Details") -> Path:
    book = openpyxl.Workbook()
    first = book.active
    first.title = "Summary"
    first.append(["Statement summary"])
    details = book.create_sheet(sheet)
    for row in rows:
        details.append(list(row))
    book.save(path)
    return path


def parse(path: Path, **kwargs: object) -> tuple[ParsedReport, list[SalesLine], list[Rejection]]:
    with open_table(path) as table:
        report = parse_report(table, file_name=path.name, **kwargs)  # type: ignore[arg-type]
        items = list(report.items)
    lines = [i for i in items if isinstance(i, SalesLine)]
    rejections = [i for i in items if isinstance(i, Rejection)]
    return report, lines, rejections


def reconciled(report: ParsedReport) -> bool | None:
    ok, problems = report.reconciliation()
    assert ok is not False, problems
    return ok
