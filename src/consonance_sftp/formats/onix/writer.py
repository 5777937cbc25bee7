"""Stream ONIX 3.0/3.1 messages from domain works and products, one product at a time.

``OnixWriter`` opens the message with lxml's incremental writer (``etree.xmlfile``) and writes
the header; each 3.x ``Product`` is then written as text, element by element in document order
(``_Out``: the bytes lxml would write for the same tree; ONIX 2.1 products are still lxml
trees), and its bytes go into the stream between flushes of the incremental writer, so memory
stays flat however many products go through. Product elements carry no namespace: they sit
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

import contextlib
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
    if (
        len(value) == 13
        and value.isascii()
        and value.isdigit()
        and value[:3] in ("978", "979")
        and stdnum_ean.calc_check_digit(value[:12]) == value[12]
    ):
        # What ``stdnum_isbn.validate`` concludes for a plain 13-digit ISBN, without its
        # cleaning and conversions (a fifth of the writer's time per product)
        return True
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
    """File-like sink that counts bytes and forwards them in chunks of about 256 KiB: one
    write to the sink (the file and the validator's pipe, through ``Fanout``) per some 50
    products instead of one per product. With a file opened with Python's default 8 KiB
    buffer, a 5 KB product cost a system call each: about a tenth of the writer's CPU."""

    CHUNK = 256 << 10

    def __init__(self, sink: ByteSink) -> None:
        self.sink = sink
        self.total = 0
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> int:
        if data:
            self.total += len(data)
            self._pending.append(data)
            self._size += len(data)
            if self._size >= self.CHUNK:
                self.drain()
        return len(data)

    def drain(self) -> None:
        """Hand what is pending to the sink (without flushing it)."""
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._size = 0
            self.sink.write(data)

    def flush(self) -> None:
        self.drain()
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
        # 3.x products are written as text, tag by tag (``_Out``); 2.1 ones as lxml trees.
        self._xml = _Xml(self._short)
        self._clean = False
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
        else:
            with contextlib.suppress(Exception):  # never hide the error being raised
                self._tee.drain()  # what was written so far still reaches the sink

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
        if type(self).product_element is not OnixWriter.product_element:
            return self._tree_bytes(work, product, notification_type)  # Onix21Writer
        try:
            data = self._product_text(work, product, notification_type).encode()
            if _not_xml_bytes(data):
                raise ValueError("control characters")
            return data
        except ValueError:
            # Text XML cannot carry (control characters): this one product is written again
            # with them removed, as the lxml tree it used to be built as was.
            self._clean = True
            try:
                text = _NOT_XML.sub("", self._product_text(work, product, notification_type))
            finally:
                self._clean = False
            return text.encode()

    def _tree_bytes(self, work: Work, product: Product, notification_type: str) -> bytes:
        """``product_element`` serialised: for a subclass that builds its products as trees."""
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
        self._tee.write(data)
        self._tee.write(b"\n")
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
        """The ``Product`` element for one product (reference or short names, no namespace):
        ``product_bytes`` parsed back (3.x products are serialised as text, not built as a tree)."""
        return etree.fromstring(self.product_bytes(work, product, notification_type))

    def _product_text(self, work: Work, product: Product, notification_type: str) -> str:
        """The 3.x ``Product`` as text, element by element in document order (``_Out``)."""
        out = _Out(self._xml)
        out.leaf("RecordReference", record_reference(product))
        out.code("NotificationType", notification_type)
        if notification_type != "05":
            check_identifiers(product)
        self._identifiers_text(out, product)
        if notification_type != "05":
            self._descriptive(out, work, product)
            self._collateral(out, work, product)
            self._publishing(out, work, product)
            self._related(out, work, product)
            self._supply(out, work, product)
        return out.product()

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

    def _identifiers_text(self, out: _Out, product: Product) -> None:
        if product.isbn13:
            for kind in ("03", "15"):
                out.open("ProductIdentifier")
                out.code("ProductIDType", kind)
                out.leaf("IDValue", product.isbn13)
                out.close("ProductIdentifier")
        elif product.gtin:
            out.open("ProductIdentifier")
            out.code("ProductIDType", "03")
            out.leaf("IDValue", product.gtin)
            out.close("ProductIdentifier")
        else:
            out.open("ProductIdentifier")
            out.code("ProductIDType", "01")
            out.code("IDTypeName", "consonance-product-id")
            out.leaf("IDValue", str(product.id))
            out.close("ProductIdentifier")
        if product.doi:
            out.open("ProductIdentifier")
            out.code("ProductIDType", "06")
            out.leaf("IDValue", product.doi)
            out.close("ProductIdentifier")

    def _text_el(self, out: _Out, name: str, text: str, text_format: str | None) -> None:
        """A text element; XHTML (``textformat`` 05) is written as markup, not escaped."""
        if self._clean:
            text = _NOT_XML.sub("", text)
        if text_format in (None, "05") and _MARKUP.search(text):
            try:
                fragment = etree.fromstring(f"<x>{text}</x>")
            except etree.XMLSyntaxError:
                out.leaf(name, text, "02")  # HTML that is not XHTML: escaped
                return
            # The markup as lxml writes it (parsed and serialised again: same bytes as when
            # the product was one lxml tree).
            child = etree.Element(name)
            child.set("textformat", "05")
            child.text = fragment.text
            child.extend(list(fragment))
            out.raw(etree.tostring(self._shorten(child), encoding="unicode"))
            return
        out.leaf(name, text, text_format if text_format and text_format != "06" else None)

    def _descriptive(self, out: _Out, work: Work, product: Product) -> None:
        leaf, code, open_, close = out.leaf, out.code, out.open, out.close
        open_("DescriptiveDetail")
        code("ProductComposition", product.composition or ("10" if product.parts else "00"))
        form, details = codes.product_form_30(product)
        code("ProductForm", form)
        for detail in details:
            code("ProductFormDetail", detail)
        for kind, value in codes.measures(product):
            open_("Measure")
            code("MeasureType", kind)
            code("Measurement", _num(value))
            code("MeasureUnitCode", "mm")
            close("Measure")
        if product.weight_g is not None:
            open_("Measure")
            code("MeasureType", "08")
            leaf("Measurement", _num(product.weight_g.quantize(Decimal("0.01")).normalize()))
            code("MeasureUnitCode", "gr")
            close("Measure")
        for protection in product.technical_protection:
            code("EpubTechnicalProtection", protection)
        for part in product.parts:
            open_("ProductPart")
            if part.primary:
                out.empty("PrimaryPart")
            if part.isbn13:
                open_("ProductIdentifier")
                code("ProductIDType", "15" if part.isbn13.startswith("97") else "03")
                leaf("IDValue", part.isbn13)
                close("ProductIdentifier")
            code("ProductForm", part.form)
            for detail in part.form_details:
                code("ProductFormDetail", detail)
            leaf("NumberOfCopies", str(part.number_of_copies))
            close("ProductPart")
        for series in work.series:
            self._collection(out, series)
        open_("TitleDetail")
        code("TitleType", "01")
        open_("TitleElement")
        code("TitleElementLevel", "01")
        if product.title or work.title:
            # No title, no element: the XSD then names the record as missing its title.
            leaf("TitleText", product.title or work.title)
        subtitle = product.subtitle if product.title else (product.subtitle or work.subtitle)
        if subtitle:
            leaf("Subtitle", subtitle)
        close("TitleElement")
        close("TitleDetail")
        contributions = sorted(
            (c for c in work.contributions if _applies(c.product_ids, product)),
            key=lambda c: c.sequence_number,
        )
        for contribution in contributions:
            open_("Contributor")
            code("SequenceNumber", str(contribution.sequence_number))
            code("ContributorRole", contribution.role)
            self._contact(out, contribution.contributor)
            close("Contributor")
        for edition_type in product.edition_types:
            code("EditionType", edition_type)
        if product.edition_number is not None:
            code("EditionNumber", str(product.edition_number))
        if product.edition_statement:
            leaf("EditionStatement", product.edition_statement)
        if product.language:
            open_("Language")
            code("LanguageRole", "01")
            code("LanguageCode", product.language)
            close("Language")
        extents = list(product.extents)
        if product.page_count is not None and not any(e.extent_type == "00" for e in extents):
            self._extent(out, "00", str(product.page_count), "03")
        for extent in extents:
            self._extent(out, extent.extent_type, extent.value, extent.unit)
        for subject in work.subjects:
            scheme_id = codes.subject_scheme_id(subject.scheme, subject.code)
            if scheme_id is None:
                continue
            open_("Subject")
            if subject.main:
                out.empty("MainSubject")
            code("SubjectSchemeIdentifier", scheme_id)
            code("SubjectCode", subject.code)
            if subject.description:
                leaf("SubjectHeadingText", subject.description)
            close("Subject")
        for other in work.other_subjects:
            open_("Subject")
            if other.main:
                out.empty("MainSubject")
            code("SubjectSchemeIdentifier", other.scheme_id)
            if other.scheme_name:
                leaf("SubjectSchemeName", other.scheme_name)
            if other.scheme_version:
                leaf("SubjectSchemeVersion", other.scheme_version)
            if other.code:
                leaf("SubjectCode", other.code)
            if other.heading:
                leaf("SubjectHeadingText", other.heading)
            close("Subject")
        keywords = list(work.keywords) + [
            s.code for s in work.subjects if s.scheme is SubjectScheme.KEYWORD
        ]
        if keywords:
            open_("Subject")
            code("SubjectSchemeIdentifier", "20")
            leaf("SubjectHeadingText", "; ".join(keywords))
            close("Subject")
        for audience in product.audiences:
            open_("Audience")
            code("AudienceCodeType", audience.code_type)
            code("AudienceCodeValue", audience.value)
            close("Audience")
        close("DescriptiveDetail")

    def _collection(self, out: _Out, series: SeriesMembership) -> None:
        """A series as a publisher ``Collection`` (10): ISSN, title, part number."""
        leaf, code, open_, close = out.leaf, out.code, out.open, out.close
        open_("Collection")
        code("CollectionType", "10")
        for issn in (series.print_issn, series.online_issn):
            if issn:
                open_("CollectionIdentifier")
                code("CollectionIDType", "02")
                leaf("IDValue", issn)
                close("CollectionIdentifier")
        open_("TitleDetail")
        code("TitleType", "01")
        open_("TitleElement")
        code("TitleElementLevel", "02")
        if series.part_number:
            leaf("PartNumber", series.part_number)
        leaf("TitleText", series.name)
        if series.subtitle:
            leaf("Subtitle", series.subtitle)
        close("TitleElement")
        close("TitleDetail")
        close("Collection")

    def _extent(self, out: _Out, kind: str, value: str, unit: str) -> None:
        out.open("Extent")
        out.code("ExtentType", kind)
        out.leaf("ExtentValue", value)
        out.code("ExtentUnit", unit)
        out.close("Extent")

    def _contact(self, out: _Out, contact: Contact) -> None:
        leaf = out.leaf
        for ident in contact.identifiers:
            out.open("NameIdentifier")
            out.code("NameIDType", ident.id_type)
            if ident.type_name:
                leaf("IDTypeName", ident.type_name)
            leaf("IDValue", ident.value)
            out.close("NameIdentifier")
        if contact.is_organisation:
            leaf("CorporateName", contact.name)
        else:
            leaf("PersonName", contact.name)
            if contact.key_names:
                if contact.names_before_key:
                    leaf("NamesBeforeKey", contact.names_before_key)
                leaf("KeyNames", contact.key_names)
        if contact.biographical_note:
            self._text_el(out, "BiographicalNote", contact.biographical_note, None)

    def _collateral(self, out: _Out, work: Work, product: Product) -> None:
        leaf, code, open_, close = out.leaf, out.code, out.open, out.close
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
        open_("CollateralDetail")
        for kind, text in texts:
            open_("TextContent")
            code("TextType", kind)
            for audience in text.audiences or ("00",):
                code("ContentAudience", audience)
            self._text_el(out, "Text", text.text, text.text_format)
            close("TextContent")
        for kind, resource in resources:
            open_("SupportingResource")
            code("ResourceContentType", kind)
            for audience in resource.audiences or ("00",):
                code("ContentAudience", audience)
            code("ResourceMode", codes.resource_mode(resource.content_type, kind))
            open_("ResourceVersion")
            web_page = (resource.content_type or "").startswith("text/html")
            code("ResourceForm", "01" if web_page else "02")  # linkable, else downloadable
            features = [
                ("01", codes.IMAGE_FORMATS.get(resource.content_type or "")),
                ("02", str(resource.height) if resource.height else None),
                ("03", str(resource.width) if resource.width else None),
            ]
            for feature, value in features:
                if value:
                    open_("ResourceVersionFeature")
                    code("ResourceVersionFeatureType", feature)
                    leaf("FeatureValue", value)
                    close("ResourceVersionFeature")
            leaf("ResourceLink", resource.url)
            close("ResourceVersion")
            close("SupportingResource")
        close("CollateralDetail")

    def _publishing(self, out: _Out, work: Work, product: Product) -> None:
        leaf, code, open_, close = out.leaf, out.code, out.open, out.close
        open_("PublishingDetail")
        if work.imprint:
            open_("Imprint")
            leaf("ImprintName", work.imprint.name)
            close("Imprint")
        publisher = self.publisher or Party(name=work.publisher_name or self.publisher_name)
        for role, party in (("01", publisher), *(("02", p) for p in self.co_publishers)):
            open_("Publisher")
            code("PublishingRole", role)
            for id_type, value in party.identifiers():
                open_("PublisherIdentifier")
                code("PublisherIDType", id_type)
                leaf("IDValue", value)
                close("PublisherIdentifier")
            leaf("PublisherName", party.name)
            close("Publisher")
        if product.publishing_status:
            code("PublishingStatus", product.publishing_status)
        for role, value, dateformat in publishing_dates_of(product):
            open_("PublishingDate")
            code("PublishingDateRole", role)
            leaf("Date", value, dateformat or None, "dateformat")
            close("PublishingDate")
        for rights_type, territory in sales_rights_of(product, self.sales_rights_type):
            parts = _territory_parts(territory)
            if not parts:
                continue
            open_("SalesRights")
            code("SalesRightsType", rights_type)
            open_("Territory")
            for name, value in parts:
                code(name, value)
            close("Territory")
            close("SalesRights")
        close("PublishingDetail")

    def _related(self, out: _Out, work: Work, product: Product) -> None:
        leaf, code, open_, close = out.leaf, out.code, out.open, out.close
        open_("RelatedMaterial")
        open_("RelatedWork")
        code("WorkRelationCode", "01")
        open_("WorkIdentifier")
        if work.identifiers:
            ident = work.identifiers[0]
            code("WorkIDType", ident.id_type)
            if ident.type_name:
                leaf("IDTypeName", ident.type_name)
            leaf("IDValue", ident.value)
        else:
            code("WorkIDType", "01")
            code("IDTypeName", "consonance-work-id")
            leaf("IDValue", str(work.id))
        close("WorkIdentifier")
        close("RelatedWork")
        for related in product.related_products:
            open_("RelatedProduct")
            for relation in related.relation_codes or ("06",):
                code("ProductRelationCode", relation)
            open_("ProductIdentifier")
            # A related product with no ISBN (a GTIN-only sibling) is named by its GTIN.
            code("ProductIDType", "15" if related.isbn13.startswith(("978", "979")) else "03")
            leaf("IDValue", related.isbn13)
            close("ProductIdentifier")
            close("RelatedProduct")
        close("RelatedMaterial")

    def _supply(self, out: _Out, work: Work, product: Product) -> None:
        leaf, code, open_, close = out.leaf, out.code, out.open, out.close
        open_("ProductSupply")
        market = market_of(product)
        parts = _territory_parts(market) if market is not None else []
        if parts:
            open_("Market")
            open_("Territory")
            for name, value in parts:
                code(name, value)
            close("Territory")
            close("Market")
        open_("SupplyDetail")
        party = self.supplier or SupplierParty(
            name=product.supplier_name or self.publisher_name, role=product.supplier_role or "01"
        )
        open_("Supplier")
        code("SupplierRole", party.role)
        for id_type, value in party.identifiers():
            open_("SupplierIdentifier")
            code("SupplierIDType", id_type)
            leaf("IDValue", value)
            close("SupplierIdentifier")
        leaf("SupplierName", party.name)
        close("Supplier")
        code("ProductAvailability", availability_of(product))
        unpriced = unpriced_item_type(product)
        if unpriced is not None:
            code("UnpricedItemType", unpriced)
        else:
            for price in product.prices:
                self._price(out, price)
        close("SupplyDetail")
        close("ProductSupply")

    def _price(self, out: _Out, price: Price) -> None:
        leaf, code, open_, close = out.leaf, out.code, out.open, out.close
        open_("Price")
        code("PriceType", price.price_type)
        if price.qualifier:
            code("PriceQualifier", price.qualifier)
        leaf("PriceAmount", _num(price.amount))
        if price.tax_rate_percent is not None:
            open_("Tax")
            code("TaxType", "01")
            if price.tax_rate_code:
                code("TaxRateCode", price.tax_rate_code)
            code("TaxRatePercent", _num(price.tax_rate_percent))
            close("Tax")
        code("CurrencyCode", price.currency)
        parts = _territory_parts(
            Territory(
                countries_included=price.territories,
                regions_included=price.regions,
                countries_excluded=price.excluded_territories,
            )
        )
        if parts:
            open_("Territory")
            for name, value in parts:
                code(name, value)
            close("Territory")
        for role, day in (("14", price.effective_from), ("15", price.effective_to)):
            if day is not None:
                open_("PriceDate")
                code("PriceDateRole", role)
                leaf("Date", day.strftime("%Y%m%d"))
                close("PriceDate")
        close("Price")


def _leaf(parent: _Element, name: str, text: str | None = None) -> _Element:
    child = _SubElement(parent, name)
    if text is not None:
        child.text = text
    return child


# Characters XML 1.0 cannot carry at all (C0 controls except tab, newline, carriage return).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_NOT_XML_ASCII = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])


def _not_xml_bytes(data: bytes) -> bool:
    """Whether UTF-8 ``data`` holds a character ``_NOT_XML`` matches; about a sixth of the
    regular expression's time on a product's text (a product is some 5,000 characters): the
    control characters are single bytes in UTF-8, U+FFFE and U+FFFF three bytes no other
    character's bytes can form."""
    if len(data.translate(None, _NOT_XML_ASCII)) != len(data):
        return True
    return not data.isascii() and (b"\xef\xbf\xbe" in data or b"\xef\xbf\xbf" in data)


def _clean_leaf(parent: _Element, name: str, text: str | None = None) -> _Element:
    return _leaf(parent, name, _NOT_XML.sub("", text) if text is not None else None)


def _num(value: Decimal | int) -> str:
    """Plain decimal notation (never ``1E+1``)."""
    return format(Decimal(value), "f")


def _escape(text: str) -> str:
    """Text content as libxml2 writes it: ``&``, ``<``, ``>`` and carriage returns escaped."""
    if "&" in text or "<" in text or ">" in text or "\r" in text:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return text.replace("\r", "&#13;")
    return text


def _escape_attribute(value: str) -> str:
    """An attribute value as libxml2 writes it (in double quotes)."""
    value = _escape(value).replace('"', "&quot;")
    return value.replace("\n", "&#10;").replace("\t", "&#9;")


class _Xml:
    """One version and tag style as written: the tag of each element, and whole elements for
    the code-list values that repeat from product to product, made once and reused."""

    _MAX_CODES = 20_000  # distinct (element, value) pairs kept; any more are made each time

    def __init__(self, short: dict[str, str] | None) -> None:
        self._short = short or {}
        self.tags: dict[str, str] = {}
        self.opens: dict[str, str] = {}
        self.closes: dict[str, str] = {}
        self.codes: dict[tuple[str, str], str] = {}

    def tag(self, name: str) -> str:
        tag = self.tags.get(name)
        if tag is None:
            tag = self.tags[name] = self._short.get(name, name)
            self.opens[name] = f"<{tag}>"
            self.closes[name] = f"</{tag}>"
        return tag


class _Out:
    """One ``Product`` as text, written in document order: what lxml would serialise for the
    same tree (same escaping, ``<X/>`` for an empty element, ``<X></X>`` for empty text)."""

    __slots__ = ("_codes", "_parts", "_xml")

    def __init__(self, xml: _Xml) -> None:
        self._xml = xml
        self._codes = xml.codes
        self._parts = [f"<{xml.tag('Product')}>"]

    def product(self) -> str:
        self._parts.append(f"</{self._xml.tag('Product')}>")
        return "".join(self._parts)

    def open(self, name: str) -> None:
        try:
            self._parts.append(self._xml.opens[name])
        except KeyError:
            self._parts.append(f"<{self._xml.tag(name)}>")

    def close(self, name: str) -> None:
        try:
            self._parts.append(self._xml.closes[name])
        except KeyError:
            self._parts.append(f"</{self._xml.tag(name)}>")

    def empty(self, name: str) -> None:
        self._parts.append(f"<{self._xml.tag(name)}/>")

    def raw(self, text: str) -> None:
        self._parts.append(text)

    def leaf(
        self, name: str, text: str | None, attribute: str | None = None, key: str = "textformat"
    ) -> None:
        tag = self._xml.tags.get(name) or self._xml.tag(name)
        if text is None:  # as lxml: no text, an empty element
            if attribute is None:
                self._parts.append(f"<{tag}/>")
            else:
                self._parts.append(f'<{tag} {key}="{_escape_attribute(attribute)}"/>')
        elif attribute is None:
            self._parts.append(f"<{tag}>{_escape(text)}</{tag}>")
        else:
            attr = _escape_attribute(attribute)
            self._parts.append(f'<{tag} {key}="{attr}">{_escape(text)}</{tag}>')

    def code(self, name: str, value: str) -> None:
        """A leaf whose value comes from a code list (or another small set): made once."""
        written = self._codes.get((name, value))
        if written is None:
            self.leaf(name, value)
            written = self._parts[-1]
            if len(self._codes) < _Xml._MAX_CODES:
                self._codes[(name, value)] = written
            return
        self._parts.append(written)
