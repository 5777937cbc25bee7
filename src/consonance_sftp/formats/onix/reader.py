"""Read ONIX 3.0/3.1 messages (reference names or short tags) into domain ``Work`` records.

Streaming: ``lxml.etree.iterparse`` hands over one ``Product`` at a time and each is cleared
once read, so memory grows with the catalogue returned, not with the XML. Short tags are
renamed to reference names as each product arrives, so the rest of the module only knows one
vocabulary. Products are grouped into works by their ``RelatedWork`` work identifier (relation
01, "manifestation of") when present, else one work per product. Ids are deterministic:
numbered 1, 2, 3... in document order, so the same file always yields the same records.
"""

from __future__ import annotations

import dataclasses
import html
import html.entities
import mimetypes
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, BinaryIO
from xml.sax.saxutils import escape

from lxml import etree

from ...errors import ValidationFailed
from ...models import (
    Audience,
    Contact,
    Contribution,
    Extent,
    Identifier,
    Imprint,
    MarketingText,
    OnixSubject,
    Price,
    Product,
    ProductPart,
    PublishingDate,
    RelatedProduct,
    SalesRights,
    SeriesMembership,
    Subject,
    SubjectScheme,
    SupportingResource,
    Territory,
    Work,
)
from . import codes, reader21
from .tags import OnixVersion, TagStyle, reference_names, version_of

_Element = etree._Element
_XMLNS = re.compile(r' xmlns(?::\w+)?="[^"]*"')


@dataclass(slots=True)
class OnixRecord:
    """One ``Product`` record as read, before products are grouped into works."""

    notification_type: str
    product: Product
    work_key: str | None
    title: str
    subtitle: str | None = None
    imprint_name: str | None = None
    publisher_name: str | None = None
    contributors: list[tuple[Contact, str, int]] = field(default_factory=list)
    subjects: list[Subject] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    # (variant, text, text format, content audiences)
    texts: list[tuple[str, str, str | None, tuple[str, ...]]] = field(default_factory=list)
    resources: list[SupportingResource] = field(default_factory=list)
    work_identifier: Identifier | None = None
    series: list[SeriesMembership] = field(default_factory=list)
    other_subjects: list[OnixSubject] = field(default_factory=list)
    # As written, for ``onix compare``: each ProductSupply's Market territories; each
    # SupplyDetail's (supplier name, supplier role, availability); each SupportingResource's
    # (ResourceContentType, ResourceMode, ResourceForm, content audiences, link's file name).
    markets: list[Territory] = field(default_factory=list)
    supplies: list[tuple[str | None, str | None, str | None]] = field(default_factory=list)
    resource_facts: list[tuple[str | None, str | None, str | None, tuple[str, ...], str]] = field(
        default_factory=list
    )


# --- small element helpers ------------------------------------------------------------------


def _text(el: _Element | None, path: str) -> str | None:
    if el is None:
        return None
    found = el.find(path)
    if found is None or found.text is None:
        return None
    value = found.text.strip()
    return value or None


def _all(el: _Element | None, path: str) -> list[str]:
    if el is None:
        return []
    return [x.text.strip() for x in el.findall(path) if x.text and x.text.strip()]


def _inner_xml(el: _Element) -> str:
    """Text of an element, keeping XHTML children (``textformat`` 05) as markup."""
    if len(el) == 0:
        return (el.text or "").strip()
    parts = [escape(el.text or "")]
    parts.extend(etree.tostring(child, encoding="unicode", with_tail=True) for child in el)
    # lxml repeats the in-scope ONIX namespace on each serialised child; it is noise here.
    return _XMLNS.sub("", "".join(parts)).strip()


def _onix_date(el: _Element | None) -> date | None:
    if el is None or not el.text:
        return None
    raw = el.text.strip()
    fmt = el.get("dateformat")
    digits = raw[:8]
    if fmt not in (None, "00", "13", "14") or len(digits) != 8 or not digits.isdigit():
        return None  # a year or month alone is not a publication day
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def _decimal(value: str | None) -> Decimal | None:
    """A decimal as publishers write it: ``30.80``, ``30,80``, ``1.234,50`` or ``1,234.50``."""
    if value is None:
        return None
    raw = value.strip().replace(" ", "").replace("\u00a0", "")
    if "," in raw:
        if "." in raw and raw.rfind(",") < raw.rfind("."):
            raw = raw.replace(",", "")  # 1,234.50: commas group thousands
        else:
            raw = raw.replace(".", "").replace(",", ".")  # 30,80 or 1.234,50: a decimal comma
    try:
        found = Decimal(raw)
    except InvalidOperation:
        return None
    return found if found.is_finite() else None


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(value.split()) if value else ()


def _territory(el: _Element | None) -> Territory:
    return Territory(
        countries_included=_split(_text(el, "CountriesIncluded")),
        regions_included=_split(_text(el, "RegionsIncluded")),
        countries_excluded=_split(_text(el, "CountriesExcluded")),
        regions_excluded=_split(_text(el, "RegionsExcluded")),
    )


_MM_PER_UNIT = {"mm": Decimal(1), "cm": Decimal(10), "in": Decimal("25.4")}
# Weights (MeasureType 08) to grams, by list 50 unit.
_G_PER_UNIT = {
    "gr": Decimal(1),
    "kg": Decimal(1000),
    "oz": Decimal("28.349523125"),
    "lb": Decimal("453.59237"),
}


# --- one product ------------------------------------------------------------------------------


class _Ids:
    """Deterministic sequential ids per kind, in document order."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}
        self._named: dict[tuple[str, object], int] = {}

    def new(self, kind: str) -> int:
        value = self._next.get(kind, 0) + 1
        self._next[kind] = value
        return value

    def named(self, kind: str, key: object) -> int:
        found = self._named.get((kind, key))
        if found is None:
            found = self._named[(kind, key)] = self.new(kind)
        return found


def _contact(el: _Element, ids: _Ids) -> Contact:
    corporate = _text(el, "CorporateName")
    before = _text(el, "NamesBeforeKey")
    key = _text(el, "KeyNames")
    person = _text(el, "PersonName")
    name = person or corporate or " ".join(x for x in (before, _text(el, "PrefixToKey"), key) if x)
    bio_el = el.find("BiographicalNote")
    identifiers = tuple(
        Identifier(
            id_type=_text(n, "NameIDType") or "01",
            value=_text(n, "IDValue") or "",
            type_name=_text(n, "IDTypeName"),
        )
        for n in el.findall("NameIdentifier")
    )
    is_org = corporate is not None and person is None and key is None
    return Contact(
        id=ids.named("contact", (name, before, key, is_org)),
        name=name or "(unnamed)",
        key_names=key,
        names_before_key=before,
        is_organisation=is_org,
        biographical_note=_inner_xml(bio_el) if bio_el is not None else None,
        identifiers=identifiers,
    )


def _price(el: _Element, default_currency: str | None, ids: _Ids) -> Price | None:
    amount = _decimal(_text(el, "PriceAmount"))
    currency = _text(el, "CurrencyCode") or default_currency
    if amount is None or currency is None:
        return None  # unpriced ("price to be announced") entries carry no amount
    territory = _territory(el.find("Territory"))
    tax = el.find("Tax")
    effective_from = effective_to = None
    for price_date in el.findall("PriceDate"):
        role = _text(price_date, "PriceDateRole")
        value = _onix_date(price_date.find("Date"))
        if role == "14":
            effective_from = value
        elif role == "15":
            effective_to = value
    return Price(
        id=ids.new("price"),
        amount=amount,
        currency=currency,
        price_type=_text(el, "PriceType") or "01",
        qualifier=_text(el, "PriceQualifier"),
        territories=territory.countries_included,
        regions=territory.regions_included,
        excluded_territories=territory.countries_excluded,
        effective_from=effective_from,
        effective_to=effective_to,
        tax_rate_code=_text(tax, "TaxRateCode"),
        tax_rate_percent=_decimal(_text(tax, "TaxRatePercent")),
    )


def _market(supply: _Element) -> Territory | None:
    """The one ``Market`` territory of a ``ProductSupply``, None if it has none or several."""
    markets = supply.findall("Market")
    if len(markets) != 1:
        return None
    territory = _territory(markets[0].find("Territory"))
    return territory if territory != Territory() else None


def _in_market(price: Price, market: Territory | None) -> Price:
    """A price without a territory of its own takes its supply's ``Market``."""
    if market is None or price.territories or price.regions or price.excluded_territories:
        return price
    return dataclasses.replace(
        price,
        territories=market.countries_included,
        regions=market.regions_included,
        excluded_territories=market.countries_excluded,
    )


def _series(detail: _Element | None, ids: _Ids) -> list[SeriesMembership]:
    """Publisher collections (``CollectionType`` 10) as series memberships."""
    out: list[SeriesMembership] = []
    for collection in detail.findall("Collection") if detail is not None else ():
        if _text(collection, "CollectionType") not in (None, "10"):
            continue
        element = next(
            (
                e
                for e in collection.findall("TitleDetail/TitleElement")
                if _text(e, "TitleElementLevel") in (None, "02")
            ),
            None,
        )
        name = _text(element, "TitleText") or " ".join(
            x for x in (_text(element, "TitlePrefix"), _text(element, "TitleWithoutPrefix")) if x
        )
        if not name:
            continue
        issn = {
            _text(i, "CollectionIDType"): _text(i, "IDValue")
            for i in collection.findall("CollectionIdentifier")
        }
        part = _text(element, "PartNumber") or _text(
            collection, "CollectionSequence/CollectionSequenceNumber"
        )
        out.append(
            SeriesMembership(
                id=ids.named("series", name),
                name=name,
                part_number=part,
                subtitle=_text(element, "Subtitle"),
                print_issn=issn.get("02"),
            )
        )
    return out


def _part(el: _Element) -> ProductPart:
    """A ``ProductPart``: its form, its ISBN if it is a product of its own, its copies."""
    idents = {
        _text(i, "ProductIDType"): _text(i, "IDValue") for i in el.findall("ProductIdentifier")
    }
    copies = _text(el, "NumberOfCopies") or _text(el, "NumberOfItemsOfThisForm") or "1"
    return ProductPart(
        form=_text(el, "ProductForm") or "00",
        form_details=tuple(_all(el, "ProductFormDetail")),
        isbn13=idents.get("15") or idents.get("03"),
        number_of_copies=int(copies) if copies.isdigit() else 1,
        primary=el.find("PrimaryPart") is not None,
    )


def _audiences(el: _Element) -> tuple[str, ...]:
    """``ContentAudience`` codes (list 154); only 00 (unrestricted) reads as none."""
    found = tuple(_all(el, "ContentAudience"))
    return () if found in ((), ("00",)) else found


def _title(detail: _Element | None) -> tuple[str, str | None]:
    if detail is None:
        return "", None
    for title_detail in detail.findall("TitleDetail"):
        if _text(title_detail, "TitleType") not in (None, "01"):
            continue
        elements = title_detail.findall("TitleElement")
        chosen = next(
            (e for e in elements if _text(e, "TitleElementLevel") == "01"),
            elements[0] if elements else None,
        )
        if chosen is None:
            continue
        text = _text(chosen, "TitleText")
        if text is None:
            text = " ".join(
                x for x in (_text(chosen, "TitlePrefix"), _text(chosen, "TitleWithoutPrefix")) if x
            )
        return text, _text(chosen, "Subtitle")
    return "", None


def _record(el: _Element, default_currency: str | None, ids: _Ids) -> OnixRecord:
    """Turn one ``Product`` element (reference names, no namespace) into an ``OnixRecord``."""
    product_id = ids.new("product")
    isbn13 = gtin = doi = None
    for ident in el.findall("ProductIdentifier"):
        kind, value = _text(ident, "ProductIDType"), _text(ident, "IDValue")
        if kind == "15":
            isbn13 = value
        elif kind == "03":
            gtin = value
        elif kind == "06":
            doi = value
    if isbn13 is None and gtin and gtin.startswith(("978", "979")):
        isbn13 = gtin
    if gtin == isbn13:
        gtin = None  # the ISBN as a GTIN-13: nothing more than the ISBN

    detail = el.find("DescriptiveDetail")
    form = _text(detail, "ProductForm") or "00"
    form_details = tuple(_all(detail, "ProductFormDetail"))
    title, subtitle = _title(detail)

    contributors = [
        (
            _contact(c, ids),
            _text(c, "ContributorRole") or "A01",
            int(_text(c, "SequenceNumber") or n),
        )
        for n, c in enumerate(detail.findall("Contributor") if detail is not None else (), 1)
    ]
    language = None
    for lang in detail.findall("Language") if detail is not None else ():
        if _text(lang, "LanguageRole") == "01":
            language = _text(lang, "LanguageCode")
            break

    extents = tuple(
        Extent(
            extent_type=_text(x, "ExtentType") or "00",
            value=_text(x, "ExtentValue") or _text(x, "ExtentValueRoman") or "",
            unit=_text(x, "ExtentUnit") or "03",
        )
        for x in (detail.findall("Extent") if detail is not None else ())
    )
    page_count = next(
        (
            int(x.value)
            for x in extents
            if x.extent_type == "00" and x.unit == "03" and x.value.isdigit()
        ),
        None,
    )
    measures: dict[str, Decimal] = {}
    for measure in detail.findall("Measure") if detail is not None else ():
        amount = _decimal(_text(measure, "Measurement"))
        kind = _text(measure, "MeasureType")
        units = _G_PER_UNIT if kind == "08" else _MM_PER_UNIT
        factor = units.get(_text(measure, "MeasureUnitCode") or "")
        if amount is not None and factor is not None and kind and kind not in measures:
            measures[kind] = amount * factor

    subjects: list[Subject] = []
    other_subjects: list[OnixSubject] = []
    keywords: list[str] = []
    for subject in detail.findall("Subject") if detail is not None else ():
        scheme_id = _text(subject, "SubjectSchemeIdentifier") or ""
        scheme = codes.subject_scheme(scheme_id)
        if scheme is SubjectScheme.KEYWORD:
            heading = _text(subject, "SubjectHeadingText") or _text(subject, "SubjectCode") or ""
            keywords.extend(k.strip() for k in heading.split(";") if k.strip())
            continue
        code = _text(subject, "SubjectCode")
        if scheme is None and scheme_id:
            other_subjects.append(
                OnixSubject(
                    scheme_id=scheme_id,
                    code=code,
                    heading=_text(subject, "SubjectHeadingText"),
                    scheme_name=_text(subject, "SubjectSchemeName"),
                    scheme_version=_text(subject, "SubjectSchemeVersion"),
                    main=subject.find("MainSubject") is not None,
                )
            )
            continue
        if scheme is None or code is None:
            continue
        subjects.append(
            Subject(
                scheme=scheme,
                code=code,
                description=_text(subject, "SubjectHeadingText"),
                main=subject.find("MainSubject") is not None,
            )
        )
    audiences = tuple(
        Audience(
            code_type=_text(a, "AudienceCodeType") or "01",
            value=_text(a, "AudienceCodeValue") or "",
        )
        for a in (detail.findall("Audience") if detail is not None else ())
    )

    collateral = el.find("CollateralDetail")
    texts: list[tuple[str, str, str | None, tuple[str, ...]]] = []
    resources: list[SupportingResource] = []
    resource_facts: list[tuple[str | None, str | None, str | None, tuple[str, ...], str]] = []
    for content in collateral.findall("TextContent") if collateral is not None else ():
        text_el = content.find("Text")
        if text_el is None:
            continue
        texts.append(
            (
                codes.text_variant(_text(content, "TextType") or "03"),
                _inner_xml(text_el),
                text_el.get("textformat"),
                _audiences(content),
            )
        )
    for resource in collateral.findall("SupportingResource") if collateral is not None else ():
        version = resource.find("ResourceVersion")
        url = _text(version, "ResourceLink")
        if url is None or version is None:
            continue
        features = {
            _text(f, "ResourceVersionFeatureType"): _text(f, "FeatureValue")
            for f in version.findall("ResourceVersionFeature")
        }
        height, width = features.get("02"), features.get("03")
        resource_facts.append(
            (
                _text(resource, "ResourceContentType"),
                _text(resource, "ResourceMode"),
                _text(version, "ResourceForm"),
                _audiences(resource),
                url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1],
            )
        )
        resources.append(
            SupportingResource(
                id=ids.new("resource"),
                variant=codes.resource_variant(_text(resource, "ResourceContentType") or "01"),
                filename=url.rstrip("/").rsplit("/", 1)[-1],
                url=url,
                content_type=codes.IMAGE_MIME.get(features.get("01") or "")
                or mimetypes.guess_type(url.split("?", 1)[0])[0]
                or (
                    "text/html"
                    if _text(version, "ResourceForm") == "01"
                    and _text(resource, "ResourceMode") == "04"
                    else None
                ),
                height=int(height) if height and height.isdigit() else None,
                width=int(width) if width and width.isdigit() else None,
                product_ids=(product_id,),
                audiences=_audiences(resource),
            )
        )

    publishing = el.find("PublishingDetail")
    publisher_name = None
    for publisher in publishing.findall("Publisher") if publishing is not None else ():
        if _text(publisher, "PublishingRole") in (None, "01"):
            publisher_name = _text(publisher, "PublisherName")
            break
    publication_date = None
    publishing_dates: list[PublishingDate] = []
    for pub_date in publishing.findall("PublishingDate") if publishing is not None else ():
        role = _text(pub_date, "PublishingDateRole")
        date_el = pub_date.find("Date")
        if role == "01":
            publication_date = _onix_date(date_el)
        if role and date_el is not None and date_el.text and date_el.text.strip():
            publishing_dates.append(
                PublishingDate(
                    role=role,
                    value=date_el.text.strip(),
                    dateformat=date_el.get("dateformat") or pub_date.findtext("DateFormat"),
                )
            )
    sales_rights = tuple(
        SalesRights(
            rights_type=_text(r, "SalesRightsType") or "01",
            territory=_territory(r.find("Territory")),
        )
        for r in (publishing.findall("SalesRights") if publishing is not None else ())
    )
    for_sale = tuple(
        c
        for r in sales_rights
        if r.rights_type in ("01", "02")
        for c in r.territory.countries_included
    )
    not_for_sale = tuple(
        c for r in sales_rights if r.rights_type == "03" for c in r.territory.countries_included
    )
    worldwide = any(
        r.rights_type in ("01", "02") and "WORLD" in r.territory.regions_included
        for r in sales_rights
    )

    related = el.find("RelatedMaterial")
    work_key = None
    work_identifier = None
    for related_work in related.findall("RelatedWork") if related is not None else ():
        if _text(related_work, "WorkRelationCode") not in (None, "01"):
            continue
        work_ident = related_work.find("WorkIdentifier")
        id_type, value = _text(work_ident, "WorkIDType"), _text(work_ident, "IDValue")
        if id_type and value:
            work_identifier = Identifier(
                id_type=id_type, value=value, type_name=_text(work_ident, "IDTypeName")
            )
            work_key = f"{id_type}:{value}"
            break
    related_products = []
    for related_product in related.findall("RelatedProduct") if related is not None else ():
        idents = {
            _text(i, "ProductIDType"): _text(i, "IDValue")
            for i in related_product.findall("ProductIdentifier")
        }
        other = idents.get("15") or idents.get("03")
        if other:
            related_products.append(
                RelatedProduct(
                    relation_codes=tuple(_all(related_product, "ProductRelationCode")), isbn13=other
                )
            )

    prices: list[Price] = []
    availability = supplier_name = supplier_role = unpriced = None
    markets: list[Territory] = []
    supplies: list[tuple[str | None, str | None, str | None]] = []
    for supply in el.findall("ProductSupply"):
        markets.extend(_territory(m.find("Territory")) for m in supply.findall("Market"))
        # A price with no Territory of its own applies where its supply's Market is: keep
        # that, or an AUD price for AU and an NZD price for NZ would read as worldwide.
        market = _market(supply)
        for supply_detail in supply.findall("SupplyDetail"):
            supplier = supply_detail.find("Supplier")
            supplies.append(
                (
                    _text(supplier, "SupplierName"),
                    _text(supplier, "SupplierRole"),
                    _text(supply_detail, "ProductAvailability"),
                )
            )
            supplier_name = supplier_name or _text(supplier, "SupplierName")
            supplier_role = supplier_role or _text(supplier, "SupplierRole")
            availability = availability or _text(supply_detail, "ProductAvailability")
            unpriced = unpriced or _text(supply_detail, "UnpricedItemType")
            for price_el in supply_detail.findall("Price"):
                price = _price(price_el, default_currency, ids)
                if price is not None:
                    prices.append(_in_market(price, market))

    product = Product(
        id=product_id,
        work_id=0,  # set when grouped
        typename=codes.typename_for(form, form_details),
        isbn13=isbn13,
        title=title,
        subtitle=subtitle,
        product_form=codes.product_form_21(form, form_details),
        publishing_status=_text(publishing, "PublishingStatus"),
        publication_date=publication_date,
        prices=tuple(prices),
        for_sale_countries=for_sale,
        not_for_sale_countries=not_for_sale,
        for_sale_worldwide=worldwide,
        height_mm=measures.get("01"),
        width_mm=measures.get("02"),
        thickness_mm=measures.get("03"),
        weight_g=measures.get("08"),
        page_count=page_count,
        edition_number=int(n) if (n := _text(detail, "EditionNumber")) and n.isdigit() else None,
        language=language,
        record_reference=_text(el, "RecordReference"),
        doi=doi,
        onix_product_form=form,
        product_form_details=form_details,
        edition_types=tuple(_all(detail, "EditionType")),
        edition_statement=_text(detail, "EditionStatement"),
        extents=extents,
        audiences=audiences,
        sales_rights=sales_rights,
        related_products=tuple(related_products),
        availability=availability,
        supplier_name=supplier_name,
        supplier_role=supplier_role,
        gtin=gtin,
        unpriced_item_type=unpriced,
        publishing_dates=tuple(publishing_dates),
        technical_protection=tuple(_all(detail, "EpubTechnicalProtection")),
        composition=_text(detail, "ProductComposition"),
        parts=tuple(
            _part(x) for x in (detail.findall("ProductPart") if detail is not None else ())
        ),
    )
    return OnixRecord(
        notification_type=_text(el, "NotificationType") or "03",
        product=product,
        work_key=work_key,
        title=title,
        subtitle=subtitle,
        imprint_name=_text(publishing, "Imprint/ImprintName"),
        series=_series(detail, ids),
        publisher_name=publisher_name,
        contributors=contributors,
        subjects=subjects,
        other_subjects=other_subjects,
        keywords=keywords,
        texts=texts,
        resources=resources,
        work_identifier=work_identifier,
        markets=markets,
        supplies=supplies,
        resource_facts=resource_facts,
    )


# --- streaming ------------------------------------------------------------------------------


def _to_reference(el: _Element, names: dict[str, str] | None) -> None:
    """Strip namespaces (and map short tags to reference names) in place."""
    for node in el.iter():
        tag = node.tag
        if not isinstance(tag, str):
            continue
        local = tag.rsplit("}", 1)[-1]
        node.tag = names.get(local, local) if names else local


# Every element the reader takes something from (reference names). Anything else in a
# ``Product`` is counted in ``ReadReport.not_carried`` by its path, so ``sandbox seed`` can say
# what it could not carry instead of dropping it silently.
READ_ELEMENTS = frozenset(
    [
        "Audience",
        "AudienceCodeType",
        "AudienceCodeValue",
        "BiographicalNote",
        "CollateralDetail",
        "Collection",
        "CollectionIDType",
        "CollectionIdentifier",
        "CollectionSequence",
        "CollectionSequenceNumber",
        "CollectionType",
        "ContentAudience",
        "Contributor",
        "ContributorRole",
        "CorporateName",
        "CountriesExcluded",
        "CountriesIncluded",
        "CurrencyCode",
        "Date",
        "DateFormat",
        "DescriptiveDetail",
        "EditionNumber",
        "EditionStatement",
        "EditionType",
        "EpubTechnicalProtection",
        "Extent",
        "ExtentType",
        "ExtentUnit",
        "ExtentValue",
        "ExtentValueRoman",
        "FeatureValue",
        "IDTypeName",
        "IDValue",
        "Imprint",
        "ImprintName",
        "KeyNames",
        "Language",
        "LanguageCode",
        "LanguageRole",
        "MainSubject",
        "Market",
        "Measure",
        "MeasureType",
        "MeasureUnitCode",
        "Measurement",
        "NameIDType",
        "NameIdentifier",
        "NamesBeforeKey",
        "NotificationType",
        "NumberOfCopies",
        "NumberOfItemsOfThisForm",
        "PartNumber",
        "PersonName",
        "PrefixToKey",
        "Price",
        "PriceAmount",
        "PriceDate",
        "PriceDateRole",
        "PriceQualifier",
        "PriceType",
        "PrimaryPart",
        "ProductAvailability",
        "ProductComposition",
        "ProductForm",
        "ProductFormDetail",
        "ProductIDType",
        "ProductIdentifier",
        "ProductPart",
        "ProductRelationCode",
        "ProductSupply",
        "Publisher",
        "PublisherName",
        "PublishingDate",
        "PublishingDateRole",
        "PublishingDetail",
        "PublishingRole",
        "PublishingStatus",
        "RecordReference",
        "RegionsExcluded",
        "RegionsIncluded",
        "RelatedMaterial",
        "RelatedProduct",
        "RelatedWork",
        "ResourceContentType",
        "ResourceForm",
        "ResourceLink",
        "ResourceMode",
        "ResourceVersion",
        "ResourceVersionFeature",
        "ResourceVersionFeatureType",
        "SalesRights",
        "SalesRightsType",
        "SequenceNumber",
        "Subject",
        "SubjectCode",
        "SubjectHeadingText",
        "SubjectSchemeIdentifier",
        "SubjectSchemeName",
        "SubjectSchemeVersion",
        "Subtitle",
        "Supplier",
        "SupplierName",
        "SupplierRole",
        "SupplyDetail",
        "SupportingResource",
        "Tax",
        "TaxRateCode",
        "TaxRatePercent",
        "Territory",
        "Text",
        "TextContent",
        "TextType",
        "TitleDetail",
        "TitleElement",
        "TitleElementLevel",
        "TitlePrefix",
        "TitleText",
        "TitleType",
        "TitleWithoutPrefix",
        "UnpricedItemType",
        "WorkIDType",
        "WorkIdentifier",
        "WorkRelationCode",
    ]
)
# Kept with their XHTML markup: their children are part of the text, not elements of their own.
_KEPT_WHOLE = frozenset({"Text", "BiographicalNote"})
_PRODUCT = ("Product", "product")
_MESSAGE = ("ONIXMessage", "ONIXmessage")
# Children that only a 3.x product or header has (reference and short names).
_V3_ONLY = frozenset(
    [
        "DescriptiveDetail",
        "descriptivedetail",
        "PublishingDetail",
        "publishingdetail",
        "ProductSupply",
        "productsupply",
        "CollateralDetail",
        "collateraldetail",
        "Sender",
        "sender",
        "SentDateTime",
        "sentdatetime",
    ]
)


@dataclass(slots=True)
class ReadReport:
    """What a read met but could not carry: element path -> how many times."""

    not_carried: dict[str, int] = field(default_factory=dict)
    products: int = 0

    def count(self, what: str, n: int = 1) -> None:
        self.not_carried[what] = self.not_carried.get(what, 0) + n


def _not_carried(el: _Element, report: ReadReport, prefix: str = "") -> None:
    """Count the top-most elements of ``el`` that the reader takes nothing from."""
    for child in el:
        if not isinstance(child.tag, str):
            continue
        path = f"{prefix}{child.tag}"
        if child.tag in _KEPT_WHOLE:
            continue
        if child.tag in READ_ELEMENTS:
            _not_carried(child, report, path + "/")
        else:
            report.count(path)
    # Read elements whose content is only used in some cases.
    if prefix:
        return
    for collection in el.iterfind("DescriptiveDetail/Collection"):
        if _text(collection, "CollectionType") not in (None, "10"):
            report.count("DescriptiveDetail/Collection (CollectionType other than 10)")
    for related in el.iterfind("RelatedMaterial/RelatedProduct"):
        kinds = {_text(i, "ProductIDType") for i in related.findall("ProductIdentifier")}
        if not kinds & {"15", "03"}:
            report.count("RelatedMaterial/RelatedProduct (no ISBN or GTIN)")
    for related in el.iterfind("RelatedMaterial/RelatedWork"):
        if _text(related, "WorkRelationCode") not in (None, "01"):
            report.count("RelatedMaterial/RelatedWork (relation other than 01)")
    for supply in el.iterfind("ProductSupply"):
        extra = len(supply.findall("SupplyDetail")) - 1
        if extra > 0:
            report.count("ProductSupply/SupplyDetail (supplier after the first)", extra)
        if len(supply.findall("Market")) > 1:
            report.count("ProductSupply/Market (more than one per ProductSupply)")
    for price in el.iterfind("ProductSupply/SupplyDetail/Price"):
        if _decimal(_text(price, "PriceAmount")) is None and price.find("PriceAmount") is not None:
            report.count("ProductSupply/SupplyDetail/Price/PriceAmount (not a number)")


# --- entities ---------------------------------------------------------------------------------

_PREDEFINED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}
_ENTITY_REF = re.compile(r"&([A-Za-z_][\w.-]*);")


def _declared_entities(el: _Element, where: str) -> dict[str, str]:
    """The document's own (internal subset) entities, refused as defusedxml would refuse them.

    An external entity (``SYSTEM``/``PUBLIC``) is never fetched or read: the message is refused
    by name. An entity whose text refers to another entity is refused too (that nesting is how
    "billion laughs" expansions are built). Character references in a value are resolved.
    """
    dtd: Any = el.getroottree().docinfo.internalDTD  # the stubs lack iterentities()
    found: dict[str, str] = {}
    for entity in dtd.iterentities() if dtd is not None else ():
        if entity.system_url is not None or entity.content is None:
            raise ValidationFailed(
                f"{where}: the DOCTYPE declares an external entity '{entity.name}'; "
                "external entities are never read",
            )
        if any(name not in _PREDEFINED for name in _ENTITY_REF.findall(entity.content)):
            raise ValidationFailed(
                f"{where}: the DOCTYPE's entity '{entity.name}' refers to another entity; "
                "nested entities are refused",
            )
        found[entity.name] = html.unescape(entity.content)
    return found


def _resolve_entities(el: _Element, declared: dict[str, str], where: str) -> None:
    """Replace entity references left in ``el`` by their text, in place.

    The parser does not expand entities itself (no network, no DTD loaded); a reference is
    resolved from the document's own declarations, else from the HTML character entities the
    ONIX DTDs declare (``&eacute;``, ``&nbsp;``...). An unknown one refuses the message.
    """
    for node in list(el.iter(etree.Entity)):
        name = str(node.text or "")[1:-1]
        text = declared.get(name)
        if text is None:
            text = html.entities.html5.get(name + ";")
        if text is None:
            raise ValidationFailed(f"{where}: unknown entity &{name}; (not declared in the file)")
        parent = node.getparent()
        if parent is None:
            continue
        joined = text + (node.tail or "")
        previous = node.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + joined
        else:
            parent.text = (parent.text or "") + joined
        node.tail = None
        parent.remove(node)


def _detected(root: _Element, where: str) -> tuple[OnixVersion | None, TagStyle]:
    """Version and tag style from the root's namespace, ``release`` and name.

    None when neither the namespace nor ``release`` says (decided from the first record's
    content: a 3.x product has blocks such as ``DescriptiveDetail`` that 2.1 does not).
    """
    qname = etree.QName(root.tag)
    if qname.localname not in (*_MESSAGE, *_PRODUCT):
        raise ValidationFailed(
            f"{where}: not an ONIX message (root element <{qname.localname}>, "
            "expected ONIXMessage or Product)",
        )
    style = TagStyle.SHORT if qname.localname in ("ONIXmessage", "product") else TagStyle.REFERENCE
    if root.get("release") or "editeur.org" in (qname.namespace or ""):
        return version_of(root.tag, root.get("release"))[0], style
    return None, style


def _refuse_21(where: str) -> ValidationFailed:
    return ValidationFailed(f"{where}: ONIX 2.1 is not read here; only ONIX 3.0 and 3.1")


def _not_carried_21(el: _Element, report: ReadReport) -> None:
    for child in el:
        if isinstance(child.tag, str) and child.tag not in reader21.ELEMENTS:
            report.count(f"{child.tag} (ONIX 2.1)")


def iter_onix_records(
    source: Path | str | BinaryIO,
    report: ReadReport | None = None,
    *,
    accept_21: bool = False,
) -> Iterator[OnixRecord]:
    """Yield each ``Product`` of an ONIX 3.x message, one at a time, in document order.

    The message may also be a bare ``Product`` (its root). The version comes from the
    namespace or ``release``, else from the content (see ``_detected``); 2.1 is refused, or
    with ``accept_21`` (``onix compare``) read as the 3.0 product it maps to
    (``reader21.upgrade_product``).
    """
    ids = _Ids()
    names: dict[str, str] | None = None
    default_currency: str | None = None
    default_price_type: str | None = None
    where = str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "stream")
    context = etree.iterparse(
        str(source) if isinstance(source, Path) else source,
        events=("start", "end"),
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        huge_tree=True,
        remove_comments=True,
    )
    depth = 0
    record_depth = 1
    version: OnixVersion | None = None
    style = TagStyle.REFERENCE
    declared: dict[str, str] = {}
    try:
        for event, el in context:
            if event == "start":
                depth += 1
                if depth == 1:
                    version, style = _detected(el, where)
                    if version is OnixVersion.V21 and not accept_21:
                        raise _refuse_21(where)
                    declared = _declared_entities(el, where)
                    # Undecided short tags are read with 3.0's names (3.1 only adds some).
                    names = (
                        reference_names(version or OnixVersion.V30)
                        if style is TagStyle.SHORT
                        else None
                    )
                    if etree.QName(el.tag).localname in _PRODUCT:
                        record_depth = 0
                continue
            depth -= 1
            if depth != record_depth:
                continue
            local = el.tag.rsplit("}", 1)[-1] if isinstance(el.tag, str) else ""
            if local in ("Header", "header", *_PRODUCT) and version is None:
                children = {c.tag.rsplit("}", 1)[-1] for c in el if isinstance(c.tag, str)}
                if children & _V3_ONLY:
                    version = OnixVersion.V30
                elif accept_21:
                    version = OnixVersion.V21
                    names = reference_names(version) if style is TagStyle.SHORT else None
                else:
                    raise _refuse_21(where)
            _resolve_entities(el, declared, where)
            _to_reference(el, names)
            if local in ("Header", "header"):
                default_currency = _text(el, "DefaultCurrencyCode")
                default_price_type = _text(el, "DefaultPriceTypeCode")
            elif local in _PRODUCT and version is OnixVersion.V21:
                if report is not None:
                    report.products += 1
                    _not_carried_21(el, report)
                upgraded = reader21.upgrade_product(el, default_price_type)
                yield _record(upgraded, default_currency, ids)
            elif local in _PRODUCT:
                if report is not None:
                    report.products += 1
                    _not_carried(el, report)
                yield _record(el, default_currency, ids)
            if record_depth == 0:
                break
            el.clear()
            parent = el.getparent()
            if parent is not None:
                # Drop already-read siblings so memory stays flat on large files.
                while el.getprevious() is not None:
                    del parent[0]
    except etree.XMLSyntaxError as exc:
        raise ValidationFailed(f"{where}: not well-formed XML", [str(exc)]) from exc


def read_onix_works(
    source: Path | str | BinaryIO,
    report: ReadReport | None = None,
    *,
    join_formats: bool = False,
    accept_21: bool = False,
) -> list[Work]:
    """Parse an ONIX 3.0/3.1 message (reference names or short tags) into works with products.

    ``report``, when given, counts what the file holds that the records cannot carry.
    ``join_formats``: products that a record relates as the same work in another form
    (``RelatedProduct`` 06, 13, 27: ``codes.FORMAT_RELATIONS``) to another product of the
    message go in one work, as Consonance holds them (seeding the sandbox). ``accept_21``:
    read ONIX 2.1 too (as ``iter_onix_records`` does); seeding leaves it refused.
    """
    ids = _Ids()
    groups: dict[str, list[OnixRecord]] = {}
    for record in iter_onix_records(source, report, accept_21=accept_21):
        key = record.work_key or f"product:{record.product.id}"
        groups.setdefault(key, []).append(record)
    if join_formats:
        groups = _joined(groups)
    return [_work(ids.new("work"), records, ids) for records in groups.values()]


def _joined(groups: dict[str, list[OnixRecord]]) -> dict[str, list[OnixRecord]]:
    """``groups`` with those linked by a format relation merged, in document order."""
    order = {key: n for n, key in enumerate(groups)}
    parent = {key: key for key in groups}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    owner = {
        ident: key
        for key, records in groups.items()
        for r in records
        for ident in (r.product.isbn13, r.product.gtin)
        if ident
    }
    for key, records in groups.items():
        for record in records:
            for related in record.product.related_products:
                other = owner.get(related.isbn13)
                if other is None or not codes.FORMAT_RELATIONS & set(related.relation_codes):
                    continue
                a, b = sorted((root(key), root(other)), key=order.__getitem__)
                parent[b] = a
    merged: dict[str, list[OnixRecord]] = {}
    for key, records in groups.items():
        merged.setdefault(root(key), []).extend(records)
    return merged


def _work(work_id: int, records: list[OnixRecord], ids: _Ids) -> Work:
    first = records[0]
    products = tuple(_with_work(r.product, work_id) for r in records)
    all_ids = {p.id for p in products}

    def applies(found: set[int]) -> tuple[int, ...]:
        return () if found == all_ids else tuple(sorted(found))

    contributions: dict[tuple[int, str], tuple[Contact, int, set[int]]] = {}
    for record in records:
        for contact, role, seq in record.contributors:
            entry = contributions.setdefault((contact.id, role), (contact, seq, set()))
            entry[2].add(record.product.id)
    subjects: dict[tuple[SubjectScheme, str], Subject] = {}
    keywords: dict[str, None] = {}
    texts: dict[tuple[str, str], tuple[str | None, tuple[str, ...], set[int]]] = {}
    resources: list[SupportingResource] = []
    for record in records:
        for subject in record.subjects:
            subjects.setdefault((subject.scheme, subject.code), subject)
        keywords.update(dict.fromkeys(record.keywords))
        for variant, text, text_format, audiences in record.texts:
            texts.setdefault((variant, text), (text_format, audiences, set()))[2].add(
                record.product.id
            )
        resources.extend(record.resources)
    imprint_name = next((r.imprint_name for r in records if r.imprint_name), None)
    return Work(
        id=work_id,
        title=first.title,
        subtitle=first.subtitle,
        imprint=Imprint(id=ids.named("imprint", imprint_name), name=imprint_name)
        if imprint_name
        else None,
        contributions=tuple(
            Contribution(
                id=ids.new("contribution"),
                contributor=contact,
                role=role,
                sequence_number=seq,
                product_ids=applies(found),
            )
            for (_, role), (contact, seq, found) in contributions.items()
        ),
        subjects=tuple(subjects.values()),
        keywords=tuple(keywords),
        marketing_texts=tuple(
            MarketingText(
                id=ids.new("text"),
                variant=variant,
                text=text,
                text_format=text_format,
                product_ids=applies(found),
                audiences=audiences,
            )
            for (variant, text), (text_format, audiences, found) in texts.items()
        ),
        supporting_resources=tuple(resources),
        products=products,
        publisher_name=next((r.publisher_name for r in records if r.publisher_name), None),
        series=tuple({s.name: s for r in records for s in r.series}.values()),
        other_subjects=tuple(dict.fromkeys(s for r in records for s in r.other_subjects)),
        identifiers=(first.work_identifier,) if first.work_identifier else (),
    )


def _with_work(product: Product, work_id: int) -> Product:
    return replace(product, work_id=work_id)
