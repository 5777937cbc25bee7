"""Each sales layout parsed from a file built here to its published columns (synthetic rows,
real structure), each with one partner quirk (BOM, UTF-16, CP1252 bytes, lone CR line ends,
trailer rows, Excel-float ISBNs, padded header cells), totals reconciled with the file's own."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pytest
import xlwt

from consonance_sftp.formats.sales.layouts import GenericLayout
from consonance_sftp.formats.sales.lines import Rejection
from consonance_sftp.formats.sales.parse import KnownAsin
from consonance_sftp.formats.sales.table import ReportRefused
from tests.samples import SALES_SAMPLES
from tests.unit.sales_files import (
    BAD,
    D10,
    A,
    B,
    D,
    layout,
    parse,
    reconciled,
    text_file,
    xlsx_file,
)

# --- sales layouts, one quirk each ---------------------------------------------------------


def test_consonance_template_with_utf8_bom(tmp_path: Path) -> None:
    columns = list(layout("consonance").columns) + list(layout("consonance").optional)
    assert columns[:4] == ["Product ID type", "Product ID", "Channel ID", "Sales date"]
    row = dict.fromkeys(columns, "")
    one = {
        **row,
        "Product ID type": "ISBN",
        "Product ID": A,
        "Channel ID": "AMZ",
        "Sales date": "2026-10-05",
        "Sales quantity": "3",
        "Sales value": "29.97",
        "Country code": "GB",
    }
    two = {
        **row,
        "Product ID type": "ISBN",
        "Product ID": B,
        "Channel ID": "AMZ",
        "Sales date": "2026-10-06",
        "Return quantity": "1",
        "Return value": "8.00",
        "Original currency": "USD",
        "Original sales value": "",
        "Original return value": "10.50",
    }
    three = {
        **row,
        "Product ID type": "ASIN",
        "Product ID": "B00TEST",
        "Channel ID": "AMZ",
        "Sales date": "2026-10-06",
        "Sales quantity": "1",
        "Sales value": "1",
    }
    path = text_file(
        tmp_path / "import.csv",
        [columns, *[[r[c] for c in columns] for r in (one, two, three)]],
        encoding="utf-8-sig",
    )
    report, lines, rejections = parse(path, house_currency="GBP")
    assert report.layout.name == "consonance"
    assert [(x.isbn13, x.currency, x.channel_id) for x in lines] == [
        (A, "GBP", "AMZ"),
        (B, "USD", "AMZ"),
    ]
    assert lines[1].return_value == Decimal("10.50")
    assert rejections == [
        Rejection(4, "Product ID type", "product ID type 'ASIN': only ISBNs are matched")
    ]
    assert report.totals()["GBP"]["value"] == Decimal("29.97")
    assert report.totals()["USD"]["return_quantity"] == 1
    assert reconciled(report) is None  # the template states no totals


def test_google_play_utf16_quoted_tsv_with_a_refund(tmp_path: Path) -> None:
    google = layout("google-play")
    base = dict.fromkeys(google.columns, "")
    base.update(
        {
            "Product": "Single Purchase",
            "Preorder": "None",
            "Imprint Name": "Imprint",
            "Title": "A title, with comma",
            "Author": "A. Author,B. Author",
            "List Price Currency": "EUR",
            "List Price [tax exclusive]": "9.99",
            "Country of Sale": "FR",
            "Publisher Revenue %": "70.0%",
        }
    )
    sale = {
        **base,
        "Transaction Date": "10/3/26",
        "Id": "ID:1",
        "Type": "Sale",
        "Qty": "2",
        "Primary ISBN": A,
        "Publisher Revenue": "13.99",
    }
    refund = {
        **base,
        "Transaction Date": "10/9/26",
        "Id": "ID:2",
        "Type": "Refund",
        "Qty": "-1",
        "Primary ISBN": A,
        "Publisher Revenue": "-6.99",
    }
    path = tmp_path / "GoogleSalesTransactionReport_2026_10.csv"
    text_file(
        path,
        [list(google.columns), *[[r[c] for c in google.columns] for r in (sale, refund)]],
        delimiter="\t",
        encoding="utf-16",  # with BOM
        quoting=csv.QUOTE_ALL,
    )
    report, lines, rejections = parse(path, channel_for=lambda ch, terr: f"{ch}/{terr}")
    assert rejections == []
    assert report.layout.key == "google-play 2020"
    assert (report.facts.period_from, report.facts.period_to) == (
        dt.date(2026, 10, 1),
        dt.date(2026, 10, 31),
    )  # from the file name
    assert lines[0].quantity == 2
    assert lines[0].transaction_id == "ID:1"
    assert lines[0].channel_id == "Google Play/FR"
    assert lines[1].quantity == 0
    assert (lines[1].return_quantity, lines[1].return_value) == (1, Decimal("6.99"))
    assert report.totals() == {
        "EUR": {
            "quantity": Decimal(2),
            "value": Decimal("13.99"),
            "return_quantity": Decimal(1),
            "return_value": Decimal("6.99"),
        }
    }


def test_google_sample_invalid_isbns_are_rejected_by_line() -> None:
    path = SALES_SAMPLES / "google-play-sales-transaction-report-2020-02.tsv"
    report, lines, rejections = parse(path)
    assert report.layout.name == "google-play"
    assert lines == []
    assert [r.line for r in rejections] == [2, 3, 4, 5]
    assert {r.column for r in rejections} == {"Primary ISBN"}
    assert "8297917046777" in rejections[0].reason
    assert "check digit" in rejections[1].reason
    assert report.lines_read == 4


def test_amazon_kdp_with_padded_header_and_isbn10(tmp_path: Path) -> None:
    kdp = layout("amazon-kdp")
    header = [f" {c}  " for c in kdp.columns]
    row = dict.fromkeys(kdp.columns, "")
    row.update(
        {
            "Royalty Date": "2026-10-31",
            "Title": "T",
            "Marketplace": "Amazon.co.uk",
            "Royalty Type": "70%",
            "Transaction Type": "Standard",
            "Currency": "GBP",
        }
    )
    print_sale = {
        **row,
        "ASIN": D10,
        "Units Sold": "3",
        "Units Refunded": "1",
        "Net Units Sold": "2",
        "Royalty": "12.40",
    }
    ebook = {
        **row,
        "ASIN": "B00ABCDEFG",
        "Units Sold": "1",
        "Units Refunded": "0",
        "Net Units Sold": "1",
        "Royalty": "2.10",
    }
    path = text_file(
        tmp_path / "kdp.csv",
        [header, *[[r[c] for c in kdp.columns] for r in (print_sale, ebook)]],
    )
    report, lines, rejections = parse(path)
    assert report.layout.name == "amazon-kdp"
    assert lines[0].isbn13 == D  # the ISBN-10 converted
    assert (lines[0].quantity, lines[0].return_quantity) == (3, 1)
    assert lines[0].channel == "Amazon.co.uk"
    assert rejections[0].line == 3
    assert "ASIN" in rejections[0].reason


def test_amazon_kdp_ebook_asin_read_as_the_known_products_isbn(tmp_path: Path) -> None:
    kdp = layout("amazon-kdp")
    row = dict.fromkeys(kdp.columns, "")
    row.update(
        {
            "Royalty Date": "2026-10-31",
            "Title": "T",
            "Marketplace": "Amazon.com",
            "Currency": "USD",
            "Units Sold": "2",
            "Units Refunded": "0",
            "Net Units Sold": "2",
            "Royalty": "4.20",
        }
    )
    asins = ("b0000000aa", "B0NOTKNOWN", "B0000000BB", "B0000000AA")  # known, unknown, no ISBN
    path = text_file(
        tmp_path / "kdp.csv",
        [list(kdp.columns), *[[{**row, "ASIN": a}[c] for c in kdp.columns] for a in asins]],
    )
    known = {"B0000000AA": KnownAsin(7, A), "B0000000BB": KnownAsin(8, None)}
    report, lines, rejections = parse(path, known_isbns={A}, known_asins=known)
    assert [(x.line, x.isbn13, x.quantity) for x in lines] == [(2, A, 2), (5, A, 2)]
    assert [(r.line, r.column) for r in rejections] == [(3, "ASIN"), (4, "ASIN")]
    assert rejections[0].reason == "ASIN B0NOTKNOWN is no product in Consonance (its asin field)"
    assert rejections[1].reason.startswith("ASIN B0000000BB is product 8's, which has no ISBN-13")
    assert report.totals()["USD"]["quantity"] == 4
    # without the products' ASINs, an ASIN line is rejected as before
    _, lines, rejections = parse(path, known_isbns={A})
    assert lines == []
    assert all("is an ASIN, not an ISBN" in r.reason for r in rejections)


def test_amazon_vendor_legacy_xls_with_excel_float_isbn(tmp_path: Path) -> None:
    columns = layout("amazon-vendor").columns
    book = xlwt.Workbook()
    sheet = book.add_sheet("Report")
    rows: list[list[object]] = [
        list(columns),
        [float(A), "10/02/2026", 9.99, "USD", 4, 27.97, "USD"],
        [float(B), "10/15/2026", 5.0, "USD", -1, -3.50, "USD"],
    ]
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            sheet.write(r, c, value)
    path = tmp_path / "DigitalEBooksPaymentReport_2026_10.xls"
    book.save(str(path))
    report, lines, rejections = parse(path)
    assert rejections == []
    assert [x.isbn13 for x in lines] == [A, B]
    assert lines[0].list_price == Decimal("9.99")
    assert (lines[1].quantity, lines[1].return_quantity) == (0, 1)
    assert lines[1].return_value == Decimal("3.5")
    assert report.totals()["USD"]["value"] == Decimal("27.97")


def _lsi_row(columns: Sequence[str], **cells: str) -> list[str]:
    return [cells.get(c, "") for c in columns]


def test_lightning_source_cp1252_tsv_named_xls_with_cr_and_total_row(tmp_path: Path) -> None:
    columns = layout("lightning-source", "compensation").columns
    rows = [
        list(columns),
        _lsi_row(
            columns,
            parent_isbn=A,
            title="Caf\u00e9 \u2013 Cr\u00e8me",
            list_price="12.99",
            reporting_currency_code="GBP",
            period_name="OCT-26",
            market="UK",
            PTD_net_quantity="5",
            PTD_net_pub_comp="21.50",
        ),
        _lsi_row(
            columns,
            parent_isbn=B,
            title="Return",
            list_price="9.99",
            reporting_currency_code="GBP",
            period_name="OCT-26",
            market="UK",
            PTD_net_quantity="-2",
            PTD_net_pub_comp="-7.25",
        ),
        _lsi_row(
            columns,
            title="Total",
            reporting_currency_code="GBP",
            PTD_net_quantity="3",
            PTD_net_pub_comp="14.25",
        ),
    ]
    path = text_file(
        tmp_path / "sales_comp_2026UK.xls", rows, delimiter="\t", encoding="cp1252", newline="\r"
    )
    report, lines, rejections = parse(path, channel_for=lambda ch, terr: "LSI")
    assert rejections == []
    assert report.layout.key == "lightning-source compensation"
    assert (report.facts.period_from, report.facts.period_to) == (
        dt.date(2026, 10, 1),
        dt.date(2026, 10, 31),
    )  # from period_name
    assert [x.sales_date for x in lines] == [dt.date(2026, 10, 31)] * 2
    assert (lines[1].return_quantity, lines[1].return_value) == (2, Decimal("7.25"))
    assert report.facts.stated_totals == {
        "GBP": {"quantity": Decimal(3), "value": Decimal("14.25")}
    }
    assert reconciled(report) is True


def test_lightning_source_total_that_does_not_add_up_is_a_mismatch(tmp_path: Path) -> None:
    columns = layout("lightning-source", "sales_comp").columns
    rows = [
        list(columns),
        _lsi_row(
            columns,
            parent_isbn=A,
            title="t",
            list_price="1",
            reporting_currency_code="USD",
            PTD_net_quantity="5",
            PTD_net_pub_comp="21.50",
        ),
        _lsi_row(columns, title="Total", PTD_net_quantity="5", PTD_net_pub_comp="21.49"),
    ]
    path = text_file(tmp_path / "lsi_sales_comp_2026-10.txt", rows, delimiter="\t")
    report, lines, _ = parse(path)
    assert len(lines) == 1
    ok, problems = report.reconciliation()
    assert ok is False
    assert problems == [
        "USD net value: the lines sum to 21.50, the file states 21.49 (difference 0.01)"
    ]


def test_lightning_source_without_period_is_refused_unless_given(tmp_path: Path) -> None:
    columns = layout("lightning-source", "sales_comp").columns
    rows = [
        list(columns),
        _lsi_row(
            columns,
            parent_isbn=A,
            title="t",
            list_price="1",
            reporting_currency_code="USD",
            PTD_net_quantity="1",
            PTD_net_pub_comp="1.00",
        ),
    ]
    path = text_file(tmp_path / "sales_comp_2026US.txt", rows, delimiter="\t")
    with pytest.raises(ReportRefused) as caught:
        parse(path)
    assert caught.value.reason_code == "no-period"
    _report, lines, _ = parse(path, period=(dt.date(2026, 9, 1), dt.date(2026, 9, 30)))
    assert lines[0].sales_date == dt.date(2026, 9, 30)


def test_coresource_with_trailer_row(tmp_path: Path) -> None:
    columns = layout("coresource").columns
    rows = [
        list(columns),
        [
            "10/01/2026",
            "Barnes & Noble",
            "Wholesale",
            "US",
            A,
            "T",
            "USD",
            "14.99",
            "3",
            "1",
            "2",
            "18.00",
        ],
        ["10/20/2026", "Google", "Wholesale", "CA", B, "T2", "USD", "9.99", "1", "0", "1", "5.00"],
        ["Total", "", "", "", "", "", "USD", "", "4", "1", "3", "23.00"],
    ]
    path = text_file(tmp_path / "CoreSource_Wholesale_USD_2026-10.csv", rows)
    report, lines, rejections = parse(path)
    assert rejections == []
    assert [x.channel for x in lines] == ["Barnes & Noble", "Google"]
    assert report.facts.business_model == "wholesale"
    assert (lines[0].quantity, lines[0].return_quantity) == (3, 1)
    assert report.facts.stated_totals["USD"] == {"quantity": Decimal(3), "value": Decimal("23.00")}
    assert reconciled(report) is True


def test_nbni_cp1252_with_excel_float_ean_and_period_given(tmp_path: Path) -> None:
    rows = [
        ["EAN13", "Title", "Stg Price", "NetQty-m", "Net Value-m"],
        ["9.78030640615700E+12", "\u00a3 Guide \u2019s", "12.99", "4", "31.18"],
        [B, "Other", "7.99", "-1", "-4.80"],
        ["", "Total", "", "3", "26.38"],
    ]
    path = text_file(tmp_path / "FullTitleSales.csv", rows, encoding="cp1252")
    report, lines, rejections = parse(path, period=(dt.date(2026, 10, 1), dt.date(2026, 10, 31)))
    assert rejections == []
    assert [x.isbn13 for x in lines] == [A, B]
    assert {x.currency for x in lines} == {"GBP"}
    assert reconciled(report) is True


def test_apple_books_fiscal_period_returns_and_trailer_block(tmp_path: Path) -> None:
    apple = layout("apple-books")
    base = dict.fromkeys(apple.columns, "")
    base.update(
        {
            "Start Date": "09/28/2026",
            "End Date": "10/31/2026",
            "Partner Share Currency": "AUD",
            "Country Of Sale": "AU",
            "Customer Currency": "AUD",
            "Customer Price": "14.99",
        }
    )
    sale = {
        **base,
        "Vendor Identifier": A + "_EPUB",
        "Quantity": "3",
        "Partner Share": "6.00",
        "Extended Partner Share": "18.00",
        "Sales or Return": "S",
    }
    ret = {
        **base,
        "Vendor Identifier": B,
        "Quantity": "-1",
        "Partner Share": "5.00",
        "Extended Partner Share": "-5.00",
        "Sales or Return": "R",
    }
    rows = [
        list(apple.columns),
        *[[r[c] for c in apple.columns] for r in (sale, ret)],
        [],
        ["Total_Rows", "2"],
        ["Total_Amount", "13.00"],
        ["Total_Units", "2"],
        [],
        ["Country Of Sale", "Partner Share Currency", "Quantity", "Extended Partner Share"],
        ["AU", "AUD", "2", "13.00"],
    ]
    path = text_file(tmp_path / "apple_finance_AU.txt", rows, delimiter="\t")
    report, lines, rejections = parse(path)
    assert rejections == []
    assert (report.facts.period_from, report.facts.period_to) == (
        dt.date(2026, 9, 28),
        dt.date(2026, 10, 31),
    )  # Apple's fiscal month, not the calendar month
    assert [x.isbn13 for x in lines] == [A, B]
    assert (lines[1].return_quantity, lines[1].return_value) == (1, Decimal("5.00"))
    assert report.facts.stated_totals == {
        "AUD": {"value": Decimal("13.00"), "quantity": Decimal(2)}
    }
    assert reconciled(report) is True


def test_kobo_store_xlsx_details_sheet_float_isbn_and_refund(tmp_path: Path) -> None:
    kobo = layout("kobo", "store")
    base: dict[str, object] = dict.fromkeys(kobo.columns, "")
    base.update(
        {"Country": "CA", "LP Currency": "CAD", "Payable Currency": "CAD", "List Price": 12.99}
    )
    sale = {
        **base,
        "Date": dt.datetime(2026, 10, 4),
        "eISBN": float(A),
        "Total Qty": 2,
        "Net Due (Payable Currency)": 15.58,
    }
    refund = {
        **base,
        "Date": dt.datetime(2026, 10, 7),
        "eISBN": float(A),
        "Total Qty": -1,
        "Net Due (Payable Currency)": -7.79,
        "Refund Reason": "customer",
    }
    path = xlsx_file(
        tmp_path / "sales_invoice_PUB_123.xlsx",
        [list(kobo.columns), *[[r[c] for c in kobo.columns] for r in (sale, refund)]],
    )
    report, lines, rejections = parse(path, period=(dt.date(2026, 10, 1), dt.date(2026, 10, 31)))
    assert rejections == []
    assert report.layout.key == "kobo store"
    assert [x.isbn13 for x in lines] == [A, A]
    assert lines[0].sales_date == dt.date(2026, 10, 4)
    assert (lines[1].return_quantity, lines[1].return_value) == (1, Decimal("7.79"))


def test_kobo_plus_xlsx_with_padded_header_cells(tmp_path: Path) -> None:
    plus = layout("kobo-plus")
    header = [f"  {c} " for c in plus.columns]
    row: dict[str, object] = dict.fromkeys(plus.columns, "")
    row.update(
        {
            "Read Period": "2026-10",
            "eISBN": A,
            "Region": "NL",
            "Reads": 7,
            "Payable Currency": "EUR",
            "Total publisher revenue share in payable currency ($)": 3.21,
        }
    )
    path = xlsx_file(
        tmp_path / "sales_invoice_SUBS_9.xlsx", [header, [row[c] for c in plus.columns]]
    )
    report, lines, rejections = parse(path)
    assert rejections == []
    assert report.layout.name == "kobo-plus"
    assert report.facts.business_model == "subscription"
    assert lines[0].quantity == 7
    assert lines[0].sales_date == dt.date(2026, 10, 1)


def _bisg_rows() -> list[dict[str, str]]:
    common = {
        "ReportID": "R-77",
        "ReportDateTime": "2026-11-02T10:00:00",
        "MessageFunction": "Original",
        "SalesReportType": "Sales",
        "ReportPeriodFrom": "2026-10-01",
        "ReportPeriodTo": "2026-10-31",
        "ReportingCurrency": "USD",
        "ClassOfTrade": "Retail",
        "SalesTerritory": "US",
        "MainProductIDType": "ISBN13",
        "ProductTitle": "T",
        "ProductAuthor": "A",
        "ProductFormat": "EPUB",
        "FeeType1": "",
        "FeeAmount1": "",
        "FeeType2": "",
        "FeeAmount2": "",
        "FeeType3": "",
        "FeeAmount3": "",
    }
    return [
        {
            **common,
            "LineItemID": "1",
            "TransactionDateTime": "2026-10-03T12:00:00",
            "MainProductID": A,
            "UnitPrice": "10.00",
            "GrossSoldQuantity": "4",
            "ReturnedRefundedQuantity": "1",
            "NetSoldQuantity": "3",
            "NetValueBeforeFees": "30.00",
            "ProceedsOfSaleDuePublisher": "15.00",
        },
        {
            **common,
            "LineItemID": "2",
            "TransactionDateTime": "2026-10-11T12:00:00",
            "MainProductID": "978-1-86197-271-2",
            "UnitPrice": "8.00",
            "GrossSoldQuantity": "2",
            "ReturnedRefundedQuantity": "0",
            "NetSoldQuantity": "2",
            "NetValueBeforeFees": "16.00",
            "ProceedsOfSaleDuePublisher": "8.00",
        },
    ]


def test_bisg_flat_file_with_total_row(tmp_path: Path) -> None:
    columns = layout("bisg").columns
    rows = [[r.get(c, "") for c in columns] for r in _bisg_rows()]
    total = dict.fromkeys(columns, "")
    total.update(
        {
            "ReportID": "Total",
            "GrossSoldQuantity": "6",
            "ReturnedRefundedQuantity": "1",
            "ProceedsOfSaleDuePublisher": "23.00",
        }
    )
    path = text_file(
        tmp_path / "bisg.txt", [list(columns), *rows, list(total.values())], delimiter="|"
    )
    report, lines, rejections = parse(path)
    assert rejections == []
    assert [x.isbn13 for x in lines] == [A, B]  # hyphens removed
    assert (lines[0].quantity, lines[0].return_quantity) == (4, 1)
    assert report.facts.stated_totals["USD"] == {"quantity": Decimal(5), "value": Decimal("23.00")}
    assert reconciled(report) is True


def test_editx_xml_parses_as_the_bisg_layout(tmp_path: Path) -> None:
    rows = _bisg_rows()
    header_fields = [
        "ReportID",
        "ReportDateTime",
        "MessageFunction",
        "SalesReportType",
        "ReportPeriodFrom",
        "ReportPeriodTo",
        "ReportingCurrency",
    ]
    head = "".join(f"<{k}>{rows[0][k]}</{k}>" for k in header_fields)
    items = "".join(
        "<LineItem>"
        + "".join(f"<{k}>{v}</{k}>" for k, v in r.items() if k not in header_fields)
        + "</LineItem>"
        for r in rows
    )
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?><SalesReport version="1.1">'
        f"<Header>{head}</Header>{items}"
        "<Summary><TotalGrossSoldQuantity>6</TotalGrossSoldQuantity>"
        "<TotalReturnedRefundedQuantity>1</TotalReturnedRefundedQuantity>"
        "<TotalProceedsOfSaleDuePublisher>23.00</TotalProceedsOfSaleDuePublisher></Summary>"
        "</SalesReport>"
    )
    path = tmp_path / "editx_sales.xml"
    path.write_text(xml)
    report, lines, rejections = parse(path)
    assert rejections == []
    assert report.layout.name == "bisg"
    assert len(lines) == 2
    assert reconciled(report) is True


def test_generic_layout_mapped_in_config(tmp_path: Path) -> None:
    generic = GenericLayout(
        columns={
            "isbn": "EAN",
            "date": "Datum",
            "quantity": "Stück",
            "value": "Netto",
            "territory": "Land",
        },
        date_format="%d.%m.%Y",
        currency="EUR",
    )
    rows = [
        ["EAN", "Datum", "Stück", "Netto", "Land"],
        [A, "03.10.2026", "2", "11.90", "DE"],
        [B, "12.10.2026", "-1", "-5.95", "AT"],
        [BAD, "12.10.2026", "1", "5.95", "AT"],
    ]
    path = text_file(tmp_path / "bookwire_2026-10.csv", rows, delimiter=";")
    report, lines, rejections = parse(path, layout="generic", generic=generic)
    assert report.layout.name == "generic"
    assert [(x.isbn13, x.currency, x.territory) for x in lines] == [
        (A, "EUR", "DE"),
        (B, "EUR", "AT"),
    ]
    assert rejections == [Rejection(4, "EAN", f"ISBN {BAD!r}: the check digit is wrong")]


def test_bom_is_not_part_of_the_first_header_cell(tmp_path: Path) -> None:
    # a UTF-8 BOM written by hand before a latin-1 header: read as CP1252, BOM bytes kept
    columns = list(layout("nbni").columns)
    path = tmp_path / "x_2026-10.csv"
    path.write_bytes(codecs.BOM_UTF8 + ",".join(columns).encode() + b"\n" + f"{A},1,1,1\n".encode())
    report, lines, _ = parse(path)
    assert report.layout.name == "nbni"
    assert len(lines) == 1


def test_reconciliation_is_per_currency_to_the_cent(tmp_path: Path) -> None:
    generic = GenericLayout(
        columns={"isbn": "ISBN", "quantity": "Units", "value": "Net", "currency": "Currency"},
    )
    rows = [
        ["ISBN", "Units", "Net", "Currency"],
        [A, "2", "10.005", "USD"],
        [B, "1", "4.50", "EUR"],
        [BAD, "1", "1.00", "EUR"],  # rejected, still in the partner's EUR total
        [A, "-1", "-5.00", "USD"],
        ["Total", "1", "5.00", "USD"],
        ["Total", "2", "5.51", "EUR"],
    ]
    path = text_file(tmp_path / "multi_2026-10.csv", rows)
    report, lines, rejections = parse(path, generic=generic)
    assert len(lines) == 3
    assert [r.line for r in rejections] == [4]
    assert report.totals()["EUR"]["value"] == Decimal("4.50")  # accepted lines only
    assert report.facts.currencies == {"USD", "EUR"}
    ok, problems = report.reconciliation()
    assert ok is False
    # USD 5.005 is 5.00 to the cent; EUR lines read 5.50 against 5.51
    assert problems == [
        "EUR net value: the lines sum to 5.50, the file states 5.51 (difference -0.01)"
    ]


def test_lightning_source_line_without_isbn_mid_file_is_a_line_not_the_total(
    tmp_path: Path,
) -> None:
    columns = layout("lightning-source", "sales_comp").columns
    rows = [
        list(columns),
        _lsi_row(
            columns,
            parent_isbn=A,
            title="a",
            list_price="1",
            reporting_currency_code="USD",
            PTD_net_quantity="2",
            PTD_net_pub_comp="4.00",
        ),
        _lsi_row(
            columns,
            parent_isbn="",
            title="lost",
            list_price="1",
            reporting_currency_code="USD",
            PTD_net_quantity="1",
            PTD_net_pub_comp="2.00",
        ),
        _lsi_row(
            columns,
            parent_isbn=B,
            title="b",
            list_price="1",
            reporting_currency_code="USD",
            PTD_net_quantity="3",
            PTD_net_pub_comp="6.00",
        ),
        _lsi_row(columns, title="", PTD_net_quantity="6", PTD_net_pub_comp="12.00"),
    ]
    path = text_file(tmp_path / "lsi_sales_comp_2026-10.txt", rows, delimiter="\t")
    report, lines, rejections = parse(path)
    # the row without an ISBN is followed by a line: it is a line (rejected), not the total
    assert [x.isbn13 for x in lines] == [A, B]
    assert [(r.line, r.column, r.reason) for r in rejections] == [(3, "parent_isbn", "no ISBN")]
    assert report.lines_read == 3
    assert report.facts.stated_totals == {
        "USD": {"quantity": Decimal(6), "value": Decimal("12.00")}
    }
    assert reconciled(report) is True


def test_lines_after_a_total_row_are_read_per_currency_block(tmp_path: Path) -> None:
    columns = layout("coresource").columns
    rows = [
        list(columns),
        ["10/01/2026", "Kobo", "Agency", "US", A, "T", "USD", "9.99", "2", "0", "2", "10.00"],
        ["Total", "", "", "", "", "", "USD", "", "2", "0", "2", "10.00"],
        ["10/02/2026", "Kobo", "Agency", "DE", B, "T", "EUR", "9.99", "1", "0", "1", "4.00"],
        ["10/03/2026", "Kobo", "Agency", "DE", A, "T", "EUR", "9.99", "1", "0", "1", "4.00"],
        ["Total", "", "", "", "", "", "EUR", "", "2", "0", "2", "8.00"],
    ]
    path = text_file(tmp_path / "CoreSource_Agency_2026-10.csv", rows)
    report, lines, rejections = parse(path)
    assert rejections == []
    assert [(x.isbn13, x.currency) for x in lines] == [(A, "USD"), (B, "EUR"), (A, "EUR")]
    assert report.facts.stated_totals == {
        "USD": {"quantity": Decimal(2), "value": Decimal("10.00")},
        "EUR": {"quantity": Decimal(2), "value": Decimal("8.00")},
    }
    assert reconciled(report) is True


def test_generic_layout_with_decimal_comma(tmp_path: Path) -> None:
    generic = GenericLayout(
        columns={"isbn": "EAN", "quantity": "Menge", "value": "Umsatz"},
        currency="EUR",
        decimal_comma=True,
    )
    rows = [
        ["EAN", "Menge", "Umsatz"],
        [A, "1000", "1.234,50"],
        [B, "-1", "-7,25"],
        ["Summe", "", ""],
        ["Total", "999", "1.227,25"],
    ]
    path = text_file(tmp_path / "verlag_2026-10.csv", rows, delimiter=";", encoding="cp1252")
    report, lines, rejections = parse(path, layout="generic", generic=generic)
    assert [r.line for r in rejections] == [4]  # "Summe" is no ISBN: a line, rejected
    assert [x.value for x in lines] == [Decimal("1234.50"), Decimal(0)]
    assert lines[1].return_value == Decimal("7.25")
    assert reconciled(report) is True
