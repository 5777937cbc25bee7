"""Stream ONIX 3.0/3.1 messages from domain works and products, one product at a time.

``OnixWriter`` opens the message with lxml's incremental writer (``etree.xmlfile``) and writes
the header; each ``Product`` is then built as a small lxml element tree, serialised once, and
its bytes go into the stream between flushes of the incremental writer, so memory stays flat
however many products go through. Product elements are built without a namespace: they sit
textually inside the root, which declares the ONIX namespace as the default, so they are ONIX
elements without each one repeating ``xmlns``.

The same bytes (and nothing else: no header, no sent time) are hashed; that SHA-256 is the
per-product content hash the delta logic compares. Text that XML cannot carry (control
characters from pasted catalogue copy) is dropped from that product rather than failing the
whole message.

Element order follows the ONIX 3.0 XSD (Release 3.0 revision 8), which 3.1 keeps for
everything written here. Reference names by default, short tags on request.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Protocol, Self

from lxml import etree
from stdnum import ean as stdnum_ean
from stdnum import isbn as stdnum_isbn
from stdnum.exceptions import ValidationError as StdnumError

from ...models import (
    Contact,
    Price,
    Product,
    SeriesMembership,
    SubjectScheme,
    Territory,
    Work,
)
from . import codes
from .parties import Party, SupplierParty
from .tags import OnixVersion, TagStyle, namespace, short_tags

_Element = etree._Element
_SubElement = etree.SubElement

# Availability (list 65) implied by a publishing status (list 64) when none is given. There is
# no default: a status that says nothing (00 unspecified, 09 unknown, none, or a code not in
# the list) refuses the product rather than call it available (``availability_of``).
_AVAILABILITY = {
    "01": "01",  # cancelled
    "02": "10",  # forthcoming: not yet available
    "03": "09",  # postponed indefinitely
    "04": "20",  # active: available
    "05": "43",  # no longer our product: no longer supplied by us
    "06": "40",  # out of stock indefinitely: not available (reason unspecified)
    "07": "51",  # out of print
    "08": "40",  # inactive: not available (reason unspecified)
    "10": "47",  # remaindered
    "11": "46",  # withdrawn from sale
    "12": "49",  # recalled
    "13": "45",  # active, but not sold separately
    "15": "49",  # recalled
    "16": "34",  # temporarily withdrawn from sale
    "17": "46",  # permanently withdrawn from sale
    "18": "50",  # active, but not sold as set
}
_MARKUP = re.compile(r"<[A-Za-z][^>]*>")


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageHeader:
    """What the ``Header`` of a message says."""

    sender_name: str
    sent_at: datetime
    contact_name: str | None = None
    email: str | None = None
    addressee_name: str | None = None
    message_number: int | None = None
    message_note: str | None = None
    default_language: str | None = None  # ISO 639-2/B, e.g. "eng"
    default_currency: str | None = None  # ISO 4217
    sender_identifiers: tuple[tuple[str, str], ...] = ()  # (list 44 type, value): 06 GLN, 07 SAN


@dataclass(frozen=True, slots=True, kw_only=True)
class WrittenProduct:
    """What the writer reports for each product: the delta logic stores ``sha256``."""

    record_reference: str
    isbn13: str | None
    notification_type: str
    sha256: str
    size: int


class ProductRefused(Exception):
    """The writer will not put this product in a message: the feed reports the product, the
    element and the reason as a problem, and the message is not sent."""

    def __init__(self, product: Product, element: str, reason: str) -> None:
        self.record_reference = record_reference(product)
        self.isbn13 = product.isbn13
        self.element = element
        self.reason = reason
        super().__init__(f"product {self.record_reference}: {element}: {reason}")


def availability_of(product: Product) -> str:
    """``ProductAvailability`` (list 65): as held, else implied by the publishing status.

    Raises ``ProductRefused`` for a status that implies nothing: never "available" by default.
    """
    if product.availability:
        return product.availability
    status = product.publishing_status
    if status in _AVAILABILITY:
        return _AVAILABILITY[status]
    said = "no publishing status" if not status else f"publishing status {status!r}"
    raise ProductRefused(
        product,
        "ProductAvailability",
        f"{said} says nothing about availability; set the publishing status in Consonance",
    )


def record_reference(product: Product) -> str:
    """The product's permanent ``RecordReference``: given, else its ISBN-13, else its GTIN,
    else its id."""
    return (
        product.record_reference
        or product.isbn13
        or product.gtin
        or f"consonance.product.{product.id}"
    )


def check_identifiers(product: Product) -> None:
    """Refuse a product whose ISBN-13 or GTIN fails its check digit (python-stdnum), before
    a recipient files it under a number that does not exist."""
    for name, value, validate in (
        ("ISBN", product.isbn13, _valid_isbn13),
        ("GTIN", product.gtin, _valid_gtin),
    ):
        if value is not None and not validate(value):
            raise ProductRefused(
                product,
                "ProductIdentifier",
                f"{name} {value!r} is not a valid {name} (wrong length or check digit); "
                "correct it in Consonance",
            )


def _valid_isbn13(value: str) -> bool:
    try:
        return len(value) == 13 and stdnum_isbn.validate(value) == value
    except StdnumError:
        return False


def _valid_gtin(value: str) -> bool:
    try:
        return len(value) in (8, 12, 13, 14) and stdnum_ean.validate(value) == value
    except StdnumError:
        return False


def onix_datetime(moment: datetime) -> str:
    """``SentDateTime`` in UTC: ``YYYYMMDDThhmmssZ``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def notification_type_for(product: Product, today: date) -> str:
    """01 early, 02 advance, 03 confirmed on publication (list 1), from the publication date;
    a title not yet published (status 02 forthcoming, 03 postponed) with no date is an early
    notice (01), not a record confirmed on publication."""
    published = product.publication_date
    if published is None:
        return "01" if product.publishing_status in ("02", "03") else "03"
    if published <= today:
        return "03"
    return "01" if (published - today).days > 183 else "02"


def _applies(product_ids: tuple[int, ...], product: Product) -> bool:
    return not product_ids or product.id in product_ids


def _territory_parts(territory: Territory) -> list[tuple[str, str]]:
    """Territory children in XSD order; the two shapes are "countries" and "regions minus"."""
    if territory.countries_included:
        parts = [("CountriesIncluded", " ".join(territory.countries_included))]
        if territory.regions_included:
            parts.append(("RegionsIncluded", " ".join(territory.regions_included)))
        if territory.regions_excluded:
            parts.append(("RegionsExcluded", " ".join(territory.regions_excluded)))
        return parts
    if territory.regions_included:
        parts = [("RegionsIncluded", " ".join(territory.regions_included))]
        if territory.countries_excluded:
            parts.append(("CountriesExcluded", " ".join(territory.countries_excluded)))
        if territory.regions_excluded:
            parts.append(("RegionsExcluded", " ".join(territory.regions_excluded)))
        return parts
    return []


def sales_rights_of(product: Product, selling: str = "01") -> list[tuple[str, Territory]]:
    """Explicit sales rights, else derived from Consonance's for-sale fields, for sale with
    rights of type ``selling`` (01 exclusive, 02 non-exclusive: Consonance does not say)."""
    if product.sales_rights:
        return [(r.rights_type, r.territory) for r in product.sales_rights]
    rights: list[tuple[str, Territory]] = []
    if product.for_sale_worldwide:
        rights.append(
            (
                selling,
                Territory(
                    regions_included=("WORLD",), countries_excluded=product.not_for_sale_countries
                ),
            )
        )
        if product.not_for_sale_countries:
            rights.append(("03", Territory(countries_included=product.not_for_sale_countries)))
        return rights
    if product.for_sale_countries:
        rights.append((selling, Territory(countries_included=product.for_sale_countries)))
    if product.not_for_sale_countries:
        rights.append(("03", Territory(countries_included=product.not_for_sale_countries)))
    return rights


def market_of(product: Product) -> Territory | None:
    """The ``Market`` of the product's supply: where its sales rights say it is for sale.

    Every for-sale (01, 02) territory counts; not-for-sale (03) countries are taken out of a
    worldwide market; a product held only as "not for sale in X" is for sale in the world
    but X. None (no ``Market``) when nothing says where it is for sale: never the whole world
    by default.
    """
    rights = sales_rights_of(product)
    for_sale = [t for kind, t in rights if kind in ("01", "02") and _territory_parts(t)]
    barred = tuple(
        dict.fromkeys(c for kind, t in rights if kind == "03" for c in t.countries_included)
    )
    if not for_sale:
        if barred:
            return Territory(regions_included=("WORLD",), countries_excluded=barred)
        return None
    if len(for_sale) == 1 and not barred:
        return for_sale[0]
    countries = tuple(dict.fromkeys(c for t in for_sale for c in t.countries_included))
    regions = tuple(dict.fromkeys(r for t in for_sale for r in t.regions_included))
    if "WORLD" in regions:
        excluded = tuple(
            dict.fromkeys(
                c
                for c in (*(c for t in for_sale for c in t.countries_excluded), *barred)
                if c not in countries
            )
        )
        return Territory(regions_included=("WORLD",), countries_excluded=excluded)
    return Territory(
        countries_included=tuple(c for c in countries if c not in barred),
        regions_included=regions,
        regions_excluded=tuple(dict.fromkeys(r for t in for_sale for r in t.regions_excluded)),
    )


def publishing_dates_of(product: Product) -> list[tuple[str, str, str | None]]:
    """(role, date as written, dateformat) for every ``PublishingDate``: role 01 from the
    publication date when there is one (else as held: a year alone stays a year), then every
    other role as held (a sales embargo 02, a preorder embargo 27...)."""
    out: list[tuple[str, str, str | None]] = []
    day = product.publication_date.strftime("%Y%m%d") if product.publication_date else None
    held_01 = next((d for d in product.publishing_dates if d.role == "01"), None)
    if day is not None and (held_01 is None or held_01.value != day):
        out.append(("01", day, None))  # the publication date as it is now
    for held in product.publishing_dates:
        if held.role != "01" or (held is held_01 and (day is None or held.value == day)):
            out.append((held.role, held.value, held.dateformat))
    return out


def unpriced_item_type(product: Product) -> str | None:
    """``UnpricedItemType`` (list 57) for a product without a price to state, else None.

    As held (an open-access book read from ONIX keeps its 01 "free of charge"); a product
    whose every price is zero is free of charge (01), not "price to be announced"; a product
    with no price at all is 02 (price to be announced).
    """
    if product.prices and all(p.amount == 0 for p in product.prices):
        return product.unpriced_item_type or "01"
    if product.prices:
        return None
    return product.unpriced_item_type or "02"


class ByteSink(Protocol):
    """Where a message goes: a binary file, a pipe, or several at once (``Fanout``)."""

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class _Tee:
    """File-like sink that forwards writes and counts bytes."""

    def __init__(self, sink: ByteSink) -> None:
        self.sink = sink
        self.total = 0

    def write(self, data: bytes) -> int:
        if data:
            self.total += len(data)
            self.sink.write(data)
        return len(data)

    def flush(self) -> None:
        self.sink.flush()


class OnixWriter:
    """Write one ONIX message, product by product. Use as a context manager.

    ``write(work, product, notification_type)`` returns the product's ``WrittenProduct``.
    A notification type of ``05`` writes a deletion: identifiers only.
    """

    def __init__(
        self,
        sink: ByteSink,
        header: MessageHeader,
        *,
        version: OnixVersion = OnixVersion.V30,
        style: TagStyle = TagStyle.REFERENCE,
        publisher_name: str | None = None,
        today: date | None = None,
        publisher: Party | None = None,
        co_publishers: tuple[Party, ...] = (),
        supplier: SupplierParty | None = None,
        sales_rights_type: str = "01",
    ) -> None:
        if version is OnixVersion.V21 and type(self) is OnixWriter:
            raise ValueError("ONIX 2.1 has its own writer: formats.onix.writer21.Onix21Writer")
        self.header = header
        self.version = version
        self.style = style
        self.publisher_name = publisher_name or header.sender_name
        self.publisher = publisher
        self.co_publishers = co_publishers
        self.supplier = supplier
        self.sales_rights_type = sales_rights_type
        self.today = today or header.sent_at.date()
        self._tee = _Tee(sink)
        # Products are built with reference names and renamed once when short tags are wanted:
        # cheaper than a lookup per element on the (usual) reference-name path.
        self._short = short_tags(version) if style is TagStyle.SHORT else None
        self._el = _leaf
        self._hash_prefix = f"onix {version.value} {style.value}\n".encode()
        self._flushed = False
        self._xf_cm: Any = None
        self._xf: Any = None
        self._root_cm: Any = None
        self.products = 0

    # -- message --------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._xf_cm = etree.xmlfile(self._tee, encoding="utf-8")
        self._xf = self._xf_cm.__enter__()
        self._xf.write_declaration()
        root = "ONIXmessage" if self.style is TagStyle.SHORT else "ONIXMessage"
        ns = namespace(self.version, self.style)
        self._root_cm = self._xf.element(
            f"{{{ns}}}{root}", {"release": self.version.value}, nsmap={None: ns}
        )
        self._root_cm.__enter__()
        self._xf.write("\n")
        self._xf.write(self._header())
        self._xf.write("\n")
        self._flushed = False
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._root_cm is not None:
            marker = self._empty_marker()
            if exc_type is None and self.products == 0 and marker is not None:
                self._xf.write(marker)
                self._xf.write("\n")
            self._root_cm.__exit__(exc_type, exc, tb)
        if self._xf_cm is not None:
            self._xf_cm.__exit__(exc_type, exc, tb)
        if exc_type is None:
            self._tee.write(b"\n")
            self._tee.flush()

    def _empty_marker(self) -> _Element | None:
        """An empty 3.x message must say so: ``NoProduct`` instead of product records."""
        return self._shorten(etree.Element("NoProduct"))

    def empty_marker_bytes(self) -> bytes | None:
        """``_empty_marker`` as written in the message, with its newline (None: none)."""
        marker = self._empty_marker()
        return None if marker is None else etree.tostring(marker) + b"\n"

    @property
    def bytes_written(self) -> int:
        return self._tee.total

    def _tag(self, name: str) -> str:
        return self._short.get(name, name) if self._short else name

    def _shorten(self, element: _Element) -> _Element:
        if self._short:
            short = self._short
            for node in element.iter():
                if isinstance(node.tag, str):
                    node.tag = short.get(node.tag, node.tag)
        return element

    def _header(self) -> _Element:
        h = self.header
        el = self._el
        header = etree.Element("Header")
        sender = el(header, "Sender")
        for id_type, value in h.sender_identifiers:
            ident = el(sender, "SenderIdentifier")
            el(ident, "SenderIDType", id_type)
            el(ident, "IDValue", value)
        el(sender, "SenderName", h.sender_name)
        if h.contact_name:
            el(sender, "ContactName", h.contact_name)
        if h.email:
            el(sender, "EmailAddress", h.email)
        if h.addressee_name:
            el(el(header, "Addressee"), "AddresseeName", h.addressee_name)
        if h.message_number is not None:
            el(header, "MessageNumber", str(h.message_number))
        el(header, "SentDateTime", onix_datetime(h.sent_at))
        if h.message_note:
            el(header, "MessageNote", h.message_note)
        if h.default_language:
            el(header, "DefaultLanguageOfText", h.default_language)
        if h.default_currency:
            el(header, "DefaultCurrencyCode", h.default_currency)
        return self._shorten(header)

    # -- products -------------------------------------------------------------------------

    def product_bytes(self, work: Work, product: Product, notification_type: str = "03") -> bytes:
        """The serialised ``Product`` exactly as ``write_bytes`` would put it in the message."""
        try:
            element = self.product_element(work, product, notification_type)
        except ValueError:
            # lxml refuses control characters; rebuild this one product with them removed.
            self._el = _clean_leaf
            try:
                element = self.product_element(work, product, notification_type)
            finally:
                self._el = _leaf
        return etree.tostring(element, encoding="utf-8")

    def content_hash(self, data: bytes) -> str:
        """Per-product content hash: the product's bytes, version and tag style; no header."""
        return hashlib.sha256(self._hash_prefix + data).hexdigest()

    def write_bytes(self, data: bytes) -> None:
        """Append one already-serialised product (from ``product_bytes``) to the message."""
        # Product bytes go straight to the sink between flushes of the incremental writer,
        # so each product is serialised once, for both its hash and the file.
        if not self._flushed:
            self._xf.flush()  # the header is still in the incremental writer's buffer
            self._flushed = True
        self._tee.write(data + b"\n")
        self.products += 1

    def write(self, work: Work, product: Product, notification_type: str = "03") -> WrittenProduct:
        data = self.product_bytes(work, product, notification_type)
        self.write_bytes(data)
        return WrittenProduct(
            record_reference=record_reference(product),
            isbn13=product.isbn13,
            notification_type=notification_type,
            sha256=self.content_hash(data),
            size=len(data),
        )

    def write_deletion(self, reference: str, isbn13: str | None = None) -> WrittenProduct:
        """A notification 05 record for a product we may no longer hold at all."""
        el = self._el
        p = etree.Element("Product")
        el(p, "RecordReference", reference)
        el(p, "NotificationType", "05")
        ident = el(p, "ProductIdentifier")
        if isbn13 is None and len(reference) == 13 and reference.startswith(("978", "979")):
            isbn13 = reference if reference.isdigit() else None
        if isbn13:
            el(ident, "ProductIDType", "15")
            el(ident, "IDValue", isbn13)
        else:
            el(ident, "ProductIDType", "01")
            el(ident, "IDTypeName", "record-reference")
            el(ident, "IDValue", reference)
        data = etree.tostring(self._shorten(p), encoding="utf-8")
        self.write_bytes(data)
        return WrittenProduct(
            record_reference=reference,
            isbn13=isbn13,
            notification_type="05",
            sha256=self.content_hash(data),
            size=len(data),
        )

    def write_all(self, items: Iterable[tuple[Work, Product, str]]) -> list[WrittenProduct]:
        return [self.write(work, product, kind) for work, product, kind in items]

    def product_element(self, work: Work, product: Product, notification_type: str) -> _Element:
        """The ``Product`` element for one product (reference or short names, no namespace)."""
        el = self._el
        p = etree.Element("Product")
        el(p, "RecordReference", record_reference(product))
        el(p, "NotificationType", notification_type)
        if notification_type != "05":
            check_identifiers(product)
        self._identifiers(p, product)
        if notification_type != "05":
            self._descriptive(p, work, product)
            self._collateral(p, work, product)
            self._publishing(p, work, product)
            self._related(p, work, product)
            self._supply(p, work, product)
        return self._shorten(p)

    def _identifiers(self, p: _Element, product: Product) -> None:
        el = self._el
        if product.isbn13:
            for kind in ("03", "15"):
                ident = el(p, "ProductIdentifier")
                el(ident, "ProductIDType", kind)
                el(ident, "IDValue", product.isbn13)
        elif product.gtin:
            ident = el(p, "ProductIdentifier")
            el(ident, "ProductIDType", "03")
            el(ident, "IDValue", product.gtin)
        else:
            ident = el(p, "ProductIdentifier")
            el(ident, "ProductIDType", "01")
            el(ident, "IDTypeName", "consonance-product-id")
            el(ident, "IDValue", str(product.id))
        if product.doi:
            ident = el(p, "ProductIdentifier")
            el(ident, "ProductIDType", "06")
            el(ident, "IDValue", product.doi)

    def _text_el(self, parent: _Element, name: str, text: str, text_format: str | None) -> None:
        """A text element; XHTML (``textformat`` 05) is written as markup, not escaped."""
        if self._el is _clean_leaf:
            text = _NOT_XML.sub("", text)
        child = self._el(parent, name)
        if text_format in (None, "05") and _MARKUP.search(text):
            try:
                fragment = etree.fromstring(f"<x>{text}</x>")
            except etree.XMLSyntaxError:
                child.text = text
                child.set("textformat", "02")  # HTML that is not XHTML: escaped
                return
            child.set("textformat", "05")
            child.text = fragment.text
            child.extend(list(fragment))
            return
        child.text = text
        if text_format and text_format != "06":
            child.set("textformat", text_format)

    def _descriptive(self, p: _Element, work: Work, product: Product) -> None:
        el = self._el
        d = el(p, "DescriptiveDetail")
        el(d, "ProductComposition", product.composition or ("10" if product.parts else "00"))
        form, details = codes.product_form_30(product)
        el(d, "ProductForm", form)
        for detail in details:
            el(d, "ProductFormDetail", detail)
        for kind, value in codes.measures(product):
            m = el(d, "Measure")
            el(m, "MeasureType", kind)
            el(m, "Measurement", _num(value))
            el(m, "MeasureUnitCode", "mm")
        if product.weight_g is not None:
            m = el(d, "Measure")
            el(m, "MeasureType", "08")
            el(m, "Measurement", _num(product.weight_g.quantize(Decimal("0.01")).normalize()))
            el(m, "MeasureUnitCode", "gr")
        for protection in product.technical_protection:
            el(d, "EpubTechnicalProtection", protection)
        for part in product.parts:
            pp = el(d, "ProductPart")
            if part.primary:
                el(pp, "PrimaryPart")
            if part.isbn13:
                ident = el(pp, "ProductIdentifier")
                el(ident, "ProductIDType", "15" if part.isbn13.startswith("97") else "03")
                el(ident, "IDValue", part.isbn13)
            el(pp, "ProductForm", part.form)
            for detail in part.form_details:
                el(pp, "ProductFormDetail", detail)
            el(pp, "NumberOfCopies", str(part.number_of_copies))
        for series in work.series:
            self._collection(d, series)
        title = el(d, "TitleDetail")
        el(title, "TitleType", "01")
        te = el(title, "TitleElement")
        el(te, "TitleElementLevel", "01")
        if product.title or work.title:
            # No title, no element: the XSD then names the record as missing its title.
            el(te, "TitleText", product.title or work.title)
        subtitle = product.subtitle if product.title else (product.subtitle or work.subtitle)
        if subtitle:
            el(te, "Subtitle", subtitle)
        contributions = sorted(
            (c for c in work.contributions if _applies(c.product_ids, product)),
            key=lambda c: c.sequence_number,
        )
        for contribution in contributions:
            c = el(d, "Contributor")
            el(c, "SequenceNumber", str(contribution.sequence_number))
            el(c, "ContributorRole", contribution.role)
            self._contact(c, contribution.contributor)
        for edition_type in product.edition_types:
            el(d, "EditionType", edition_type)
        if product.edition_number is not None:
            el(d, "EditionNumber", str(product.edition_number))
        if product.edition_statement:
            el(d, "EditionStatement", product.edition_statement)
        if product.language:
            lang = el(d, "Language")
            el(lang, "LanguageRole", "01")
            el(lang, "LanguageCode", product.language)
        extents = list(product.extents)
        if product.page_count is not None and not any(e.extent_type == "00" for e in extents):
            self._extent(d, "00", str(product.page_count), "03")
        for extent in extents:
            self._extent(d, extent.extent_type, extent.value, extent.unit)
        for subject in work.subjects:
            scheme_id = codes.subject_scheme_id(subject.scheme, subject.code)
            if scheme_id is None:
                continue
            s = el(d, "Subject")
            if subject.main:
                el(s, "MainSubject")
            el(s, "SubjectSchemeIdentifier", scheme_id)
            el(s, "SubjectCode", subject.code)
            if subject.description:
                el(s, "SubjectHeadingText", subject.description)
        for other in work.other_subjects:
            s = el(d, "Subject")
            if other.main:
                el(s, "MainSubject")
            el(s, "SubjectSchemeIdentifier", other.scheme_id)
            if other.scheme_name:
                el(s, "SubjectSchemeName", other.scheme_name)
            if other.scheme_version:
                el(s, "SubjectSchemeVersion", other.scheme_version)
            if other.code:
                el(s, "SubjectCode", other.code)
            if other.heading:
                el(s, "SubjectHeadingText", other.heading)
        keywords = list(work.keywords) + [
            s.code for s in work.subjects if s.scheme is SubjectScheme.KEYWORD
        ]
        if keywords:
            s = el(d, "Subject")
            el(s, "SubjectSchemeIdentifier", "20")
            el(s, "SubjectHeadingText", "; ".join(keywords))
        for audience in product.audiences:
            a = el(d, "Audience")
            el(a, "AudienceCodeType", audience.code_type)
            el(a, "AudienceCodeValue", audience.value)

    def _collection(self, d: _Element, series: SeriesMembership) -> None:
        """A series as a publisher ``Collection`` (10): ISSN, title, part number."""
        el = self._el
        c = el(d, "Collection")
        el(c, "CollectionType", "10")
        for issn in (series.print_issn, series.online_issn):
            if issn:
                ident = el(c, "CollectionIdentifier")
                el(ident, "CollectionIDType", "02")
                el(ident, "IDValue", issn)
        title = el(c, "TitleDetail")
        el(title, "TitleType", "01")
        te = el(title, "TitleElement")
        el(te, "TitleElementLevel", "02")
        if series.part_number:
            el(te, "PartNumber", series.part_number)
        el(te, "TitleText", series.name)
        if series.subtitle:
            el(te, "Subtitle", series.subtitle)

    def _extent(self, d: _Element, kind: str, value: str, unit: str) -> None:
        x = self._el(d, "Extent")
        self._el(x, "ExtentType", kind)
        self._el(x, "ExtentValue", value)
        self._el(x, "ExtentUnit", unit)

    def _contact(self, c: _Element, contact: Contact) -> None:
        el = self._el
        for ident in contact.identifiers:
            n = el(c, "NameIdentifier")
            el(n, "NameIDType", ident.id_type)
            if ident.type_name:
                el(n, "IDTypeName", ident.type_name)
            el(n, "IDValue", ident.value)
        if contact.is_organisation:
            el(c, "CorporateName", contact.name)
        else:
            el(c, "PersonName", contact.name)
            if contact.key_names:
                if contact.names_before_key:
                    el(c, "NamesBeforeKey", contact.names_before_key)
                el(c, "KeyNames", contact.key_names)
        if contact.biographical_note:
            self._text_el(c, "BiographicalNote", contact.biographical_note, None)

    def _collateral(self, p: _Element, work: Work, product: Product) -> None:
        el = self._el
        texts = [
            (kind, t)
            for t in work.marketing_texts
            if _applies(t.product_ids, product)
            and (kind := codes.text_type(t.variant)) is not None
            and t.text
            and (t.embargo_from is None or t.embargo_from <= self.today)
        ]
        resources = [
            (kind, r)
            for r in work.supporting_resources
            if _applies(r.product_ids, product)
            and r.url
            and (r.status is None or r.status.lower() == "approved")
            and (kind := codes.resource_type(r.variant)) is not None
        ]
        if not texts and not resources:
            return
        cd = el(p, "CollateralDetail")
        for kind, text in texts:
            tc = el(cd, "TextContent")
            el(tc, "TextType", kind)
            for audience in text.audiences or ("00",):
                el(tc, "ContentAudience", audience)
            self._text_el(tc, "Text", text.text, text.text_format)
        for kind, resource in resources:
            sr = el(cd, "SupportingResource")
            el(sr, "ResourceContentType", kind)
            for audience in resource.audiences or ("00",):
                el(sr, "ContentAudience", audience)
            el(sr, "ResourceMode", codes.resource_mode(resource.content_type, kind))
            rv = el(sr, "ResourceVersion")
            web_page = (resource.content_type or "").startswith("text/html")
            el(rv, "ResourceForm", "01" if web_page else "02")  # linkable, else downloadable
            features = [
                ("01", codes.IMAGE_FORMATS.get(resource.content_type or "")),
                ("02", str(resource.height) if resource.height else None),
                ("03", str(resource.width) if resource.width else None),
            ]
            for feature, value in features:
                if value:
                    f = el(rv, "ResourceVersionFeature")
                    el(f, "ResourceVersionFeatureType", feature)
                    el(f, "FeatureValue", value)
            el(rv, "ResourceLink", resource.url)

    def _publishing(self, p: _Element, work: Work, product: Product) -> None:
        el = self._el
        pd = el(p, "PublishingDetail")
        if work.imprint:
            el(el(pd, "Imprint"), "ImprintName", work.imprint.name)
        publisher = self.publisher or Party(name=work.publisher_name or self.publisher_name)
        for role, party in (("01", publisher), *(("02", p) for p in self.co_publishers)):
            pub = el(pd, "Publisher")
            el(pub, "PublishingRole", role)
            for id_type, value in party.identifiers():
                ident = el(pub, "PublisherIdentifier")
                el(ident, "PublisherIDType", id_type)
                el(ident, "IDValue", value)
            el(pub, "PublisherName", party.name)
        if product.publishing_status:
            el(pd, "PublishingStatus", product.publishing_status)
        for role, value, dateformat in publishing_dates_of(product):
            d = el(pd, "PublishingDate")
            el(d, "PublishingDateRole", role)
            day = el(d, "Date", value)
            if dateformat:
                day.set("dateformat", dateformat)
        for rights_type, territory in sales_rights_of(product, self.sales_rights_type):
            parts = _territory_parts(territory)
            if not parts:
                continue
            sr = el(pd, "SalesRights")
            el(sr, "SalesRightsType", rights_type)
            t = el(sr, "Territory")
            for name, value in parts:
                el(t, name, value)

    def _related(self, p: _Element, work: Work, product: Product) -> None:
        el = self._el
        rm = el(p, "RelatedMaterial")
        rw = el(rm, "RelatedWork")
        el(rw, "WorkRelationCode", "01")
        wi = el(rw, "WorkIdentifier")
        if work.identifiers:
            ident = work.identifiers[0]
            el(wi, "WorkIDType", ident.id_type)
            if ident.type_name:
                el(wi, "IDTypeName", ident.type_name)
            el(wi, "IDValue", ident.value)
        else:
            el(wi, "WorkIDType", "01")
            el(wi, "IDTypeName", "consonance-work-id")
            el(wi, "IDValue", str(work.id))
        for related in product.related_products:
            rp = el(rm, "RelatedProduct")
            for code in related.relation_codes or ("06",):
                el(rp, "ProductRelationCode", code)
            ident_el = el(rp, "ProductIdentifier")
            # A related product with no ISBN (a GTIN-only sibling) is named by its GTIN.
            el(
                ident_el,
                "ProductIDType",
                "15" if related.isbn13.startswith(("978", "979")) else "03",
            )
            el(ident_el, "IDValue", related.isbn13)

    def _supply(self, p: _Element, work: Work, product: Product) -> None:
        el = self._el
        ps = el(p, "ProductSupply")
        market = market_of(product)
        parts = _territory_parts(market) if market is not None else []
        if parts:
            t = el(el(ps, "Market"), "Territory")
            for name, value in parts:
                el(t, name, value)
        sd = el(ps, "SupplyDetail")
        party = self.supplier or SupplierParty(
            name=product.supplier_name or self.publisher_name, role=product.supplier_role or "01"
        )
        supplier = el(sd, "Supplier")
        el(supplier, "SupplierRole", party.role)
        for id_type, value in party.identifiers():
            ident = el(supplier, "SupplierIdentifier")
            el(ident, "SupplierIDType", id_type)
            el(ident, "IDValue", value)
        el(supplier, "SupplierName", party.name)
        el(sd, "ProductAvailability", availability_of(product))
        unpriced = unpriced_item_type(product)
        if unpriced is not None:
            el(sd, "UnpricedItemType", unpriced)
            return
        for price in product.prices:
            self._price(sd, price)

    def _price(self, sd: _Element, price: Price) -> None:
        el = self._el
        pr = el(sd, "Price")
        el(pr, "PriceType", price.price_type)
        if price.qualifier:
            el(pr, "PriceQualifier", price.qualifier)
        el(pr, "PriceAmount", _num(price.amount))
        if price.tax_rate_percent is not None:
            tax = el(pr, "Tax")
            el(tax, "TaxType", "01")
            if price.tax_rate_code:
                el(tax, "TaxRateCode", price.tax_rate_code)
            el(tax, "TaxRatePercent", _num(price.tax_rate_percent))
        el(pr, "CurrencyCode", price.currency)
        parts = _territory_parts(
            Territory(
                countries_included=price.territories,
                regions_included=price.regions,
                countries_excluded=price.excluded_territories,
            )
        )
        if parts:
            t = el(pr, "Territory")
            for name, value in parts:
                el(t, name, value)
        for role, day in (("14", price.effective_from), ("15", price.effective_to)):
            if day is not None:
                pdate = el(pr, "PriceDate")
                el(pdate, "PriceDateRole", role)
                el(pdate, "Date", day.strftime("%Y%m%d"))


def _leaf(parent: _Element, name: str, text: str | None = None) -> _Element:
    child = _SubElement(parent, name)
    if text is not None:
        child.text = text
    return child


# Characters XML 1.0 cannot carry at all (C0 controls except tab, newline, carriage return).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean_leaf(parent: _Element, name: str, text: str | None = None) -> _Element:
    return _leaf(parent, name, _NOT_XML.sub("", text) if text is not None else None)


def _num(value: Decimal | int) -> str:
    """Plain decimal notation (never ``1E+1``)."""
    return format(Decimal(value), "f")
