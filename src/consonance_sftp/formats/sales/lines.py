"""The records a parsed report yields: sales lines for Consonance's importer, usage lines for
the usage ledger, rejected lines with their reason, and the report's own header facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Literal

ReportKind = Literal["sales", "usage", "market"]
"""``sales``: royalty-bearing, goes to the sales import. ``usage`` (COUNTER, JSTOR, MUSE) and
``market`` (BookScan-style point-of-sale panels) never do."""


# Not frozen: a frozen dataclass sets each field through ``object.__setattr__``, about a quarter
# of parsing a line (bench/sales.py). Nothing hashes a SalesLine or changes one once made.
@dataclass(slots=True, kw_only=True)
class SalesLine:
    """One accepted line of a sales report, in Consonance's terms (its sales-import columns).

    Quantities and values are never negative: a return is ``return_quantity`` /
    ``return_value``, whatever sign the partner used. ``currency`` is the money columns'
    currency (ISO 4217). ``channel`` and ``territory`` are the partner's own words;
    ``channel_id`` is the Consonance channel code the flow's config maps them to.
    ``identity`` is what makes two lines the same sale (the partner's transaction id when the
    layout has one, else every field), without the line number: the sales ledger keys lines
    by it.
    """

    line: int
    isbn13: str
    sales_date: date
    quantity: int = 0
    value: Decimal = Decimal(0)
    return_quantity: int = 0
    return_value: Decimal = Decimal(0)
    currency: str
    list_price: Decimal | None = None
    list_price_currency: str | None = None
    channel: str = ""
    territory: str = ""  # ISO 3166 alpha-2 when the partner gives one
    transaction_id: str = ""
    channel_id: str = ""  # Consonance's channel code, from the flow's channel map

    @property
    def identity(self) -> tuple[str, ...]:
        if self.transaction_id:
            return (self.transaction_id,)
        return (
            self.isbn13,
            self.sales_date.isoformat(),
            str(self.quantity),
            str(self.value),
            str(self.return_quantity),
            str(self.return_value),
            self.currency,
            self.channel,
            self.territory,
            "" if self.list_price is None else str(self.list_price),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageLine:
    """One line of a usage report (COUNTER/IRUS, JSTOR, MUSE): counts, never money."""

    line: int
    isbn13: str
    period_from: date
    period_to: date
    metric: str  # "Total_Item_Requests", "Usage", ...
    count: int
    country: str = ""
    institution: str = ""
    title: str = ""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A line not loaded, and why: ``line`` as a person finds it in the file, ``column`` the
    header of the cell at fault (None: the whole line), ``reason`` one sentence."""

    line: int
    column: str | None
    reason: str


@dataclass(slots=True, kw_only=True)
class ReportFacts:
    """What a report says about itself: its layout, period, currency, business model and own
    totals (trailer rows, summary blocks), filled in while it is parsed."""

    layout: str
    layout_version: str
    kind: ReportKind = "sales"
    period_from: date | None = None
    period_to: date | None = None
    business_model: str = ""  # "agency", "wholesale", "subscription", ... when the layout says
    currencies: set[str] = field(default_factory=set)
    # The file's own totals, per currency: {"USD": {"value": Decimal, "quantity": Decimal}}.
    stated_totals: dict[str, dict[str, Decimal]] = field(default_factory=dict)
