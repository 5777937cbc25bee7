"""CSV and XLSX metadata exports: configurable columns, filters, formula guard."""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import date
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from consonance_sftp.formats.onix import RecipientRules
from consonance_sftp.formats.onix.synthetic import synthetic_works
from consonance_sftp.formats.spreadsheet import DEFAULT_COLUMNS, export_csv, export_xlsx


def test_csv_has_the_configured_columns_and_one_row_per_product() -> None:
    works = list(synthetic_works(12))
    sink = io.StringIO(newline="")

    count = export_csv(
        works, sink, [("ISBN", "isbn13"), "title", "authors", "bisac", ("GBP", "price:GBP:02")]
    )

    table = list(csv.reader(io.StringIO(sink.getvalue())))
    assert count == 12 == len(table) - 1
    assert table[0] == ["ISBN", "title", "authors", "bisac", "GBP"]
    first_work, first = works[0], works[0].products[0]
    gbp = next(p.amount for p in first.prices if p.currency == "GBP")
    assert table[1] == [
        first.isbn13,
        first.title,
        first_work.contributions[0].contributor.name,
        next(s.code for s in first_work.subjects if s.scheme.value == "BISAC"),
        str(gbp),
    ]


def test_xlsx_streams_typed_cells_and_applies_recipient_rules() -> None:
    works = list(synthetic_works(30))
    rules = RecipientRules(product_forms=frozenset({"DG"}), currencies=frozenset({"USD"}))
    expected = [p for w in works for p in w.products if p.product_form == "DG"]
    target = io.BytesIO()

    count = export_xlsx(works, target, DEFAULT_COLUMNS, rules=rules)

    sheet = load_workbook(io.BytesIO(target.getvalue()), read_only=True)["Products"]
    table = [list(r) for r in sheet.iter_rows(values_only=True)]
    header = table[0]
    assert count == len(expected) == len(table) - 1
    isbn, form, when = (
        header.index("ISBN"),
        header.index("Format"),
        header.index("Publication date"),
    )
    gbp, usd = header.index("Price GBP"), header.index("Price USD")
    assert [r[isbn] for r in table[1:]] == [p.isbn13 for p in expected]
    assert {r[form] for r in table[1:]} == {"DG"}
    assert all(r[gbp] is None for r in table[1:])  # trimmed by the recipient's currencies
    assert table[1][usd] == pytest.approx(float(expected[0].prices[1].amount))
    assert table[1][when].date() == expected[0].publication_date


def test_formula_like_text_is_neutralised() -> None:
    work = next(iter(synthetic_works(1)))
    work = dataclasses.replace(
        work,
        products=(dataclasses.replace(work.products[0], title='=HYPERLINK("http://x")'),),
    )
    sink = io.StringIO(newline="")
    export_csv([work], sink, ["title", "publication_date", "price:GBP"])
    row = list(csv.reader(io.StringIO(sink.getvalue())))[1]
    assert row[0].startswith("'=")
    assert date.fromisoformat(row[1]) == work.products[0].publication_date
    assert Decimal(row[2]) == work.products[0].prices[0].amount


def test_unknown_columns_are_named() -> None:
    with pytest.raises(ValueError, match="colour, price:XX"):
        export_csv([], io.StringIO(), ["title", "colour", "price:XX"])
