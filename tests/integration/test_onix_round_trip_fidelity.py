"""The must-show round trip of issue 18: a rich ONIX 3.0 message, seeded into the sandbox, read
back through the client, written by the feed writer and compared with ``onix compare``.

The message is written here from the EDItEUR specification (ONIX 3.0 revision 8, checked
against the bundled XSD before use): a PDF ebook with non-exclusive rights, a not-for-sale
region (Scotland, beside two countries), two markets with their own prices and tax, a series,
audience, related products (its hardback, and a title outside the catalogue), an embargo date
and a year-only date, a restricted cover; the hardback, related back to its ebook; a
multi-part box set holding the hardback; a GTIN-only product; a free open-access ebook.
Whatever Consonance's public API can carry must come back unchanged. What it cannot carry is
documented (docs/reference/onix.md, "What comes back from Consonance, and what cannot"); the
compare must report exactly that as dropped, no more (a silent loss) and no less (a claim the
API does not support).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from consonance_sftp.config.flows import OnixRecipient
from consonance_sftp.flows.onix_feed import recipient_rules
from consonance_sftp.formats.onix import MessageHeader, validate_file, write_feed
from consonance_sftp.formats.onix.compare import FACETS, compare_files
from consonance_sftp.sandbox.consonance.seed import catalogue_from_onix
from tests.fixtures.consonance_sandbox import SandboxHandle

NS = "http://ns.editeur.org/onix/3.0/reference"
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
PDF, BOX, GTIN, OA = "9780000000002", "9781234567897", "5012345678900", "9780306406157"
HARDBACK = "9780000000019"  # the PDF's print edition, and the part of the box set
ELSEWHERE = "9780141036144"  # a related product that is not in the publisher's catalogue


def ident(kind: str, value: str) -> str:
    return (
        f"<ProductIdentifier><ProductIDType>{kind}</ProductIDType><IDValue>{value}</IDValue>"
        "</ProductIdentifier>"
    )


def title(text: str) -> str:
    return (
        "<TitleDetail><TitleType>01</TitleType><TitleElement><TitleElementLevel>01"
        f"</TitleElementLevel><TitleText>{text}</TitleText></TitleElement></TitleDetail>"
    )


def publishing(status: str, *rights: tuple[str, str], dates: str = "") -> str:
    return (
        "<PublishingDetail><Publisher><PublishingRole>01</PublishingRole><PublisherName>Pub"
        f"</PublisherName></Publisher><PublishingStatus>{status}</PublishingStatus>"
        + (
            dates
            or "<PublishingDate><PublishingDateRole>01</PublishingDateRole><Date>20270115"
            "</Date></PublishingDate>"
        )
        + "".join(
            f"<SalesRights><SalesRightsType>{kind}</SalesRightsType><Territory>{where}"
            "</Territory></SalesRights>"
            for kind, where in rights
        )
        + "</PublishingDetail>"
    )


SUPPLIER = (
    "<Supplier><SupplierRole>01</SupplierRole><SupplierName>Pub</SupplierName></Supplier>"
    "<ProductAvailability>20</ProductAvailability>"
)


def priced(amount: str, currency: str, tax: str = "") -> str:
    return (
        f"<SupplyDetail>{SUPPLIER}<Price><PriceType>02</PriceType><PriceAmount>{amount}"
        f"</PriceAmount>{tax}<CurrencyCode>{currency}</CurrencyCode></Price></SupplyDetail>"
    )


def market(countries: str, supply_detail: str) -> str:
    return (
        f"<ProductSupply><Market><Territory><CountriesIncluded>{countries}</CountriesIncluded>"
        f"</Territory></Market>{supply_detail}</ProductSupply>"
    )


def gst(percent: str) -> str:
    return (
        "<Tax><TaxType>01</TaxType><TaxRateCode>S</TaxRateCode>"
        f"<TaxRatePercent>{percent}</TaxRatePercent></Tax>"
    )


WORLD = "<RegionsIncluded>WORLD</RegionsIncluded>"
WORLD_SUPPLY = f"<ProductSupply><Market><Territory>{WORLD}</Territory></Market>"

# What the PDF ebook and its hardback share, as one work: series, title, author, language,
# subjects, audience, description.
WORK_DETAIL = (
    "<Collection><CollectionType>10</CollectionType><TitleDetail><TitleType>01</TitleType>"
    "<TitleElement><TitleElementLevel>02</TitleElementLevel><PartNumber>3</PartNumber>"
    "<TitleText>The Harbour Quartet</TitleText></TitleElement></TitleDetail></Collection>"
    + title("Tides of Salt")
    + "<Contributor><SequenceNumber>1</SequenceNumber><ContributorRole>A01</ContributorRole>"
    "<NameIdentifier><NameIDType>16</NameIDType><IDValue>0000000121032683</IDValue>"
    "</NameIdentifier><PersonName>Ann Writer</PersonName><NamesBeforeKey>Ann</NamesBeforeKey>"
    "<KeyNames>Writer</KeyNames></Contributor>"
    "<Language><LanguageRole>01</LanguageRole><LanguageCode>eng</LanguageCode></Language>"
    "<Subject><MainSubject/><SubjectSchemeIdentifier>93</SubjectSchemeIdentifier>"
    "<SubjectCode>FBA</SubjectCode></Subject>"
    "<Subject><SubjectSchemeIdentifier>10</SubjectSchemeIdentifier>"
    "<SubjectCode>FIC000000</SubjectCode></Subject>"
    "<Audience><AudienceCodeType>01</AudienceCodeType><AudienceCodeValue>01"
    "</AudienceCodeValue></Audience></DescriptiveDetail>"
)
DESCRIPTION = (
    "<TextContent><TextType>03</TextType><ContentAudience>00"
    "</ContentAudience><Text>A novel of the sea.</Text></TextContent>"
)


def related(*relations: tuple[str, str]) -> str:
    return (
        "<RelatedMaterial>"
        + "".join(
            f"<RelatedProduct><ProductRelationCode>{code}</ProductRelationCode>"
            + ident("15", isbn)
            + "</RelatedProduct>"
            for code, isbn in relations
        )
        + "</RelatedMaterial>"
    )


PDF_EBOOK = (
    f"<Product><RecordReference>ref-{PDF}</RecordReference><NotificationType>03"
    f"</NotificationType>{ident('15', PDF)}{ident('06', '10.1234/example.5678')}"
    "<DescriptiveDetail><ProductComposition>00</ProductComposition><ProductForm>ED"
    "</ProductForm><ProductFormDetail>E107</ProductFormDetail>"
    + WORK_DETAIL
    + "<CollateralDetail>"
    + DESCRIPTION
    + "<SupportingResource><ResourceContentType>01</ResourceContentType><ContentAudience>01"
    "</ContentAudience><ResourceMode>03</ResourceMode><ResourceVersion><ResourceForm>02"
    "</ResourceForm><ResourceLink>https://example.org/covers/tides.jpg</ResourceLink>"
    "</ResourceVersion></SupportingResource></CollateralDetail>"
    + publishing(
        "04",
        ("02", "<CountriesIncluded>AU NZ</CountriesIncluded>"),
        (
            "03",
            "<CountriesIncluded>US CA</CountriesIncluded><RegionsIncluded>GB-SCT</RegionsIncluded>",
        ),
        dates=(
            "<PublishingDate><PublishingDateRole>01</PublishingDateRole><Date>20270115</Date>"
            "</PublishingDate><PublishingDate><PublishingDateRole>02</PublishingDateRole>"
            "<Date>20270110</Date></PublishingDate><PublishingDate><PublishingDateRole>19"
            '</PublishingDateRole><Date dateformat="05">2026</Date></PublishingDate>'
        ),
    )
    # The ebook is based on its hardback (13), and is another format of a title this
    # publisher does not hold (06).
    + related(("13", HARDBACK), ("06", ELSEWHERE))
    + market("AU", priced("24.99", "AUD", gst("10")))
    + market("NZ", priced("27.99", "NZD", gst("15")))
    + "</Product>"
)

HARDBACK_BOOK = (
    f"<Product><RecordReference>ref-{HARDBACK}</RecordReference><NotificationType>03"
    f"</NotificationType>{ident('15', HARDBACK)}"
    "<DescriptiveDetail><ProductComposition>00</ProductComposition><ProductForm>BB"
    "</ProductForm>"
    + WORK_DETAIL
    + f"<CollateralDetail>{DESCRIPTION}</CollateralDetail>"
    + publishing("04", ("02", WORLD))
    + related(("27", PDF))  # its electronic version
    + WORLD_SUPPLY
    + priced("20.00", "GBP")
    + "</ProductSupply></Product>"
)

BOX_SET = (
    f"<Product><RecordReference>ref-{BOX}</RecordReference><NotificationType>03"
    f"</NotificationType>{ident('15', BOX)}"
    "<DescriptiveDetail><ProductComposition>10</ProductComposition><ProductForm>SA"
    "</ProductForm><ProductPart><PrimaryPart/>"
    + ident("15", HARDBACK)
    + "<ProductForm>BB</ProductForm><NumberOfCopies>2</NumberOfCopies></ProductPart>"
    + title("The Harbour Quartet Box")
    + "</DescriptiveDetail>"
    + publishing("04", ("02", WORLD))
    + WORLD_SUPPLY
    + priced("60.00", "GBP")[: -len("</SupplyDetail>")]
    + "</SupplyDetail></ProductSupply></Product>"
)

GTIN_ONLY = (
    f"<Product><RecordReference>ref-{GTIN}</RecordReference><NotificationType>03"
    f"</NotificationType>{ident('03', GTIN)}"
    "<DescriptiveDetail><ProductComposition>00</ProductComposition><ProductForm>ZE"
    "</ProductForm>"
    + title("Harbour Card Game")
    + "</DescriptiveDetail>"
    + publishing("04", ("02", WORLD))
    + WORLD_SUPPLY
    + priced("15.00", "GBP")
    + "</ProductSupply></Product>"
)

OPEN_ACCESS = (
    f"<Product><RecordReference>ref-{OA}</RecordReference><NotificationType>03"
    f"</NotificationType>{ident('15', OA)}"
    "<DescriptiveDetail><ProductComposition>00</ProductComposition><ProductForm>ED"
    "</ProductForm><ProductFormDetail>E101</ProductFormDetail>"
    + title("Open Waters")
    + "</DescriptiveDetail>"
    + publishing("04", ("02", WORLD))
    + WORLD_SUPPLY
    + f"<SupplyDetail>{SUPPLIER}<UnpricedItemType>01</UnpricedItemType></SupplyDetail>"
    + "</ProductSupply></Product>"
)


def rich_message() -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><ONIXMessage xmlns="{NS}" release="3.0">'
        "<Header><Sender><SenderName>Pub</SenderName></Sender>"
        "<SentDateTime>20261101</SentDateTime></Header>"
        + PDF_EBOOK
        + HARDBACK_BOOK
        + BOX_SET
        + GTIN_ONLY
        + OPEN_ACCESS
        + "</ONIXMessage>"
    ).encode()


# What Consonance's public API cannot carry, as documented in docs/reference/onix.md: each is
# (facet, item) as ``onix compare`` names it.
DOCUMENTED_DROPS = {
    f"ISBN {PDF}": {
        ("dates", "PublishingDate 02 20270110"),  # other publishing date roles (an embargo)
        ("dates", "PublishingDate 19 2026 (format 05)"),  # dates less precise than a day
        ("prices", "Tax on Price 02 24.99 AUD in AU: S 10"),  # price tax
        ("prices", "Tax on Price 02 27.99 NZD in NZ: S 15"),
        # a related product outside the catalogue (the hardback, in it, comes back)
        ("related", f"RelatedProduct 06 {ELSEWHERE}"),
        ("rights", "SalesRights 03 region GB-SCT"),  # sales rights in regions (countries only)
    },
    # Consonance's ProductPart has no "primary" flag (the part itself comes back).
    f"ISBN {BOX}": {("form", f"PrimaryPart: ProductPart BB - ISBN {HARDBACK}")},
}


async def test_a_rich_record_round_trips_through_consonance_with_only_documented_drops(
    consonance_sandbox_factory: Callable[..., SandboxHandle], tmp_path: Path
):
    source = tmp_path / "source.xml"
    source.write_bytes(rich_message())
    checked = validate_file(source)
    assert checked.ok, [str(p) for p in checked.problems]  # the source is a valid ONIX 3.0

    sandbox = consonance_sandbox_factory(catalogue_from_onix(source, keep_resource_urls=True))
    async with sandbox.client() as api:
        works = [w async for w in api.iter_works()]
    config = OnixRecipient.model_validate(
        {"sales_rights_type": "02", "supplier": {"name": "Pub", "role": "01"}}
    )
    produced = tmp_path / "produced.xml"
    sink = io.BytesIO()
    result = write_feed(
        works,
        sink,
        rules=recipient_rules(config),
        header=MessageHeader(sender_name="Pub", sent_at=NOW),
        kind="full",
        validate="inline",
    )
    assert result.report.ok, [str(p) for p in result.report.problems]
    produced.write_bytes(sink.getvalue())

    comparison = compare_files(source, produced)
    assert {p.key: p.status for p in comparison.products if p.status in ("dropped", "added")} == {}
    added = {
        (p.key, f.facet, item) for p in comparison.products for f in p.facets for item in f.added
    }
    # The one thing the feed adds, as documented: each product's Consonance work id as its
    # RelatedWork 01 (the source had none). Nothing else the publisher did not hold.
    assert len(added) == 5
    assert added == {
        (key, "identifiers", f"WorkIdentifier 01 {work.id}")
        for work in works
        for key in (f"ISBN {p.isbn13}" if p.isbn13 else f"GTIN {p.gtin}" for p in work.products)
    }
    dropped = {
        p.key: {(f.facet, item) for f in p.facets for item in f.dropped}
        for p in comparison.products
    }
    assert {k: v for k, v in dropped.items() if v} == DOCUMENTED_DROPS
    # Every facet was compared (read on both sides), not merely absent from both.
    pdf = next(p for p in comparison.products if p.key == f"ISBN {PDF}")
    assert [f.facet for f in pdf.facets] == list(FACETS)
    assert all(f.matched > 0 for f in pdf.facets)
    # The ebook and its hardback are one work in Consonance, related as Consonance relates
    # them; the box set holds the hardback as its part.
    (tides,) = [w for w in works if len(w.products) == 2]
    assert {p.isbn13 for p in tides.products} == {PDF, HARDBACK}
    box = next(p for w in works for p in w.products if p.isbn13 == BOX)
    assert [(x.isbn13, x.form, x.number_of_copies) for x in box.parts] == [(HARDBACK, "BB", 2)]
    facets = {(p.key, f.facet): f for p in comparison.products for f in p.facets}
    assert facets[(f"ISBN {HARDBACK}", "related")].matched == 1
    assert facets[(f"ISBN {BOX}", "form")].dropped == (
        f"PrimaryPart: ProductPart BB - ISBN {HARDBACK}",
    )
    # Everything else matched, facet by facet, for every product.
    assert {p.key for p in comparison.products} == {
        f"ISBN {PDF}",
        f"ISBN {HARDBACK}",
        f"ISBN {BOX}",
        f"GTIN {GTIN}",
        f"ISBN {OA}",
    }
