"""The per-line checks: numbers, ISBNs (checksum, ISBN-10 conversion, Excel floats), dates
and periods, and that the costly ones run once per distinct cell, not once per line."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from stdnum import isbn as stdnum_isbn

from consonance_sftp.formats.sales import validate
from consonance_sftp.formats.sales.validate import (
    CURRENCIES,
    Dates,
    Isbns,
    money,
    period_from_file_name,
    period_from_text,
    quantity,
)


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("12.50", Decimal("12.50")),
        ("-3", Decimal(-3)),
        ("", Decimal(0)),
        (" 1,234.50 ", Decimal("1234.50")),
        ("(7.25)", Decimal("-7.25")),
        ("1e2", Decimal(100)),
        ("12,5", None),
        ("abc", None),
        ("$3", None),
    ],
)
def test_money(cell: str, expected: Decimal | None) -> None:
    assert money(cell) == expected


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("3", 3), ("-1", -1), ("+2", 2), ("", 0), ("2.0", 2), ("2.5", None), ("x", None)],
)
def test_quantity(cell: str, expected: int | None) -> None:
    assert quantity(cell) == expected


@pytest.mark.parametrize(
    ("cell", "isbn13"),
    [
        ("9780306406157", "9780306406157"),
        ("978-0-306-40615-7", "9780306406157"),
        ("0306406152", "9780306406157"),  # ISBN-10 converted
        ("316148410X", "9783161484100"),
        ("9780306406157.0", "9780306406157"),  # Excel float as text
        ("9.780306406157E+12", "9780306406157"),
        ("9.78030640615700E+12", "9780306406157"),
        ("9791090000001", "9791090000001"),
    ],
)
def test_isbn_accepted(cell: str, isbn13: str) -> None:
    assert Isbns().check(cell) == (isbn13, None)


@pytest.mark.parametrize(
    ("cell", "words"),
    [
        ("9780306406158", "check digit"),
        ("8297917046777", "978/979"),
        ("12345", "not an ISBN"),
        ("B00ABCDEFG", "ASIN"),
        ("", "no ISBN"),
    ],
)
def test_isbn_rejected(cell: str, words: str) -> None:
    isbn, reason = Isbns().check(cell)
    assert isbn is None
    assert reason is not None
    assert words in reason


def test_apple_vendor_identifier_is_truncated() -> None:
    assert Isbns(truncate=13).check("9780306406157_EPUB") == ("9780306406157", None)


def test_isbn_check_runs_once_per_distinct_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = stdnum_isbn.validate

    def counting(number: str) -> str:
        calls.append(number)
        return str(real(number))

    monkeypatch.setattr(validate.stdnum_isbn, "validate", counting)
    isbns = Isbns()
    for _ in range(1000):
        assert isbns.check("9780306406157")[0] == "9780306406157"
        assert isbns.check("9780306406158")[0] is None
    assert len(calls) == 2


def test_dates_memoised_and_month_only_formats() -> None:
    dates = Dates(("%m/%d/%y", "%Y-%m"))
    assert dates.parse("2/2/20") == dt.date(2020, 2, 2)
    assert dates.parse("2026-10") == dt.date(2026, 10, 1)
    assert "2026-10" in dates.month_only
    assert dates.parse("nope") is None
    iso = Dates(("%Y-%m-%d",))
    assert iso.parse("2026-10-03T12:00:00") == dt.date(2026, 10, 3)


def test_periods_from_file_names_and_text() -> None:
    assert period_from_file_name("GoogleSalesTransactionReport_2020_02.csv") == (
        dt.date(2020, 2, 1),
        dt.date(2020, 2, 29),
    )
    assert period_from_file_name("sales-202612.tsv") == (
        dt.date(2026, 12, 1),
        dt.date(2026, 12, 31),
    )
    assert period_from_file_name("sales_comp_2023UK.xls") is None
    assert period_from_text("2026-09-01 to 2026-10-31") == (
        dt.date(2026, 9, 1),
        dt.date(2026, 10, 31),
    )


def test_currencies_are_iso_4217() -> None:
    assert {"USD", "EUR", "GBP", "AUD", "CAD", "JPY"} <= CURRENCIES
    assert "XYZ" not in CURRENCIES
    assert "usd" not in CURRENCIES


def test_memos_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "MEMO_LIMIT", 3)
    isbns = Isbns()
    dates = Dates(("%Y-%m-%d",))
    for day in range(1, 10):
        isbns.check(f"97803064061{day:02d}")
        assert dates.parse(f"2026-10-{day:02d}") == dt.date(2026, 10, day)
    assert len(isbns.memo) == 3
    assert len(dates._memo) == 3
    assert dates.parse("2026-10-09") == dt.date(2026, 10, 9)  # past the bound: still right
