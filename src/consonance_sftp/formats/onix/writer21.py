"""ONIX 2.1 output for recipients that still require it (some print distributors).

Same interface and streaming as ``OnixWriter`` (it subclasses it): only the header and the
flat 2.1 ``Product`` differ. 2.1 has no blocks, keeps Consonance's list 7 product forms as they
are, and says ``PriceTypeCode``, ``OtherText``, ``MediaFile``, ``SupplyDetail`` where 3.0 has
composites. The message carries the 2.1 namespace and ``release="2.1"`` so the bundled 2.1 XSD
validates it (real 2.1 feeds often rely on a DOCTYPE alone, which onixcheck cannot check).
"""

from __future__ import annotations

from lxml import etree

from ...models import Product, SubjectScheme, Work
from . import codes
from .writer import (
    _MARKUP,
    OnixWriter,
    _applies,
    _Element,
    _num,
    availability_of,
    check_identifiers,
    record_reference,
    sales_rights_of,
    unpriced_item_type,
)

# 3.0 list 153 text types -> 2.1 list 33 text type codes.
_TEXT_21 = {"02": "02", "03": "01", "04": "04", "06": "08", "12": "13", "14": "23", "17": "09"}
# 3.0 list 158 resource types -> 2.1 list 38 media file types.
_MEDIA_21 = {"01": "04", "02": "05", "04": "08", "09": "17", "10": "18"}
_MEDIA_FORMAT_21 = {"image/jpeg": "03", "image/gif": "02", "image/png": "05", "image/tiff": "06"}
# 3.0 list 175 ebook details -> 2.1 list 10 e-publication types (022 is Mobipocket, 031 Kindle).
_EPUB_TYPE = {"E101": "029", "E105": "001", "E107": "002", "E116": "031", "E127": "022"}


class Onix21Writer(OnixWriter):
    """Write an ONIX 2.1 message (reference names or short tags), product by product."""

    def _header(self) -> _Element:
        h = self.header
        el = self._el
        header = etree.Element("Header")
        ids = dict(h.sender_identifiers)
        if "06" in ids:
            el(header, "FromEANNumber", ids["06"])
        if "07" in ids:
            el(header, "FromSAN", ids["07"])
        el(header, "FromCompany", h.sender_name)
        if h.contact_name:
            el(header, "FromPerson", h.contact_name)
        if h.email:
            el(header, "FromEmail", h.email)
        if h.addressee_name:
            el(header, "ToCompany", h.addressee_name)
        if h.message_number is not None:
            el(header, "MessageNumber", str(h.message_number))
        sent = h.sent_at
        el(header, "SentDate", sent.strftime("%Y%m%d%H%M"))
        if h.message_note:
            el(header, "MessageNote", h.message_note)
        if h.default_language:
            el(header, "DefaultLanguageOfText", h.default_language)
        if h.default_currency:
            el(header, "DefaultCurrencyCode", h.default_currency)
        return self._shorten(header)

    def _empty_marker(self) -> _Element | None:
        return None  # 2.1 has no NoProduct: an empty 2.1 message fails validation, never sent

    def product_element(self, work: Work, product: Product, notification_type: str) -> _Element:
        el = self._el
        p = etree.Element("Product")
        el(p, "RecordReference", record_reference(product))
        el(p, "NotificationType", notification_type)
        if notification_type != "05":
            check_identifiers(product)
        self._identifiers(p, product)
        if notification_type == "05":
            return self._shorten(p)
        form, details = codes.product_form_30(product)
        el(p, "ProductForm", product.product_form or codes.product_form_21(form, details))
        epub = next((_EPUB_TYPE[d] for d in details if d in _EPUB_TYPE), None)
        if epub and form.startswith(("E", "D")):
            el(p, "EpubType", epub)
        title = el(p, "Title")
        el(title, "TitleType", "01")
        el(title, "TitleText", product.title or work.title)
        subtitle = product.subtitle if product.title else (product.subtitle or work.subtitle)
        if subtitle:
            el(title, "Subtitle", subtitle)
        for contribution in sorted(
            (c for c in work.contributions if _applies(c.product_ids, product)),
            key=lambda c: c.sequence_number,
        ):
            c = el(p, "Contributor")
            el(c, "SequenceNumber", str(contribution.sequence_number))
            el(c, "ContributorRole", contribution.role)
            contact = contribution.contributor
            if contact.is_organisation:
                el(c, "CorporateName", contact.name)
            else:
                el(c, "PersonName", contact.name)
                if contact.key_names:
                    if contact.names_before_key:
                        el(c, "NamesBeforeKey", contact.names_before_key)
                    el(c, "KeyNames", contact.key_names)
            if contact.biographical_note:
                el(c, "BiographicalNote", contact.biographical_note)
        for edition_type in product.edition_types:
            el(p, "EditionTypeCode", edition_type)
        if product.edition_number is not None:
            el(p, "EditionNumber", str(product.edition_number))
        if product.edition_statement:
            el(p, "EditionStatement", product.edition_statement)
        if product.language:
            lang = el(p, "Language")
            el(lang, "LanguageRole", "01")
            el(lang, "LanguageCode", product.language)
        if product.page_count is not None:
            el(p, "NumberOfPages", str(product.page_count))
        main_bisac = next(
            (s for s in work.subjects if s.scheme is SubjectScheme.BISAC and s.main), None
        )
        if main_bisac is not None:
            el(p, "BASICMainSubject", main_bisac.code)
        for subject in work.subjects:
            scheme_id = codes.subject_scheme_id(subject.scheme, subject.code)
            if scheme_id is None or subject is main_bisac:
                continue
            s = el(p, "Subject")
            el(s, "SubjectSchemeIdentifier", scheme_id)
            el(s, "SubjectCode", subject.code)
        if work.keywords:
            s = el(p, "Subject")
            el(s, "SubjectSchemeIdentifier", "20")
            el(s, "SubjectHeadingText", "; ".join(work.keywords))
        for audience in product.audiences:
            a = el(p, "Audience")
            el(a, "AudienceCodeType", audience.code_type)
            el(a, "AudienceCodeValue", audience.value)
        for text in work.marketing_texts:
            kind = codes.text_type(text.variant)
            code = _TEXT_21.get(kind or "")
            if code is None or not text.text or not _applies(text.product_ids, product):
                continue
            if text.embargo_from is not None and text.embargo_from > self.today:
                continue
            ot = el(p, "OtherText")
            el(ot, "TextTypeCode", code)
            if _MARKUP.search(text.text):
                el(ot, "TextFormat", "02")  # markup travels escaped, as HTML
            el(ot, "Text", text.text)
        for resource in work.supporting_resources:
            media = _MEDIA_21.get(codes.resource_type(resource.variant) or "")
            if media is None or not resource.url or not _applies(resource.product_ids, product):
                continue
            if resource.status is not None and resource.status.lower() != "approved":
                continue
            mf = el(p, "MediaFile")
            el(mf, "MediaFileTypeCode", media)
            fmt = _MEDIA_FORMAT_21.get(resource.content_type or "")
            if fmt:
                el(mf, "MediaFileFormatCode", fmt)
            el(mf, "MediaFileLinkTypeCode", "01")
            el(mf, "MediaFileLink", resource.url)
        if work.imprint:
            el(el(p, "Imprint"), "ImprintName", work.imprint.name)
        name = self.publisher.name if self.publisher else None
        for role, publisher_name in (
            ("01", name or work.publisher_name or self.publisher_name),
            *(("02", co.name) for co in self.co_publishers),
        ):
            publisher = el(p, "Publisher")
            el(publisher, "PublishingRole", role)
            el(publisher, "PublisherName", publisher_name)
        if product.publishing_status:
            el(p, "PublishingStatus", product.publishing_status)
        if product.publication_date:
            el(p, "PublicationDate", product.publication_date.strftime("%Y%m%d"))
        for rights_type, territory in sales_rights_of(product, self.sales_rights_type)[:3]:
            if territory.countries_included:
                sr = el(p, "SalesRights")
                el(sr, "SalesRightsType", rights_type)
                el(sr, "RightsCountry", " ".join(territory.countries_included))
            elif territory.regions_included:
                sr = el(p, "SalesRights")
                el(sr, "SalesRightsType", rights_type)
                el(sr, "RightsTerritory", " ".join(territory.regions_included))
        for kind, value in codes.measures(product):
            m = el(p, "Measure")
            el(m, "MeasureTypeCode", kind)
            el(m, "Measurement", _num(value))
            el(m, "MeasureUnitCode", "mm")
        for related in product.related_products:
            for code in related.relation_codes or ("06",):
                rp = el(p, "RelatedProduct")
                el(rp, "RelationCode", code)
                ident = el(rp, "ProductIdentifier")
                el(
                    ident,
                    "ProductIDType",
                    "15" if related.isbn13.startswith(("978", "979")) else "03",
                )
                el(ident, "IDValue", related.isbn13)
        sd = el(p, "SupplyDetail")
        if self.supplier is not None:
            el(sd, "SupplierName", self.supplier.name)
            el(sd, "SupplierRole", self.supplier.role)
        else:
            el(sd, "SupplierName", product.supplier_name or self.publisher_name)
            el(sd, "SupplierRole", product.supplier_role or "01")
        el(
            sd,
            "ProductAvailability",
            availability_of(product),
        )
        unpriced = unpriced_item_type(product)
        if unpriced is not None:
            el(sd, "UnpricedItemType", unpriced)
        for price in product.prices if unpriced is None else ():
            pr = el(sd, "Price")
            el(pr, "PriceTypeCode", price.price_type)
            if price.qualifier:
                el(pr, "PriceQualifier", price.qualifier)
            el(pr, "PriceAmount", _num(price.amount))
            el(pr, "CurrencyCode", price.currency)
            for country in price.territories:
                el(pr, "CountryCode", country)
            if not price.territories and price.regions:
                el(pr, "Territory", " ".join(price.regions))
            if price.tax_rate_code:
                el(pr, "TaxRateCode1", price.tax_rate_code)
                if price.tax_rate_percent is not None:
                    el(pr, "TaxRatePercent1", _num(price.tax_rate_percent))
            if price.effective_from:
                el(pr, "PriceEffectiveFrom", price.effective_from.strftime("%Y%m%d"))
            if price.effective_to:
                el(pr, "PriceEffectiveUntil", price.effective_to.strftime("%Y%m%d"))
        return self._shorten(p)
