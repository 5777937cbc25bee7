"""ONIX 2.1 products as ONIX 3.0 ones, so ``onix compare`` reads a 2.1 feed like a 3.x one.

A publisher checks our feed against the one they send today, and many still send 2.1. Rather
than a second reader, each 2.1 ``Product`` (reference names, no namespace: the reader has
already renamed short tags) is rewritten as the 3.0 ``Product`` that says the same thing, in
the elements ``reader._record`` reads, and read by it. So both versions land in the same
facets. What 2.1 says that has no place here is named by ``upgrade_product``'s caller in the
``ReadReport`` (``ELEMENTS``: the 2.1 children taken).

The mapping follows EDItEUR's 2.1 -> 3.0 correspondences for these elements: a 2.1
``ProductForm`` (list 7) keeps its code except the digital ones (``DG`` with its
``EpubType``, list 10, becomes ``ED`` + the list 175 detail: 029 EPUB ``E101``, 002 PDF
``E107``, 022 Mobipocket ``E127``, 031 Kindle ``E116``, 001 HTML ``E105``; 000 "content
package" becomes ``EA``; ``DH`` becomes ``EC``); ``OtherText`` list 33 text types become list
153 ones; ``MediaFile`` cover and logo images become ``SupportingResource``s; ``SalesRights``
and ``NotForSale`` become ``SalesRights`` 01/02/03 with a ``Territory``; each ``SupplyDetail``
becomes a ``ProductSupply`` (with a ``Market`` only when it names ``SupplyToCountry`` or
``SupplyToTerritory``); ``PublicationDate`` becomes ``PublishingDate`` 01 with its precision.
"""

from __future__ import annotations

import copy

from lxml import etree

_Element = etree._Element

# list 10 e-publication type -> 3.0 form and list 175 detail.
_EPUB_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "000": ("EA", ()),
    "001": ("ED", ("E105",)),
    "002": ("ED", ("E107",)),
    "022": ("ED", ("E127",)),
    "029": ("ED", ("E101",)),
    "031": ("ED", ("E116",)),
}
# 2.1 list 33 text types -> 3.0 list 153.
TEXT_TYPES = {
    "01": "03",  # main description
    "02": "02",  # short description / annotation
    "03": "03",  # long description
    "04": "04",  # table of contents
    "08": "06",  # review quote
    "09": "17",  # promotional headline
    "13": "12",  # biographical note
    "23": "14",  # excerpt
}
# 2.1 list 38 media file types -> 3.0 list 158 resource content types (all images).
MEDIA_TYPES = {"04": "01", "06": "01", "05": "02", "08": "04", "17": "09", "18": "10"}
# 2.1 dates with a 3.0 PublishingDate role (list 163).
_DATES = {
    "PublicationDate": "01",
    "AnnouncementDate": "09",
    "TradeAnnouncementDate": "10",
    "YearFirstPublished": "11",
    "OutOfPrintDate": "13",
}
# list 55 date formats by length: a year alone, a year and month, a day.
_DATE_FORMATS = {4: "05", 6: "01"}

# The 2.1 Product children taken (anything else is counted as not carried).
ELEMENTS = frozenset(
    {
        "RecordReference",
        "NotificationType",
        "ProductIdentifier",
        "ProductForm",
        "ProductFormDetail",
        "EpubType",
        "ContainedItem",
        "Series",
        "Title",
        "DistinctiveTitle",
        "Subtitle",
        "WorkIdentifier",
        "Contributor",
        "EditionTypeCode",
        "EditionNumber",
        "EditionStatement",
        "Language",
        "NumberOfPages",
        "Extent",
        "BASICMainSubject",
        "BICMainSubject",
        "MainSubject",
        "Subject",
        "AudienceCode",
        "Audience",
        "OtherText",
        "MediaFile",
        "Imprint",
        "Publisher",
        "PublishingStatus",
        *_DATES,
        "SalesRights",
        "NotForSale",
        "Measure",
        "RelatedProduct",
        "SupplyDetail",
    }
)


def _text(el: _Element | None, path: str) -> str | None:
    found = el.find(path) if el is not None else None
    if found is None or found.text is None or not found.text.strip():
        return None
    return found.text.strip()


def _all(el: _Element, path: str) -> list[str]:
    return [x.text.strip() for x in el.findall(path) if x.text and x.text.strip()]


def _sub(parent: _Element, tag: str, text: str | None = None) -> _Element:
    child = etree.SubElement(parent, tag)
    if text is not None:
        child.text = text
    return child


def _form(el: _Element, parent: _Element) -> None:
    """``ProductForm`` and ``ProductFormDetail`` of a 2.1 product or contained item."""
    form = _text(el, "ProductForm") or "00"
    details = _all(el, "ProductFormDetail")
    if form == "DG":
        form, extra = _EPUB_TYPES.get(_text(el, "EpubType") or "", ("ED", ()))
        details = [*extra, *details]
    elif form == "DH":
        form = "EC"
    _sub(parent, "ProductForm", form)
    for detail in details:
        _sub(parent, "ProductFormDetail", detail)


def _copy(el: _Element, names: tuple[str, ...], parent: _Element) -> None:
    """Copy ``el``'s children named ``names``, in that order, as they are."""
    for name in names:
        for child in el.findall(name):
            parent.append(copy.deepcopy(child))


def _territory(parent: _Element, countries: list[str], regions: list[str]) -> None:
    """A 3.0 ``Territory`` from 2.1 country and region lists (each space-separated)."""
    countries = " ".join(countries).split()
    regions = " ".join(regions).split()
    if not countries and not regions:
        return
    territory = _sub(parent, "Territory")
    if countries:
        _sub(territory, "CountriesIncluded", " ".join(countries))
    if regions:
        _sub(territory, "RegionsIncluded", " ".join(regions))


def _identifiers(el: _Element, parent: _Element) -> None:
    _copy(el, ("ProductIdentifier",), parent)


def _descriptive(p: _Element, out: _Element) -> None:
    d = _sub(out, "DescriptiveDetail")
    _sub(d, "ProductComposition", "10" if p.find("ContainedItem") is not None else "00")
    _form(p, d)
    for measure in p.findall("Measure"):
        m = _sub(d, "Measure")
        _sub(m, "MeasureType", _text(measure, "MeasureTypeCode"))
        _copy(measure, ("Measurement", "MeasureUnitCode"), m)
    for item in p.findall("ContainedItem"):
        part = _sub(d, "ProductPart")
        _identifiers(item, part)
        _form(item, part)
        _sub(part, "NumberOfCopies", _text(item, "ItemQuantity") or "1")
    for series in p.findall("Series"):
        name = _text(series, "TitleOfSeries") or _text(series, "Title/TitleText")
        if not name:
            continue
        collection = _sub(d, "Collection")
        _sub(collection, "CollectionType", "10")
        for ident in series.findall("SeriesIdentifier"):
            ci = _sub(collection, "CollectionIdentifier")
            _sub(ci, "CollectionIDType", _text(ident, "SeriesIDType"))
            _sub(ci, "IDValue", _text(ident, "IDValue"))
        title_detail = _sub(collection, "TitleDetail")
        _sub(title_detail, "TitleType", "01")
        element = _sub(title_detail, "TitleElement")
        _sub(element, "TitleElementLevel", "02")
        if _text(series, "NumberWithinSeries"):
            _sub(element, "PartNumber", _text(series, "NumberWithinSeries"))
        _sub(element, "TitleText", name)
    titles = [t for t in p.findall("Title") if _text(t, "TitleType") in (None, "01")]
    for title in titles[:1]:
        td = _sub(d, "TitleDetail")
        _sub(td, "TitleType", "01")
        te = _sub(td, "TitleElement")
        _sub(te, "TitleElementLevel", "01")
        _copy(title, ("TitlePrefix", "TitleWithoutPrefix", "TitleText", "Subtitle"), te)
    if not titles and _text(p, "DistinctiveTitle"):
        td = _sub(d, "TitleDetail")
        _sub(td, "TitleType", "01")
        te = _sub(td, "TitleElement")
        _sub(te, "TitleElementLevel", "01")
        _sub(te, "TitleText", _text(p, "DistinctiveTitle"))
        if _text(p, "Subtitle"):
            _sub(te, "Subtitle", _text(p, "Subtitle"))
    for contributor in p.findall("Contributor"):
        c = _sub(d, "Contributor")
        _copy(contributor, ("SequenceNumber", "ContributorRole"), c)
        for ident in contributor.findall("PersonNameIdentifier"):
            n = _sub(c, "NameIdentifier")
            _sub(n, "NameIDType", _text(ident, "PersonNameIDType"))
            _copy(ident, ("IDTypeName", "IDValue"), n)
        _copy(
            contributor,
            (
                "PersonName",
                "NamesBeforeKey",
                "PrefixToKey",
                "KeyNames",
                "CorporateName",
                "BiographicalNote",
            ),
            c,
        )
    for code in _all(p, "EditionTypeCode"):
        _sub(d, "EditionType", code)
    _copy(p, ("EditionNumber", "EditionStatement", "Language", "Extent"), d)
    if _text(p, "NumberOfPages"):
        extent = _sub(d, "Extent")
        _sub(extent, "ExtentType", "00")
        _sub(extent, "ExtentValue", _text(p, "NumberOfPages"))
        _sub(extent, "ExtentUnit", "03")
    for scheme, tag, version in (
        ("10", "BASICMainSubject", None),
        ("12", "BICMainSubject", "BICVersion"),
    ):
        if _text(p, tag):
            s = _sub(d, "Subject")
            _sub(s, "MainSubject")
            _sub(s, "SubjectSchemeIdentifier", scheme)
            if version and _text(p, version):
                _sub(s, "SubjectSchemeVersion", _text(p, version))
            _sub(s, "SubjectCode", _text(p, tag))
    for main in p.findall("MainSubject"):
        s = _sub(d, "Subject")
        _sub(s, "MainSubject")
        _sub(s, "SubjectSchemeIdentifier", _text(main, "MainSubjectSchemeIdentifier"))
        _copy(main, ("SubjectSchemeVersion", "SubjectCode", "SubjectHeadingText"), s)
    _copy(p, ("Subject",), d)
    for code in _all(p, "AudienceCode"):
        a = _sub(d, "Audience")
        _sub(a, "AudienceCodeType", "01")
        _sub(a, "AudienceCodeValue", code)
    _copy(p, ("Audience",), d)


def _collateral(p: _Element, out: _Element) -> None:
    c = _sub(out, "CollateralDetail")
    for other in p.findall("OtherText"):
        kind = TEXT_TYPES.get(_text(other, "TextTypeCode") or "")
        text = other.find("Text")
        if kind is None or text is None:
            continue
        content = _sub(c, "TextContent")
        _sub(content, "TextType", kind)
        _sub(content, "ContentAudience", "00")
        copied = copy.deepcopy(text)
        text_format = _text(other, "TextFormat") or text.get("textformat")
        if text_format:
            copied.set("textformat", text_format)
        content.append(copied)
    for media in p.findall("MediaFile"):
        kind = MEDIA_TYPES.get(_text(media, "MediaFileTypeCode") or "")
        link = _text(media, "MediaFileLink")
        if kind is None or link is None or _text(media, "MediaFileLinkTypeCode") != "01":
            continue
        resource = _sub(c, "SupportingResource")
        _sub(resource, "ResourceContentType", kind)
        _sub(resource, "ContentAudience", "00")
        _sub(resource, "ResourceMode", "03")  # every mapped media file type is an image
        version = _sub(resource, "ResourceVersion")
        _sub(version, "ResourceForm", "02")
        _sub(version, "ResourceLink", link)


def _publishing(p: _Element, out: _Element) -> None:
    pd = _sub(out, "PublishingDetail")
    _copy(p, ("Imprint", "Publisher", "PublishingStatus"), pd)
    for tag, role in _DATES.items():
        value = _text(p, tag)
        if value is None:
            continue
        pub_date = _sub(pd, "PublishingDate")
        _sub(pub_date, "PublishingDateRole", role)
        date = _sub(pub_date, "Date", value)
        fmt = "05" if tag == "YearFirstPublished" else _DATE_FORMATS.get(len(value))
        if fmt:
            date.set("dateformat", fmt)
    for rights in p.findall("SalesRights"):
        sr = _sub(pd, "SalesRights")
        _sub(sr, "SalesRightsType", _text(rights, "SalesRightsType") or "01")
        _territory(
            sr,
            _all(rights, "RightsCountry"),
            _all(rights, "RightsTerritory") or _all(rights, "RightsRegion"),
        )
    for not_for_sale in p.findall("NotForSale"):
        sr = _sub(pd, "SalesRights")
        _sub(sr, "SalesRightsType", "03")
        _territory(sr, _all(not_for_sale, "RightsCountry"), _all(not_for_sale, "RightsTerritory"))


def _related(p: _Element, out: _Element) -> None:
    rm = _sub(out, "RelatedMaterial")
    for ident in p.findall("WorkIdentifier"):
        rw = _sub(rm, "RelatedWork")
        _sub(rw, "WorkRelationCode", "01")
        rw.append(copy.deepcopy(ident))
    for related in p.findall("RelatedProduct"):
        rp = _sub(rm, "RelatedProduct")
        _sub(rp, "ProductRelationCode", _text(related, "RelationCode"))
        _identifiers(related, rp)


def _price(price: _Element, parent: _Element, default_type: str | None) -> None:
    pr = _sub(parent, "Price")
    _sub(pr, "PriceType", _text(price, "PriceTypeCode") or default_type or "01")
    _copy(price, ("PriceQualifier", "PriceAmount"), pr)
    if _text(price, "TaxRateCode1") or _text(price, "TaxRatePercent1"):
        tax = _sub(pr, "Tax")
        _sub(tax, "TaxType", "01")
        if _text(price, "TaxRateCode1"):
            _sub(tax, "TaxRateCode", _text(price, "TaxRateCode1"))
        if _text(price, "TaxRatePercent1"):
            _sub(tax, "TaxRatePercent", _text(price, "TaxRatePercent1"))
    _copy(price, ("CurrencyCode",), pr)
    countries, regions = _all(price, "CountryCode"), _all(price, "Territory")
    excluded, regions_excluded = _all(price, "CountryExcluded"), _all(price, "TerritoryExcluded")
    if countries or regions or excluded or regions_excluded:
        territory = _sub(pr, "Territory")
        for tag, values in (
            ("CountriesIncluded", countries),
            ("RegionsIncluded", regions),
            ("CountriesExcluded", excluded),
            ("RegionsExcluded", regions_excluded),
        ):
            if values:
                _sub(territory, tag, " ".join(" ".join(values).split()))
    for tag, role in (("PriceEffectiveFrom", "14"), ("PriceEffectiveUntil", "15")):
        if _text(price, tag):
            pd = _sub(pr, "PriceDate")
            _sub(pd, "PriceDateRole", role)
            _sub(pd, "Date", _text(price, tag))


def _supply(p: _Element, out: _Element, default_price_type: str | None) -> None:
    for detail in p.findall("SupplyDetail"):
        ps = _sub(out, "ProductSupply")
        countries = _all(detail, "SupplyToCountry")
        regions = _all(detail, "SupplyToTerritory")
        if countries or regions:
            _territory(_sub(ps, "Market"), countries, regions)
        sd = _sub(ps, "SupplyDetail")
        supplier = _sub(sd, "Supplier")
        _copy(detail, ("SupplierRole", "SupplierName"), supplier)
        _copy(detail, ("ProductAvailability", "UnpricedItemType"), sd)
        for price in detail.findall("Price"):
            _price(price, sd, default_price_type)


def upgrade_product(p: _Element, default_price_type: str | None = None) -> _Element:
    """The ONIX 3.0 ``Product`` (reference names, no namespace) saying what the 2.1 ``p`` says.

    ``default_price_type``: the 2.1 header's ``DefaultPriceTypeCode``, for prices without one.
    """
    out = etree.Element("Product")
    _copy(p, ("RecordReference", "NotificationType"), out)
    _identifiers(p, out)
    _descriptive(p, out)
    _collateral(p, out)
    _publishing(p, out)
    _related(p, out)
    _supply(p, out, default_price_type)
    return out
