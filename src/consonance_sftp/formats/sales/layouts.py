"""Every partner layout this service reads, one small declarative spec per layout *version*.

A ``Layout`` names the exact header set of one version of a partner's report (its required
columns, and the optional ones some accounts have), the role of each column it uses, how its
dates are written, how it signs returns and which trailer rows carry the file's own totals.
Recognising a file is a set comparison of its header with each version's; nothing matches a
header by a loose pattern (Consonance's own converter matches ``/Payment Amount*/``, which also
matches ``Payment Amount Currency``). When no version fits, ``header_diff`` names the nearest
one and the columns added, missing or renamed, so a partner's change is an error, not a silent
mis-parse.

Column lists come from published columns, working open-source parsers and public fixtures
(each layout's source: ``docs/reference/sales-layouts.md``). Layouts marked *provisional* in
their ``note`` had no public column list: check them against a pilot publisher's real file and
add a version when it differs.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from consonance_sftp.formats.sales.lines import ReportKind
from consonance_sftp.formats.sales.read import COUNTER_HEADER

Returns = Literal["negative", "columns", "type"]
"""How a layout tells a return: ``negative`` quantities/values in the net columns,
``columns`` separate return columns (``return_quantity``/``return_value`` roles), ``type``
a transaction-type column (``type`` role) whose value is one of ``refund_words``."""

ROLES = frozenset(
    {
        # sales
        "isbn", "date", "quantity", "value", "return_quantity", "return_value", "currency",
        "list_price", "list_price_currency", "channel", "channel_id", "territory",
        "transaction_id", "type", "period_from", "period_to", "period_name", "business_model",
        "product_id_type", "original_currency", "original_value", "original_return_value",
        # usage and market
        "metric", "count", "country", "institution", "title", "year", "month",
    }
)  # fmt: skip
"""Every column role a layout may give (the generic layout's config uses these names)."""

MONTH_COLUMN = re.compile(r"^(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-\d{4}$")
"""JSTOR's usage reports have one column per month of the period (``Jan-2020``)."""


@dataclass(frozen=True)
class Layout:
    """One version of one partner's report layout."""

    name: str  # what config names (``layout = "google-play"``)
    version: str
    title: str  # for people: "Google Play sales transaction report"
    kind: ReportKind
    columns: tuple[str, ...]  # the required header cells, as the partner spells them
    roles: Mapping[str, str]  # role -> header cell
    optional: tuple[str, ...] = ()  # header cells some files have and some do not
    date_formats: tuple[str, ...] = ("%Y-%m-%d",)
    returns: Returns = "negative"
    refund_words: frozenset[str] = frozenset()
    currency: str | None = None  # the money's currency when no column says it
    channel: str = ""  # the partner's channel name when no column gives one
    business_model: str = ""
    trailer_prefixes: tuple[str, ...] = ()  # a row whose first cell starts so ends the lines
    trailer_values: Mapping[str, str] = field(default_factory=dict)  # "Total_Amount": "value"
    total_row_without_isbn: bool = False  # a row with money but no ISBN is the total row
    isbn_length: int | None = None  # Apple's Vendor Identifier: the ISBN is its first 13
    preamble: bool = False  # metadata rows come before the header
    month_columns: bool = False  # JSTOR: one count column per month
    decimal_comma: bool = False  # money written 1.234,50 (continental European files)
    file_name_hint: str = ""  # what the partner's file names contain, for people
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.name} {self.version}"

    @property
    def header_set(self) -> frozenset[str]:
        return frozenset(self.columns)

    def fits(self, header: Iterable[str]) -> bool:
        """True when ``header`` (normalised cells) is exactly this version's header."""
        seen = {h for h in header if h}
        if self.month_columns:
            months = {h for h in seen if MONTH_COLUMN.match(h)}
            if not months:
                return False
            seen -= months
        required = self.header_set
        return required <= seen and seen <= required | set(self.optional)


@dataclass(frozen=True)
class GenericLayout:
    """A partner's own CSV/XLSX layout, mapped column by column in the flow's config.

    ``columns`` maps a role (``isbn``, ``date``, ``quantity``, ``value``, ``currency``,
    ``return_quantity``, ``return_value``, ``territory``, ``channel``, ``list_price``,
    ``transaction_id``...) to the header cell holding it. ``currency`` fixes the currency
    when no column gives it. ``returns``: ``negative`` (signed net columns) or ``columns``
    (separate return columns, mapped as ``return_quantity``/``return_value``)."""

    columns: Mapping[str, str]
    date_format: str = "%Y-%m-%d"
    currency: str | None = None
    returns: Literal["negative", "columns"] = "negative"
    channel: str = ""
    trailer_prefixes: tuple[str, ...] = ("total",)
    name: str = "generic"
    decimal_comma: bool = False  # money written 1.234,50

    def layout(self) -> Layout:
        unknown = set(self.columns) - ROLES
        if unknown:
            raise ValueError(f"unknown column roles: {', '.join(sorted(unknown))}")
        for needed in ("isbn", "quantity", "value"):
            if needed not in self.columns:
                raise ValueError(f"the generic layout needs a column for {needed!r}")
        if self.currency is None and "currency" not in self.columns:
            raise ValueError("the generic layout needs a currency column or a fixed currency")
        return Layout(
            name=self.name,
            version="config",
            title="generic layout mapped in config",
            kind="sales",
            columns=tuple(dict.fromkeys(self.columns.values())),
            roles=dict(self.columns),
            date_formats=(self.date_format,),
            returns=self.returns,
            currency=self.currency,
            channel=self.channel,
            trailer_prefixes=self.trailer_prefixes,
            total_row_without_isbn=True,
            decimal_comma=self.decimal_comma,
        )


def normalise_header(cells: Iterable[str]) -> list[str]:
    """Header cells as matched: BOM, padding and doubled inner spaces removed (Kobo pads
    its header cells; Excel exports leave a BOM on the first)."""
    return [" ".join(c.replace("\ufeff", "").split()) for c in cells]


# --- the built-in layouts ------------------------------------------------------------------

CONSONANCE_COLUMNS = (
    "Product ID type", "Product ID", "Channel ID", "Sales date", "List price", "Source",
    "Sales quantity", "Sales value", "Return quantity", "Return value", "Country code",
    "Original currency", "Original sales value", "Original return value",
)  # fmt: skip
"""Consonance's sales-import template, in template order (consonance.app/docs/import-sales)."""

_GOOGLE = (
    "Transaction Date", "Id", "Product", "Type", "Preorder", "Qty", "Primary ISBN",
    "Imprint Name", "Title", "Author", "Original List Price Currency", "Original List Price",
    "List Price Currency", "List Price [tax inclusive]", "List Price [tax exclusive]",
    "Country of Sale", "Publisher Revenue %", "Publisher Revenue", "Payment Currency",
    "Payment Amount", "Currency Conversion Rate",
)  # fmt: skip

_KDP = (
    "Royalty Date", "Title", "Author Name", "ASIN", "Marketplace", "Royalty Type",
    "Transaction Type", "Units Sold", "Units Refunded", "Net Units Sold",
    "Avg. List Price without tax", "Avg. Offer Price without tax", "Avg. File Size (MB)",
    "Avg. Delivery Cost", "Royalty", "Currency",
)  # fmt: skip

_AMAZON_VENDOR = (
    "Digital ISBN", "Invoice Date", "Publisher Price", "Price Currency", "Net Units",
    "Payment Amount", "Payment Amount Currency",
)  # fmt: skip

_LSI_FAMILY = (
    "quantity", "avg_list_price", "extended_list", "avg_discount_%", "extended_discount",
    "avg_wholesale_price", "extended_wholesale", "avg_print_charge", "extended_print_charge",
    "gross_pub_comp", "extended_adjustments", "extended_recovery", "pub_comp",
    "return_quantity", "return_wholesale", "return_charge", "return_total", "net_quantity",
    "net_wholesale", "net_pub_comp",
)  # fmt: skip
_LSI_ROLES = {
    "isbn": "parent_isbn",
    "list_price": "list_price",
    "currency": "reporting_currency_code",
    "quantity": "PTD_net_quantity",
    "value": "PTD_net_pub_comp",
    "period_name": "period_name",
    "territory": "market",
}
_LSI = (
    "publisher_number", "publisher_name", "isbn", "sku", "parent_isbn", "title", "author",
    "page_count", "binding_type", "list_price", "wholesale_discount_%",
    *(f"PTD_{c}" for c in _LSI_FAMILY), *(f"YTD_{c}" for c in _LSI_FAMILY),
    "deferral_balance", "reporting_currency_code", "period_name", "returns_flag_value",
    "title_status_flag_value", "market", "sales_category", "isbn_13",
    *(f"customer_flexfield{i}" for i in range(1, 6)),
)  # fmt: skip

_APPLE = (
    "Start Date", "End Date", "UPC", "ISRC/ISBN", "Vendor Identifier", "Quantity",
    "Partner Share", "Extended Partner Share", "Partner Share Currency", "Sales or Return",
    "Apple Identifier", "Artist/Show/Developer/Author", "Title",
    "Label/Studio/Network/Developer/Publisher", "Grid", "Product Type Identifier",
    "ISAN/Other Identifier", "Country Of Sale", "Pre-order Flag", "Promo Code",
    "Customer Price", "Customer Currency",
)  # fmt: skip

_KOBO = (
    "Date", "Country", "State", "Zip Code", "Content Type", "Total Qty", "Refund Reason",
    "DealID", "Publisher Name", "Imprint", "eISBN", "Author", "Title", "List Price",
    "Tax Excluded List Price", "COGS %", "COGS Amount (LP Currency)", "LP Currency",
    "Foreign Exchange Rate to Payable Currency", "COGS (Payable Currency)", "COGS based LP",
    "COGS based LP excluding tax", "COGS based LP Currency",
    "COGS Adjustment (Payable Currency)", "Net Due (Payable Currency)", "Payable Currency",
    "Total Tax (Payable Currency)",
)  # fmt: skip

_KOBO_PLUS = (
    "Read Period", "Publisher name", "eISBN", "Author", "Title", "List price (TaxIn)",
    "List price (TaxOut)", "List price currency", "Region", "Read threshold (%)", "Reads",
    "Total payable", "Foreign exchange to payable currency", "Total in payable currency",
    "Payable Currency", "Value Per Minute", "Total Minutes", "Revenue earned per title",
    "Publisher revenue share (%)", "Total publisher revenue share in payable currency ($)",
    "Total Tax in Payable Currency", "Content Type",
)  # fmt: skip

_BISG = (
    "ReportID", "ReportDateTime", "MessageFunction", "SalesReportType", "ReportPeriodFrom",
    "ReportPeriodTo", "ReportingCurrency", "ClassOfTrade", "SalesTerritory", "LineItemID",
    "TransactionDateTime", "MainProductIDType", "MainProductID", "ProductTitle",
    "ProductAuthor", "ProductFormat", "UnitPrice", "GrossSoldQuantity",
    "ReturnedRefundedQuantity", "NetSoldQuantity", "NetValueBeforeFees",
    "FeeType1", "FeeAmount1", "FeeType2", "FeeAmount2", "FeeType3", "FeeAmount3",
    "ProceedsOfSaleDuePublisher",
)  # fmt: skip

_CORESOURCE = (
    "Sales Date", "Retailer", "Business Model", "Country", "ISBN", "Title", "Currency",
    "List Price", "Units Sold", "Units Returned", "Net Units", "Publisher Compensation",
)  # fmt: skip

_JSTOR_ROLES = {"title": "Book Title", "isbn": "eISBN", "metric": "Usage Type"}
_JSTOR = (
    "Book Title", "Book ID (DOI)", "Authors", "ISBN", "eISBN", "Copyright Year",
    "Disciplines", "Usage Type", "Reporting Period Total",
)  # fmt: skip

_MUSE_ROLES = {
    "isbn": "isbn",
    "title": "title",
    "year": "year",
    "month": "month",
    "metric": "type",
    "count": "usage",
}
_MUSE = ("book_id", "isbn", "title", "year", "month", "type", "usage")

_COUNTER = tuple(COUNTER_HEADER)  # the flattened COUNTER-5 JSON, as read.py makes it

_BOOKSCAN = (
    "ISBN", "Title", "Author", "Publisher", "Binding", "RRP", "Week Ending", "Volume", "Value",
)  # fmt: skip

_US_DATES = ("%m/%d/%Y", "%m/%d/%y", "%Y-%m-%d")

LAYOUTS: tuple[Layout, ...] = (
    Layout(
        name="consonance",
        version="1",
        title="Consonance sales-import template (validated pass-through)",
        kind="sales",
        columns=CONSONANCE_COLUMNS[:4],
        optional=CONSONANCE_COLUMNS[4:],
        roles={
            "product_id_type": "Product ID type",
            "isbn": "Product ID",
            "channel_id": "Channel ID",
            "date": "Sales date",
            "list_price": "List price",
            "channel": "Source",
            "quantity": "Sales quantity",
            "value": "Sales value",
            "return_quantity": "Return quantity",
            "return_value": "Return value",
            "territory": "Country code",
            "original_currency": "Original currency",
            "original_value": "Original sales value",
            "original_return_value": "Original return value",
        },
        date_formats=("%Y-%m-%d",),
        returns="columns",
        note="values are in the house currency unless Original currency is given",
    ),
    Layout(
        name="google-play",
        version="2020",
        title="Google Play sales transaction report",
        kind="sales",
        columns=_GOOGLE,
        optional=("Line of Business",),
        roles={
            "date": "Transaction Date",
            "transaction_id": "Id",
            "type": "Type",
            "quantity": "Qty",
            "isbn": "Primary ISBN",
            "list_price": "List Price [tax exclusive]",
            "list_price_currency": "List Price Currency",
            "territory": "Country of Sale",
            "value": "Publisher Revenue",
            "currency": "List Price Currency",
        },
        date_formats=("%m/%d/%y", "%m/%d/%Y", "%Y-%m-%d"),
        returns="type",
        refund_words=frozenset({"refund"}),
        channel="Google Play",
        business_model="agency",
        file_name_hint="GoogleSalesTransactionReport_*YYYY_MM.csv (UTF-16 TSV)",
    ),
    Layout(
        name="amazon-kdp",
        version="ebook-royalty",
        title="Amazon KDP ebook royalty report",
        kind="sales",
        columns=_KDP,
        roles={
            "date": "Royalty Date",
            "isbn": "ASIN",
            "channel": "Marketplace",
            "quantity": "Units Sold",
            "return_quantity": "Units Refunded",
            "value": "Royalty",
            "currency": "Currency",
            "list_price": "Avg. List Price without tax",
        },
        date_formats=("%Y-%m-%d", "%m/%d/%Y", "%Y-%m"),
        returns="columns",
        channel="Amazon KDP",
        note="ASIN: a print ASIN is the ISBN-10; an ebook ASIN (B0...) is read as the ISBN-13 "
        "of the Consonance product with that asin (else the line is rejected, naming it)",
    ),
    Layout(
        name="amazon-vendor",
        version="digital-payment",
        title="Amazon Advantage / Vendor Central digital ebooks payment report",
        kind="sales",
        columns=_AMAZON_VENDOR,
        roles={
            "isbn": "Digital ISBN",
            "date": "Invoice Date",
            "list_price": "Publisher Price",
            "list_price_currency": "Price Currency",
            "quantity": "Net Units",
            "value": "Payment Amount",
            "currency": "Payment Amount Currency",
        },
        date_formats=_US_DATES,
        channel="Amazon",
        business_model="wholesale",
        file_name_hint="*DigitalEBooksPaymentReport*.xls",
    ),
    Layout(
        name="lightning-source",
        version="compensation",
        title="Ingram Lightning Source publisher compensation report",
        kind="sales",
        columns=_LSI,
        roles={**_LSI_ROLES, "channel": "sales_category"},
        total_row_without_isbn=True,
        trailer_prefixes=("total",),
        channel="Lightning Source",
        file_name_hint="*sales_comp*, often .xls that is CP1252 TSV with \\r line ends",
    ),
    Layout(
        name="lightning-source",
        version="sales_comp",
        title="Ingram Lightning Source sales_comp (reduced view)",
        kind="sales",
        columns=(
            "parent_isbn",
            "title",
            "list_price",
            "reporting_currency_code",
            "PTD_net_quantity",
            "PTD_net_pub_comp",
        ),
        optional=("isbn", "author", "period_name", "market"),
        roles=_LSI_ROLES,
        total_row_without_isbn=True,
        trailer_prefixes=("total",),
        channel="Lightning Source",
        note="no date column: the period comes from period_name, the file name or the operator",
    ),
    Layout(
        name="coresource",
        version="1",
        title="Ingram CoreSource ebook sales report",
        kind="sales",
        columns=_CORESOURCE,
        roles={
            "date": "Sales Date",
            "channel": "Retailer",
            "business_model": "Business Model",
            "territory": "Country",
            "isbn": "ISBN",
            "currency": "Currency",
            "list_price": "List Price",
            "quantity": "Units Sold",
            "return_quantity": "Units Returned",
            "value": "Publisher Compensation",
        },
        date_formats=_US_DATES,
        returns="columns",
        trailer_prefixes=("total",),
        channel="CoreSource",
        note="provisional: no public column list; one report per business model and "
        "currency, none when there were no sales",
    ),
    Layout(
        name="nbni",
        version="full-title-sales",
        title="NBN International full title sales",
        kind="sales",
        columns=("EAN13", "Stg Price", "NetQty-m", "Net Value-m"),
        optional=("Title", "Author", "NetQty-y", "Net Value-y"),
        roles={
            "isbn": "EAN13",
            "list_price": "Stg Price",
            "quantity": "NetQty-m",
            "value": "Net Value-m",
        },
        currency="GBP",
        channel="NBN International",
        trailer_prefixes=("total",),
        total_row_without_isbn=True,
        file_name_hint="*FullTitleSales* (NBNi FTP, OUT folder)",
        note="no date column: the month comes from the file name or the operator",
    ),
    Layout(
        name="apple-books",
        version="financial",
        title="Apple Books financial report",
        kind="sales",
        columns=_APPLE,
        roles={
            "period_from": "Start Date",
            "period_to": "End Date",
            "date": "End Date",
            "isbn": "Vendor Identifier",
            "quantity": "Quantity",
            "value": "Extended Partner Share",
            "currency": "Partner Share Currency",
            "type": "Sales or Return",
            "territory": "Country Of Sale",
            "list_price": "Customer Price",
            "list_price_currency": "Customer Currency",
        },
        date_formats=("%m/%d/%Y",),
        returns="type",
        refund_words=frozenset({"r"}),
        isbn_length=13,
        trailer_prefixes=("total_", "country of sale"),
        trailer_values={"Total_Amount": "value", "Total_Units": "quantity"},
        channel="Apple Books",
        business_model="agency",
        note="periods follow Apple's fiscal calendar (Start/End Date), not calendar months",
    ),
    Layout(
        name="kobo",
        version="store",
        title="Kobo store statement (sheet Details)",
        kind="sales",
        columns=_KOBO,
        roles={
            "date": "Date",
            "territory": "Country",
            "isbn": "eISBN",
            "quantity": "Total Qty",
            "value": "Net Due (Payable Currency)",
            "currency": "Payable Currency",
            "list_price": "List Price",
            "list_price_currency": "LP Currency",
        },
        date_formats=("%Y-%m-%d", "%m/%d/%Y", "%Y-%m-%d %H:%M:%S"),
        channel="Kobo",
        file_name_hint="sales_invoice_PUB_*.xlsx",
    ),
    Layout(
        name="kobo-plus",
        version="subscription",
        title="Kobo Plus subscription statement (sheet Details)",
        kind="sales",
        columns=_KOBO_PLUS,
        roles={
            "date": "Read Period",
            "isbn": "eISBN",
            "territory": "Region",
            "quantity": "Reads",
            "value": "Total publisher revenue share in payable currency ($)",
            "currency": "Payable Currency",
            "list_price": "List price (TaxOut)",
            "list_price_currency": "List price currency",
        },
        date_formats=("%Y-%m", "%Y-%m-%d", "%b %Y", "%B %Y", "%m/%Y"),
        channel="Kobo Plus",
        business_model="subscription",
        file_name_hint="sales_invoice_SUBS_*.xlsx; header cells padded with spaces",
    ),
    Layout(
        name="bisg",
        version="1.1",
        title="BISG Sales & Tax Report / EDItX sales report (flat file or XML)",
        kind="sales",
        columns=_BISG,
        roles={
            "period_from": "ReportPeriodFrom",
            "period_to": "ReportPeriodTo",
            "currency": "ReportingCurrency",
            "channel": "ClassOfTrade",
            "territory": "SalesTerritory",
            "date": "TransactionDateTime",
            "isbn": "MainProductID",
            "list_price": "UnitPrice",
            "quantity": "GrossSoldQuantity",
            "return_quantity": "ReturnedRefundedQuantity",
            "value": "ProceedsOfSaleDuePublisher",
        },
        date_formats=("%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y%m%d"),
        returns="columns",
        trailer_prefixes=("total",),
        total_row_without_isbn=True,
    ),
    Layout(
        name="jstor",
        version="country",
        title="JSTOR book usage by country (COUNTER-like TSV)",
        kind="usage",
        columns=("Country Name", *_JSTOR),
        roles={"country": "Country Name", **_JSTOR_ROLES},
        month_columns=True,
        preamble=True,
    ),
    Layout(
        name="jstor",
        version="institution",
        title="JSTOR book usage by institution (COUNTER-like TSV)",
        kind="usage",
        columns=("Institution", *_JSTOR),
        roles={"institution": "Institution", **_JSTOR_ROLES},
        month_columns=True,
        preamble=True,
        note="provisional: the institution report's first column was not recorded",
    ),
    Layout(
        name="muse",
        version="country",
        title="Project MUSE usage by country",
        kind="usage",
        columns=(*_MUSE, "country_id", "country"),
        roles={**_MUSE_ROLES, "country": "country_id"},
    ),
    Layout(
        name="muse",
        version="institution",
        title="Project MUSE usage by institution",
        kind="usage",
        columns=(*_MUSE, "institution_ids", "institution"),
        roles={**_MUSE_ROLES, "institution": "institution"},
    ),
    Layout(
        name="irus-counter",
        version="5",
        title="IRUS-UK / COUNTER-5 item report (JSON)",
        kind="usage",
        columns=_COUNTER,
        roles={
            "isbn": "ISBN",
            "title": "Item",
            "country": "Country",
            "institution": "Institution",
            "period_from": "Begin_Date",
            "period_to": "End_Date",
            "metric": "Metric_Type",
            "count": "Count",
        },
        date_formats=("%Y-%m-%d", "%Y-%m"),
    ),
    Layout(
        name="bookscan",
        version="1",
        title="BookScan-style market data (point-of-sale panel, not royalty-bearing)",
        kind="market",
        columns=_BOOKSCAN,
        roles={
            "isbn": "ISBN",
            "title": "Title",
            "date": "Week Ending",
            "count": "Volume",
            "value": "Value",
        },
        date_formats=("%Y-%m-%d", "%d/%m/%Y"),
        note="provisional: BookScan and BookNet exports vary; weeks end on Sunday",
    ),
)
"""Every built-in layout and version (``layout = "auto"`` tries them all)."""


def layout_names() -> list[str]:
    """The layout names config and ``sales check --layout`` accept."""
    return ["auto", "generic", *dict.fromkeys(layout.name for layout in LAYOUTS)]


def recognise(header: list[str], candidates: Iterable[Layout] = LAYOUTS) -> Layout | None:
    """The layout version whose header is exactly ``header`` (normalised cells)."""
    return next((layout for layout in candidates if layout.fits(header)), None)


@dataclass(frozen=True)
class HeaderDiff:
    layout: Layout
    missing: tuple[str, ...]
    added: tuple[str, ...]
    renamed: tuple[tuple[str, str], ...]  # (expected, seen)
    overlap: float  # share of the layout's columns found as they are

    def describe(self) -> str:
        parts = []
        if self.renamed:
            parts.append("renamed " + ", ".join(f"{a!r} -> {b!r}" for a, b in self.renamed))
        if self.missing:
            parts.append("missing " + ", ".join(repr(c) for c in self.missing))
        if self.added:
            parts.append("added " + ", ".join(repr(c) for c in self.added))
        return f"{self.layout.title} ({self.layout.key}): " + "; ".join(parts or ["no change"])


def _squash(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def header_diff(header: list[str], layout: Layout) -> HeaderDiff:
    seen = [h for h in header if h and not (layout.month_columns and MONTH_COLUMN.match(h))]
    allowed = set(layout.columns) | set(layout.optional)
    missing = [c for c in layout.columns if c not in seen]
    added = [h for h in seen if h not in allowed]
    renamed: list[tuple[str, str]] = []
    for expected in list(missing):
        best = max(
            added,
            key=lambda h: difflib.SequenceMatcher(None, _squash(expected), _squash(h)).ratio(),
            default=None,
        )
        if best is None:
            continue
        ratio = difflib.SequenceMatcher(None, _squash(expected), _squash(best)).ratio()
        if ratio >= 0.65:  # 'Net Units' -> 'Net Unit Count' is 0.7
            renamed.append((expected, best))
            missing.remove(expected)
            added.remove(best)
    found = len(layout.columns) - len(missing) - len(renamed)
    return HeaderDiff(
        layout=layout,
        missing=tuple(missing),
        added=tuple(added),
        renamed=tuple(renamed),
        overlap=found / max(len(layout.columns), 1),
    )


def nearest(header: list[str], candidates: Iterable[Layout] = LAYOUTS) -> HeaderDiff | None:
    """The layout version most like ``header`` (by the share of its columns found, renamed
    ones counted half), or None when none shares at least half its columns."""
    best: HeaderDiff | None = None
    best_score = 0.0
    for layout in candidates:
        diff = header_diff(header, layout)
        score = diff.overlap + 0.5 * len(diff.renamed) / max(len(layout.columns), 1)
        score -= 0.01 * len(diff.added) / max(len(header), 1)  # prefer the tighter fit
        if score > best_score:
            best, best_score = diff, score
    if best is None or best_score < 0.5:
        return None
    return best
