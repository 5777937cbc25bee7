"""CSV and XLSX metadata exports for partners who want spreadsheets, with configurable columns.

A column is a field name from ``FIELDS`` (``isbn13``, ``title``, ``contributors``...), a price
column ``price:CUR`` or ``price:CUR:TYPE`` (``price:GBP``, ``price:USD:01``), optionally
relabelled as ``("Header", "field")``. Rows are products, streamed: XLSX goes through
openpyxl's write-only mode, so memory stays flat for large catalogues. An optional
``RecipientRules`` filters products and trims prices exactly as the ONIX feed would.

Text cells that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``...) get a
leading apostrophe, the usual guard against formula injection from catalogue text.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO

from openpyxl import Workbook

from ..models import MarketingText, Product, SubjectScheme, Work
from .onix.codes import product_form_30
from .onix.rules import RecipientRules
from .onix.writer import record_reference

Cell = str | int | Decimal | date | None
Field = Callable[[Work, Product], Cell]
ColumnSpec = str | tuple[str, str]


def _join(values: Iterable[str]) -> str:
    return "; ".join(values)


def _contributors(work: Work, product: Product, roles: frozenset[str] | None = None) -> str:
    chosen = sorted(
        (
            c
            for c in work.contributions
            if (not c.product_ids or product.id in c.product_ids)
            and (roles is None or c.role in roles)
        ),
        key=lambda c: c.sequence_number,
    )
    if roles is None:
        return _join(f"{c.contributor.name} ({c.role})" for c in chosen)
    return _join(c.contributor.name for c in chosen)


def _subjects(work: Work, scheme: SubjectScheme) -> str:
    return _join(s.code for s in work.subjects if s.scheme is scheme)


def _text(work: Work, product: Product, variant: str) -> str | None:
    texts: list[MarketingText] = [
        t
        for t in work.marketing_texts
        if t.variant == variant and (not t.product_ids or product.id in t.product_ids)
    ]
    return texts[0].text if texts else None


def _cover(work: Work, product: Product) -> str | None:
    for resource in work.supporting_resources:
        if resource.variant == "FRONT_COVER" and (
            not resource.product_ids or product.id in resource.product_ids
        ):
            return resource.url or resource.filename
    return None


FIELDS: dict[str, Field] = {
    "isbn13": lambda w, p: p.isbn13,
    "record_reference": lambda w, p: record_reference(p),
    "product_id": lambda w, p: p.id,
    "work_id": lambda w, p: w.id,
    "title": lambda w, p: p.title or w.title,
    "subtitle": lambda w, p: p.subtitle,
    "contributors": _contributors,
    "authors": lambda w, p: _contributors(w, p, frozenset({"A01"})),
    "imprint": lambda w, p: w.imprint.name if w.imprint else None,
    "publisher": lambda w, p: w.publisher_name,
    "product_form": lambda w, p: p.product_form,
    "onix_product_form": lambda w, p: product_form_30(p)[0],
    "publishing_status": lambda w, p: p.publishing_status,
    "publication_date": lambda w, p: p.publication_date,
    "language": lambda w, p: p.language,
    "pages": lambda w, p: p.page_count,
    "edition_number": lambda w, p: p.edition_number,
    "height_mm": lambda w, p: p.height_mm,
    "width_mm": lambda w, p: p.width_mm,
    "thickness_mm": lambda w, p: p.thickness_mm,
    "bisac": lambda w, p: _subjects(w, SubjectScheme.BISAC),
    "thema": lambda w, p: _subjects(w, SubjectScheme.THEMA),
    "bic": lambda w, p: _subjects(w, SubjectScheme.BIC),
    "keywords": lambda w, p: _join(w.keywords),
    "for_sale_countries": lambda w, p: (
        "WORLD" if p.for_sale_worldwide else " ".join(p.for_sale_countries)
    ),
    "short_description": lambda w, p: _text(w, p, "SHORT_DESCRIPTION"),
    "description": lambda w, p: _text(w, p, "DESCRIPTION"),
    "cover_url": _cover,
}

DEFAULT_COLUMNS: tuple[ColumnSpec, ...] = (
    ("ISBN", "isbn13"),
    ("Title", "title"),
    ("Subtitle", "subtitle"),
    ("Contributors", "contributors"),
    ("Imprint", "imprint"),
    ("Format", "product_form"),
    ("Status", "publishing_status"),
    ("Publication date", "publication_date"),
    ("Pages", "pages"),
    ("BISAC", "bisac"),
    ("Thema", "thema"),
    ("Price GBP", "price:GBP"),
    ("Price USD", "price:USD"),
    ("Price EUR", "price:EUR"),
)


def _price_field(spec: str) -> Field | None:
    parts = spec.split(":")
    if parts[0] != "price" or len(parts) not in (2, 3) or len(parts[1]) != 3:
        return None
    currency = parts[1].upper()
    price_type = parts[2] if len(parts) == 3 else None

    def field(work: Work, product: Product) -> Cell:
        for price in product.prices:
            if price.currency == currency and (
                price_type is None or price.price_type == price_type
            ):
                return price.amount
        return None

    return field


def resolve_columns(columns: Sequence[ColumnSpec]) -> list[tuple[str, Field]]:
    """Header and getter per column; ``ValueError`` naming every unknown field."""
    resolved: list[tuple[str, Field]] = []
    unknown: list[str] = []
    for spec in columns:
        header, name = spec if isinstance(spec, tuple) else (spec, spec)
        getter = FIELDS.get(name) or _price_field(name)
        if getter is None:
            unknown.append(name)
        else:
            resolved.append((header, getter))
    if unknown:
        known = ", ".join(sorted(FIELDS))
        raise ValueError(
            f"unknown spreadsheet column(s): {', '.join(unknown)}; "
            f"known: {known}, price:CUR, price:CUR:TYPE"
        )
    return resolved


def rows(
    works: Iterable[Work],
    columns: Sequence[ColumnSpec] = DEFAULT_COLUMNS,
    *,
    rules: RecipientRules | None = None,
) -> Iterable[list[Cell]]:
    """Header row, then one row per product (filtered and trimmed by ``rules`` if given)."""
    resolved = resolve_columns(columns)
    yield [header for header, _ in resolved]
    for work in works:
        for product in work.products:
            if rules is not None:
                if not rules.accepts(work, product):
                    continue
                product = rules.trim_prices(product)
            yield [getter(work, product) for _, getter in resolved]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(value: Cell) -> Cell:
    """Text a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``...) gets a
    leading apostrophe; anything else is returned as is."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def export_csv(
    works: Iterable[Work],
    sink: IO[str],
    columns: Sequence[ColumnSpec] = DEFAULT_COLUMNS,
    *,
    rules: RecipientRules | None = None,
    delimiter: str = ",",
) -> int:
    """Write a CSV (open ``sink`` with ``newline=""``); returns the number of product rows."""
    writer = csv.writer(sink, delimiter=delimiter, lineterminator="\r\n")
    count = -1
    for row in rows(works, columns, rules=rules):
        writer.writerow(
            [
                "" if v is None else v.isoformat() if isinstance(v, date) else formula_safe(v)
                for v in row
            ]
        )
        count += 1
    return count


def export_xlsx(
    works: Iterable[Work],
    target: Path | IO[bytes],
    columns: Sequence[ColumnSpec] = DEFAULT_COLUMNS,
    *,
    rules: RecipientRules | None = None,
    sheet_name: str = "Products",
) -> int:
    """Write an XLSX workbook in openpyxl's write-only (streaming) mode; returns product rows."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=sheet_name)
    count = -1
    for row in rows(works, columns, rules=rules):
        # Dates stay dates and amounts stay numbers: partners sort and sum them.
        sheet.append([formula_safe(v) if not isinstance(v, datetime) else v.date() for v in row])
        count += 1
    workbook.save(target)
    return count
