"""Code-list mappings between Consonance's values and ONIX, kept in one place.

Consonance exposes ONIX 2.1 product form codes (list 7: ``BB``, ``BC``, ``DG``...); ONIX 3.0
uses list 150 plus list 175 details. Most book and audio codes are the same in both; the
electronic ones are not (``DG`` "electronic book text" became ``ED`` + ``E101`` and friends).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from ...models import Extent, Product, RelatedProduct, SubjectScheme

# ONIX 2.1 list 7 codes that list 150 dropped -> (3.0 ProductForm, ProductFormDetail defaults).
_FORM_21_TO_30: dict[str, tuple[str, tuple[str, ...]]] = {
    "DG": ("ED", ("E101",)),  # electronic book text: an EPUB download unless told otherwise
    "DH": ("EC", ()),  # online resource
    "PI": ("PI", ()),
}

# Digital 3.0 forms that collapse back to 2.1 ``DG`` (ebook) or ``DH`` (online).
_EBOOK_DETAILS = frozenset({"E101", "E107", "E116", "E127", "E139", "E135", "E105"})


def product_form_30(product: Product) -> tuple[str, tuple[str, ...]]:
    """ONIX 3.0 ``ProductForm`` and ``ProductFormDetail`` codes for a product."""
    if product.onix_product_form:
        return product.onix_product_form, product.product_form_details
    code = (product.product_form or "").upper()
    if code in _FORM_21_TO_30:
        form, details = _FORM_21_TO_30[code]
        return form, product.product_form_details or details
    if code:
        return code, product.product_form_details
    # No form at all: say what kind of thing it is from its Consonance type.
    fallback = {
        "ElectronicBookProduct": ("ED", ("E101",)),
        "ElectronicAudioProduct": ("AJ", ()),
        "PhysicalAudioProduct": ("AC", ()),
        "PhysicalBookProduct": ("BA", ()),
    }
    return fallback.get(product.typename, ("00", ()))


# Consonance's e-publication type (``epubTypeDescription``, an ONIX 2.1 notion) as words ->
# the ONIX 3.0 form and list 175 detail it stands for. Matched on the lower-cased words, the
# first entry that matches wins (so "Mobipocket" is not read as "pdf" or "epub").
_EPUB_TYPES: tuple[tuple[tuple[str, ...], str, tuple[str, ...]], ...] = (
    (("multiple formats", "content package", "multi-format", "multiformat"), "EA", ()),
    (("mobipocket", "mobi"), "ED", ("E127",)),
    (("kindle", "kf8", "azw"), "ED", ("E116",)),
    (("pdf",), "ED", ("E107",)),
    (("epub",), "ED", ("E101",)),
    (("xhtml",), "ED", ("E113",)),
    (("html",), "ED", ("E105",)),
)
# What the sandbox answers as ``epubTypeDescription`` for a 3.0 form and details.
EPUB_TYPE_DESCRIPTIONS: dict[str, str] = {
    "E101": "EPUB",
    "E105": "HTML",
    "E107": "PDF",
    "E113": "XHTML",
    "E116": "Amazon Kindle",
    "E127": "Mobipocket",
}


def form_of_epub_type(description: str | None) -> tuple[str, tuple[str, ...]] | None:
    """The ONIX 3.0 form and details for Consonance's e-publication type, None if unknown."""
    words = (description or "").strip().lower()
    if not words:
        return None
    for keys, form, details in _EPUB_TYPES:
        if any(key in words for key in keys):
            return form, details
    return None


def epub_type_description(form: str | None, details: tuple[str, ...]) -> str | None:
    """The e-publication type, in words, of an ONIX 3.0 digital form (what Consonance holds)."""
    if form == "EA" and not details:
        return "Multiple formats"
    for detail in details:
        if detail in EPUB_TYPE_DESCRIPTIONS:
            return EPUB_TYPE_DESCRIPTIONS[detail]
    return None


def product_form_21(form: str, details: tuple[str, ...]) -> str:
    """The ONIX 2.1 list 7 code for a 3.0 form and details (what Consonance would hold)."""
    if form in {"EA", "EB", "ED"} and (not details or _EBOOK_DETAILS & set(details)):
        return "DG"
    if form == "EC":
        return "DH"
    return form


def typename_for(form: str, details: tuple[str, ...]) -> str:
    """Consonance's product ``__typename`` implied by an ONIX 3.0 form."""
    if form in {"AJ", "AN", "AE"} or (
        form.startswith("E") and any(d.startswith("A1") for d in details)
    ):
        return "ElectronicAudioProduct"
    if form.startswith(("E", "DG")):
        return "ElectronicBookProduct"
    if form.startswith("A"):
        return "PhysicalAudioProduct"
    if form.startswith("B"):
        return "PhysicalBookProduct"
    return "GenericProduct"


# --- related products -------------------------------------------------------------------

# Relations between products of one work (list 51) that say "the same work in another form".
# Consonance has no related-product field: its own ONIX output (the 2019 sample) writes them
# from the work's other products (``RelatedProduct 27`` for the e-version), and so does the
# client (``sibling_relations``). A record that relates products this way puts them in one
# work when the sandbox is seeded.
FORMAT_RELATIONS = frozenset({"06", "13", "27"})


def _is_print_book(product: Product) -> bool:
    return product.typename == "PhysicalBookProduct" or product_form_30(product)[0].startswith("B")


def _is_ebook(product: Product) -> bool:
    return product.typename == "ElectronicBookProduct"


def sibling_relation(product: Product, other: Product) -> str:
    """How ``product`` relates to ``other``, another product of its work (list 51).

    A print book to its ebook 27 ("electronic version available as"), an ebook to its print
    book 13 ("epublication based on"), any other pair 06 ("alternative format").
    """
    if _is_print_book(product) and _is_ebook(other):
        return "27"
    if _is_ebook(product) and _is_print_book(other):
        return "13"
    return "06"


def sibling_relations(product: Product, siblings: Iterable[Product]) -> tuple[RelatedProduct, ...]:
    """``product``'s related products: every other product of its work with an ISBN.

    A sibling with only a GTIN is left out: Google's profile takes ISBNs alone in a
    ``RelatedProduct`` (``ProductIDType`` 03 "must be an ISBN"), and one would block the feed.
    """
    return tuple(
        RelatedProduct(relation_codes=(sibling_relation(product, other),), isbn13=other.isbn13)
        for other in siblings
        if other.id != product.id and other.isbn13
    )


# --- subjects -------------------------------------------------------------------------------

# Thema qualifiers are told apart by their first character (EDItEUR's Thema structure).
_THEMA_QUALIFIER_SCHEME = {"1": "94", "2": "95", "3": "96", "4": "97", "5": "98", "6": "99"}
THEMA_SCHEMES = frozenset({"93", "94", "95", "96", "97", "98", "99"})


def subject_scheme_id(scheme: SubjectScheme, code: str) -> str | None:
    """ONIX list 27 ``SubjectSchemeIdentifier`` for a subject; None for keywords."""
    if scheme is SubjectScheme.BISAC:
        return "10"
    if scheme is SubjectScheme.BIC:
        return "12"
    if scheme is SubjectScheme.THEMA:
        return _THEMA_QUALIFIER_SCHEME.get(code[:1], "93")
    return None


def subject_scheme(scheme_id: str) -> SubjectScheme | None:
    """Our scheme for an ONIX list 27 identifier, None for schemes we do not carry."""
    if scheme_id == "10":
        return SubjectScheme.BISAC
    if scheme_id == "12":
        return SubjectScheme.BIC
    if scheme_id in THEMA_SCHEMES:
        return SubjectScheme.THEMA
    if scheme_id == "20":
        return SubjectScheme.KEYWORD
    return None


# --- texts and resources ------------------------------------------------------------------

# Consonance MarketingTextVariant <-> ONIX list 153 TextType.
TEXT_TYPES: dict[str, str] = {
    "SHORT_DESCRIPTION": "02",
    "DESCRIPTION": "03",
    "TABLE_OF_CONTENTS": "04",
    "PRIMARY_CONTENT": "05",
    "REVIEW_QUOTE": "06",
    "PREVIOUS_REVIEW_QUOTE": "07",
    "ENDORSEMENT": "08",
    "PROMOTIONAL_HEADLINE": "10",
    "FEATURE": "11",
    "BIOGRAPHICAL_NOTE": "12",
    "EXCERPT": "14",
    "INDEX": "15",
    "FLAP_COPY": "17",
    "KEY_SELLING_POINTS": "18",
}
TEXT_VARIANTS: dict[str, str] = {code: variant for variant, code in TEXT_TYPES.items()}


def text_type(variant: str) -> str | None:
    """ONIX TextType for a marketing-text variant (``ONIX_TEXT_TYPE_NN`` round-trips)."""
    if variant.startswith("ONIX_TEXT_TYPE_"):
        return variant.removeprefix("ONIX_TEXT_TYPE_")
    return TEXT_TYPES.get(variant.upper())


def text_variant(code: str) -> str:
    return TEXT_VARIANTS.get(code, f"ONIX_TEXT_TYPE_{code}")


# SupportingResource variant <-> ONIX list 158 ResourceContentType.
RESOURCE_TYPES: dict[str, str] = {
    "FRONT_COVER": "01",
    "BACK_COVER": "02",
    "COVER_PACK": "03",
    "CONTRIBUTOR_PICTURE": "04",
    "SERIES_IMAGE": "05",
    "SERIES_LOGO": "06",
    "PRODUCT_IMAGE": "07",
    "PRODUCT_LOGO": "08",
    "PUBLISHER_LOGO": "09",
    "IMPRINT_LOGO": "10",
    "SAMPLE_CONTENT": "15",
    "WIDGET": "16",
    "REVIEW": "17",
}
RESOURCE_VARIANTS: dict[str, str] = {code: variant for variant, code in RESOURCE_TYPES.items()}


def resource_type(variant: str) -> str | None:
    if variant.startswith("ONIX_RESOURCE_TYPE_"):
        return variant.removeprefix("ONIX_RESOURCE_TYPE_")
    return RESOURCE_TYPES.get(variant.upper())


def resource_variant(code: str) -> str:
    return RESOURCE_VARIANTS.get(code, f"ONIX_RESOURCE_TYPE_{code}")


# ResourceVersionFeature (list 160) file formats (list 178) we recognise by MIME type.
IMAGE_FORMATS: dict[str, str] = {
    "image/jpeg": "D502",
    "image/gif": "D501",
    "image/png": "D503",
    "image/tiff": "D504",
    "application/pdf": "E107",
    "application/epub+zip": "E101",
    "text/html": "E105",
}
IMAGE_MIME: dict[str, str] = {code: mime for mime, code in IMAGE_FORMATS.items()}


# ResourceMode (list 159) by the first part of a MIME type, and for the text-like others.
_MODES = {"image": "03", "audio": "02", "video": "05", "text": "04"}
_TEXT_MIME = frozenset({"application/pdf", "application/epub+zip", "application/xhtml+xml"})
# Resource content types (list 158) that are images by nature: covers, pictures, logos.
_IMAGE_RESOURCES = frozenset({"01", "02", "03", "04", "05", "06", "07", "08", "09", "10"})


def resource_mode(content_type: str | None, kind: str) -> str:
    """``ResourceMode`` (list 159) of a supporting resource: from its MIME type (an EPUB, a
    PDF or a web page is text, 04), else from what it is (a cover is an image, 03), else
    multi-mode (06) rather than claim an image."""
    mime = (content_type or "").lower().split(";", 1)[0].strip()
    if mime in _TEXT_MIME:
        return "04"
    if mime:
        return _MODES.get(mime.split("/", 1)[0], "01")  # application/*: an application
    return "03" if kind in _IMAGE_RESOURCES else "06"


def form_30_of_code(code: str) -> str:
    """The ONIX 3.0 ``ProductForm`` for a bare 2.1 or 3.0 form code."""
    return _FORM_21_TO_30.get(code.upper(), (code.upper(), ()))[0]


# Extent units (list 24) of a duration (extent type 09) in seconds per unit.
_SECONDS_PER = {"04": 3600, "05": 60, "06": 1}


def duration_seconds(extents: Iterable[Extent]) -> int | None:
    """A running time (extent 09) in seconds, from any duration unit ONIX allows."""
    for extent in extents:
        if extent.extent_type != "09":
            continue
        value = extent.value.strip()
        try:
            if extent.unit in _SECONDS_PER:
                return int(Decimal(value) * _SECONDS_PER[extent.unit])
            if extent.unit == "14" and value.isdigit():  # HHH
                return int(value) * 3600
            if extent.unit == "15" and value.isdigit():  # HHHMM
                return int(value[:-2] or 0) * 3600 + int(value[-2:]) * 60
            if extent.unit == "16" and value.isdigit():  # HHHMMSS
                return int(value[:-4] or 0) * 3600 + int(value[-4:-2]) * 60 + int(value[-2:])
        except ArithmeticError:
            continue
    return None


def duration_extent(seconds: int) -> Extent:
    """A running time as extent 09 in HHHMMSS (list 24 code 16): exact to the second."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return Extent(extent_type="09", value=f"{hours:03d}{minutes:02d}{secs:02d}", unit="16")


def measures(product: Product) -> list[tuple[str, Decimal]]:
    """The product's measures as (list 48 measure type, millimetres), for both ONIX versions:
    01 height, 02 width, 03 thickness."""
    pairs = (("01", product.height_mm), ("02", product.width_mm), ("03", product.thickness_mm))
    return [(kind, value) for kind, value in pairs if value is not None]
