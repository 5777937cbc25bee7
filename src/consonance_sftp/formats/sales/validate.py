"""The checks every sales line goes through, made cheap for million-line reports.

A report repeats the same few thousand ISBNs and the same thirty dates: ISBN checks
(python-stdnum) and date parsing are memoised per distinct cell text, so each runs once per
value, not once per line. Numbers are checked with one precompiled pattern before conversion
instead of a try/except per cell; ``Decimal`` is used for money only, quantities are ``int``.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pycountry
from stdnum import isbn as stdnum_isbn
from stdnum.exceptions import (
    InvalidChecksum,
    InvalidComponent,
    InvalidFormat,
    InvalidLength,
    ValidationError,
)

CURRENCIES: frozenset[str] = frozenset(c.alpha_3 for c in pycountry.currencies)
"""ISO 4217 alphabetic codes (pycountry's list of current currencies)."""

MEMO_LIMIT = 100_000
"""Distinct cells memoised per check (a catalogue has far fewer ISBNs; past it, checked anew)."""

_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_GROUPED = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")  # 1,234.50
_EXCEL_FLOAT = re.compile(r"\d(?:\.\d+)?[eE]\+?\d+|\d+\.0+")  # 9.78030640615E+12, …157.0


def money(cell: str) -> Decimal | None:
    """A money cell as ``Decimal`` (``1,234.50`` and ``(12.50)`` accepted), ``Decimal(0)``
    for an empty cell, None when it is not a number."""
    text = cell.strip()
    if not text:
        return Decimal(0)
    if _DECIMAL.fullmatch(text):
        return Decimal(text)
    if text.startswith("(") and text.endswith(")"):  # accounting negative
        inner = money(text[1:-1])
        return None if inner is None else -inner
    if _GROUPED.fullmatch(text):
        return Decimal(text.replace(",", ""))
    return None


def money_decimal_comma(cell: str) -> Decimal | None:
    """``money`` for files written with a decimal comma (``1.234,50``, ``-7,25``)."""
    return money(cell.replace(".", "").replace(",", "."))


def quantity(cell: str) -> int | None:
    """A count cell as ``int`` (``3``, ``-1``, ``2.0``), 0 for an empty cell, None when it is
    not a whole number."""
    text = cell.strip()
    if text.isdigit():
        return int(text)
    if not text:
        return 0
    if text[0] in "+-" and text[1:].isdigit():
        return int(text)
    value = money(text)
    if value is None or value != value.to_integral_value():
        return None
    return int(value)


class Isbns:
    """ISBN cells to ISBN-13, memoised: ``check(cell)`` gives ``(isbn13, None)`` or
    ``(None, reason)``. ISBN-10s are converted; Excel floats (``9.78030640615E+12``,
    ``9780306406157.0``) and hyphens are undone first."""

    def __init__(self, *, truncate: int | None = None) -> None:
        # cell -> check's answer; read directly by the parser's per-line path
        self.memo: dict[str, tuple[str | None, str | None]] = {}
        self._truncate = truncate

    def check(self, cell: str) -> tuple[str | None, str | None]:
        found = self.memo.get(cell)
        if found is None:
            found = self._check(cell)
            if len(self.memo) < MEMO_LIMIT:  # bounded: memory stays flat on any file
                self.memo[cell] = found
        return found

    def _check(self, cell: str) -> tuple[str | None, str | None]:
        text = cell.strip().replace("-", "").replace(" ", "")
        if not text:
            return None, "no ISBN"
        if _EXCEL_FLOAT.fullmatch(text):
            number = Decimal(text)
            if number == number.to_integral_value():
                text = str(int(number))  # the float Excel made of a 13-digit ISBN
        if self._truncate is not None:
            text = text[: self._truncate]  # Apple's Vendor Identifier: ISBN + suffix
        if asin_of(text) is not None:
            return None, f"{cell.strip()!r} is an ASIN, not an ISBN"
        try:
            stdnum_isbn.validate(text)
        except InvalidChecksum:
            return None, f"ISBN {cell.strip()!r}: the check digit is wrong"
        except InvalidLength:
            return None, f"{cell.strip()!r} is not an ISBN ({len(text)} characters)"
        except InvalidComponent:
            return None, f"{cell.strip()!r} is not a book EAN (no 978/979 prefix)"
        except InvalidFormat:
            return None, f"{cell.strip()!r} is not an ISBN"
        except ValidationError as exc:
            return None, f"{cell.strip()!r} is not an ISBN ({exc})"
        return stdnum_isbn.to_isbn13(stdnum_isbn.compact(text)), None


def asin_of(cell: str) -> str | None:
    """The Amazon ASIN a cell holds (``B0...``: ``B`` and 9 letters or digits, upper-cased),
    or None. A print book's ASIN is its ISBN-10 and is read as an ISBN instead."""
    text = cell.strip().upper()
    if len(text) == 10 and text[0] == "B" and text.isascii() and text.isalnum():
        return text
    return None


_MONTH_ONLY = frozenset({"%Y-%m", "%b %Y", "%B %Y", "%m/%Y", "%b-%y", "%b-%Y", "%Y%m"})


class Dates:
    """Date cells in one of a layout's formats, memoised per distinct text. Month-only
    formats give the month's first day (``month_end`` gives its last)."""

    def __init__(self, formats: tuple[str, ...]) -> None:
        self._formats = formats
        self._memo: dict[str, dt.date | None] = {}
        self.month_only: set[str] = set()  # cells read with a month-only format

    def parse(self, cell: str) -> dt.date | None:
        if cell in self._memo:
            return self._memo[cell]
        text = cell.strip()
        found: dt.date | None = None
        for fmt in self._formats:
            try:
                found = dt.datetime.strptime(text, fmt).date()
            except ValueError:
                continue
            if fmt in _MONTH_ONLY:
                self.month_only.add(cell)
            break
        else:
            if len(text) > 10 and text[4:5] == "-" and text[10:11] in ("T", " "):
                found = self.parse(text[:10])  # an ISO timestamp: its day
        if len(self._memo) < MEMO_LIMIT:
            self._memo[cell] = found
        return found


def month_end(day: dt.date) -> dt.date:
    following = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return following - dt.timedelta(days=1)


_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def month_period(text: str) -> tuple[dt.date, dt.date]:
    """``YYYY-MM`` as its first and last day; ValueError naming the text otherwise."""
    found = _MONTH.match(text)
    if found is None:
        raise ValueError(f"period {text!r} is not YYYY-MM")
    first = dt.date(int(found[1]), int(found[2]), 1)
    return first, month_end(first)


_FILE_MONTH = re.compile(
    r"(?<!\d)((?:19|20)\d{2})[-_.]?(0[1-9]|1[0-2])(?:[-_.]?(?:0[1-9]|[12]\d|3[01]))?(?!\d)"
)
_ISO_DATES = re.compile(r"(\d{4}-\d{2}-\d{2})\D+(\d{4}-\d{2}-\d{2})")


def period_from_file_name(name: str) -> tuple[dt.date, dt.date] | None:
    """The month a file name names (``…_2020_02.csv``, ``sales-2026-10.tsv``, ``202610``)."""
    match = _FILE_MONTH.search(name)
    if match is None:
        return None
    first = dt.date(int(match[1]), int(match[2]), 1)
    return first, month_end(first)


def period_from_text(text: str) -> tuple[dt.date, dt.date] | None:
    """``2026-10-01 to 2026-10-31`` (JSTOR's ``Reporting_Period``) as two dates."""
    match = _ISO_DATES.search(text)
    if match is None:
        return None
    return dt.date.fromisoformat(match[1]), dt.date.fromisoformat(match[2])
