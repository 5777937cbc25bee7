"""A report's ``Table`` read through a layout: recognised by its header, every line validated
into a ``SalesLine`` or ``UsageLine`` or a ``Rejection``, trailer and summary rows read as the
file's own totals, and the lines reconciled with them per currency.

``parse_report`` decides the layout, version and period before returning (a file no layout
fits is refused at once, with the header it saw and the difference to the nearest layout);
the lines are streamed by ``ParsedReport.items`` so a million-line report is never held in
memory. Facts learnt while reading (currencies, the period when only the lines tell it, the
stated totals) are complete once ``items`` is exhausted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import chain
from typing import NamedTuple

from consonance_sftp.formats.sales.layouts import (
    LAYOUTS,
    MONTH_COLUMN,
    GenericLayout,
    Layout,
    layout_names,
    nearest,
    normalise_header,
)
from consonance_sftp.formats.sales.lines import Rejection, ReportFacts, SalesLine, UsageLine
from consonance_sftp.formats.sales.table import ReportRefused, Table
from consonance_sftp.formats.sales.validate import (
    CURRENCIES,
    Dates,
    Isbns,
    asin_of,
    money,
    money_decimal_comma,
    month_end,
    period_from_file_name,
    period_from_text,
    quantity,
)

Item = SalesLine | UsageLine | Rejection
_HEADER_SCAN = 40  # rows searched for the header (JSTOR puts a metadata preamble first)
_CENT = Decimal("0.01")
_ZERO = Decimal(0)
_MEMO_LIMIT = 16_384  # distinct value cells memoised; past it, parsed each time (memory flat)


class KnownAsin(NamedTuple):
    """A product Consonance knows by its ASIN: its id and its ISBN-13 (None: it has none)."""

    product_id: int
    isbn13: str | None


@dataclass
class ParsedReport:
    """A report being read: ``items`` yields its lines once; ``lines_read``, ``facts`` and the
    totals grow as they are consumed and are final when ``items`` is exhausted."""

    layout: Layout
    facts: ReportFacts
    header_line: int
    items: Iterator[Item]
    lines_read: int = 0
    notes: list[str] = field(default_factory=list)
    # per currency: quantity, value, return_quantity, return_value of the accepted lines
    _totals: dict[str, list[Decimal]] = field(default_factory=dict)
    # per currency: net quantity and net value of every line read (accepted or rejected)
    _read: dict[str, list[Decimal]] = field(default_factory=dict)

    def totals(self) -> dict[str, dict[str, Decimal]]:
        """The accepted lines' sums per currency."""
        return {
            currency: {
                "quantity": sums[0],
                "value": sums[1],
                "return_quantity": sums[2],
                "return_value": sums[3],
            }
            for currency, sums in sorted(self._totals.items())
        }

    def reconciliation(self) -> tuple[bool | None, list[str]]:
        """The file's lines as read (accepted and rejected alike: a rejected line is still in
        the partner's totals) against the file's own totals, per currency, to the cent.
        ``(None, [])`` when the file states no totals; else ``(ok, mismatches in words)``."""
        stated = self.facts.stated_totals
        if not stated:
            return None, []
        problems: list[str] = []
        for currency, figures in sorted(stated.items()):
            read = self._read.get(currency)
            if read is None:
                problems.append(
                    f"the file states {currency or 'unlabelled'} totals but has no "
                    f"{currency or 'such'} lines"
                )
                continue
            for key, index in (("quantity", 0), ("value", 1)):
                if key not in figures:
                    continue
                mine = read[index].quantize(_CENT)
                theirs = figures[key].quantize(_CENT)
                if mine != theirs:
                    word = "net quantity" if key == "quantity" else "net value"
                    problems.append(
                        f"{currency} {word}: the lines sum to {_plain(read[index])}, the file "
                        f"states {_plain(figures[key])} (difference {_plain(mine - theirs)})"
                    )
        return not problems, problems


def _plain(value: Decimal) -> str:
    return format(value.normalize() if value == value.to_integral_value() else value, "f")


def parse_report(
    table: Table,
    *,
    file_name: str,
    layout: str = "auto",
    generic: GenericLayout | None = None,
    known_isbns: Container[str] | None = None,
    channel_for: Callable[[str, str], str | None] | None = None,
    period: tuple[dt.date, dt.date] | None = None,
    house_currency: str | None = None,
    known_asins: Mapping[str, KnownAsin] | None = None,
) -> ParsedReport:
    """Recognise ``table``'s layout and return its lines as a stream.

    ``layout``: a name from ``layout_names()`` (``auto`` tries every built-in one, and the
    ``generic`` mapping when given). ``known_isbns``: the products Consonance knows (None: not
    checked). ``known_asins``: the known products by ASIN (a line naming a Kindle ebook by its
    ``B0...`` ASIN, as Amazon KDP's do, is read as the product's ISBN-13; None: an ASIN line is
    rejected). ``channel_for(channel, territory)``: the Consonance channel ID for a line (a None
    result rejects the line). ``period``: the report's period when the file states none (else
    the file name's month is used). ``house_currency``: the currency of Consonance-template
    values that carry no original currency.

    Raises ``ReportRefused`` with ``unknown-layout``, ``header-changed``, ``empty-report`` or
    ``no-period`` (a layout without dates, and no period given or in the file name)."""
    candidates = _candidates(layout, generic)
    rows = iter(table.rows)
    found, header_line, header, preamble = _find_header(rows, candidates, file_name, layout)
    reader = _Reader(
        found,
        header,
        file_name=file_name,
        known_isbns=known_isbns,
        channel_for=channel_for,
        house_currency=house_currency,
        known_asins=known_asins,
    )
    lead = _lead_rows(rows, reader)
    if lead is None:
        raise ReportRefused(
            "empty-report",
            f"{file_name}: {found.title} with a header (line {header_line}) but no lines",
        )
    first = lead[-1]  # the first line with an ISBN
    stated = reader.period_in_row(first[1]) or _period_in_preamble(preamble)
    report_period = stated or period
    named_period = period_from_file_name(file_name)
    dated = "date" in found.roles or found.kind != "sales"
    if report_period is None and not dated:
        # No dates in the lines: the file name's month is all there is. Where lines have
        # dates, the name is only cross-checked (partners often name a file by the day it
        # was made, the month after its sales).
        report_period = named_period
    if report_period is None and not dated:
        raise ReportRefused(
            "no-period",
            f"{file_name}: {found.title} has no date column, and no period was given nor is "
            "one in the file name",
            hint="give the report's period (sales check --period YYYY-MM), or name the file "
            "with its month (..._2026-10.csv)",
        )
    facts = ReportFacts(
        layout=found.name,
        layout_version=found.version,
        kind=found.kind,
        period_from=report_period[0] if report_period else None,
        period_to=report_period[1] if report_period else None,
        business_model=_business_model(reader, first[1], file_name),
    )
    report = ParsedReport(layout=found, facts=facts, header_line=header_line, items=iter(()))
    report.notes.extend(table.notes)
    if stated is not None and period is not None and stated != period:
        report.notes.append(
            f"the file states its period ({stated[0].isoformat()} to {stated[1].isoformat()}); "
            "the period given is not used"
        )
    reader.named_period = named_period if dated and report_period is None else None
    report.items = reader.items(report, chain(lead, rows))
    return report


def _business_model(reader: _Reader, cells: list[str], file_name: str) -> str:
    """The report's business model: its column, else the layout's, else a word of the file
    name (CoreSource sends one report per business model: ``..._Agency_...``)."""
    stated = reader.cell(cells, "business_model").casefold()
    if stated or reader.layout.business_model:
        return stated or reader.layout.business_model
    name = file_name.casefold()
    return next((word for word in ("agency", "wholesale", "subscription") if word in name), "")


def _candidates(layout: str, generic: GenericLayout | None) -> list[Layout]:
    mapped: list[Layout] = []
    if generic is not None:
        try:
            mapped = [generic.layout()]
        except ValueError as exc:  # config checks the mapping first; this is the backstop
            raise ReportRefused("unknown-layout", f"the generic layout's mapping: {exc}") from exc
    if layout == "generic":
        if not mapped:
            raise ReportRefused(
                "unknown-layout", "layout 'generic' needs a column mapping in the flow's config"
            )
        return mapped
    if layout == "auto":
        return [*LAYOUTS, *mapped]
    named = [candidate for candidate in LAYOUTS if candidate.name == layout]
    if not named:
        raise ReportRefused(
            "unknown-layout",
            f"no layout named {layout!r}",
            hint="one of: " + ", ".join(layout_names()),
        )
    return named


def _find_header(
    rows: Iterator[tuple[int, list[str]]], candidates: list[Layout], file_name: str, asked: str
) -> tuple[Layout, int, list[str], list[list[str]]]:
    seen: list[tuple[int, list[str]]] = []
    for line, cells in rows:
        if not any(c.strip() for c in cells):
            continue
        header = normalise_header(cells)
        found = next((c for c in candidates if c.fits(header)), None)
        if found is not None:
            return found, line, header, [c for _, c in seen]
        seen.append((line, header))
        if len(seen) >= _HEADER_SCAN:
            break
    if not seen:
        raise ReportRefused("empty-report", f"{file_name}: the file has no rows")
    best = None
    for line, header in seen:
        diff = nearest(header, candidates)
        if diff is not None and (best is None or diff.overlap > best[1].overlap):
            best = (line, diff)
    if best is not None:
        line, diff = best
        raise ReportRefused(
            "header-changed",
            f"{file_name}: the header on line {line} is not a known version of {diff.describe()}",
            hint="if the partner changed its layout, add a layout version (or map the file "
            "with the generic layout)",
        )
    line, header = seen[0]
    shown = ", ".join(repr(h) for h in header[:20]) + (", ..." if len(header) > 20 else "")
    which = "any known layout" if asked == "auto" else f"layout {asked!r}"
    raise ReportRefused(
        "unknown-layout",
        f"{file_name}: line {line} ({shown}) is not the header of {which}",
        hint="name the layout in the flow's config, or map the columns with the generic layout",
    )


def _lead_rows(
    rows: Iterator[tuple[int, list[str]]], reader: _Reader
) -> list[tuple[int, list[str]]] | None:
    """The rows up to the first line with an ISBN (its period and business model are the
    report's when the file states them so), or None when there is no line: a header alone,
    or a header and its total rows."""
    lead: list[tuple[int, list[str]]] = []
    for line, cells in rows:
        if not any(c.strip() for c in cells):
            continue
        if reader.starts_trailer(cells):
            return None
        lead.append((line, cells))
        if not reader.maybe_total(cells):
            return lead
    return None


def _period_in_preamble(preamble: list[list[str]]) -> tuple[dt.date, dt.date] | None:
    for cells in preamble:
        if cells and cells[0].strip().casefold() in ("reporting_period", "reporting period"):
            return period_from_text(" ".join(cells[1:]))
    return None


class _Reader:
    """One layout applied to rows: column positions resolved once, checks memoised."""

    def __init__(
        self,
        layout: Layout,
        header: list[str],
        *,
        file_name: str,
        known_isbns: Container[str] | None,
        channel_for: Callable[[str, str], str | None] | None,
        house_currency: str | None,
        known_asins: Mapping[str, KnownAsin] | None = None,
    ) -> None:
        self.layout = layout
        self.header = header
        self.width = len(header)
        position = {name: i for i, name in reversed(list(enumerate(header)))}
        self.col = {role: position[name] for role, name in layout.roles.items() if name in position}
        self.months: list[tuple[int, dt.date]] = []
        if layout.month_columns:
            for i, name in enumerate(header):
                if MONTH_COLUMN.match(name):
                    self.months.append((i, dt.datetime.strptime(name, "%b-%Y").date()))
        self.file_name = file_name
        self.known = known_isbns
        self.known_asins = known_asins
        self.channel_for = channel_for
        self.house_currency = house_currency
        self.isbns = Isbns(truncate=layout.isbn_length)
        self.dates = Dates(layout.date_formats)
        self.prefixes = tuple(p.casefold() for p in layout.trailer_prefixes)
        self.fixed_currency = layout.currency or house_currency or ""
        self.money = money_decimal_comma if layout.decimal_comma else money
        self.total_without_isbn = layout.total_row_without_isbn
        self.named_period: tuple[dt.date, dt.date] | None = None  # cross-checked at the end
        self.channels: dict[tuple[str, str], str | None] = {}
        self.prices: dict[str, Decimal | None] = {}
        get = self.col.get
        self.i_isbn = get("isbn", -1)
        self.i_date = get("date", -1)
        self.i_quantity = get("quantity", -1)
        self.i_value = get("value", -1)
        self.i_return_quantity = get("return_quantity", -1)
        self.i_return_value = get("return_value", -1)
        self.i_currency = get("currency", -1)
        self.i_type = get("type", -1) if layout.returns == "type" else -1
        self.i_channel = get("channel", -1)
        self.i_channel_id = get("channel_id", -1)
        self.i_territory = get("territory", -1)
        self.i_list_price = get("list_price", -1)
        self.i_list_price_currency = get("list_price_currency", -1)
        self.i_transaction_id = get("transaction_id", -1)
        self.i_product_id_type = get("product_id_type", -1)
        self.i_original_currency = get("original_currency", -1)
        self.i_original_value = get("original_value", -1)
        self.i_original_return_value = get("original_return_value", -1)
        self.trailer_values = {k.casefold(): v for k, v in layout.trailer_values.items()}

    def product_of_asin(self, cell: str) -> tuple[str | None, str | None] | None:
        """For a cell holding an ASIN, when the known products' ASINs are given: the product's
        ISBN-13, or None and why the line is rejected. None for any other cell."""
        asin = asin_of(cell) if self.known_asins is not None else None
        if asin is None or self.known_asins is None:
            return None
        product = self.known_asins.get(asin)
        if product is None:
            return None, f"ASIN {asin} is no product in Consonance (its asin field)"
        if product.isbn13 is None:
            return None, (
                f"ASIN {asin} is product {product.product_id}'s, which has no ISBN-13; the "
                "import file names products by ISBN (give the product one in Consonance)"
            )
        return product.isbn13, None

    def cell(self, cells: list[str], role: str) -> str:
        index = self.col.get(role)
        return cells[index].strip() if index is not None and index < len(cells) else ""

    def column(self, role: str) -> str:
        return self.layout.roles.get(role, role)

    def is_trailer(self, cells: list[str]) -> bool:
        return self.starts_trailer(cells) or self.maybe_total(cells)

    def starts_trailer(self, cells: list[str]) -> bool:
        """A row whose first cell starts a trailer (``Total``, Apple's ``Total_Amount``)."""
        first = cells[0] if cells else ""
        return bool(first and self.prefixes and first.lstrip().casefold().startswith(self.prefixes))

    def maybe_total(self, cells: list[str]) -> bool:
        """A row with figures and no ISBN, in a layout whose total row looks so (Lightning
        Source): the total row if no line follows it, else a line without an ISBN."""
        if self.total_without_isbn:
            index = self.i_isbn
            if not 0 <= index < len(cells) or not cells[index].strip():
                return any(self.cell(cells, role) for role in ("quantity", "value"))
        return False

    def period_in_row(self, cells: list[str]) -> tuple[dt.date, dt.date] | None:
        start = self.cell(cells, "period_from")
        first = self.dates.parse(start) if start else None
        if first is not None:
            end = self.cell(cells, "period_to")
            last = self.dates.parse(end) if end else None
            if last is None or end in self.dates.month_only:
                last = month_end(last or first)  # "2026-10": to the month's end
            return first, last
        name = self.cell(cells, "period_name")
        if name:
            month = Dates(("%b-%y", "%b-%Y", "%Y-%m", "%B %Y", "%m/%Y", "%Y%m")).parse(name)
            if month is not None:
                return month.replace(day=1), month_end(month)
        return None

    # --- trailer rows ------------------------------------------------------------------

    def read_trailer(self, cells: list[str], facts: ReportFacts) -> None:
        first = cells[0].strip().casefold() if cells else ""
        target = self.trailer_values.get(first)
        if target is not None:
            value = self.money(cells[1]) if len(cells) > 1 else None
            if value is not None:
                facts.stated_totals.setdefault("", {})[target] = value
            return
        if first.startswith("country of sale") or first.startswith("total_rows"):
            return  # Apple's summary block and row count: nothing to reconcile with
        figures: dict[str, Decimal] = {}
        for key in ("quantity", "value"):
            text = self.cell(cells, key)
            number = self.money(text) if text else None
            if number is not None:
                figures[key] = number
        for key, back in (("quantity", "return_quantity"), ("value", "return_value")):
            text = self.cell(cells, back)
            number = self.money(text) if text else None
            if number is not None and key in figures:
                figures[key] -= abs(number)
        if figures:
            currency = self.cell(cells, "currency").upper()
            facts.stated_totals.setdefault(currency, {}).update(figures)

    # --- lines ---------------------------------------------------------------------------

    def items(self, report: ParsedReport, rows: Iterator[tuple[int, list[str]]]) -> Iterator[Item]:
        facts = report.facts
        trailer = False
        sales = self.layout.kind == "sales"
        dates_seen: list[dt.date] = []
        sales_line = self._make_sales_line()
        starts_trailer = self.starts_trailer
        maybe_total = self.maybe_total
        width = self.width
        # A row with figures and no ISBN waits here: it is the total row if only trailer rows
        # (or nothing) follow, else a line without an ISBN (rejected as such).
        pending: list[tuple[int, list[str]]] = []

        def line_items(line: int, cells: list[str]) -> Iterator[Item]:
            if len(cells) < width:
                cells = cells + [""] * (width - len(cells))
            report.lines_read += 1
            if sales:
                yield sales_line(line, cells, report, dates_seen)
            else:
                yield from self.usage_lines(line, cells, facts, dates_seen)

        i_isbn = self.i_isbn
        prefixes = self.prefixes
        total_without_isbn = self.total_without_isbn
        for line, cells in rows:
            if not any(cells):
                continue
            if trailer and 0 <= i_isbn < len(cells) and cells[i_isbn].strip():
                # lines again after a total row: per-currency or per-section blocks
                trailer = starts_trailer(cells)
            # starts_trailer and maybe_total inlined for the common line (a first cell that
            # starts no trailer, an ISBN present): each a method call a line otherwise
            first_cell = cells[0]
            if trailer or (
                prefixes and first_cell and first_cell.lstrip().casefold().startswith(prefixes)
            ):
                trailer = True
                for _, held in pending:
                    self.read_trailer(held, facts)
                pending.clear()
                self.read_trailer(cells, facts)
                continue
            if (
                total_without_isbn
                and not (0 <= i_isbn < len(cells) and cells[i_isbn].strip())
                and maybe_total(cells)
            ):
                pending.append((line, cells))
                continue
            if pending:
                for held_line, held in pending:
                    yield from line_items(held_line, held)
                pending.clear()
            # line_items inlined: this is the per-line path of a million-line report
            if len(cells) < width:
                cells = cells + [""] * (width - len(cells))
            report.lines_read += 1
            if sales:
                yield sales_line(line, cells, report, dates_seen)
            else:
                yield from self.usage_lines(line, cells, facts, dates_seen)
        for _, held in pending:
            self.read_trailer(held, facts)
        self.finish(report, dates_seen)

    def finish(self, report: ParsedReport, dates_seen: list[dt.date]) -> None:
        facts = report.facts
        if facts.period_from is None and dates_seen:
            first, last = min(dates_seen), max(dates_seen)
            if facts.kind == "sales":
                # the file states no period: the whole months its lines fall in
                first, last = first.replace(day=1), month_end(last)
            facts.period_from, facts.period_to = first, last
            report.notes.append(
                f"no period in the file: {first.isoformat()} to {last.isoformat()}, "
                "from the lines' dates"
            )
            named = self.named_period
            if named is not None and (first < named[0] or last > named[1]):
                report.notes.append(
                    f"the file name names {named[0]:%Y-%m}, but its lines are dated "
                    f"{first.isoformat()} to {last.isoformat()}"
                )
        unlabelled = facts.stated_totals.pop("", None)
        if unlabelled is not None:
            currency = next(iter(facts.currencies)) if len(facts.currencies) == 1 else ""
            facts.stated_totals.setdefault(currency, {}).update(unlabelled)

    def _reject(self, line: int, role: str | None, reason: str) -> Rejection:
        return Rejection(line, None if role is None else self.column(role), reason)

    def _make_sales_line(
        self,
    ) -> Callable[[int, list[str], ParsedReport, list[dt.date]], SalesLine | Rejection]:
        """The per-line function of this layout, its column positions and checks bound as
        closure variables: it runs once per line of a report, a million times for a large
        one, and local lookups cost a fraction of attribute lookups."""
        layout = self.layout
        i_original_currency = self.i_original_currency
        i_original_value = self.i_original_value
        i_original_return_value = self.i_original_return_value
        i_currency = self.i_currency
        i_quantity = self.i_quantity
        i_value = self.i_value
        i_return_quantity = self.i_return_quantity
        i_return_value = self.i_return_value
        i_type = self.i_type
        i_product_id_type = self.i_product_id_type
        i_isbn = self.i_isbn
        i_date = self.i_date
        i_channel = self.i_channel
        i_territory = self.i_territory
        i_channel_id = self.i_channel_id
        i_list_price = self.i_list_price
        i_list_price_currency = self.i_list_price_currency
        i_transaction_id = self.i_transaction_id
        isbn_check = self.isbns.check
        isbn_memo = self.isbns.memo
        by_asin = self.product_of_asin if self.known_asins is not None else None
        asin_products: dict[str, tuple[str | None, str | None]] = {}
        parse_date = self.dates.parse
        known = self.known
        channel_for = self.channel_for
        channels = self.channels
        prices = self.prices
        needs_value = layout.name == "consonance"
        to_money = self.money
        amounts: dict[str, Decimal] = {}  # value cells repeat (price x units): parse each once
        fixed_currency = self.fixed_currency
        reject = self._reject

        def sales_line(
            line: int, cells: list[str], report: ParsedReport, dates_seen: list[dt.date]
        ) -> SalesLine | Rejection:
            # Hot path. Column positions are -1 where the layout has no such column;
            # repeated cells (ISBNs, dates, prices, channels) are checked once, memoised.
            facts = report.facts
            # money and currency first: a line whose numbers read counts in reconciliation even
            # when it is rejected for its ISBN, its date or its channel
            original = cells[i_original_currency].strip() if i_original_currency >= 0 else ""
            if original:
                currency = original.upper()
                at_value, at_return_value = i_original_value, i_original_return_value
                value_role, return_value_role = "original_value", "original_return_value"
                currency_role = "original_currency"
            else:
                currency = cells[i_currency].strip().upper() if i_currency >= 0 else fixed_currency
                at_value, at_return_value = i_value, i_return_value
                value_role, return_value_role = "value", "return_value"
                currency_role = "currency"
            if currency not in CURRENCIES:
                if not currency:
                    return reject(line, currency_role, "no currency")
                return reject(line, currency_role, f"{currency!r} is not an ISO 4217 currency")
            qty_text = cells[i_quantity] if i_quantity >= 0 else ""
            # a plain count (most lines) read here; signs, blanks and decimals by ``quantity``
            qty = int(qty_text) if qty_text.isdigit() else quantity(qty_text)
            if qty is None:
                return reject(
                    line, "quantity", f"quantity {qty_text.strip()!r} is not a whole number"
                )
            value_text = cells[at_value] if at_value >= 0 else ""
            value = amounts.get(value_text)
            if value is None:
                value = to_money(value_text)
                if value is not None and len(amounts) < _MEMO_LIMIT:
                    amounts[value_text] = value
            if value is None:
                return reject(line, value_role, f"value {value_text.strip()!r} is not a number")
            ret_qty = 0
            ret_value = _ZERO
            if i_return_quantity >= 0:
                text = cells[i_return_quantity]
                got = quantity(text)
                if got is None:
                    return reject(
                        line,
                        "return_quantity",
                        f"return quantity {text.strip()!r} is not a whole number",
                    )
                ret_qty = abs(got)
            if at_return_value >= 0:
                text = cells[at_return_value]
                amount = to_money(text)
                if amount is None:
                    return reject(
                        line, return_value_role, f"return value {text.strip()!r} is not a number"
                    )
                ret_value = abs(amount)
            if i_type >= 0 and cells[i_type].strip().casefold() in layout.refund_words:
                ret_qty, qty = ret_qty + abs(qty), 0
                ret_value, value = ret_value + abs(value), _ZERO
            # signed net columns (and a negative gross column of any layout): returns
            if qty < 0:
                ret_qty, qty = ret_qty - qty, 0
            if value < 0:
                ret_value, value = ret_value - value, _ZERO
            read = report._read.get(currency)
            if read is None:
                read = report._read[currency] = [_ZERO, _ZERO]
                facts.currencies.add(currency)
            read[0] += qty - ret_qty
            read[1] += value - ret_value
            if not (qty or ret_qty or value or ret_value) and not (
                value_text.strip() or qty_text.strip()
            ):
                return reject(line, "value", "no quantity and no value")
            if (
                needs_value
                and not value_text.strip()
                and not (at_return_value >= 0 and cells[at_return_value].strip())
            ):
                # Consonance's importer refuses a row without a sales or return value
                return reject(line, value_role, "no sales value and no return value")
            # the product
            if i_product_id_type >= 0:
                kind = cells[i_product_id_type].strip()
                if kind.casefold() != "isbn":
                    return reject(
                        line, "product_id_type", f"product ID type {kind!r}: only ISBNs are matched"
                    )
            checked = isbn_memo.get(cells[i_isbn])  # Isbns.check, its memo read here
            isbn, why = checked if checked is not None else isbn_check(cells[i_isbn])
            if isbn is None and by_asin is not None:
                # a Kindle ebook named by its ASIN (KDP): the product's ISBN-13, memoised
                found = asin_products.get(cells[i_isbn])
                if found is None:
                    found = by_asin(cells[i_isbn]) or (None, why)
                    if len(asin_products) < _MEMO_LIMIT:
                        asin_products[cells[i_isbn]] = found
                isbn, why = found
            if isbn is None:
                return reject(line, "isbn", why or "no ISBN")
            if known is not None and isbn not in known:
                return reject(line, "isbn", f"ISBN {isbn} is not a product in Consonance")
            # the date
            if i_date >= 0:
                text = cells[i_date]
                day = parse_date(text)
                if day is None:
                    return reject(
                        line,
                        "date",
                        f"{text.strip()!r} is not a date ({' or '.join(layout.date_formats)})",
                    )
                first, last = facts.period_from, facts.period_to
                if first is not None and last is not None:
                    if not first <= day <= last:
                        return reject(
                            line,
                            "date",
                            f"{day.isoformat()} is outside the report's period "
                            f"{first.isoformat()} to {last.isoformat()}",
                        )
                elif not dates_seen:
                    dates_seen.extend((day, day))  # the span of the lines' dates: [first, last]
                elif day < dates_seen[0]:
                    dates_seen[0] = day
                elif day > dates_seen[1]:
                    dates_seen[1] = day
            elif facts.period_to is not None:
                day = facts.period_to  # no date column: the sale is dated the period's last day
            else:
                return reject(line, None, "no date column and no period for the report")
            # the channel
            channel = cells[i_channel].strip() if i_channel >= 0 else ""
            channel = channel or layout.channel
            territory = cells[i_territory].strip() if i_territory >= 0 else ""
            if i_channel_id >= 0:
                channel_id = cells[i_channel_id].strip()
                if not channel_id:
                    return reject(line, "channel_id", "no Channel ID")
            elif channel_for is not None:
                key = (channel, territory)
                mapped = channels.get(key, "")
                if mapped == "":
                    mapped = channels[key] = channel_for(channel, territory)
                if mapped is None:
                    return reject(
                        line,
                        "channel" if i_channel >= 0 or i_territory < 0 else "territory",
                        f"no Consonance channel is mapped for channel {channel!r}"
                        + (f", territory {territory!r}" if territory else "")
                        + " (map it under the flow's channels, or set channels.default)",
                    )
                channel_id = mapped
            else:
                channel_id = ""
            list_price: Decimal | None = None
            list_price_currency: str | None = None
            if i_list_price >= 0:
                text = cells[i_list_price]
                if text:
                    list_price = prices.get(text)
                    if list_price is None:
                        list_price = to_money(text)
                        if len(prices) < _MEMO_LIMIT:
                            prices[text] = list_price
                if list_price is not None:
                    list_price_currency = currency
                    if i_list_price_currency >= 0:
                        list_price_currency = (
                            cells[i_list_price_currency].strip().upper() or currency
                        )
            sums = report._totals.get(currency)
            if sums is None:
                sums = report._totals[currency] = [_ZERO, _ZERO, _ZERO, _ZERO]
            sums[0] += qty
            sums[1] += value
            sums[2] += ret_qty
            sums[3] += ret_value
            return SalesLine(
                line=line,
                isbn13=isbn,
                sales_date=day,
                quantity=qty,
                value=value,
                return_quantity=ret_qty,
                return_value=ret_value,
                currency=currency,
                list_price=list_price,
                list_price_currency=list_price_currency,
                channel=channel,
                territory=territory,
                transaction_id=cells[i_transaction_id].strip() if i_transaction_id >= 0 else "",
                channel_id=channel_id,
            )

        return sales_line

    def usage_lines(
        self, line: int, cells: list[str], facts: ReportFacts, dates_seen: list[dt.date]
    ) -> Iterator[UsageLine | Rejection]:
        col = self.col
        isbn_text = cells[col["isbn"]]
        if not isbn_text.strip() and self.layout.name == "jstor":
            isbn_text = cells[self.header.index("ISBN")]  # no eISBN: the print ISBN
        isbn, why = self.isbns.check(isbn_text)
        if isbn is None:
            yield self._reject(line, "isbn", why or "no ISBN")
            return
        if self.known is not None and isbn not in self.known:
            yield self._reject(line, "isbn", f"ISBN {isbn} is not a product in Consonance")
            return
        if self.months:
            for index, _month in self.months:
                count = quantity(cells[index])
                if count is None:
                    yield self._reject(
                        line, None, f"{self.header[index]} {cells[index]!r} is not a count"
                    )
                    return
            if facts.period_from is None and not dates_seen:
                # no Reporting_Period in the preamble: the month columns are the period
                dates_seen.extend((self.months[0][1], month_end(self.months[-1][1])))
            for index, month in self.months:
                count = quantity(cells[index]) or 0
                if count:
                    yield self._usage(line, cells, isbn, month, month_end(month), count)
            return
        count_text = cells[col["count"]]
        count = quantity(count_text)
        if count is None:
            yield self._reject(line, "count", f"{count_text.strip()!r} is not a count")
            return
        if "year" in col:
            year, month_no = quantity(cells[col["year"]]), quantity(cells[col["month"]])
            if not year or not month_no or not 1 <= month_no <= 12:
                yield self._reject(line, "month", "no valid year and month")
                return
            first = dt.date(year, month_no, 1)
            last = month_end(first)
        elif "period_from" in col:
            start = self.dates.parse(cells[col["period_from"]])
            end = self.dates.parse(cells[col["period_to"]])
            if start is None:
                yield self._reject(line, "period_from", "no valid begin date")
                return
            first = start
            last = end if end is not None and end != start else month_end(start)
        else:  # market data: a week ending on the date
            end = self.dates.parse(cells[col["date"]])
            if end is None:
                yield self._reject(line, "date", f"{cells[col['date']].strip()!r} is not a date")
                return
            first, last = end - dt.timedelta(days=6), end
        if facts.period_from is not None and facts.period_to is not None:
            if first < facts.period_from or last > facts.period_to:
                yield self._reject(
                    line,
                    None,
                    f"{first.isoformat()} to {last.isoformat()} is outside the report's period "
                    f"{facts.period_from.isoformat()} to {facts.period_to.isoformat()}",
                )
                return
        elif not dates_seen:
            dates_seen.extend((first, last))
        else:
            dates_seen[0], dates_seen[1] = min(dates_seen[0], first), max(dates_seen[1], last)
        yield self._usage(line, cells, isbn, first, last, count)

    def _usage(
        self, line: int, cells: list[str], isbn: str, first: dt.date, last: dt.date, count: int
    ) -> UsageLine:
        return UsageLine(
            line=line,
            isbn13=isbn,
            period_from=first,
            period_to=last,
            metric=self.cell(cells, "metric") or ("units" if self.layout.kind == "market" else ""),
            count=count,
            country=self.cell(cells, "country"),
            institution=self.cell(cells, "institution"),
            title=self.cell(cells, "title"),
        )
