"""Compare two ONIX messages product by product, facet by facet (``onix compare``).

It is how a publisher checks a feed against the one they send today: both files are read
with the service's own reader (``reader.iter_onix_records``; ONIX 3.0, 3.1, or 2.1 read as
the 3.0 it maps to, so a 2.1 feed can be checked against a 3.0 one), products are paired by ISBN,
else GTIN, else record reference, and each facet of a product becomes a set of plain-text
items (``PublishingDate 02 20270115``, ``Price 02 12.99 AUD in AU, tax Z 0``...). An item of
the source that the produced file lacks is *dropped*; an item only in the produced file is
*added*; a facet with both (a value that differs) is *changed*.

Amounts are compared as numbers (``9.90`` is ``9.9``), codes and text as written. What the
reader does not read is not compared (``sandbox seed`` lists those elements).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

from ...errors import ValidationFailed
from ...models import Price, Territory
from .reader import OnixRecord, iter_onix_records

FACETS = (
    "identifiers",
    "form",
    "titles",
    "contributors",
    "subjects",
    "dates",
    "rights",
    "markets",
    "prices",
    "supply",
    "collateral",
    "series",
    "audience",
    "related",
)
MATCH, CHANGED, DROPPED, ADDED, ABSENT = "match", "changed", "dropped", "added", "absent"


def _amount(value: Decimal | None) -> str:
    if value is None:
        return "-"
    return format(value.normalize(), "f")


def _where(t: Territory) -> str:
    parts = [
        *t.countries_included,
        *t.regions_included,
        *(f"not {c}" for c in t.countries_excluded),
        *(f"not {r}" for r in t.regions_excluded),
    ]
    return " ".join(parts) or "(no territory)"


def _places(t: Territory) -> list[str]:
    """A territory as one item per country or region it names."""
    return [
        *(f"country {c}" for c in t.countries_included),
        *(f"region {r}" for r in t.regions_included),
        *(f"excluding country {c}" for c in t.countries_excluded),
        *(f"excluding region {r}" for r in t.regions_excluded),
    ]


def _price(p: Price) -> str:
    where = _where(
        Territory(
            countries_included=tuple(sorted(p.territories)),
            regions_included=tuple(sorted(p.regions)),
            countries_excluded=tuple(sorted(p.excluded_territories)),
        )
    )
    text = f"Price {p.price_type} {_amount(p.amount)} {p.currency} in {where}"
    if p.qualifier:
        text += f", qualifier {p.qualifier}"
    if p.effective_from or p.effective_to:
        text += f", from {p.effective_from or '-'} until {p.effective_to or '-'}"
    return text


def _tax(p: Price) -> str | None:
    """A price's tax as an item of its own: a feed can lose the tax and keep the price."""
    if not p.tax_rate_code and p.tax_rate_percent is None:
        return None
    return f"Tax on {_price(p)}: {p.tax_rate_code or '-'} {_amount(p.tax_rate_percent)}"


def facets_of(record: OnixRecord) -> dict[str, frozenset[str]]:
    """Each facet of one product as a set of plain-text items."""
    p = record.product
    out: dict[str, set[str]] = {name: set() for name in FACETS}

    ids = out["identifiers"]
    for label, value in (("ISBN", p.isbn13), ("GTIN", p.gtin), ("DOI", p.doi)):
        if value:
            ids.add(f"{label} {value}")
    if record.work_identifier:
        ids.add(f"WorkIdentifier {record.work_identifier.id_type} {record.work_identifier.value}")

    form = out["form"]
    form.add(f"ProductForm {p.onix_product_form or p.product_form or '00'}")
    form.update(f"ProductFormDetail {d}" for d in p.product_form_details)
    if p.composition not in (None, "00") or p.parts:
        form.add(f"ProductComposition {p.composition or '00'}")
    for part in p.parts:
        details = " ".join(part.form_details) or "-"
        named = f"ProductPart {part.form} {details} ISBN {part.isbn13 or '-'}"
        form.add(f"{named} x{part.number_of_copies}")
        if part.primary:  # an item of its own: a feed can lose the flag and keep the part
            form.add(f"PrimaryPart: {named}")
    form.update(f"EpubTechnicalProtection {x}" for x in p.technical_protection)
    form.update(f"Extent {x.extent_type} {x.value} {x.unit}" for x in p.extents)
    for label, mm in (
        ("height", p.height_mm),
        ("width", p.width_mm),
        ("thickness", p.thickness_mm),
    ):
        if mm is not None:
            form.add(f"Measure {label} {_amount(mm)} mm")
    if p.weight_g is not None:
        form.add(f"Measure weight {_amount(p.weight_g)} g")

    titles = out["titles"]
    if record.title:
        titles.add(f"Title {record.title}")
    if record.subtitle:
        titles.add(f"Subtitle {record.subtitle}")
    if p.edition_number:
        titles.add(f"EditionNumber {p.edition_number}")
    if p.edition_statement:
        titles.add(f"EditionStatement {p.edition_statement}")
    titles.update(f"EditionType {x}" for x in p.edition_types)
    if p.language:
        titles.add(f"Language {p.language}")

    people = out["contributors"]
    for contact, role, _seq in record.contributors:
        people.add(f"{role} {contact.name}")
        people.update(
            f"{role} {contact.name}: NameIDType {i.id_type} {i.value}" for i in contact.identifiers
        )

    subjects = out["subjects"]
    for s in record.subjects:
        subjects.add(f"{s.scheme.value} {s.code}" + (" (main)" if s.main else ""))
    for o in record.other_subjects:
        subjects.add(f"scheme {o.scheme_id} {o.code or o.heading}" + (" (main)" if o.main else ""))
    subjects.update(f"keywords {k}" for k in record.keywords)

    out["dates"].update(
        f"PublishingDate {d.role} {d.value}"
        + (f" (format {d.dateformat})" if d.dateformat not in (None, "00") else "")
        for d in p.publishing_dates
    )

    rights = out["rights"]
    # One item per country or region, however the file groups them into SalesRights blocks.
    for r in p.sales_rights:
        rights.update(f"SalesRights {r.rights_type} {item}" for item in _places(r.territory))
    if p.publishing_status:
        rights.add(f"PublishingStatus {p.publishing_status}")

    # Where the product is supplied: every territory of every Market, however the file groups
    # them into ProductSupply blocks (which price applies where is the prices facet's).
    for t in record.markets:
        out["markets"].update(f"Market {item}" for item in _places(t))

    prices = out["prices"]
    prices.update(_price(x) for x in p.prices)
    prices.update(tax for x in p.prices if (tax := _tax(x)))
    if p.unpriced_item_type:
        prices.add(f"UnpricedItemType {p.unpriced_item_type}")

    out["supply"].update(
        f"Supplier {name or '-'} role {role or '-'}, availability {availability or '-'}"
        for name, role, availability in record.supplies
    )

    collateral = out["collateral"]
    for variant, text, text_format, audiences in record.texts:
        shown = " ".join(text.split())
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        collateral.add(
            f"TextContent {variant}"
            + (f" for {' '.join(audiences)}" if audiences else "")
            + f": {shown}"
            + (f" (format {text_format})" if text_format else "")
        )
    for kind, mode, resource_form, audiences, _name in record.resource_facts:
        # The link itself is where the file is served, which a feed may change on purpose.
        collateral.add(
            f"SupportingResource {kind or '-'} mode {mode or '-'} form {resource_form or '-'}"
            + (f" for {' '.join(audiences)}" if audiences else "")
        )

    out["series"].update(
        f"Collection {s.name}"
        + (f" part {s.part_number}" if s.part_number else "")
        + (f" ISSN {s.print_issn}" if s.print_issn else "")
        for s in record.series
    )
    out["audience"].update(f"Audience {a.code_type} {a.value}" for a in p.audiences)
    out["related"].update(
        f"RelatedProduct {' '.join(r.relation_codes)} {r.isbn13}" for r in p.related_products
    )
    return {name: frozenset(items) for name, items in out.items()}


def key_of(record: OnixRecord) -> str:
    p = record.product
    if p.isbn13:
        return f"ISBN {p.isbn13}"
    if p.gtin:
        return f"GTIN {p.gtin}"
    return f"record {p.record_reference or record.title}"


@dataclass(frozen=True, slots=True)
class FacetResult:
    facet: str
    status: str  # match, changed, dropped, added
    dropped: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    matched: int = 0


@dataclass(frozen=True, slots=True)
class ProductResult:
    key: str
    title: str
    status: str  # match, changed, dropped (not in the produced file), added (only there)
    facets: tuple[FacetResult, ...] = ()


@dataclass(slots=True)
class Comparison:
    products: list[ProductResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing changed, added or dropped."""
        return all(p.status == MATCH for p in self.products)

    def dropped(self) -> dict[str, list[str]]:
        """Facet -> keys of the products that lost something in it (``"product"``: whole)."""
        found: dict[str, list[str]] = {}
        for product in self.products:
            if product.status == DROPPED:
                found.setdefault("product", []).append(product.key)
            for facet in product.facets:
                if facet.dropped:
                    found.setdefault(facet.facet, []).append(product.key)
        return found

    def counts(self) -> dict[str, int]:
        counts = {MATCH: 0, CHANGED: 0, DROPPED: 0, ADDED: 0}
        for product in self.products:
            counts[product.status] += 1
        return counts

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": self.counts(),
            "products": [
                {
                    "key": p.key,
                    "title": p.title,
                    "status": p.status,
                    "facets": [
                        {
                            "facet": f.facet,
                            "status": f.status,
                            "matched": f.matched,
                            "dropped": list(f.dropped),
                            "added": list(f.added),
                        }
                        for f in p.facets
                    ],
                }
                for p in self.products
            ],
        }


def compare_facets(
    source: dict[str, frozenset[str]], produced: dict[str, frozenset[str]]
) -> tuple[FacetResult, ...]:
    results = []
    for name in FACETS:
        before, after = source.get(name, frozenset()), produced.get(name, frozenset())
        if not before and not after:
            continue
        dropped = tuple(sorted(before - after))
        added = tuple(sorted(after - before))
        status = CHANGED if dropped and added else DROPPED if dropped else ADDED if added else MATCH
        results.append(FacetResult(name, status, dropped, added, len(before & after)))
    return tuple(results)


def _by_key(records: Iterable[OnixRecord], which: str) -> dict[str, OnixRecord]:
    """Records by key; two records with one key cannot be paired, and are refused by name."""
    found: dict[str, OnixRecord] = {}
    twice: list[str] = []
    for record in records:
        key = key_of(record)
        if key in found:
            twice.append(f"{key} is on more than one product")
        found.setdefault(key, record)
    if twice:
        raise ValidationFailed(f"{which}: products cannot be paired", sorted(set(twice)))
    return found


def compare_records(source: Iterable[OnixRecord], produced: Iterable[OnixRecord]) -> Comparison:
    before, after = _by_key(source, "source"), _by_key(produced, "produced")
    comparison = Comparison()
    for key, record in before.items():
        other = after.get(key)
        if other is None:
            comparison.products.append(ProductResult(key, record.title, DROPPED))
            continue
        facets = compare_facets(facets_of(record), facets_of(other))
        statuses = {f.status for f in facets}
        status = (
            MATCH if statuses <= {MATCH} else DROPPED if statuses <= {MATCH, DROPPED} else CHANGED
        )
        comparison.products.append(ProductResult(key, record.title, status, facets))
    for key, record in after.items():
        if key not in before:
            comparison.products.append(ProductResult(key, record.title, ADDED))
    return comparison


def compare_files(source: Path | BinaryIO, produced: Path | BinaryIO) -> Comparison:
    """Compare two ONIX files, 3.x or 2.1 (reference names or short tags, any mix): a 2.1
    product is read as the 3.0 product it maps to (``reader21``), into the same facets."""
    return compare_records(
        list(iter_onix_records(source, accept_21=True)),
        list(iter_onix_records(produced, accept_21=True)),
    )
