"""Royalty statement periods as publishers name them: ``2026H1``, ``2026Q3``, ``2026-06``,
``2026``: found in a batch's name, and their first and last days."""

from __future__ import annotations

import calendar
import re
from datetime import date

_IN_NAME = re.compile(r"(?<!\d)(\d{4})(?:[-_]?(H[12]|Q[1-4]|\d{2}))?(?!\d)", re.IGNORECASE)
_PERIOD = re.compile(r"(\d{4})(?:(H[12])|(Q[1-4])|-(\d{2}))?")


def period_of(name: str) -> str | None:
    """The period a batch's name carries, normalised (``royalties_2025_h2`` -> ``2025H2``,
    ``statements-2026-02`` -> ``2026-02``); None when it names none."""
    found = _IN_NAME.search(name)
    if found is None or not 1990 <= int(found.group(1)) <= 2100:
        return None
    year, part = found.group(1), found.group(2)
    if part is None:
        return year
    if part.isdigit():
        return f"{year}-{part}" if 1 <= int(part) <= 12 else year
    return f"{year}{part.upper()}"


def period_dates(period: str) -> tuple[date, date]:
    """First and last day of a period (``2026H1``, ``2026Q3``, ``2026-06``, ``2026``)."""
    found = _PERIOD.fullmatch(period)
    if found is None:
        raise ValueError(f"period {period!r} is not YYYY, YYYYH1/H2, YYYYQ1..Q4 or YYYY-MM")
    year = int(found.group(1))
    half, quarter, month = found.group(2), found.group(3), found.group(4)
    if half:
        first, last = (1, 6) if half[1] == "1" else (7, 12)
    elif quarter:
        first = 3 * int(quarter[1]) - 2
        last = first + 2
    elif month:
        first = last = int(month)
        if not 1 <= first <= 12:
            raise ValueError(f"period {period!r}: no month {first}")
    else:
        first, last = 1, 12
    return date(year, first, 1), date(year, last, calendar.monthrange(year, last)[1])
