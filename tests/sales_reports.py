"""Sales reports built in test code for the sales_in flow's integration tests: the Amazon
Vendor Central digital payment report's published columns, synthetic rows (valid ISBN-13s,
October 2026), streamed to disk so a 200,000-line report costs no memory."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

VENDOR_HEADER = (
    "Digital ISBN",
    "Invoice Date",
    "Publisher Price",
    "Price Currency",
    "Net Units",
    "Payment Amount",
    "Payment Amount Currency",
)


def isbn13(n: int) -> str:
    """The ``n``-th synthetic ISBN-13 (978-1-..., a valid check digit)."""
    body = f"9781{n % 10**8:08d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


@dataclass(frozen=True, slots=True)
class Row:
    """One sale: the ``n``-th line of the synthetic month (distinct from every other ``n``)."""

    n: int

    @property
    def isbn(self) -> str:
        return isbn13(self.n % 997)

    @property
    def day(self) -> int:
        return 1 + self.n % 28

    @property
    def units(self) -> int:
        return 1 + self.n // (997 * 28) % 50

    @property
    def amount(self) -> Decimal:
        return Decimal(self.units) * Decimal("4.99") + Decimal(self.n % 97) / 100

    def cells(self) -> list[str]:
        return [
            self.isbn,
            f"10/{self.day:02d}/2026",
            "9.99",
            "USD",
            str(self.units),
            str(self.amount),
            "USD",
        ]


def write_vendor_report(path: Path, rows: Iterable[Row], *, age_s: float = 30.0) -> Path:
    """The Amazon Vendor payment report (CSV) of ``rows`` at ``path``, its mtime ``age_s``
    in the past (a finished upload)."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(VENDOR_HEADER) + "\r\n")
        for row in rows:
            out.write(",".join(row.cells()) + "\r\n")
    return aged(path, age_s)


def aged(path: Path, age_s: float = 30.0) -> Path:
    """``path`` with its mtime ``age_s`` in the past: a finished upload, taken at once."""
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path
