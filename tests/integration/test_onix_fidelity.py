"""ONIX fidelity (issue 18): what a recipient receives is what the publisher holds.

Each test seeds the sandbox with a minimal ONIX 3.0 record written here from the EDItEUR
specification, reads it back through the Consonance client (the same code that reads the real
service), writes it with the ONIX writer and checks the field in question in the output, which
must also be valid against the bundled XSD.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from lxml import etree

from consonance_sftp.config.flows import OnixRecipient
from consonance_sftp.flows.onix_feed import recipient_rules
from consonance_sftp.formats.onix import (
    MessageHeader,
    OnixWriter,
    RecipientRules,
    read_onix_works,
    validate_file,
    write_feed,
)
from consonance_sftp.models import Work
from consonance_sftp.sandbox.consonance.seed import catalogue_from_onix
from tests.fixtures.consonance_sandbox import SandboxHandle

NS = "http://ns.editeur.org/onix/3.0/reference"
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
WORLD = "<RegionsIncluded>WORLD</RegionsIncluded>"


def product_xml(
    isbn: str,
    *,
    form: str = "ED",
    details: tuple[str, ...] = (),
    title: str = "A Title",
    publishing: str = "<PublishingStatus>04</PublishingStatus>",
    supply: str = (
        "<SupplyDetail><Supplier><SupplierRole>01</SupplierRole>"
        "<SupplierName>Pub</SupplierName></Supplier>"
        "<ProductAvailability>20</ProductAvailability>"
        "<Price><PriceType>02</PriceType><PriceAmount>9.99</PriceAmount>"
        "<CurrencyCode>GBP</CurrencyCode></Price></SupplyDetail>"
    ),
    identifiers: str | None = None,
) -> str:
    idents = identifiers or (
        f"<ProductIdentifier><ProductIDType>15</ProductIDType><IDValue>{isbn}</IDValue>"
        "</ProductIdentifier>"
    )
    form_details = "".join(f"<ProductFormDetail>{d}</ProductFormDetail>" for d in details)
    return (
        f"<Product><RecordReference>ref-{isbn}</RecordReference>"
        f"<NotificationType>03</NotificationType>{idents}"
        "<DescriptiveDetail><ProductComposition>00</ProductComposition>"
        f"<ProductForm>{form}</ProductForm>{form_details}"
        "<TitleDetail><TitleType>01</TitleType><TitleElement><TitleElementLevel>01"
        f"</TitleElementLevel><TitleText>{title}</TitleText></TitleElement></TitleDetail>"
        "</DescriptiveDetail>"
        "<PublishingDetail><Publisher><PublishingRole>01</PublishingRole>"
        f"<PublisherName>Pub</PublisherName></Publisher>{publishing}</PublishingDetail>"
        f"<ProductSupply>{supply}</ProductSupply></Product>"
    )


def message(*products: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><ONIXMessage xmlns="{NS}" release="3.0">'
        "<Header><Sender><SenderName>Test</SenderName></Sender>"
        "<SentDateTime>20261101</SentDateTime></Header>" + "".join(products) + "</ONIXMessage>"
    ).encode()


async def through_consonance(factory: Callable[..., SandboxHandle], onix: bytes) -> list[Work]:
    """Seed the sandbox with ``onix`` and read every work back through the client."""
    sandbox = factory(catalogue_from_onix(io.BytesIO(onix)))
    async with sandbox.client() as api:
        return [w async for w in api.iter_works()]


def write(works: list[Work], tmp_path, **writer_options: object) -> dict[str, etree._Element]:
    """Write the works as one message, check it against the XSD, return products by ISBN."""
    path = tmp_path / "out.xml"
    with (
        path.open("wb") as sink,
        OnixWriter(
            sink, MessageHeader(sender_name="Test", sent_at=NOW), **writer_options
        ) as writer,
    ):
        for work in works:
            for product in work.products:
                writer.write(work, product)
    report = validate_file(path)
    assert report.ok, [str(p) for p in report.problems]
    out: dict[str, etree._Element] = {}
    for product in etree.parse(str(path)).getroot().iter(f"{{{NS}}}Product"):
        key = product.findtext(f"{{{NS}}}RecordReference")
        assert key is not None
        out[key.removeprefix("ref-")] = product
    return out


def texts(product: etree._Element, path: str) -> list[str]:
    return [str(t) for t in product.xpath(path + "/text()", namespaces={"o": NS})]


async def test_ebook_file_formats_survive_consonance(
    consonance_sandbox_factory: Callable[..., SandboxHandle], tmp_path
):
    pdf, mobi, multi, epub = "9780000000002", "9780000000019", "9780000000026", "9780000000033"
    onix = message(
        product_xml(pdf, details=("E107",)),
        product_xml(mobi, details=("E127",)),
        product_xml(multi, form="EA"),
        product_xml(epub, details=("E101",)),
    )
    out = write(await through_consonance(consonance_sandbox_factory, onix), tmp_path)
    form = "o:DescriptiveDetail/o:ProductForm"
    detail = "o:DescriptiveDetail/o:ProductFormDetail"
    assert (texts(out[pdf], form), texts(out[pdf], detail)) == (["ED"], ["E107"])
    assert (texts(out[mobi], form), texts(out[mobi], detail)) == (["ED"], ["E127"])
    assert (texts(out[multi], form), texts(out[multi], detail)) == (["EA"], [])
    assert (texts(out[epub], form), texts(out[epub], detail)) == (["ED"], ["E101"])


def rights(*pairs: tuple[str, str]) -> str:
    """``SalesRights`` elements: (type, territory XML) pairs."""
    return "".join(
        f"<SalesRights><SalesRightsType>{kind}</SalesRightsType><Territory>{territory}"
        "</Territory></SalesRights>"
        for kind, territory in pairs
    )


def status(code: str, *extra: str) -> str:
    return f"<PublishingStatus>{code}</PublishingStatus>" + "".join(extra)


def market(product: etree._Element) -> list[tuple[str, str]]:
    territory = product.find(f"{{{NS}}}ProductSupply/{{{NS}}}Market/{{{NS}}}Territory")
    return (
        [] if territory is None else [(etree.QName(t).localname, t.text or "") for t in territory]
    )


async def test_not_for_sale_and_inactive_products_are_not_sold_to_the_world(
    consonance_sandbox_factory: Callable[..., SandboxHandle], tmp_path
):
    gb_only, inactive, gone, barred = (
        "9780000000040",
        "9780000000057",
        "9780000000064",
        "9780000000071",
    )
    gb = "<CountriesIncluded>GB</CountriesIncluded>"
    aunz = "<CountriesIncluded>AU NZ</CountriesIncluded>"
    onix = message(
        product_xml(gb_only, publishing=status("04", rights(("01", gb), ("03", aunz)))),
        product_xml(inactive, publishing=status("08", rights(("01", gb)))),
        product_xml(gone, publishing=status("05", rights(("01", gb)))),
        product_xml(barred, publishing=status("04", rights(("03", aunz)))),
    )
    out = write(await through_consonance(consonance_sandbox_factory, onix), tmp_path)
    availability = "o:ProductSupply/o:SupplyDetail/o:ProductAvailability"
    assert market(out[gb_only]) == [("CountriesIncluded", "GB")]
    assert texts(out[gb_only], availability) == ["20"]
    assert texts(out[inactive], availability) == ["40"]  # inactive: not available
    assert texts(out[gone], availability) == ["43"]  # no longer our product
    # Held only as "not for sale in AU and NZ": the world but those two, said both ways.
    assert market(out[barred]) == [("RegionsIncluded", "WORLD"), ("CountriesExcluded", "AU NZ")]
    assert texts(
        out[barred],
        "o:PublishingDetail/o:SalesRights[o:SalesRightsType='03']/o:Territory/o:CountriesIncluded",
    ) == ["AU NZ"]


async def test_a_product_whose_status_says_nothing_is_refused_by_name(
    consonance_sandbox_factory: Callable[..., SandboxHandle],
):
    fine, unknown = "9780000000088", "9780000000095"
    gb = "<CountriesIncluded>GB</CountriesIncluded>"
    onix = message(
        product_xml(fine, publishing=status("04", rights(("01", gb)))),
        product_xml(unknown, publishing=status("09", rights(("01", gb)))),
    )
    works = await through_consonance(consonance_sandbox_factory, onix)
    result = write_feed(
        works,
        io.BytesIO(),
        rules=RecipientRules(),
        header=MessageHeader(sender_name="Test", sent_at=NOW),
        kind="full",
        validate="inline",
    )
    assert not result.report.ok  # the message is not sent
    [problem] = result.report.problems
    assert (problem.isbn13, problem.element) == (unknown, "ProductAvailability")
    assert "'09'" in problem.reason and "available" not in problem.reason.replace(
        "availability", ""
    )
    assert unknown not in result.sent and fine in result.sent  # Consonance keys them by ISBN


def feed(works: list[Work], rules: RecipientRules) -> dict[str, etree._Element]:
    """Write the works through ``write_feed`` for one recipient; products by ISBN."""
    sink = io.BytesIO()
    result = write_feed(
        works,
        sink,
        rules=rules,
        header=MessageHeader(sender_name="Test", sent_at=NOW),
        kind="full",
        validate="inline",
    )
    assert result.report.ok, [str(p) for p in result.report.problems]
    root = etree.fromstring(sink.getvalue())
    return {
        (p.findtext(f"{{{NS}}}RecordReference") or "").removeprefix("ref-"): p
        for p in root.iter(f"{{{NS}}}Product")
    }


def supply(currency: str, amount: str, country: str) -> str:
    return (
        f"<Market><Territory><CountriesIncluded>{country}</CountriesIncluded></Territory>"
        "</Market><SupplyDetail><Supplier><SupplierRole>01</SupplierRole><SupplierName>Pub"
        "</SupplierName></Supplier><ProductAvailability>20</ProductAvailability><Price>"
        f"<PriceType>02</PriceType><PriceAmount>{amount}</PriceAmount>"
        f"<CurrencyCode>{currency}</CurrencyCode></Price></SupplyDetail>"
    )


def two_markets(isbn: str) -> str:
    """An Australian publisher's record: one ProductSupply per market, prices without a
    Territory of their own (the market says where they apply)."""
    record = product_xml(
        isbn,
        form="BC",
        publishing=status("04", rights(("01", "<CountriesIncluded>AU NZ</CountriesIncluded>"))),
        supply=supply("AUD", "32.99", "AU"),
    )
    second = "<ProductSupply>" + supply("NZD", "37.99", "NZ") + "</ProductSupply>"
    return record.replace("</ProductSupply>", "</ProductSupply>" + second, 1)


async def test_per_market_prices_keep_their_territory_through_consonance(
    consonance_sandbox_factory: Callable[..., SandboxHandle],
):
    isbn = "9780000000002"
    works = await through_consonance(consonance_sandbox_factory, message(two_markets(isbn)))
    out = feed(works, RecipientRules())[isbn]
    prices = {
        price.findtext(f"{{{NS}}}CurrencyCode"): texts(price, "o:Territory/o:CountriesIncluded")
        for price in out.iter(f"{{{NS}}}Price")
    }
    assert prices == {"AUD": ["AU"], "NZD": ["NZ"]}
    assert market(out) == [("CountriesIncluded", "AU NZ")]


async def test_non_exclusive_rights_stay_non_exclusive(
    consonance_sandbox_factory: Callable[..., SandboxHandle],
):
    isbn = "9780000000019"
    record = product_xml(
        isbn,
        publishing=status("04", rights(("02", "<CountriesIncluded>GB IE</CountriesIncluded>"))),
    )
    rights_type = "o:PublishingDetail/o:SalesRights/o:SalesRightsType"
    # Read from ONIX and written again: held as 02, sent as 02.
    direct = feed(read_onix_works(io.BytesIO(message(record))), RecipientRules())
    assert texts(direct[isbn], rights_type) == ["02"]
    # Consonance's API holds only the for-sale countries: the recipient's config says 02.
    works = await through_consonance(consonance_sandbox_factory, message(record))
    assert texts(feed(works, RecipientRules(sales_rights_type="02"))[isbn], rights_type) == ["02"]
    assert texts(feed(works, RecipientRules())[isbn], rights_type) == ["01"]


async def test_publisher_co_publisher_and_distributor_come_from_the_recipient_config(
    consonance_sandbox_factory: Callable[..., SandboxHandle],
):
    isbn = "9780000000026"
    works = await through_consonance(
        consonance_sandbox_factory,
        message(
            product_xml(
                isbn,
                publishing=status("04", rights(("01", "<RegionsIncluded>WORLD</RegionsIncluded>"))),
            )
        ),
    )
    config = OnixRecipient.model_validate(
        {
            "publisher": {"name": "Real Press Ltd", "gln": "5012345678900", "san": "0000019"},
            "co_publishers": [{"name": "Partner Press"}],
            "supplier": {"name": "Big Distributor", "role": "02", "gln": "5012345678900"},
        }
    )
    out = feed(works, recipient_rules(config))[isbn]
    publishers = [
        (
            texts(p, "o:PublishingRole"),
            texts(p, "o:PublisherIdentifier/o:PublisherIDType"),
            texts(p, "o:PublisherIdentifier/o:IDValue"),
            texts(p, "o:PublisherName"),
        )
        for p in out.iter(f"{{{NS}}}Publisher")
    ]
    assert publishers == [
        (["01"], ["06", "07"], ["5012345678900", "0000019"], ["Real Press Ltd"]),
        (["02"], [], [], ["Partner Press"]),
    ]
    supplier = "o:ProductSupply/o:SupplyDetail/o:Supplier"
    assert texts(out, f"{supplier}/o:SupplierRole") == ["02"]
    assert texts(out, f"{supplier}/o:SupplierIdentifier/o:SupplierIDType") == ["06"]
    assert texts(out, f"{supplier}/o:SupplierName") == ["Big Distributor"]


def test_a_wrong_gln_or_san_in_the_config_is_refused():
    with pytest.raises(ValueError, match="GLN '5012345678901'"):
        OnixRecipient.model_validate({"publisher": {"name": "P", "gln": "5012345678901"}})
    with pytest.raises(ValueError, match="SAN '0000018'"):
        OnixRecipient.model_validate({"supplier": {"name": "D", "san": "0000018"}})


async def test_a_gtin_only_product_is_identified_by_its_gtin(
    consonance_sandbox_factory: Callable[..., SandboxHandle],
):
    gtin = "5012345678900"  # a GTIN-13 outside the ISBN prefixes (a boxed set, a game)
    ident = (
        f"<ProductIdentifier><ProductIDType>03</ProductIDType><IDValue>{gtin}</IDValue>"
        "</ProductIdentifier>"
    )
    record = product_xml(
        gtin, form="ZZ", identifiers=ident, publishing=status("04", rights(("01", WORLD)))
    )
    works = await through_consonance(consonance_sandbox_factory, message(record))
    [product] = [p for w in works for p in w.products]
    assert (product.isbn13, product.gtin) == (None, gtin)
    out = feed(works, RecipientRules())[gtin]  # its record reference is the GTIN
    assert texts(out, "o:ProductIdentifier/o:ProductIDType") == ["03"]
    assert texts(out, "o:ProductIdentifier/o:IDValue") == [gtin]


async def test_an_isbn_with_a_wrong_check_digit_is_refused_by_name(
    consonance_sandbox_factory: Callable[..., SandboxHandle],
):
    good, bad = "9780000000002", "9780000000003"
    onix = message(
        product_xml(good, publishing=status("04", rights(("01", WORLD)))),
        product_xml(bad, publishing=status("04", rights(("01", WORLD)))),
    )
    works = await through_consonance(consonance_sandbox_factory, onix)
    result = write_feed(
        works,
        io.BytesIO(),
        rules=RecipientRules(),
        header=MessageHeader(sender_name="Test", sent_at=NOW),
        kind="full",
        validate="inline",
    )
    assert not result.report.ok  # nothing is sent
    [problem] = result.report.problems
    assert (problem.isbn13, problem.element) == (bad, "ProductIdentifier")
    assert f"ISBN '{bad}' is not a valid ISBN" in problem.reason
    assert f"product {bad}" in str(problem)
    assert list(result.sent) == [good]


def unpriced_supply(code: str) -> str:
    return (
        "<SupplyDetail><Supplier><SupplierRole>01</SupplierRole><SupplierName>Pub"
        "</SupplierName></Supplier><ProductAvailability>20</ProductAvailability>"
        f"<UnpricedItemType>{code}</UnpricedItemType></SupplyDetail>"
    )


async def test_a_free_open_access_book_stays_free(
    consonance_sandbox_factory: Callable[..., SandboxHandle],
):
    free, contact, zero = "9780000000002", "9780000000019", "9780000000026"
    sold = status("04", rights(("01", WORLD)))
    zero_price = (
        "<SupplyDetail><Supplier><SupplierRole>01</SupplierRole><SupplierName>Pub"
        "</SupplierName></Supplier><ProductAvailability>20</ProductAvailability><Price>"
        "<PriceType>02</PriceType><PriceAmount>0.00</PriceAmount><CurrencyCode>GBP"
        "</CurrencyCode></Price></SupplyDetail>"
    )
    onix = message(
        product_xml(free, publishing=sold, supply=unpriced_supply("01")),
        product_xml(contact, publishing=sold, supply=unpriced_supply("04")),
        product_xml(zero, publishing=sold, supply=zero_price),
    )
    unpriced = "o:ProductSupply/o:SupplyDetail/o:UnpricedItemType"
    # Read from ONIX and written again: each as held.
    direct = feed(read_onix_works(io.BytesIO(onix)), RecipientRules())
    assert texts(direct[free], unpriced) == ["01"]
    assert texts(direct[contact], unpriced) == ["04"]
    # Through Consonance, where a free book is held as a zero price: free of charge, not
    # "price to be announced", and no price of 0.00 either.
    out = feed(await through_consonance(consonance_sandbox_factory, onix), RecipientRules())
    assert texts(out[zero], unpriced) == ["01"]
    assert texts(out[zero], "o:ProductSupply/o:SupplyDetail/o:Price/o:PriceAmount") == []


def resource(kind: str, audience: str, mode: str, link: str, form: str = "02") -> str:
    return (
        f"<SupportingResource><ResourceContentType>{kind}</ResourceContentType>"
        f"<ContentAudience>{audience}</ContentAudience><ResourceMode>{mode}</ResourceMode>"
        f"<ResourceVersion><ResourceForm>{form}</ResourceForm>"
        f"<ResourceLink>{link}</ResourceLink></ResourceVersion></SupportingResource>"
    )


async def test_resource_audience_and_mode_survive_consonance(
    consonance_sandbox_factory: Callable[..., SandboxHandle],
):
    isbn = "9780000000002"
    collateral = (
        "<CollateralDetail><TextContent><TextType>03</TextType><ContentAudience>02"
        "</ContentAudience><Text>For the trade only.</Text></TextContent>"
        + resource("01", "01", "03", "https://example.org/covers/cover.jpg")
        + resource("15", "00", "04", "https://example.org/samples/sample.epub")
        + resource("15", "00", "04", "https://example.org/samples/sample.pdf")
        + resource("17", "00", "04", "https://example.org/reviews/the-book", form="01")
        + "</CollateralDetail>"
    )
    record = product_xml(isbn, publishing=status("04", rights(("01", WORLD)))).replace(
        "</DescriptiveDetail>", "</DescriptiveDetail>" + collateral, 1
    )
    works = await through_consonance(consonance_sandbox_factory, message(record))
    out = feed(works, RecipientRules())[isbn]
    assert texts(out, "o:CollateralDetail/o:TextContent/o:ContentAudience") == ["02"]
    found = {
        (
            r.findtext(f"{{{NS}}}ResourceVersion/{{{NS}}}ResourceLink", "").rsplit("/", 1)[-1],
            r.findtext(f"{{{NS}}}ContentAudience"),
            r.findtext(f"{{{NS}}}ResourceMode"),
            r.findtext(f"{{{NS}}}ResourceVersion/{{{NS}}}ResourceForm"),
        )
        for r in out.iter(f"{{{NS}}}SupportingResource")
    }
    cover = next(name for name, *_ in found if name.endswith(".jpg"))  # served by the sandbox
    assert found == {
        (cover, "01", "03", "02"),  # restricted stays restricted
        ("sample.epub", "00", "04", "02"),  # an EPUB is text, not an image
        ("sample.pdf", "00", "04", "02"),
        ("the-book", "00", "04", "01"),  # a web page: text, linkable
    }


async def test_doi_and_isni_survive_consonance(
    consonance_sandbox_factory: Callable[..., SandboxHandle],
):
    isbn, doi, isni = "9780000000002", "10.1234/example.5678", "0000000121032683"
    idents = (
        f"<ProductIdentifier><ProductIDType>15</ProductIDType><IDValue>{isbn}</IDValue>"
        f"</ProductIdentifier><ProductIdentifier><ProductIDType>06</ProductIDType><IDValue>{doi}"
        "</IDValue></ProductIdentifier>"
    )
    contributor = (
        "<Contributor><SequenceNumber>1</SequenceNumber><ContributorRole>A01</ContributorRole>"
        f"<NameIdentifier><NameIDType>16</NameIDType><IDValue>{isni}</IDValue></NameIdentifier>"
        "<PersonName>Ann Author</PersonName><NamesBeforeKey>Ann</NamesBeforeKey>"
        "<KeyNames>Author</KeyNames></Contributor>"
    )
    record = product_xml(
        isbn, identifiers=idents, publishing=status("04", rights(("01", WORLD)))
    ).replace("</TitleDetail>", "</TitleDetail>" + contributor, 1)
    out = feed(
        await through_consonance(consonance_sandbox_factory, message(record)), RecipientRules()
    )[isbn]
    assert texts(out, "o:ProductIdentifier[o:ProductIDType='06']/o:IDValue") == [doi]
    name_id = "o:DescriptiveDetail/o:Contributor/o:NameIdentifier"
    assert texts(out, f"{name_id}/o:NameIDType") == ["16"]
    assert texts(out, f"{name_id}/o:IDValue") == [isni]


async def test_series_and_audience_survive_consonance(
    consonance_sandbox_factory: Callable[..., SandboxHandle],
):
    isbn = "9780000000002"
    collection = (
        "<Collection><CollectionType>10</CollectionType><CollectionIdentifier>"
        "<CollectionIDType>02</CollectionIDType><IDValue>12345679</IDValue>"
        "</CollectionIdentifier><TitleDetail><TitleType>01</TitleType><TitleElement>"
        "<TitleElementLevel>02</TitleElementLevel><PartNumber>3</PartNumber>"
        "<TitleText>Studies in Fidelity</TitleText></TitleElement></TitleDetail></Collection>"
    )
    audience = (
        "<Audience><AudienceCodeType>01</AudienceCodeType><AudienceCodeValue>06"
        "</AudienceCodeValue></Audience>"
    )
    record = (
        product_xml(isbn, publishing=status("04", rights(("01", WORLD))))
        .replace("<TitleDetail>", collection + "<TitleDetail>", 1)
        .replace("</DescriptiveDetail>", audience + "</DescriptiveDetail>", 1)
    )
    works = await through_consonance(consonance_sandbox_factory, message(record))
    out = feed(works, RecipientRules())[isbn]
    c = "o:DescriptiveDetail/o:Collection"
    assert texts(out, f"{c}/o:CollectionType") == ["10"]
    assert texts(out, f"{c}/o:CollectionIdentifier/o:IDValue") == ["12345679"]
    assert texts(out, f"{c}/o:TitleDetail/o:TitleElement/o:PartNumber") == ["3"]
    assert texts(out, f"{c}/o:TitleDetail/o:TitleElement/o:TitleText") == ["Studies in Fidelity"]
    a = "o:DescriptiveDetail/o:Audience"
    assert (texts(out, f"{a}/o:AudienceCodeType"), texts(out, f"{a}/o:AudienceCodeValue")) == (
        ["01"],
        ["06"],
    )


def test_every_publishing_date_role_and_precision_is_kept():
    embargoed, year_only = "9780000000002", "9780000000019"
    dates = (
        "<PublishingDate><PublishingDateRole>01</PublishingDateRole><Date>20270115</Date>"
        "</PublishingDate><PublishingDate><PublishingDateRole>02</PublishingDateRole>"
        "<Date>20270201</Date></PublishingDate>"
    )
    year = (
        '<PublishingDate><PublishingDateRole>01</PublishingDateRole><Date dateformat="05">'
        "2019</Date></PublishingDate>"
    )
    onix = message(
        product_xml(embargoed, publishing=status("02", dates, rights(("01", WORLD)))),
        product_xml(year_only, publishing=status("04", year, rights(("01", WORLD)))),
    )
    out = feed(read_onix_works(io.BytesIO(onix)), RecipientRules())
    role_date = "o:PublishingDetail/o:PublishingDate"
    assert list(
        zip(
            texts(out[embargoed], f"{role_date}/o:PublishingDateRole"),
            texts(out[embargoed], f"{role_date}/o:Date"),
            strict=True,
        )
    ) == [("01", "20270115"), ("02", "20270201")]  # the embargo is not lost
    assert texts(out[year_only], f"{role_date}/o:Date") == ["2019"]
    assert out[year_only].xpath(f"{role_date}/o:Date/@dateformat", namespaces={"o": NS}) == ["05"]


async def test_an_audiobook_running_time_survives_consonance(
    consonance_sandbox_factory: Callable[..., SandboxHandle],
):
    isbn = "9780000000002"
    extent = (
        "<Extent><ExtentType>09</ExtentType><ExtentValue>612</ExtentValue>"
        "<ExtentUnit>05</ExtentUnit></Extent>"
    )  # 612 minutes: 10 h 12 min
    record = product_xml(isbn, form="AJ", publishing=status("04", rights(("01", WORLD)))).replace(
        "</TitleDetail>", "</TitleDetail>" + extent, 1
    )
    works = await through_consonance(consonance_sandbox_factory, message(record))
    out = feed(works, RecipientRules())[isbn]
    duration = "o:DescriptiveDetail/o:Extent[o:ExtentType='09']"
    assert texts(out, f"{duration}/o:ExtentValue") == ["0101200"]
    assert texts(out, f"{duration}/o:ExtentUnit") == ["16"]  # HHHMMSS: the same 10:12:00


def test_ebook_technical_protection_is_kept():
    isbn = "9780000000002"
    record = product_xml(
        isbn, details=("E101",), publishing=status("04", rights(("01", WORLD)))
    ).replace(
        "<TitleDetail>", "<EpubTechnicalProtection>02</EpubTechnicalProtection><TitleDetail>", 1
    )
    out = feed(read_onix_works(io.BytesIO(message(record))), RecipientRules())[isbn]
    assert texts(out, "o:DescriptiveDetail/o:EpubTechnicalProtection") == ["02"]


def test_a_multi_part_product_keeps_its_composition_and_parts():
    box, volume = "9780000000002", "9780000000019"
    parts = (
        "<ProductPart><PrimaryPart/><ProductIdentifier><ProductIDType>15</ProductIDType>"
        f"<IDValue>{volume}</IDValue></ProductIdentifier><ProductForm>BB</ProductForm>"
        "<NumberOfCopies>2</NumberOfCopies></ProductPart>"
        "<ProductPart><ProductForm>AC</ProductForm><NumberOfCopies>1</NumberOfCopies>"
        "</ProductPart>"
    )
    record = (
        product_xml(box, form="SA", publishing=status("04", rights(("01", WORLD))))
        .replace(
            "<ProductComposition>00</ProductComposition>",
            "<ProductComposition>10</ProductComposition>",
            1,
        )
        .replace("<TitleDetail>", parts + "<TitleDetail>", 1)
    )
    out = feed(read_onix_works(io.BytesIO(message(record))), RecipientRules())[box]
    assert texts(out, "o:DescriptiveDetail/o:ProductComposition") == ["10"]
    part = "o:DescriptiveDetail/o:ProductPart"
    assert texts(out, f"{part}/o:ProductForm") == ["BB", "AC"]
    assert texts(out, f"{part}/o:NumberOfCopies") == ["2", "1"]
    assert texts(out, f"{part}/o:ProductIdentifier/o:IDValue") == [volume]
    assert len(out.xpath(f"{part}/o:PrimaryPart", namespaces={"o": NS})) == 1


def related_to(*relations: tuple[str, str]) -> str:
    return (
        "<RelatedMaterial>"
        + "".join(
            f"<RelatedProduct><ProductRelationCode>{code}</ProductRelationCode>"
            f"<ProductIdentifier><ProductIDType>15</ProductIDType><IDValue>{isbn}</IDValue>"
            "</ProductIdentifier></RelatedProduct>"
            for code, isbn in relations
        )
        + "</RelatedMaterial>"
    )


def with_related(record: str, *relations: tuple[str, str]) -> str:
    return record.replace("</PublishingDetail>", "</PublishingDetail>" + related_to(*relations), 1)


def related_of(product: etree._Element) -> list[tuple[str, str]]:
    return [
        (str(r.findtext(f"{{{NS}}}ProductRelationCode")), str(r.findtext(f".//{{{NS}}}IDValue")))
        for r in product.iterfind(f"{{{NS}}}RelatedMaterial/{{{NS}}}RelatedProduct")
    ]


async def test_related_products_come_back_as_the_works_other_products(
    consonance_sandbox_factory: Callable[..., SandboxHandle], tmp_path
):
    # Consonance has no related-product field: its own ONIX relates a work's products (27 for
    # the e-version). A record relating products as other formats puts them in one work.
    paperback, ebook, audio, other = (
        "9780000000026",
        "9780000000033",
        "9780000000040",
        ("9780000000057"),
    )
    outside = "9780141036144"  # not in the catalogue: Consonance cannot hold the link
    on_sale = status("04", rights(("01", WORLD)))
    onix = message(
        with_related(
            product_xml(paperback, form="BC", publishing=on_sale), ("27", ebook), ("06", audio)
        ),
        with_related(product_xml(ebook, details=("E101",), publishing=on_sale), ("13", paperback)),
        with_related(product_xml(audio, form="AJ", publishing=on_sale), ("06", paperback)),
        with_related(product_xml(other, form="BB", publishing=on_sale), ("06", outside)),
    )
    works = await through_consonance(consonance_sandbox_factory, onix)
    assert sorted(sorted(p.isbn13 or "" for p in w.products) for w in works) == [
        sorted([paperback, ebook, audio]),
        [other],
    ]
    out = write(works, tmp_path)
    assert related_of(out[paperback]) == [("27", ebook), ("06", audio)]
    assert related_of(out[ebook]) == [("13", paperback), ("06", audio)]
    assert related_of(out[audio]) == [("06", paperback), ("06", ebook)]
    assert related_of(out[other]) == []


async def test_product_parts_come_back_when_each_part_is_a_product_of_the_catalogue(
    consonance_sandbox_factory: Callable[..., SandboxHandle], tmp_path
):
    # Consonance's ProductPart is "a product contained by this product": a part that is a
    # product of the catalogue comes back (its form, copies); a part that is not (the CD here,
    # no identifier) cannot be held, nor can PrimaryPart. Seeding says so.
    from consonance_sftp.sandbox.consonance.seed import not_served

    box, volume = "9780000000002", "9780000000019"
    on_sale = status("04", rights(("01", WORLD)))
    parts = (
        "<ProductPart><PrimaryPart/><ProductIdentifier><ProductIDType>15</ProductIDType>"
        f"<IDValue>{volume}</IDValue></ProductIdentifier><ProductForm>BB</ProductForm>"
        "<NumberOfCopies>2</NumberOfCopies></ProductPart>"
        "<ProductPart><ProductForm>AC</ProductForm><NumberOfCopies>1</NumberOfCopies>"
        "</ProductPart>"
    )
    record = (
        product_xml(box, form="SA", publishing=on_sale)
        .replace(
            "<ProductComposition>00</ProductComposition>",
            "<ProductComposition>10</ProductComposition>",
            1,
        )
        .replace("<TitleDetail>", parts + "<TitleDetail>", 1)
    )
    onix = message(record, product_xml(volume, form="BB", publishing=on_sale))
    assert not_served(catalogue_from_onix(io.BytesIO(onix))) == {
        "DescriptiveDetail/ProductPart (not a product of the catalogue)": 1,
        "DescriptiveDetail/ProductPart/PrimaryPart": 1,
    }
    works = await through_consonance(consonance_sandbox_factory, onix)
    (held,) = [p for w in works for p in w.products if p.isbn13 == box]
    assert [(x.isbn13, x.form, x.number_of_copies, x.primary) for x in held.parts] == [
        (volume, "BB", 2, False)
    ]
    out = write(works, tmp_path)[box]
    part = "o:DescriptiveDetail/o:ProductPart"
    assert texts(out, "o:DescriptiveDetail/o:ProductComposition") == ["10"]
    assert texts(out, f"{part}/o:ProductIdentifier/o:IDValue") == [volume]
    assert texts(out, f"{part}/o:ProductForm") == ["BB"]
    assert texts(out, f"{part}/o:NumberOfCopies") == ["2"]
    # A product with no part keeps composition 00.
    assert texts(write(works, tmp_path)[volume], "o:DescriptiveDetail/o:ProductComposition") == [
        "00"
    ]


def test_the_sender_identifiers_go_in_the_header_of_both_versions():
    works = read_onix_works(
        io.BytesIO(message(product_xml("9780000000002", publishing=status("04"))))
    )
    config = OnixRecipient.model_validate({"sender_gln": "5012345678900", "sender_san": "0000019"})
    for version, names in (
        ("3.0", ("SenderIDType", "IDValue")),
        ("2.1", ("FromEANNumber", "FromSAN")),
    ):
        rules = recipient_rules(config.model_copy(update={"onix_version": version}))
        sink = io.BytesIO()
        result = write_feed(
            works,
            sink,
            rules=rules,
            header=MessageHeader(sender_name="Test", sent_at=NOW),
            kind="full",
            validate="inline",
        )
        assert result.report.ok, [str(p) for p in result.report.problems]
        header = etree.fromstring(sink.getvalue()).xpath("*[local-name()='Header']")[0]
        found = [
            (etree.QName(e).localname, e.text)
            for e in header.iter()
            if etree.QName(e).localname in names
        ]
        if version == "3.0":
            assert found == [
                ("SenderIDType", "06"),
                ("IDValue", "5012345678900"),
                ("SenderIDType", "07"),
                ("IDValue", "0000019"),
            ]
        else:
            assert found == [("FromEANNumber", "5012345678900"), ("FromSAN", "0000019")]


def test_subjects_in_other_schemes_are_kept():
    isbn = "9780000000002"
    subjects = (
        "<Subject><SubjectSchemeIdentifier>01</SubjectSchemeIdentifier><SubjectSchemeVersion>23"
        "</SubjectSchemeVersion><SubjectCode>823.92</SubjectCode></Subject>"
        "<Subject><MainSubject/><SubjectSchemeIdentifier>29</SubjectSchemeIdentifier>"
        "<SubjectCode>3435</SubjectCode></Subject>"
    )
    record = product_xml(isbn, publishing=status("04", rights(("01", WORLD)))).replace(
        "</DescriptiveDetail>", subjects + "</DescriptiveDetail>", 1
    )
    out = feed(read_onix_works(io.BytesIO(message(record))), RecipientRules())[isbn]
    subject = "o:DescriptiveDetail/o:Subject"
    assert texts(out, f"{subject}/o:SubjectSchemeIdentifier") == ["01", "29"]
    assert texts(out, f"{subject}/o:SubjectCode") == ["823.92", "3435"]
    assert texts(out, f"{subject}/o:SubjectSchemeVersion") == ["23"]
    assert (
        len(
            out.xpath(
                f"{subject}[o:SubjectSchemeIdentifier='29']/o:MainSubject", namespaces={"o": NS}
            )
        )
        == 1
    )


def test_a_weight_is_kept():
    isbn = "9780000000002"
    weight = (
        "<Measure><MeasureType>08</MeasureType><Measurement>12</Measurement>"
        "<MeasureUnitCode>oz</MeasureUnitCode></Measure>"
    )
    record = product_xml(isbn, form="BB", publishing=status("04", rights(("01", WORLD))))
    record = record.replace("<TitleDetail>", weight + "<TitleDetail>", 1)
    out = feed(read_onix_works(io.BytesIO(message(record))), RecipientRules())[isbn]
    measure = "o:DescriptiveDetail/o:Measure[o:MeasureType='08']"
    assert texts(out, f"{measure}/o:Measurement") == ["340.19"]  # 12 oz in grams
    assert texts(out, f"{measure}/o:MeasureUnitCode") == ["gr"]


def test_a_forthcoming_title_with_no_date_is_an_early_notice():
    forthcoming, active = "9780000000002", "9780000000019"
    onix = message(
        product_xml(forthcoming, publishing=status("02", rights(("01", WORLD)))),
        product_xml(active, publishing=status("04", rights(("01", WORLD)))),
    )
    out = feed(read_onix_works(io.BytesIO(onix)), RecipientRules())
    assert texts(out[forthcoming], "o:NotificationType") == ["01"]  # was 03
    assert texts(out[active], "o:NotificationType") == ["03"]
