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

from lxml import etree

from consonance_sftp.formats.onix import (
    MessageHeader,
    OnixWriter,
    RecipientRules,
    validate_file,
    write_feed,
)
from consonance_sftp.models import Work
from consonance_sftp.sandbox.consonance.seed import catalogue_from_onix
from tests.fixtures.consonance_sandbox import SandboxHandle

NS = "http://ns.editeur.org/onix/3.0/reference"
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


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
    market: str = "",
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
        f"<ProductSupply>{market}{supply}</ProductSupply></Product>"
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
