"""Usage reports (JSTOR TSV with a preamble, MUSE gzipped CSV, IRUS/COUNTER JSON) and market
data (BookScan-style) parse into ``UsageLine``s, never sales lines."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
from pathlib import Path

from consonance_sftp.formats.sales.lines import SalesLine, UsageLine
from consonance_sftp.formats.sales.parse import parse_report
from consonance_sftp.formats.sales.read import open_table
from tests.unit.sales_files import (
    A,
    B,
    layout,
    text_file,
)

# --- usage and market data -----------------------------------------------------------------


def test_jstor_tsv_with_preamble_yields_usage_lines(tmp_path: Path) -> None:
    columns = [
        "Country Name",
        "Book Title",
        "Book ID (DOI)",
        "Authors",
        "ISBN",
        "eISBN",
        "Copyright Year",
        "Disciplines",
        "Usage Type",
        "Sep-2026",
        "Oct-2026",
        "Reporting Period Total",
    ]
    rows = [
        ["Report_Name", "Book Usage by Country"],
        ["Report_ID", "PUB_BCU"],
        ["Reporting_Period", "2026-09-01 to 2026-10-31"],
        [],
        columns,
        [
            "France",
            "T",
            "10.2307/j.x",
            "A",
            A,
            "",
            "2020",
            "History",
            "Chapter view",
            "3",
            "0",
            "3",
        ],
        ["Peru", "T2", "10.2307/j.y", "B", "", B, "2021", "Art", "Chapter view", "1", "2", "3"],
    ]
    path = text_file(tmp_path / "jstor_country.tsv", rows, delimiter="\t")
    with open_table(path) as table:
        report = parse_report(table, file_name=path.name)
        items = list(report.items)
    assert report.facts.kind == "usage"
    assert report.header_line == 5
    assert (report.facts.period_from, report.facts.period_to) == (
        dt.date(2026, 9, 1),
        dt.date(2026, 10, 31),
    )
    assert all(isinstance(i, UsageLine) for i in items)
    assert [(i.isbn13, i.period_from.month, i.count, i.country) for i in items] == [  # type: ignore[union-attr]
        (A, 9, 3, "France"),
        (B, 9, 1, "Peru"),
        (B, 10, 2, "Peru"),
    ]


def test_muse_gzipped_csv_yields_usage_lines(tmp_path: Path) -> None:

    rows = [
        ["book_id", "isbn", "title", "year", "month", "type", "usage", "country_id", "country"],
        ["12", A, "T", "2026", "10", "Chapter", "5", "US", "United States"],
    ]
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    path = tmp_path / "muse.csv.gz"
    path.write_bytes(gzip.compress(buffer.getvalue().encode("cp1252")))
    with open_table(path) as table:
        report = parse_report(table, file_name=path.name)
        items = list(report.items)
    assert report.layout.name == "muse"
    assert items == [
        UsageLine(
            line=2,
            isbn13=A,
            period_from=dt.date(2026, 10, 1),
            period_to=dt.date(2026, 10, 31),
            metric="Chapter",
            count=5,
            country="US",
            title="T",
        )
    ]


def test_counter_json_yields_usage_lines(tmp_path: Path) -> None:

    doc = {
        "Report_Header": {
            "Report_ID": "IRUS_IR",
            "Report_Filters": {"Begin_Date": "2026-10-01", "End_Date": "2026-10-31"},
        },
        "Report_Items": [
            {
                "Item": "T",
                "Item_ID": [{"Type": "ISBN", "Value": A}],
                "Performance_Instances": [
                    {
                        "Event_Month": "2026-10",
                        "Metric_Type": "Total_Item_Requests",
                        "Count": 9,
                        "Country": {"Country_Code": "GB"},
                    }
                ],
            }
        ],
    }
    path = tmp_path / "irus.json"
    path.write_text(json.dumps(doc))
    with open_table(path) as table:
        report = parse_report(table, file_name=path.name)
        items = list(report.items)
    assert report.layout.name == "irus-counter"
    assert report.facts.kind == "usage"
    assert [(i.isbn13, i.count, i.country, i.metric) for i in items] == [  # type: ignore[union-attr]
        (A, 9, "GB", "Total_Item_Requests")
    ]


def test_bookscan_market_data_is_kind_market(tmp_path: Path) -> None:
    rows = [
        list(layout("bookscan").columns),
        [A, "T", "A", "P", "Paperback", "9.99", "2026-10-11", "120", "1198.80"],
    ]
    path = text_file(tmp_path / "bookscan.csv", rows, encoding="utf-8-sig")
    with open_table(path) as table:
        report = parse_report(table, file_name=path.name)
        items = list(report.items)
    assert report.facts.kind == "market"
    assert items == [
        UsageLine(
            line=2,
            isbn13=A,
            period_from=dt.date(2026, 10, 5),
            period_to=dt.date(2026, 10, 11),
            metric="units",
            count=120,
            title="T",
        )
    ]
    assert not any(isinstance(i, SalesLine) for i in items)


def test_jstor_without_reporting_period_takes_its_month_columns(tmp_path: Path) -> None:
    columns = ["Country Name", "Book Title", "Book ID (DOI)", "Authors", "ISBN", "eISBN",
               "Copyright Year", "Disciplines", "Usage Type", "Sep-2026", "Oct-2026",
               "Reporting Period Total"]  # fmt: skip
    rows = [
        ["Report_Name", "Book Usage by Country"],
        columns,
        ["France", "T", "d", "A", A, "", "2020", "History", "Chapter view", "3", "0", "3"],
    ]
    path = text_file(tmp_path / "jstor.tsv", rows, delimiter="\t")
    with open_table(path) as table:
        report = parse_report(table, file_name=path.name)
        items = list(report.items)
    assert len(items) == 1
    assert (report.facts.period_from, report.facts.period_to) == (
        dt.date(2026, 9, 1),
        dt.date(2026, 10, 31),
    )
