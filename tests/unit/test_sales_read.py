"""Sniffing report files into tables: the containers and encodings partners really send (UTF-16
TSV named .csv, CP1252 TSV named .xls with lone CR line ends, xlsx with a ``Details`` sheet,
legacy xls, gzip and zip wrappers, COUNTER JSON, EDItX XML), built here byte for byte."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import zipfile
from pathlib import Path

import openpyxl
import pytest
import xlwt

from consonance_sftp.formats.sales.read import COUNTER_HEADER, open_table
from consonance_sftp.formats.sales.table import ReportRefused
from tests.samples import SALES_SAMPLES

GOOGLE_SAMPLE = SALES_SAMPLES / "google-play-sales-transaction-report-2020-02.tsv"


def _rows(path: Path, **kwargs: str) -> tuple[object, list[tuple[int, list[str]]]]:
    with open_table(path, **kwargs) as table:
        return table, list(table.rows)


def test_google_sample_is_utf16_tsv_with_quoted_cells() -> None:
    table, rows = _rows(GOOGLE_SAMPLE)
    assert table.container == "text"  # type: ignore[attr-defined]
    assert table.encoding == "utf-16"  # type: ignore[attr-defined]
    assert table.delimiter == "\t"  # type: ignore[attr-defined]
    assert rows[0][0] == 1
    assert rows[0][1][0] == "Transaction Date"  # BOM gone, quotes gone
    assert len(rows[0][1]) == 21
    assert [line for line, _ in rows] == [1, 2, 3, 4, 5]
    assert rows[1][1][6] == "8297917046777"


def test_cp1252_tsv_disguised_as_xls_with_lone_cr(tmp_path: Path) -> None:
    text = "parent_isbn\ttitle\r9780306406157\tCaf\u00e9 \u2013 Cr\u00e8me\r\r9780306406157\tx\r"
    path = tmp_path / "sales_comp_2023UK.xls"
    path.write_bytes(text.encode("cp1252"))
    table, rows = _rows(path)
    assert table.container == "text"  # type: ignore[attr-defined]
    assert table.encoding == "cp1252"  # type: ignore[attr-defined]
    assert table.delimiter == "\t"  # type: ignore[attr-defined]
    assert any("carriage return" in n for n in table.notes)  # type: ignore[attr-defined]
    assert rows[1] == (2, ["9780306406157", "Caf\u00e9 \u2013 Cr\u00e8me"])
    # the blank line keeps its number, so line numbers are what a person sees
    assert rows[2] == (3, [])
    assert rows[3][0] == 4


def test_utf8_bom_csv_in_gzip(tmp_path: Path) -> None:
    path = tmp_path / "muse.csv.gz"
    path.write_bytes(gzip.compress('\ufeffbook_id,isbn\n1,"978,0"\n'.encode()))
    table, rows = _rows(path)
    assert table.container == "gzip+text"  # type: ignore[attr-defined]
    assert table.encoding == "utf-8-sig"  # type: ignore[attr-defined]
    assert rows == [(1, ["book_id", "isbn"]), (2, ["1", "978,0"])]


def test_zip_wrapper_with_one_member(tmp_path: Path) -> None:
    path = tmp_path / "report.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("report.tsv", "a\tb\n1\t2\n")
    table, rows = _rows(path)
    assert table.container == "zip+text"  # type: ignore[attr-defined]
    assert rows[1] == (2, ["1", "2"])


def test_zip_with_two_members_is_refused_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.csv", "x\n")
        archive.writestr("b.csv", "y\n")
    with pytest.raises(ReportRefused) as caught:
        _rows(path)
    assert caught.value.reason_code == "unreadable"
    assert "a.csv" in str(caught.value)
    assert "b.csv" in str(caught.value)


def test_binary_file_is_refused_with_its_first_bytes(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    path.write_bytes(b"%PDF-1.7\n\x00\x01\x02binary")
    with pytest.raises(ReportRefused) as caught:
        _rows(path)
    assert caught.value.reason_code == "unreadable"
    assert "%PDF" in str(caught.value)


def test_xlsx_reads_the_details_sheet_and_numbers_as_people_read_them(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    summary = book.active
    summary.title = "Summary"
    summary.append(["Statement", "Total"])
    details = book.create_sheet("Details")
    details.append(["Date", "eISBN", "Total Qty", "Net Due (Payable Currency)"])
    details.append([dt.datetime(2026, 10, 3), 9780306406157.0, 2, 12.5])
    details.append([dt.date(2026, 10, 4), "9780306406157", -1, -6.25])
    path = tmp_path / "sales_invoice_PUB_1.xlsx"
    book.save(path)
    table, rows = _rows(path)
    assert table.container == "xlsx"  # type: ignore[attr-defined]
    assert table.sheet == "Details"  # type: ignore[attr-defined]
    assert table.notes == ["other sheets, not read: Summary"]  # type: ignore[attr-defined]
    assert rows[1] == (2, ["2026-10-03", "9780306406157", "2", "12.5"])
    assert rows[2] == (3, ["2026-10-04", "9780306406157", "-1", "-6.25"])
    # a named sheet is read when asked for
    table, rows = _rows(path, sheet="Summary")
    assert rows[0][1] == ["Statement", "Total"]
    with pytest.raises(ReportRefused, match="Summary, Details"):
        _rows(path, sheet="Nope")


def test_legacy_xls(tmp_path: Path) -> None:
    book = xlwt.Workbook()
    sheet = book.add_sheet("Sheet1")
    for col, value in enumerate(["EAN13", "Stg Price", "NetQty-m", "Net Value-m"]):
        sheet.write(0, col, value)
    for col, value in enumerate([9780306406157.0, 9.99, -3, -29.97]):
        sheet.write(1, col, value)
    path = tmp_path / "FullTitleSales_2026_10.xls"
    book.save(str(path))
    table, rows = _rows(path)
    assert table.container == "xls"  # type: ignore[attr-defined]
    assert rows == [
        (1, ["EAN13", "Stg Price", "NetQty-m", "Net Value-m"]),
        (2, ["9780306406157", "9.99", "-3", "-29.97"]),
    ]


def test_counter_json_is_flattened_to_one_row_per_count(tmp_path: Path) -> None:
    doc = {
        "Report_Header": {
            "Report_ID": "IRUS_IR",
            "Report_Filters": {"Begin_Date": "2026-10-01", "End_Date": "2026-10-31"},
        },
        "Report_Items": [
            {
                "Item": "A book",
                "Item_ID": [{"Type": "ISBN", "Value": "9780306406157"}],
                "Performance_Instances": [
                    {
                        "Event_Month": "2026-10",
                        "Metric_Type": "Total_Item_Requests",
                        "Count": 7,
                        "Country": {"Country": "France", "Country_Code": "FR"},
                    },
                    {"Event_Month": "2026-10", "Metric_Type": "Unique_Item_Requests", "Count": 3},
                ],
            }
        ],
    }
    path = tmp_path / "irus.json"
    path.write_text(json.dumps(doc))
    table, rows = _rows(path)
    assert table.container == "json"  # type: ignore[attr-defined]
    assert rows[0] == (1, COUNTER_HEADER)
    assert rows[1][1] == [
        "IRUS_IR", "A book", "9780306406157", "FR", "", "2026-10-01", "2026-10",
        "Total_Item_Requests", "7",
    ]  # fmt: skip
    assert rows[2][1][3] == ""
    assert len(rows) == 3


def test_editx_xml_reads_like_the_flat_file(tmp_path: Path) -> None:
    xml = """<?xml version="1.0"?>
<SalesReport xmlns="http://www.editeur.org/editx">
  <Header><ReportID>R1</ReportID><ReportingCurrency>USD</ReportingCurrency></Header>
  <LineItem><LineItemID>1</LineItemID><MainProductID>9780306406157</MainProductID>
    <NetSoldQuantity>2</NetSoldQuantity></LineItem>
  <LineItem><LineItemID>2</LineItemID><MainProductID>9780306406157</MainProductID>
    <NetSoldQuantity>3</NetSoldQuantity></LineItem>
  <Summary><TotalNetSoldQuantity>5</TotalNetSoldQuantity></Summary>
</SalesReport>"""
    path = tmp_path / "editx.xml"
    path.write_text(xml)
    table, rows = _rows(path)
    assert table.container == "xml"  # type: ignore[attr-defined]
    assert rows[0][1] == [
        "ReportID", "ReportingCurrency", "LineItemID", "MainProductID", "NetSoldQuantity",
    ]  # fmt: skip
    assert rows[2][1] == ["R1", "USD", "2", "9780306406157", "3"]
    assert rows[3][1] == ["Total", "", "", "", "5"]


def test_bytes_not_in_the_sniffed_encoding_later_in_the_file(tmp_path: Path) -> None:
    # the first 64 KiB are UTF-8, a CP1252 byte comes after: refused with its line number
    body = "a,b\n" + "x,y\n" * 20000 + "caf\xe9,z\n"
    path = tmp_path / "late.csv"
    path.write_bytes(body.encode("utf-8")[:-7] + "caf\xe9,z\n".encode("cp1252"))
    with pytest.raises(ReportRefused) as caught:
        _rows(path)
    assert caught.value.reason_code == "unreadable"
    message = str(caught.value)
    assert "not utf-8" in message
    # the line named is before the bad bytes (decoding runs ahead of the csv reader)
    after = int(message.rsplit("after line ", 1)[1])
    assert 10000 < after < 20002


def test_empty_file_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    _table, rows = _rows(path)
    assert rows == []


def test_xlsx_line_numbers_count_leading_empty_rows(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet["B3"] = "EAN13"
    sheet["C3"] = "NetQty-m"
    sheet["B4"] = "9780306406157"
    sheet["C4"] = 2
    path = tmp_path / "offset.xlsx"
    book.save(path)
    _table, rows = _rows(path)
    data = [(line, cells) for line, cells in rows if any(cells)]
    assert data == [(3, ["EAN13", "NetQty-m"]), (4, ["9780306406157", "2"])]


def test_gzipped_xlsx_and_zipped_gzip(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    book.active.append(["EAN13", "NetQty-m"])
    book.active.append(["9780306406157", 1])
    buffer = io.BytesIO()
    book.save(buffer)
    path = tmp_path / "report.xlsx.gz"
    path.write_bytes(gzip.compress(buffer.getvalue()))
    table, rows = _rows(path)
    assert table.container == "gzip+xlsx"  # type: ignore[attr-defined]
    assert rows[1] == (2, ["9780306406157", "1"])
    zipped = tmp_path / "report.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("report.tsv.gz", gzip.compress(b"a\tb\n1\t2\n"))
    table, rows = _rows(zipped)
    assert table.container == "zip+gzip+text"  # type: ignore[attr-defined]
    assert rows == [(1, ["a", "b"]), (2, ["1", "2"])]


def test_utf16_without_bom(tmp_path: Path) -> None:
    path = tmp_path / "report.tsv"
    path.write_bytes("Qty\tPrimary ISBN\n1\t9780306406157\n".encode("utf-16-le"))
    table, rows = _rows(path)
    assert table.encoding == "utf-16-le"  # type: ignore[attr-defined]
    assert rows[1] == (2, ["1", "9780306406157"])


def test_truncated_gzip_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    body = gzip.compress(("a,b\n" + "1,2\n" * 50000).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(body[: len(body) // 2])
    with pytest.raises(ReportRefused) as caught:
        _rows(path)
    assert caught.value.reason_code == "unreadable"
    assert "cannot be read" in str(caught.value)
    tiny = tmp_path / "tiny.csv.gz"
    tiny.write_bytes(body[:20])
    with pytest.raises(ReportRefused) as caught:
        _rows(tiny)
    assert caught.value.reason_code == "unreadable"
