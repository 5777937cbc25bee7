"""Seeding the sandbox catalogue: generated, or from any ONIX 3.0 file.

ONIX seeding uses the service's own ONIX reader (``formats.onix.reader``), then adds what ONIX
does not carry and the flows need: a project stage, the usual to-dos and a contract per work.
Cover links in the ONIX point at the publisher's web server; by default they are replaced by
sandbox-served JPEGs of the stated size so the sandbox works offline (``keep_resource_urls``
keeps them).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

from consonance_sftp.errors import ValidationFailed
from consonance_sftp.formats.onix import codes
from consonance_sftp.formats.onix.reader import ReadReport, read_onix_works
from consonance_sftp.models import Contract, Price, Product, SupportingResource, Todo, Work
from consonance_sftp.sandbox.consonance.catalogue import Catalogue
from consonance_sftp.sandbox.consonance.generator import TODO_NAMES, generate_catalogue
from consonance_sftp.sandbox.consonance.resolvers import contained_product, enum_values, to_enum

__all__ = [
    "ReadReport",
    "catalogue_dir",
    "catalogue_from_onix",
    "load_or_seed",
    "not_served",
    "seed",
]

CATALOGUE_DIR = "consonance"


def catalogue_dir(data_dir: Path) -> Path:
    """Where the catalogue lives under the sandbox data dir (next to the SFTP partners')."""
    return data_dir / CATALOGUE_DIR


def _placeholder(resource: SupportingResource) -> SupportingResource:
    is_jpeg = (
        resource.content_type or ""
    ).lower() == "image/jpeg" or resource.filename.lower().endswith((".jpg", ".jpeg"))
    if not is_jpeg:
        return resource
    width = min(resource.width or 40, 4000)
    height = min(resource.height or 60, 6000)
    return dataclasses.replace(
        resource,
        url=f"/files/generated/sr-{resource.id}-{width}x{height}.jpg",
        content_type="image/jpeg",
        width=width,
        height=height,
    )


def _name(product: Product) -> str:
    ident = product.isbn13 or product.gtin or "no ISBN"
    ref = f", record {product.record_reference}" if product.record_reference else ""
    return f"{ident}{ref}"


def _unrepresentable(work: Work) -> list[str]:
    """Why each product of ``work`` could not be served by the sandbox's GraphQL API.

    A GraphQL enum refuses a value it does not list, and one such value in a catalogue breaks
    every query that meets it; the product is refused by name at seeding instead.
    """
    enums = enum_values()
    problems: list[str] = []

    def check(product: Product | None, enum: str, element: str, value: str | None) -> None:
        if value is not None and to_enum(value) not in enums[enum]:
            who = _name(product) if product else f"work '{work.title}'"
            problems.append(f"{who}: {element} {value} is not a Consonance {enum} value")

    for product in work.products:
        check(product, "ProductTypename", "product type", product.typename)
        check(product, "ONIX21ProductFormCode", "ProductForm", product.product_form)
        check(product, "ONIXPublishingStatusCode", "PublishingStatus", product.publishing_status)
        for price in product.prices:
            check(product, "CurrencyCode", "CurrencyCode", price.currency)
            check(product, "ONIXPriceTypeCode", "PriceType", price.price_type)
            check(product, "ONIXPriceTypeQualifierCode", "PriceQualifier", price.qualifier)
    first = work.products[0] if len(work.products) == 1 else None
    for contribution in work.contributions:
        check(first, "ONIXContributorRoleCode", "ContributorRole", contribution.role)
    for text in work.marketing_texts:
        check(first, "MarketingTextVariant", "TextType", text.variant)
        for audience in text.audiences:
            check(first, "ONIXContentAudienceCode", "ContentAudience", audience)
    for resource in work.supporting_resources:
        check(first, "SupportingResourceVariant", "ResourceContentType", resource.variant)
        for audience in resource.audiences:
            check(first, "ONIXContentAudienceCode", "ContentAudience", audience)
    return problems


def _commonest_currency(works: list[Work]) -> str:
    found = Counter(price.currency for w in works for p in w.products for price in p.prices)
    return found.most_common(1)[0][0] if found else "GBP"


def _free_as_zero(product: Product, currency: str, cat: Catalogue) -> tuple[Price, ...]:
    """A free product (UnpricedItemType 01, no price) held as Consonance holds a free book.

    Consonance has no "free of charge" field: a free book is a 0.00 price. Without it the
    sandbox would answer "no price", and a feed would say "price to be announced" (02).
    """
    if product.prices or product.unpriced_item_type != "01":
        return product.prices
    return (Price(id=cat.new_id(), amount=Decimal("0.00"), currency=currency, price_type="02"),)


def not_served(catalogue: Catalogue) -> dict[str, int]:
    """What the catalogue holds that Consonance's public API (so the sandbox's) cannot serve.

    Per ONIX element, with counts: the list in docs/reference/onix.md ("What comes back from
    Consonance, and what cannot"), for the records of this catalogue. A feed made through the
    API cannot send these; ``onix compare`` reports them as dropped.
    """
    found: Counter[str] = Counter()
    for work in catalogue.works.values():
        if work.other_subjects:
            found["DescriptiveDetail/Subject (scheme other than BIC, BISAC, Thema)"] += len(
                work.other_subjects
            )
        for contribution in work.contributions:
            for ident in contribution.contributor.identifiers:
                if ident.id_type != "16":
                    found[f"Contributor/NameIdentifier (NameIDType {ident.id_type})"] += 1
        for p in work.products:
            for d in p.publishing_dates:
                if d.role != "01":
                    found[f"PublishingDetail/PublishingDate (role {d.role})"] += 1
                elif len(d.value) < 8:
                    found["PublishingDetail/PublishingDate (role 01, not a whole date)"] += 1
            for r in p.sales_rights:
                t = r.territory
                if set(t.regions_included) - {"WORLD"} or t.regions_excluded:
                    # Consonance holds for-sale and not-for-sale countries, no regions.
                    found["PublishingDetail/SalesRights/Territory (regions other than WORLD)"] += 1
                if r.rights_type == "02":
                    found[
                        "PublishingDetail/SalesRights (02: set sales_rights_type per recipient)"
                    ] += 1
            for price in p.prices:
                if price.tax_rate_code or price.tax_rate_percent is not None:
                    found["ProductSupply/SupplyDetail/Price/Tax"] += 1
                if set(price.regions) - {"WORLD"} or price.excluded_territories:
                    # WORLD alone comes back (from the for-sale fields); other regions and
                    # exclusions do not.
                    found["ProductSupply/SupplyDetail/Price/Territory (regions or exclusions)"] += 1
            if p.unpriced_item_type not in (None, "01"):
                found[f"ProductSupply/SupplyDetail/UnpricedItemType ({p.unpriced_item_type})"] += 1
            # Related products come back as the work's other products (codes.sibling_relations).
            derived = codes.sibling_relations(p, work.products)
            lost = [r for r in p.related_products if r not in derived]
            if lost:
                found[
                    "RelatedMaterial/RelatedProduct (not another product of the work, or not "
                    "the relation Consonance writes for it)"
                ] += len(lost)
            held_parts = [x for x in p.parts if contained_product(catalogue, x.isbn13)]
            if len(held_parts) < len(p.parts):
                found["DescriptiveDetail/ProductPart (not a product of the catalogue)"] += len(
                    p.parts
                ) - len(held_parts)
            for part in held_parts:
                contained = contained_product(catalogue, part.isbn13)
                assert contained is not None
                if (part.form, part.form_details) != codes.product_form_30(contained):
                    found["DescriptiveDetail/ProductPart/ProductForm (not the product's own)"] += 1
            if any(x.primary for x in p.parts):
                found["DescriptiveDetail/ProductPart/PrimaryPart"] += 1
            if p.composition not in (None, "00", "10") or (
                p.composition == "10" and not held_parts
            ):
                found[f"DescriptiveDetail/ProductComposition ({p.composition})"] += 1
            if p.technical_protection:
                found["DescriptiveDetail/EpubTechnicalProtection"] += len(p.technical_protection)
            if p.weight_g is not None:
                found["DescriptiveDetail/Measure (weight)"] += 1
    return dict(found)


def _duplicates(works: list[Work]) -> list[str]:
    """Record references and ISBNs that more than one product of the message carries."""
    seen: dict[tuple[str, str], int] = {}
    for work in works:
        for product in work.products:
            for kind, value in (
                ("RecordReference", product.record_reference),
                ("ISBN", product.isbn13),
                ("GTIN", product.gtin),
            ):
                if value:
                    seen[(kind, value)] = seen.get((kind, value), 0) + 1
    return [f"{kind} {value} is on {n} products" for (kind, value), n in seen.items() if n > 1]


def catalogue_from_onix(
    source: Path | BinaryIO,
    *,
    with_workflow: bool = True,
    keep_resource_urls: bool = False,
    now: datetime | None = None,
    allow_empty: bool = False,
    report: ReadReport | None = None,
) -> Catalogue:
    """A catalogue of everything ``source`` holds, or ValidationFailed naming what it cannot.

    Refused: a message with no product (unless ``allow_empty``: seeding it would replace the
    catalogue with nothing), one where two products share a record reference or ISBN, and a
    product with a code the sandbox API cannot serve. ``report`` collects what was not carried.
    """
    stamp = now or datetime.now(UTC)
    report = report if report is not None else ReadReport()
    # Products the file relates as one work in other forms are one Consonance work.
    works = read_onix_works(source, report, join_formats=True)
    where = str(source) if isinstance(source, Path) else getattr(source, "name", "stream")
    if not works and not allow_empty:
        raise ValidationFailed(
            f"{where}: the message has no Product; seeding it would leave an empty catalogue",
            hint="pass --allow-empty to seed an empty catalogue on purpose",
        )
    duplicates = _duplicates(works)
    if duplicates:
        raise ValidationFailed(f"{where}: products are not told apart", duplicates)
    problems = [p for work in works for p in _unrepresentable(work)]
    if problems:
        raise ValidationFailed(
            f"{where}: {len(problems)} value(s) the sandbox API could not serve", problems
        )
    cat = Catalogue.from_records(works)
    out: list[Work] = []
    contracts: list[Contract] = []
    currency = _commonest_currency(works)
    for work in works:
        products = tuple(
            dataclasses.replace(p, updated_at=stamp, prices=_free_as_zero(p, currency, cat))
            for p in work.products
        )
        resources = tuple(
            r if r.created_at else dataclasses.replace(r, created_at=stamp)
            for r in work.supporting_resources
        )
        if not keep_resource_urls:
            resources = tuple(_placeholder(r) for r in resources)
        changes: dict[str, object] = {
            "products": products,
            "supporting_resources": resources,
            "updated_at": stamp,
        }
        if with_workflow:
            pub = min((p.publication_date for p in products if p.publication_date), default=None)
            pub = pub or stamp.date()
            if not work.todos:
                changes["todos"] = tuple(
                    Todo(id=cat.new_id(), name=name, due_date=pub - timedelta(days=120 - 20 * i))
                    for i, name in enumerate(TODO_NAMES)
                )
            if work.project_stage is None:
                changes["project_stage"] = "Editorial"
            if not work.contract_ids:
                contract = Contract(
                    id=cat.new_id(), contract_name=f"Contract: {work.title}", work_id=work.id
                )
                contracts.append(contract)
                changes["contract_ids"] = (contract.id,)
        out.append(dataclasses.replace(work, **changes))  # type: ignore[arg-type]
    seeded = Catalogue.from_records(out, cat.contacts.values(), contracts)
    seeded.next_id = max(seeded.next_id, cat.next_id)
    return seeded


def seed(
    data_dir: Path,
    *,
    products: int | None = None,
    works: int | None = None,
    seed_value: int = 1,
    onix: Path | None = None,
    keep_resource_urls: bool = False,
    allow_empty: bool = False,
    report: ReadReport | None = None,
) -> Catalogue:
    """Build a catalogue and save it under ``data_dir``; returns it.

    From ``onix``, ``report`` (when given) says what the file held that was not carried.
    """
    if onix is not None:
        catalogue = catalogue_from_onix(
            onix, keep_resource_urls=keep_resource_urls, allow_empty=allow_empty, report=report
        )
    elif works is not None:
        catalogue = generate_catalogue(seed=seed_value, works=works)
    else:
        catalogue = generate_catalogue(products or 200, seed=seed_value)
    catalogue.save(catalogue_dir(data_dir))
    return catalogue


def load_or_seed(data_dir: Path, *, works: int = 24, seed_value: int = 1) -> Catalogue:
    """The saved catalogue, or a generated one of ``works`` works saved for next time."""
    where = catalogue_dir(data_dir)
    if Catalogue.exists(where):
        return Catalogue.load(where)
    return seed(data_dir, works=works, seed_value=seed_value)
