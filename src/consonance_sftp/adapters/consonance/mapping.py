"""Consonance GraphQL results → our domain models.

``onix_code``/``onix_enum`` are the one place that knows Consonance writes numeric ONIX codes
as enum names with a leading underscore (``_02``); everything past this module sees ``"02"``.
A missing or malformed field raises ``ConsonanceQueryError`` naming the record and the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from consonance_sftp.errors import ConsonanceQueryError
from consonance_sftp.formats.onix import codes
from consonance_sftp.models import (
    Audience,
    Contact,
    Contract,
    Contribution,
    Identifier,
    Imprint,
    LicensedRight,
    MarketingText,
    Price,
    Product,
    ProductionFile,
    ProductionRun,
    ProductPart,
    SeriesMembership,
    Subject,
    SubjectScheme,
    SupportingResource,
    Todo,
    Work,
)

T = TypeVar("T")
Json = dict[str, Any]

_SCHEMES = {"Bic": SubjectScheme.BIC, "Thema": SubjectScheme.THEMA, "Bisac": SubjectScheme.BISAC}


def onix_code(value: str | None) -> str | None:
    """``_02`` → ``02``; ``BC`` stays ``BC``."""
    if value is None:
        return None
    return value[1:] if value.startswith("_") and value[1:2].isdigit() else value


def onix_enum(code: str | None) -> str | None:
    """``02`` → ``_02``, for enum arguments sent to Consonance."""
    if code is None:
        return None
    return f"_{code}" if code[:1].isdigit() else code


def _date(value: Any) -> date | None:
    return None if value is None else date.fromisoformat(str(value)[:10])


def _datetime(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _ints(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value or ())


def _list(raw: Json, key: str) -> list[Json]:
    return list(raw.get(key) or ())


def _guard(what: str, raw: Json, build: Callable[[Json], T]) -> T:
    try:
        return build(raw)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        ident = raw.get("id") if isinstance(raw, dict) else None
        raise ConsonanceQueryError(
            f"cannot read {what} {ident}: field {exc} is missing or malformed"
        ) from exc


def price(raw: Json) -> Price:
    return Price(
        id=int(raw["id"]),
        amount=Decimal(str(raw["amount"])),
        currency=raw["currencyCode"],
        price_type=onix_code(raw["onixPriceTypeCode"]) or "",
        qualifier=onix_code(raw.get("onixPriceTypeQualifierCode")),
        territories=tuple(raw.get("countryCodesIncluded") or ()),
        effective_from=_date(raw.get("effectiveFrom")),
        effective_to=_date(raw.get("effectiveTo")),
    )


def production_file(raw: Json) -> ProductionFile:
    return ProductionFile(
        id=int(raw["id"]),
        file_variant=raw["fileVariant"],
        filename=raw.get("filename") or "",
        approval_status=raw["approvalStatus"],
        allow_distribution=raw.get("allowDistribution"),
        file_format=raw.get("fileFormat"),
        file_size=raw.get("fileSize"),
        url=raw.get("url"),
        product_ids=_ints(raw.get("productIds")),
        created_at=_datetime(raw.get("createdAt")),
    )


def _form_30(r: Json) -> tuple[str | None, tuple[str, ...]]:
    """The ONIX 3.0 form and details an ebook's e-publication type says (None: from the 2.1
    code). Consonance gives every ebook the 2.1 form DG; the file format is in the type."""
    if (r.get("onix21ProductFormCode") or "DG") != "DG":
        return None, ()
    found = codes.form_of_epub_type(r.get("epubTypeDescription"))
    return found if found is not None else (None, ())


def _part(raw: Json) -> ProductPart:
    """A ``ProductPart``: the contained product's identifier and form, and its copies."""
    contained = product(raw["contained"])
    form, details = codes.product_form_30(contained)
    return ProductPart(
        form=form,
        form_details=details,
        isbn13=contained.isbn13 or contained.gtin,
        number_of_copies=int(raw.get("numberOfCopies") or 1),
    )


def _parts(r: Json) -> tuple[ProductPart, ...]:
    found = sorted(_list(r, "productParts"), key=lambda x: x.get("sequenceNumber") or 0)
    return tuple(_guard("product part", x, _part) for x in found)


def product(raw: Json, work_id: int | None = None) -> Product:
    def build(r: Json) -> Product:
        form_30, form_details = _form_30(r)
        return Product(
            id=int(r["id"]),
            work_id=int(r.get("workId") or work_id or 0),
            typename=r["__typename"],
            isbn13=(r.get("isbn") or {}).get("isbn13"),
            asin=r.get("asin") or None,
            gtin=r.get("gtin") or None,
            doi=r.get("productIdentifyingDoi") or None,
            title=r.get("fullTitle") or "",
            subtitle=r.get("subtitle"),
            product_form=onix_code(r.get("onix21ProductFormCode")),
            publishing_status=onix_code(r.get("onixPublishingStatusCode")),
            publication_date=_date(r.get("publicationDate")),
            prices=tuple(_guard("price", p, price) for p in _list(r, "prices")),
            for_sale_countries=tuple(r.get("forSaleCountryCodes") or ()),
            not_for_sale_countries=tuple(r.get("notForSaleCountryCodes") or ()),
            for_sale_worldwide=bool(r.get("isForSaleWorldwide")),
            height_mm=_decimal(r.get("productHeight")),
            width_mm=_decimal(r.get("productWidth")),
            thickness_mm=_decimal(r.get("productThickness")),
            page_count=r.get("productionPageCount"),
            edition_number=r.get("editionNumber"),
            language=r.get("languageCode"),
            production_files=tuple(
                _guard("production file", f, production_file) for f in _list(r, "productionFiles")
            ),
            updated_at=_datetime(r.get("updatedAt")),
            extents=(codes.duration_extent(int(r["durationSeconds"])),)
            if r.get("durationSeconds")
            else (),
            onix_product_form=form_30,
            product_form_details=form_details,
            parts=_parts(r),
        )

    return _guard("product", raw, build)


def contact(raw: Json) -> Contact:
    """A ``Person`` or an ``Organisation`` (told apart by ``__typename``)."""
    return Contact(
        id=int(raw["id"]),
        name=raw.get("name") or "",
        key_names=raw.get("keyNames"),
        names_before_key=raw.get("namesBeforeKey"),
        is_organisation=raw.get("__typename") == "Organisation",
        biographical_note=raw.get("biographicalNote"),
        emails=tuple(e["email"] for e in _list(raw, "emails")),
        identifiers=(Identifier(id_type="16", value=raw["isni"]),) if raw.get("isni") else (),
    )


def contact_record(raw: Json) -> Contact:
    """A contact read on its own (``contacts``): a malformed one names itself."""
    return _guard("contact", raw, contact)


def resource(raw: Json) -> SupportingResource:
    return SupportingResource(
        id=int(raw["id"]),
        variant=raw.get("resourceVariant") or "",
        filename=raw.get("filename") or "",
        url=raw.get("url"),
        status=raw.get("status"),
        content_type=raw.get("imageContentType"),
        file_size=raw.get("fileSize"),
        width=raw.get("width"),
        height=raw.get("height"),
        product_ids=_ints(raw.get("productIds")),
        created_at=_datetime(raw.get("createdAt")),
        caption=raw.get("caption"),
        audiences=tuple(
            a for a in (onix_code(raw.get("onixContentAudienceCode")),) if a is not None
        ),
    )


def todo(raw: Json) -> Todo:
    return Todo(
        id=int(raw["id"]),
        name=raw["name"],
        completed=bool(raw.get("completed")),
        due_date=_date(raw.get("dueDate")),
    )


def _run(raw: Json) -> ProductionRun:
    def first(key: str, field: str) -> Any:
        items = _list(raw, key)
        return items[0].get(field) if items else None

    return ProductionRun(
        id=int(raw["id"]),
        name=raw.get("name"),
        product_ids=_ints(raw.get("productIds")),
        quantity=sum(int(q.get("quantity") or 0) for q in _list(raw, "quantities")) or None,
        delivery_date=_date(raw.get("deliveryDate")),
        paper=first("interiors", "paper"),
        text_colour=first("interiors", "textColour"),
        binding=first("bindings", "pageBindingMethod"),
        cover_type=first("covers", "coverType"),
        cover_colours=first("covers", "coverColoursOutside"),
        finishes=tuple(f["name"] for f in _list(raw, "finishes") if f.get("name")),
        embellishments=tuple(e["name"] for e in _list(raw, "embellishments") if e.get("name")),
    )


def _subject(raw: Json) -> Subject | None:
    scheme = _SCHEMES.get(raw.get("__typename", ""))
    if scheme is None:
        return None
    return Subject(
        scheme=scheme, code=raw["code"], description=raw.get("description"), main=bool(raw["main"])
    )


def _series(raw: Json) -> SeriesMembership:
    series = raw["series"]
    return SeriesMembership(
        id=int(raw["id"]),
        name=series["name"],
        part_number=None if raw.get("partNumber") is None else str(raw["partNumber"]),
        subtitle=series.get("subtitle"),
        print_issn=series.get("printIssn"),
        online_issn=series.get("onlineIssn"),
    )


def _with_audiences(p: Product, audiences: tuple[Audience, ...]) -> Product:
    """Consonance holds the audience on the work (ONIX audience codes, list 28): every
    product of the work is for it."""
    return dataclasses.replace(p, audiences=audiences) if audiences and not p.audiences else p


def _with_siblings(products: tuple[Product, ...]) -> tuple[Product, ...]:
    """Each product related to the other products of its work, as Consonance's own ONIX output
    relates them (``codes.sibling_relations``: 27 print to ebook, 13 ebook to print, else 06).
    Consonance's public API has no related-product field; the work's products are the record."""
    return tuple(
        dataclasses.replace(p, related_products=codes.sibling_relations(p, products))
        for p in products
    )


def work(raw: Json) -> Work:
    def build(r: Json) -> Work:
        work_id = int(r["id"])
        imprint = r.get("imprint")
        subjects = [s for s in (_guard("subject", x, _subject) for x in _list(r, "subjectCodes"))]
        audiences = tuple(
            Audience(code_type="01", value=onix_code(a["code"]) or "")
            for a in _list(r.get("audience") or {}, "onixAudiences")
            if a.get("code")
        )
        return Work(
            id=work_id,
            title=r["title"],
            subtitle=r.get("subtitle"),
            imprint=Imprint(id=int(imprint["id"]), name=imprint["name"]) if imprint else None,
            project_stage=r.get("projectStage"),
            work_type=r.get("workType"),
            contributions=tuple(
                Contribution(
                    id=int(c.get("id") or 0),
                    contributor=_guard("contact", c["contributor"], contact),
                    role=onix_code(c["onixContributorRoleCode"]) or "",
                    sequence_number=int(c.get("sequenceNumber") or 1),
                    product_ids=_ints(c.get("productIds")),
                )
                for c in _list(r, "contributions")
            ),
            subjects=tuple(s for s in subjects if s is not None),
            keywords=tuple(r.get("keywords") or ()),
            marketing_texts=tuple(
                MarketingText(
                    id=int(t.get("id") or 0),
                    variant=t.get("variant") or "",
                    text=t.get("externalText") or "",
                    approval_status=t.get("approvalStatus"),
                    product_ids=_ints(t.get("productIds")),
                    embargo_from=_date(t.get("fromDate")),
                    audiences=tuple(
                        a
                        for a in (onix_code(x) for x in t.get("onixContentAudienceCodes") or ())
                        if a is not None
                    ),
                )
                for t in _list(r, "marketingTexts")
            ),
            supporting_resources=tuple(
                _guard("supporting resource", x, resource) for x in _list(r, "supportingResources")
            ),
            production_runs=tuple(
                _guard("production run", x, _run) for x in _list(r, "productionRuns")
            ),
            products=_with_siblings(
                tuple(_with_audiences(product(p, work_id), audiences) for p in _list(r, "products"))
            ),
            todos=tuple(_guard("to-do", t, todo) for t in _list(r, "todos")),
            contract_ids=tuple(int(c["id"]) for c in _list(r, "contracts")),
            series=tuple(
                _guard("series membership", s, _series) for s in _list(r, "seriesMemberships")
            ),
            updated_at=_datetime(r.get("updatedAt")),
        )

    return _guard("work", raw, build)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _licensed_right(raw: Json) -> LicensedRight:
    return LicensedRight(
        id=int(raw["id"]), right_type=raw.get("rightType"), author_cut=_float(raw.get("authorCut"))
    )


def contract(raw: Json) -> Contract:
    def build(r: Json) -> Contract:
        work_ref = r.get("work")
        return Contract(
            id=int(r["id"]),
            contract_name=r.get("contractName") or "",
            work_id=int(work_ref["id"]) if work_ref else None,
            description=r.get("description"),
            signed_date=_date(r.get("signedDate")),
            ms_delivery_date=_date(r.get("msDeliveryDate")),
            revised_ms_delivery_date=_date(r.get("revisedMsDeliveryDate")),
            actual_ms_delivery_date=_date(r.get("actualMsDeliveryDate")),
            ms_proofs_date=_date(r.get("msProofsDate")),
            pub_before_date=_date(r.get("pubBeforeDate")),
            review_date=_date(r.get("reviewDate")),
            terminated_date=_date(r.get("terminatedDate")),
            termination_reason=r.get("terminationReason"),
            term=None if r.get("term") is None else str(r["term"]),
            copyright_year=None if r.get("copyrightYear") is None else str(r["copyrightYear"]),
            flat_fee_value=_float(r.get("flatFeeValue")),
            guaranteed_royalty_value=_float(r.get("guaranteedRoyaltyValue")),
            author_discount=r.get("authorDiscount"),
            remainder_rate=r.get("remainderRate"),
            remainder_rate_over_cost=_float(r.get("remainderRateOverCost")),
            licensed_rights=tuple(
                _guard("licensed right", x, _licensed_right) for x in _list(r, "licensedRights")
            ),
        )

    return _guard("contract", raw, build)
