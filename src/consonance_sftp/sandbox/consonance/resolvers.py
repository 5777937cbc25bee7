"""Binds the sandbox schema (``schema.graphql``) to the catalogue.

Fields whose name is the camelCase of a model attribute resolve by default; the rest are listed
in ``RESOLVERS``. ONIX codes are stored bare (``02``) and leave as enum names (``_02``): the
two helpers ``to_enum``/``from_enum`` are the only place that knows about the underscore.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib import resources
from typing import Any, TypeAlias
from urllib.parse import quote, urljoin

from graphql import GraphQLEnumType, GraphQLResolveInfo, GraphQLSchema, build_schema
from lxml import etree

from consonance_sftp.formats.onix import codes as onix_codes
from consonance_sftp.models import (
    Contact,
    Contribution,
    MarketingText,
    Price,
    Product,
    ProductionFile,
    ProductionRun,
    Subject,
    SubjectScheme,
    SupportingResource,
    Work,
)
from consonance_sftp.sandbox.consonance.catalogue import Catalogue, Note

DEFAULT_PAGE_SIZE = 250
# For records that came without a creation time (ONIX carries none); the field is non-null.
_UNKNOWN_TIME = datetime(2000, 1, 1, tzinfo=UTC)

# graphql-core 3.3 made the resolve info generic over the context type.
Info: TypeAlias = "GraphQLResolveInfo[Any]"


@dataclass(slots=True)
class Context:
    catalogue: Catalogue
    base_url: str  # "http://127.0.0.1:8765", for absolute file and upload URLs
    page_size: int = DEFAULT_PAGE_SIZE


Resolver = Callable[..., Any]


def to_enum(code: str | None) -> str | None:
    """ONIX code → GraphQL enum name: numeric codes get Consonance's leading underscore."""
    if code is None:
        return None
    return f"_{code}" if code[:1].isdigit() else code


def from_enum(name: str | None) -> str | None:
    if name is None:
        return None
    return name[1:] if name.startswith("_") else name


_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


@functools.cache
def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def default_resolver(source: Any, info: Info, **_: Any) -> Any:
    if isinstance(source, dict):
        return source.get(info.field_name)
    return getattr(source, _snake(info.field_name), None)


def _ctx(info: Info) -> Context:
    ctx: Context = info.context
    return ctx


def _abs(info: Info, path: str | None) -> str | None:
    """A URL as served: absolute links as they are, others joined to the sandbox's own base.

    ``/files/x.jpg`` and a relative ``9780...epub`` (as some ONIX links are) both become
    ``http://host:port/...``, never ``http://host:port9780...``.
    """
    if path is None or "://" in path:
        return path
    return urljoin(_ctx(info).base_url.rstrip("/") + "/", quote(path, safe="/:?=&%#+@,;~"))


# --- ONIX code descriptions (small subsets; enough for readable answers) -------------------

_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "58": {"01": "RRP excluding tax", "02": "RRP including tax", "05": "Publisher retail price"},
    "59": {"05": "Consumer", "06": "Corporate", "10": "Library"},
    "64": {
        "02": "Forthcoming",
        "04": "Active",
        "06": "Withdrawn from sale",
        "07": "Out of print",
        "08": "Inactive",
    },
    "7": {
        "BB": "Hardback",
        "BC": "Paperback",
        "DG": "Electronic book text",
        "AJ": "Downloadable audio file",
    },
    "17": {"A01": "By (author)", "A12": "Illustrated by", "B01": "Edited by", "E07": "Read by"},
}


def _onix_code(code: str | None, code_list: str) -> dict[str, Any] | None:
    if code is None:
        return None
    return {
        "code": code,
        "codeList": code_list,
        "description": _DESCRIPTIONS.get(code_list, {}).get(code),
        "isDeprecated": False,
        "notes": None,
        "value": to_enum(code),
    }


# --- search ------------------------------------------------------------------------------


def _date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _changed_since(record: Work | Product, since: date) -> bool:
    return record.updated_at is not None and record.updated_at.date() >= since


def work_matches(work: Work, search: dict[str, Any] | None) -> bool:
    if not search:
        return True
    s = search
    if s.get("idEq") is not None and work.id != s["idEq"]:
        return False
    if s.get("idIn") is not None and work.id not in s["idIn"]:
        return False
    if s.get("contractIdEq") is not None and s["contractIdEq"] not in work.contract_ids:
        return False
    if s.get("titleEq") is not None and work.title != s["titleEq"]:
        return False
    if s.get("titleCont") is not None and s["titleCont"].lower() not in work.title.lower():
        return False
    subtitle = work.subtitle or ""
    if s.get("subtitleEq") is not None and subtitle != s["subtitleEq"]:
        return False
    if s.get("subtitleCont") is not None and s["subtitleCont"].lower() not in subtitle.lower():
        return False
    if s.get("subtitlePresent") is not None and bool(work.subtitle) != s["subtitlePresent"]:
        return False
    if s.get("imprintIdIn") is not None and (
        work.imprint is None or work.imprint.id not in s["imprintIdIn"]
    ):
        return False
    since = _date(s.get("changedSince"))
    # A work counts as changed when it or one of its products did (closely related records).
    return not (
        since is not None
        and not _changed_since(work, since)
        and not any(_changed_since(p, since) for p in work.products)
    )


_DATE_TESTS: tuple[tuple[str, Callable[[date, date], bool]], ...] = (
    ("Eq", operator.eq),
    ("Gt", operator.gt),
    ("Lt", operator.lt),
    ("Gteq", operator.ge),
    ("Lteq", operator.le),
)


def product_matches(product: Product, work: Work, search: dict[str, Any] | None) -> bool:
    if not search:
        return True
    s = search
    if s.get("idEq") is not None and product.id != s["idEq"]:
        return False
    if s.get("isbn13Eq") is not None and product.isbn13 != s["isbn13Eq"].replace("-", ""):
        return False
    if s.get("isbn13In") is not None and product.isbn13 not in {
        i.replace("-", "") for i in s["isbn13In"]
    }:
        return False
    if s.get("isbn13Assigned") is not None and bool(product.isbn13) != s["isbn13Assigned"]:
        return False
    if s.get("titleEq") is not None and product.title != s["titleEq"]:
        return False
    if s.get("titleCont") is not None and s["titleCont"].lower() not in product.title.lower():
        return False
    pub = product.publication_date
    for suffix, test in _DATE_TESTS:
        bound = _date(s.get(f"publicationDate{suffix}"))
        if bound is not None and (pub is None or not test(pub, bound)):
            return False
    forms = s.get("onix21ProductFormCodeIn")
    if forms is not None and to_enum(product.product_form) not in forms:
        return False
    types = s.get("productTypes")
    if types and product.typename not in types:  # an empty list is ignored, as documented
        return False
    since = _date(s.get("changedSince"))
    # "Likely to have changed": a change to the work or a sibling product counts too.
    return not (
        since is not None and not _changed_since(product, since) and not _changed_since(work, since)
    )


def price_matches(price: Price, search: dict[str, Any] | None) -> bool:
    if not search:
        return True
    s = search
    if s.get("amountLteq") is not None and price.amount > Decimal(str(s["amountLteq"])):
        return False
    if s.get("amountGteq") is not None and price.amount < Decimal(str(s["amountGteq"])):
        return False
    if s.get("currencyCodeIn") is not None and price.currency not in s["currencyCodeIn"]:
        return False
    types = s.get("onixPriceTypeCodeIn")
    if types is not None and to_enum(price.price_type) not in types:
        return False
    qualifiers = s.get("onixPriceTypeQualifierCodeIn")
    return qualifiers is None or to_enum(price.qualifier) in qualifiers


def _page(items: Iterable[Any], ctx: Context) -> list[Any]:
    out = []
    for item in items:
        out.append(item)
        if len(out) >= ctx.page_size:
            break
    return out


# --- root fields -------------------------------------------------------------------------


def q_works(
    _: Any,
    info: Info,
    workSearch: dict[str, Any] | None = None,
    productSearch: dict[str, Any] | None = None,
) -> list[Work]:
    ctx = _ctx(info)
    after = (workSearch or {}).get("after")
    found: Iterator[Work] = (
        w
        for w in ctx.catalogue.works_after(after)
        if work_matches(w, workSearch)
        and (not productSearch or any(product_matches(p, w, productSearch) for p in w.products))
    )
    return _page(found, ctx)


def q_work(_: Any, info: Info, workSearch: dict[str, Any]) -> Work | None:
    cat = _ctx(info).catalogue
    if workSearch.get("idEq") is not None:
        work = cat.works.get(workSearch["idEq"])
        return work if work is not None and work_matches(work, workSearch) else None
    return next((w for w in cat.works_after(None) if work_matches(w, workSearch)), None)


def q_products(
    _: Any,
    info: Info,
    productSearch: dict[str, Any] | None = None,
    workSearch: dict[str, Any] | None = None,
    priceSearch: dict[str, Any] | None = None,
) -> list[Product]:
    ctx = _ctx(info)
    cat = ctx.catalogue
    after = (productSearch or {}).get("after")
    found = (
        p
        for p in cat.products_after(after)
        if product_matches(p, cat.work_of(p), productSearch)
        and (not workSearch or work_matches(cat.work_of(p), {**workSearch, "after": None}))
        and (not priceSearch or any(price_matches(pr, priceSearch) for pr in p.prices))
    )
    return _page(found, ctx)


def q_product(
    _: Any,
    info: Info,
    productSearch: dict[str, Any],
) -> Product | None:
    cat = _ctx(info).catalogue
    isbn = productSearch.get("isbn13Eq")
    if isbn is not None:
        pid = cat.isbn_index.get(isbn.replace("-", ""))
        candidates: Iterable[Product] = [cat.products[pid]] if pid is not None else []
    elif productSearch.get("idEq") is not None:
        found = cat.products.get(productSearch["idEq"])
        candidates = [found] if found is not None else []
    else:
        candidates = cat.products_after(None)
    return next((p for p in candidates if product_matches(p, cat.work_of(p), productSearch)), None)


def q_contacts(
    _: Any,
    info: Info,
    contactSearch: dict[str, Any] | None = None,
) -> list[Contact]:
    ctx = _ctx(info)
    s = contactSearch or {}
    after = s.get("after") or 0
    name = (s.get("personNameCont") or "").lower()
    found = (
        c
        for _, c in sorted(ctx.catalogue.contacts.items())
        if c.id > after
        and (s.get("idEq") is None or c.id == s["idEq"])
        and (not name or (not c.is_organisation and name in c.name.lower()))
    )
    return _page(found, ctx)


def q_organisation(
    _: Any,
    info: Info,
    organisationSearch: dict[str, Any],
) -> Contact | None:
    name = organisationSearch.get("nameEq")
    return next(
        (
            c
            for c in _ctx(info).catalogue.contacts.values()
            if c.is_organisation and (name is None or c.name == name)
        ),
        None,
    )


def q_contract(_: Any, info: Info, contractSearch: dict[str, Any]) -> Any:
    return _ctx(info).catalogue.contracts.get(contractSearch.get("idEq") or -1)


# --- object fields -------------------------------------------------------------------------


def _isbn(product: Product, _: Info) -> dict[str, str | None] | None:
    isbn = product.isbn13
    if not isbn:
        return None
    isbn10 = None
    if isbn.startswith("978"):
        core = isbn[3:12]
        check = (11 - sum((10 - i) * int(d) for i, d in enumerate(core)) % 11) % 11
        isbn10 = core + ("X" if check == 10 else str(check))
    return {
        "isbn10": isbn10,
        "isbn13": isbn,
        # A real hyphenation needs the ISBN ranges; the sandbox uses a fixed 3-1-4-4-1 split.
        "isbnWithDashes": f"{isbn[:3]}-{isbn[3]}-{isbn[4:8]}-{isbn[8:12]}-{isbn[12]}",
        "isbnWithSpaces": f"{isbn[:3]} {isbn[3]} {isbn[4:8]} {isbn[8:12]} {isbn[12]}",
    }


_PREFIXES = ("The ", "A ", "An ")


def _title_prefix(product: Product, _: Info) -> str | None:
    return next((p.strip() for p in _PREFIXES if product.title.startswith(p)), None)


def _title_without_prefix(product: Product, _: Info) -> str:
    prefix = _title_prefix(product, _)
    return product.title[len(prefix) + 1 :] if prefix else product.title


def _authorship(work: Work, product_id: int | None = None) -> str | None:
    names = [
        c.contributor.name
        for c in sorted(work.contributions, key=lambda c: c.sequence_number)
        if product_id is None or not c.product_ids or product_id in c.product_ids
    ]
    if not names:
        return None
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _strftime(value: date | None, directives: str | None) -> str | None:
    if value is None:
        return None
    if not directives:
        return value.isoformat()
    # Ruby's %-d (no padding) is platform-specific in Python; handle it by hand.
    return value.strftime(directives.replace("%-d", str(value.day)))


def _measure(value: Decimal | None, unit: str | None) -> float | None:
    if value is None:
        return None
    factor = {"MM": Decimal(1), "CM": Decimal("0.1"), "IN": Decimal(1) / Decimal("25.4")}
    return float(round(value * factor[unit or "MM"], 3))


def _marketing_texts(texts: Iterable[MarketingText], variant_in: list[str] | None) -> list[Any]:
    return [t for t in texts if variant_in is None or t.variant in variant_in]


def _subject_codes(
    work: Work,
    _: Info,
    schemesIn: list[str] | None = None,
    mainOnly: bool = False,
) -> list[Subject]:
    return [
        s
        for s in work.subjects
        if s.scheme is not SubjectScheme.KEYWORD
        and (schemesIn is None or s.scheme.value in schemesIn)
        and (not mainOnly or s.main)
    ]


def _main_code(scheme: SubjectScheme) -> Resolver:
    def resolve(work: Work, _: Info) -> str | None:
        return next((s.code for s in work.subjects if s.scheme is scheme and s.main), None)

    return resolve


def _codes(scheme: SubjectScheme) -> Resolver:
    def resolve(work: Work, _: Info) -> list[str]:
        return [s.code for s in work.subjects if s.scheme is scheme]

    return resolve


def _work_products(
    work: Work,
    info: Info,
    productSearch: dict[str, Any] | None = None,
) -> list[Product]:
    return [
        p
        for p in work.products
        if product_matches(p, work, {**(productSearch or {}), "after": None})
        and p.id > ((productSearch or {}).get("after") or 0)
    ]


def _price_dict(price: Price) -> dict[str, Any]:
    symbol = {"GBP": "£", "USD": "$", "EUR": "€", "AUD": "A$", "CAD": "C$"}.get(price.currency, "")
    amount = f"{price.amount:.2f}"
    return {
        "id": price.id,
        "amount": float(price.amount),
        "amountWithCurrencyCode": f"{price.currency} {amount}",
        "amountWithCurrencySymbol": f"{symbol}{amount}",
        "currency": {"code": price.currency, "symbol": symbol or None},
        "currencyCode": price.currency,
        "effectiveFrom": price.effective_from,
        "effectiveTo": price.effective_to,
        "label": f"{price.currency} {_DESCRIPTIONS['58'].get(price.price_type, price.price_type)}",
        "onixPriceType": _onix_code(price.price_type, "58"),
        "onixPriceTypeCode": to_enum(price.price_type),
        "onixPriceTypeQualifier": _onix_code(price.qualifier, "59"),
        "onixPriceTypeQualifierCode": to_enum(price.qualifier),
        "countryCodesIncluded": list(price.territories),
        "systemPriceId": price.slot,
    }


def _prices(
    product: Product,
    _: Info,
    priceSearch: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    return [_price_dict(p) for p in product.prices if price_matches(p, priceSearch)]


def resource_dict(r: SupportingResource, info: Info) -> dict[str, Any]:
    return {
        "id": r.id,
        "caption": r.caption,
        "createdAt": r.created_at or _UNKNOWN_TIME,
        "fileSize": r.file_size,
        "filename": r.filename,
        "height": r.height,
        "width": r.width,
        "imageContentType": r.content_type,
        "isProcessing": r.url is None,
        "productIds": list(r.product_ids),
        "resourceVariant": r.variant,
        "status": r.status,
        "url": _abs(info, r.url),
        "onixContentAudienceCode": to_enum(r.audiences[0]) if r.audiences else None,
    }


def production_file_dict(f: ProductionFile, info: Info) -> dict[str, Any]:
    return {
        "id": f.id,
        "allowDistribution": f.allow_distribution or "ALLOWED",
        "analysisStatus": "ANALYSED" if f.url else "NOT_ANALYSED",
        "approvalStatus": f.approval_status,
        "createdAt": f.created_at or _UNKNOWN_TIME,
        "exists": f.url is not None,
        "fileFormat": f.file_format,
        "fileSize": f.file_size,
        "fileVariant": f.file_variant,
        "filename": f.filename,
        "productIds": list(f.product_ids),
        "url": _abs(info, f.url),
    }


def _run(run: ProductionRun, info: Info) -> dict[str, Any]:
    ids = list(run.product_ids)
    first = ids[0] if ids else None
    return {
        "id": run.id,
        "name": run.name,
        "deliveryDate": run.delivery_date,
        "productIds": ids,
        "quantities": [
            {
                "id": run.id,
                "name": "Warehouse",
                "description": "Delivery to the distributor's warehouse",
                "productId": first,
                "productIds": ids,
                "quantity": run.quantity or 0,
                "receivedQuantity": None,
            }
        ],
        "bindings": [{"id": run.id, "pageBindingMethod": run.binding, "productIds": ids}]
        if run.binding
        else [],
        "covers": [
            {
                "id": run.id,
                "coverType": run.cover_type,
                "coverColoursOutside": run.cover_colours,
                "productIds": ids,
            }
        ]
        if run.cover_type
        else [],
        "interiors": [
            {
                "id": run.id,
                "paper": run.paper,
                "textColour": run.text_colour,
                "fsc": True,
                "productIds": ids,
            }
        ],
        "finishes": [{"name": n, "productIds": ids} for n in run.finishes],
        "embellishments": [{"name": n, "productIds": ids} for n in run.embellishments],
        "work": None,
    }


def _contribution(c: Contribution, work_id: int) -> dict[str, Any]:
    return {
        "id": c.id,
        "contributor": c.contributor,
        "onixContributorRole": _onix_code(c.role, "17"),
        "onixContributorRoleCode": c.role,
        "productIds": list(c.product_ids),
        "sequenceNumber": c.sequence_number,
        "workId": work_id,
    }


def _note(n: Note) -> dict[str, Any]:
    return {"id": n.id, "noteText": n.text, "createdAt": n.created_at}


def _product_work(product: Product, info: Info) -> Work:
    return _ctx(info).catalogue.work_of(product)


def contained_product(catalogue: Catalogue, ident: str | None) -> Product | None:
    """The catalogue's product a part names by ISBN or GTIN (None: not a product held)."""
    if not ident:
        return None
    found = catalogue.isbn_index.get(ident)
    if found is not None:
        return catalogue.products.get(found)
    return next((p for p in catalogue.products.values() if p.gtin == ident), None)


def _product_parts(product: Product, info: Info) -> list[dict[str, Any]]:
    """``Product.productParts`` (guess #28): each part that is a product of the catalogue.

    ``ProductPart.contained`` is a ``Product!``: a part that is not a product held cannot be
    answered (``seed.not_served`` counts it), nor can ONIX's ``PrimaryPart`` (no field).
    """
    catalogue = _ctx(info).catalogue
    out = []
    for n, part in enumerate(product.parts, 1):
        contained = contained_product(catalogue, part.isbn13)
        if contained is None:
            continue
        out.append(
            {
                # The catalogue keeps parts on their product, without ids of their own.
                "id": product.id * 1000 + n,
                "contained": contained,
                "containedId": contained.id,
                "container": product,
                "containerId": product.id,
                "numberOfCopies": part.number_of_copies,
                "sequenceNumber": n,
            }
        )
    return out


PRODUCT_FIELDS: dict[str, Resolver] = {
    "isbn": _isbn,
    "fullTitle": lambda p, _: p.title,
    "titlePrefix": _title_prefix,
    "titleWithoutPrefix": _title_without_prefix,
    "authorshipDescription": lambda p, i: _authorship(_product_work(p, i)),
    "productAuthorshipDescription": lambda p, i: _authorship(_product_work(p, i), p.id),
    "onix21ProductFormCode": lambda p, _: to_enum(p.product_form),
    "onix21ProductForm": lambda p, _: _onix_code(p.product_form, "7"),
    "onixPublishingStatusCode": lambda p, _: to_enum(p.publishing_status),
    "onixPublishingStatus": lambda p, _: _onix_code(p.publishing_status, "64"),
    "publicationDateString": lambda p, _, directives=None: _strftime(
        p.publication_date, directives
    ),
    "plannedPublicationDate": lambda p, _: p.publication_date,
    "plannedPublicationDateString": lambda p, _, directives=None: _strftime(
        p.publication_date, directives
    ),
    "prices": _prices,
    "marketingTexts": lambda p, i, variantIn=None: _marketing_texts(
        (
            t
            for t in _product_work(p, i).marketing_texts
            if not t.product_ids or p.id in t.product_ids
        ),
        variantIn,
    ),
    "forSaleCountryCodes": lambda p, _: list(p.for_sale_countries),
    "notForSaleCountryCodes": lambda p, _: list(p.not_for_sale_countries),
    "salesRightsDescription": lambda p, _: (
        "World" if p.for_sale_worldwide else ", ".join(p.for_sale_countries) or None
    ),
    "isForSaleWorldwide": lambda p, _: p.for_sale_worldwide,
    "webLinks": lambda p, _: [],
    "languageCode": lambda p, _: p.language,
    "productionFiles": lambda p, i: [production_file_dict(f, i) for f in p.production_files],
    "supportingResources": lambda p, i: [
        resource_dict(r, i)
        for r in _product_work(p, i).supporting_resources
        if not r.product_ids or p.id in r.product_ids
    ],
    "contributions": lambda p, i: [
        _contribution(c, p.work_id)
        for c in _product_work(p, i).contributions
        if not c.product_ids or p.id in c.product_ids
    ],
    "notes": lambda p, i: [_note(n) for n in _ctx(i).catalogue.notes_for(product_id=p.id)],
    "work": _product_work,
    "productHeight": lambda p, _, unit="MM": _measure(p.height_mm, unit),
    "productWidth": lambda p, _, unit="MM": _measure(p.width_mm, unit),
    "productThickness": lambda p, _, unit="MM": _measure(p.thickness_mm, unit),
    "approximatePageCount": lambda p, _: p.page_count,
    "productionPageCount": lambda p, _: p.page_count,
    "mainContentPageCount": lambda p, _: p.page_count,
    "totalNumberedPages": lambda p, _: p.page_count,
    "contentPageCount": lambda p, _: p.page_count,
    "wordCount": lambda p, _: p.page_count * 300 if p.page_count else None,
    "productIdentifyingDoi": lambda p, _: p.doi,
    "durationSeconds": lambda p, _: onix_codes.duration_seconds(p.extents),
    "epubTypeDescription": lambda p, _: onix_codes.epub_type_description(
        p.onix_product_form, p.product_form_details
    ),
    "epubTypeVersion": lambda p, _: None,
    "epubTypeNote": lambda p, _: None,
    "productFormDescription": lambda p, _: None,
    "productParts": _product_parts,
}

WORK_FIELDS: dict[str, Resolver] = {
    "titleStatement": lambda w, _: f"{w.title} / {_authorship(w) or ''}".rstrip(" /"),
    "inHouseWorkReference": lambda w, _: f"W{w.id:06d}",
    "contributorPrettyList": lambda w, _: _authorship(w),
    "products": _work_products,
    "contributions": lambda w, _: [_contribution(c, w.id) for c in w.contributions],
    "audience": lambda w, _: {
        "description": None,
        "onixAudiences": [
            _onix_code(code, "28")
            for code in dict.fromkeys(
                a.value for p in w.products for a in p.audiences if a.code_type == "01"
            )
        ],
    },
    "seriesMemberships": lambda w, _: [
        {
            "id": s.id,
            "partNumber": s.part_number,
            "yearOfAnnual": None,
            "series": {
                "id": s.id,
                "name": s.name,
                "subtitle": s.subtitle,
                "titleWithSubtitle": f"{s.name}: {s.subtitle}" if s.subtitle else s.name,
                "printIssn": s.print_issn,
                "onlineIssn": s.online_issn,
            },
        }
        for s in w.series
    ],
    "subjectCodes": _subject_codes,
    "mainThemaCode": _main_code(SubjectScheme.THEMA),
    "mainBisacCode": _main_code(SubjectScheme.BISAC),
    "bics": _codes(SubjectScheme.BIC),
    "bisacs": _codes(SubjectScheme.BISAC),
    "marketingTexts": lambda w, _, variantIn=None: _marketing_texts(w.marketing_texts, variantIn),
    "supportingResources": lambda w, i: [resource_dict(r, i) for r in w.supporting_resources],
    "productionRuns": lambda w, i: [_run(r, i) for r in w.production_runs],
    "contracts": lambda w, i: [
        c for cid in w.contract_ids if (c := _ctx(i).catalogue.contracts.get(cid)) is not None
    ],
    "notes": lambda w, i: [_note(n) for n in _ctx(i).catalogue.notes_for(work_id=w.id)],
}

MARKETING_TEXT_FIELDS: dict[str, Resolver] = {
    "externalText": lambda t, _, stripHtml=False: (
        re.sub(r"<[^>]+>", "", t.text) if stripHtml else t.text
    ),
    "externalTextMarkdown": lambda t, _: re.sub(r"<[^>]+>", "", t.text),
    "fromDate": lambda t, _: t.embargo_from,
    "onixContentAudienceCodes": lambda t, _: [to_enum(a) for a in t.audiences],
    "productIds": lambda t, _: list(t.product_ids),
}

CONTACT_FIELDS: dict[str, Resolver] = {
    "emails": lambda c, _: [{"email": e} for e in c.emails],
    "notes": lambda c, _: [],
    "personName": lambda c, _: c.name,
    "personNameInverted": lambda c, _: (
        f"{c.key_names}, {c.names_before_key}" if c.key_names and c.names_before_key else c.name
    ),
    "organisationName": lambda c, _: c.name,
    "isni": lambda c, _: next((i.value for i in c.identifiers if i.id_type == "16"), None),
}

CONTRACT_FIELDS: dict[str, Resolver] = {
    "licensedRights": lambda c, _: [
        {"id": r.id, "rightType": r.right_type, "authorCut": r.author_cut}
        for r in c.licensed_rights
    ],
    "work": lambda c, i: _ctx(i).catalogue.works.get(c.work_id) if c.work_id else None,
}

TODO_FIELDS: dict[str, Resolver] = {"dueDate": lambda t, _: t.due_date}

SUBJECT_FIELDS: dict[str, Resolver] = {
    "parentCode": lambda s, _: s.code[:-1] or None,
}

ROOT_FIELDS: dict[str, Resolver] = {
    "works": q_works,
    "work": q_work,
    "products": q_products,
    "product": q_product,
    "contacts": q_contacts,
    "organisation": q_organisation,
    "contract": q_contract,
}

_SUBJECT_TYPES = {
    SubjectScheme.BIC: "Bic",
    SubjectScheme.THEMA: "Thema",
    SubjectScheme.BISAC: "Bisac",
}


def _resolve_product_type(value: Any, *_: Any) -> str:
    return str(value.typename)


def _resolve_contact_type(value: Any, *_: Any) -> str:
    return "Organisation" if value.is_organisation else "Person"


def _resolve_subject_type(value: Any, *_: Any) -> str:
    return _SUBJECT_TYPES[value.scheme]


def _serialize_date(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


_EXTRA_PRODUCT_TYPES = (
    "PhysicalAudioProduct",
    "PhysicalProduct",
    "ElectronicProduct",
    "GenericProduct",
)
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _extensions(sdl: str) -> str:
    """SDL added at build time so any ONIX file can seed the sandbox.

    The schema file lists the values the public record shows; ONIX files carry codes beyond
    them, and a GraphQL enum refuses unknown values. Code enums are widened to every code of
    the right shape, variant enums to our ONIX mapping's names, and the Product types the
    ONIX reader can produce get the Product interface's fields.
    """
    from consonance_sftp.formats.onix import codes  # only the sandbox needs these names

    def values(enum: str) -> set[str]:
        body = re.search(r"enum " + enum + r" \{(.*?)\}", sdl, re.S)
        assert body is not None, enum
        return set(re.sub(r"#.*", "", body.group(1)).split())

    numeric = [f"_{n:02d}" for n in range(100)]
    wanted = {
        "ONIXPriceTypeCode": numeric,
        "ONIXPriceTypeQualifierCode": numeric,
        "ONIXPublishingStatusCode": numeric,
        # 00 is list 7's "undefined", what the reader says of a product with no form.
        "ONIX21ProductFormCode": ["_00", *(a + b for a in _LETTERS for b in _LETTERS)],
        "ONIXContentAudienceCode": numeric,
        "CurrencyCode": _iso_currencies(),
        "ONIXContributorRoleCode": [f"{a}{n:02d}" for a in "ABCDEFZ" for n in range(1, 100)],
        "MarketingTextVariant": [
            *codes.TEXT_TYPES,
            *(f"ONIX_TEXT_TYPE_{n:02d}" for n in range(100)),
        ],
        "SupportingResourceVariant": [
            *codes.RESOURCE_TYPES,
            *(f"ONIX_RESOURCE_TYPE_{n:02d}" for n in range(100)),
        ],
    }
    parts = []
    for enum, candidates in wanted.items():
        extra = sorted(set(candidates) - values(enum))
        if extra:
            parts.append(f"extend enum {enum} {{ {' '.join(extra)} }}")
    iface = re.search(r"interface Product \{(.*?)\n\}", sdl, re.S)
    assert iface is not None
    for name in _EXTRA_PRODUCT_TYPES:
        parts.append(f"type {name} implements Product {{{iface.group(1)}\n}}")
        parts.append(
            f"extend enum ProductTypename {{ {name} }}"
            if name not in values("ProductTypename")
            else ""
        )
    return "\n".join(parts)


def _iso_currencies() -> list[str]:
    """ONIX list 96 (ISO 4217 currencies), from the code lists onixcheck bundles."""
    from consonance_sftp.formats.onix.tags import SCHEMA_DIR

    xs = "{http://www.w3.org/2001/XMLSchema}"
    root = etree.parse(str(SCHEMA_DIR / "xsd3.0" / "ONIX_BookProduct_CodeLists.xsd")).getroot()
    found = root.find(f"{xs}simpleType[@name='List96']")
    assert found is not None
    return [str(e.get("value")) for e in found.iter(f"{xs}enumeration")]


def sandbox_sdl() -> str:
    """The sandbox's whole schema: the file plus the build-time widenings."""
    sdl = resources.files(__package__).joinpath("schema.graphql").read_text("utf-8")
    return sdl + "\n" + _extensions(sdl)


@functools.cache
def enum_values() -> dict[str, frozenset[str]]:
    """Every enum of the sandbox schema with its values (what a seeded record may hold)."""
    schema = build_schema(sandbox_sdl())
    return {
        name: frozenset(t.values)
        for name, t in schema.type_map.items()
        if isinstance(t, GraphQLEnumType) and not name.startswith("__")
    }


def build_sandbox_schema(mutations: dict[str, Resolver]) -> GraphQLSchema:
    schema = build_schema(sandbox_sdl())
    bindings: dict[str, dict[str, Resolver]] = {
        "Query": ROOT_FIELDS,
        "Mutation": mutations,
        "Work": WORK_FIELDS,
        "MarketingText": MARKETING_TEXT_FIELDS,
        "Person": CONTACT_FIELDS,
        "Organisation": CONTACT_FIELDS,
        "Contract": CONTRACT_FIELDS,
        "Todo": TODO_FIELDS,
        "Thema": SUBJECT_FIELDS,
        **{name: PRODUCT_FIELDS for name in _product_type_names(schema)},
    }
    for type_name, fields in bindings.items():
        gql_type: Any = schema.get_type(type_name)
        for field_name, resolver in fields.items():
            if field_name in gql_type.fields:
                gql_type.fields[field_name].resolve = resolver
    for iface, resolve_type in (
        ("Product", _resolve_product_type),
        ("Contact", _resolve_contact_type),
        ("SubjectCode", _resolve_subject_type),
    ):
        iface_type: Any = schema.get_type(iface)
        iface_type.resolve_type = resolve_type
    for scalar in ("ISO8601Date", "ISO8601DateTime"):
        scalar_type: Any = schema.get_type(scalar)
        scalar_type.serialize = _serialize_date
        if hasattr(scalar_type, "coerce_output_value"):  # graphql-core >= 3.3
            scalar_type.coerce_output_value = _serialize_date
    return schema


def _product_type_names(schema: GraphQLSchema) -> list[str]:
    iface: Any = schema.get_type("Product")
    return [t.name for t in schema.get_possible_types(iface)]
