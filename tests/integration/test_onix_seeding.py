"""Seeding the sandbox from ONIX must be faithful (issue 18, "sandbox and seeding").

Each test writes a small ONIX 3.0 message from the EDItEUR specification that shows one defect
seen on real publisher files, seeds it the way ``sandbox seed --onix`` does and checks the
catalogue, the sandbox API (through the client) or the command's output.
"""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from consonance_sftp.errors import ValidationFailed
from consonance_sftp.formats.onix import read_onix_works
from consonance_sftp.sandbox.consonance.catalogue import Catalogue
from consonance_sftp.sandbox.consonance.seed import catalogue_dir, catalogue_from_onix
from tests.cli import CLI
from tests.fixtures.consonance_sandbox import SandboxHandle
from tests.integration.test_onix_fidelity import NS, message, product_xml
from tests.samples import ONIX_SAMPLES

A, B, C = "9780000000002", "9781234567897", "9780306406157"


def gbp(amount: str) -> str:
    return (
        "<SupplyDetail><Supplier><SupplierRole>01</SupplierRole><SupplierName>Pub</SupplierName>"
        "</Supplier><ProductAvailability>20</ProductAvailability><Price><PriceType>02"
        f"</PriceType><PriceAmount>{amount}</PriceAmount><CurrencyCode>GBP</CurrencyCode>"
        "</Price></SupplyDetail>"
    )


def in_currency(currency: str) -> str:
    return gbp("10.00").replace(">GBP<", f">{currency}<")


async def test_form_00_or_no_form_and_any_iso_currency_still_answer_every_query(
    consonance_sandbox_factory: Callable[..., SandboxHandle],
):
    no_form = product_xml(C).replace("<ProductForm>ED</ProductForm>", "")
    onix = message(
        product_xml(A, form="00"),
        no_form,
        product_xml(B, form="BC", supply=in_currency("PLN")),  # a Polish paperback
    )
    sandbox = consonance_sandbox_factory(catalogue_from_onix(io.BytesIO(onix)))
    async with sandbox.client() as api:
        works = [w async for w in api.iter_works()]  # one bad enum value fails the whole page
        by_isbn = {p.isbn13: p for w in works for p in w.products}
        found = await api.get_product_by_isbn(A)
    assert set(by_isbn) == {A, B, C}
    assert found is not None and found.product_form == "00"
    assert by_isbn[C].product_form == "00"  # no form at all: list 7's "undefined"
    assert [(p.currency, p.amount) for p in by_isbn[B].prices] == [("PLN", Decimal("10.00"))]


def test_a_code_the_api_cannot_serve_refuses_the_product_by_name():
    onix = message(product_xml(A), product_xml(B, supply=in_currency("XYZ")))
    with pytest.raises(ValidationFailed) as caught:
        catalogue_from_onix(io.BytesIO(onix))
    assert [r for r in caught.value.reasons if B in r] == [
        f"{B}, record ref-{B}: CurrencyCode XYZ is not a Consonance CurrencyCode value"
    ]
    assert not any(A in r for r in caught.value.reasons)


async def test_a_relative_resource_link_becomes_a_valid_url(
    consonance_sandbox_factory: Callable[..., SandboxHandle],
):
    resource = (
        "<CollateralDetail><SupportingResource><ResourceContentType>15</ResourceContentType>"
        "<ContentAudience>00</ContentAudience><ResourceMode>04</ResourceMode><ResourceVersion>"
        f"<ResourceForm>02</ResourceForm><ResourceLink>{A}.epub</ResourceLink>"
        "</ResourceVersion></SupportingResource></CollateralDetail>"
    )
    record = product_xml(A).replace("</DescriptiveDetail>", "</DescriptiveDetail>" + resource)
    sandbox = consonance_sandbox_factory(catalogue_from_onix(io.BytesIO(message(record))))
    async with sandbox.client() as api:
        product = await api.get_product_by_isbn(A)
        assert product is not None
        work = await api.get_work(product.work_id)
    assert work is not None
    (found,) = work.supporting_resources
    assert found.url is not None
    url = httpx.URL(found.url)  # "http://127.0.0.1:PORT9780...epub" does not parse
    assert (url.scheme, url.host, url.path) == ("http", "127.0.0.1", f"/{A}.epub")


def with_doctype(doctype: str, record: str) -> bytes:
    return message(record).replace(b"<ONIXMessage", doctype.encode() + b"<ONIXMessage", 1)


# What real files carry: the ONIX DTD (never fetched) declares the HTML character entities.
DTD = "http://www.editeur.org/onix/3.0/reference/onix-international.dtd"


def test_entities_are_resolved_from_the_file_and_the_onix_character_set():
    doctype = f'<!DOCTYPE ONIXMessage SYSTEM "{DTD}" [<!ENTITY pub "&#201;ditions &amp; Cie">]>'
    record = product_xml(A, title="Caf&eacute; &pub; noir&nbsp;!")
    (work,) = read_onix_works(io.BytesIO(with_doctype(doctype, record)))
    assert work.title == "Café Éditions & Cie noir\u00a0!"  # not "Caf"


def test_an_external_entity_is_never_read(tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read me")
    doctype = f'<!DOCTYPE ONIXMessage [<!ENTITY x SYSTEM "file://{secret}">]>'
    onix = with_doctype(doctype, product_xml(A, title="T &x;"))
    with pytest.raises(ValidationFailed, match="external entity 'x'"):
        read_onix_works(io.BytesIO(onix))


def test_nested_entities_are_refused():
    doctype = (
        '<!DOCTYPE ONIXMessage [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    )
    onix = with_doctype(doctype, product_xml(A, title="&b;"))
    with pytest.raises(ValidationFailed, match="entity 'b' refers to another entity"):
        read_onix_works(io.BytesIO(onix))


def test_a_duplicate_record_reference_is_refused_by_name():
    twin = product_xml(B).replace(f"ref-{B}", f"ref-{A}")
    with pytest.raises(ValidationFailed) as caught:
        catalogue_from_onix(io.BytesIO(message(product_xml(A), twin)))
    assert caught.value.reasons == [f"RecordReference ref-{A} is on 2 products"]


@pytest.mark.parametrize(
    ("written", "amount"),
    [("30,80", "30.80"), ("1.234,50", "1234.50"), ("1,234.50", "1234.50"), ("9.99", "9.99")],
)
def test_a_decimal_comma_is_read(written: str, amount: str):
    (work,) = read_onix_works(io.BytesIO(message(product_xml(A, supply=gbp(written)))))
    assert [p.amount for p in work.products[0].prices] == [Decimal(amount)]


def seed_cli(data_dir: Path, onix: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "sandbox", "seed", "--data-dir", str(data_dir), "--onix", str(onix), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_header_only_message_is_refused_unless_allowed(tmp_path: Path):
    full, empty = tmp_path / "full.xml", tmp_path / "empty.xml"
    full.write_bytes(message(product_xml(A)))
    empty.write_bytes(message())
    data = tmp_path / "data"
    assert seed_cli(data, full).returncode == 0
    refused = seed_cli(data, empty)
    assert refused.returncode != 0
    assert "has no Product" in refused.stdout + refused.stderr
    assert len(Catalogue.load(catalogue_dir(data)).products) == 1  # the catalogue is kept
    allowed = seed_cli(data, empty, "--allow-empty")
    assert allowed.returncode == 0, allowed.stderr
    assert len(Catalogue.load(catalogue_dir(data)).products) == 0


def test_seed_lists_what_it_could_not_carry(tmp_path: Path):
    made_in = "<CountryOfManufacture>GB</CountryOfManufacture></DescriptiveDetail>"
    second_supplier = gbp("9.99").replace("<SupplierName>Pub", "<SupplierName>Other")
    records = [product_xml(isbn).replace("</DescriptiveDetail>", made_in) for isbn in (A, B)] + [
        product_xml(C, supply=gbp("9.99") + second_supplier)
    ]
    onix = tmp_path / "in.xml"
    onix.write_bytes(message(*records))
    from consonance_sftp.formats.onix.reader import ReadReport

    report = ReadReport()
    catalogue_from_onix(onix, report=report)
    assert report.not_carried == {
        "DescriptiveDetail/CountryOfManufacture": 2,
        "ProductSupply/SupplyDetail (supplier after the first)": 1,
    }
    done = seed_cli(tmp_path / "data", onix)
    assert done.returncode == 0, done.stderr
    lines = [line.split(None, 1) for line in done.stdout.splitlines()[2:]]
    assert lines == [
        ["2", "DescriptiveDetail/CountryOfManufacture"],
        ["1", "ProductSupply/SupplyDetail (supplier after the first)"],
    ]
    assert "not carried (3 elements" in done.stdout


def bare(record: str, namespace: str | None) -> bytes:
    xmlns = f' xmlns="{namespace}"' if namespace else ""
    return record.replace("<Product>", f"<Product{xmlns}>", 1).encode()


@pytest.mark.parametrize(
    "onix",
    [
        pytest.param(message(product_xml(A)).replace(b' release="3.0"', b""), id="no-release"),
        pytest.param(
            message(product_xml(A))
            .replace(b' release="3.0"', b"")
            .replace(f' xmlns="{NS}"'.encode(), b""),
            id="no-release-no-namespace",
        ),
        pytest.param(
            re.sub(
                rb' (release|xmlns)="[^"]*"',
                b"",
                (ONIX_SAMPLES / "editeur-sample-onix3-short.xml").read_bytes(),
            ).replace(b"9780007232833", A.encode()),
            id="short-tags-no-release-no-namespace",
        ),
        pytest.param(bare(product_xml(A), NS), id="bare-product"),
        pytest.param(bare(product_xml(A), None), id="bare-product-no-namespace"),
    ],
)
def test_the_version_comes_from_the_namespace_root_and_content(onix: bytes):
    (work,) = read_onix_works(io.BytesIO(onix))
    assert [p.isbn13 for p in work.products] == [A]


def test_onix_21_and_other_xml_are_refused_with_their_own_reason():
    onix_21 = (
        b"<ONIXMessage><Header><FromCompany>X</FromCompany></Header><Product>"
        b"<RecordReference>r</RecordReference><ProductForm>BC</ProductForm></Product>"
        b"</ONIXMessage>"
    )
    with pytest.raises(ValidationFailed, match=r"ONIX 2\.1 is not read here"):
        read_onix_works(io.BytesIO(onix_21))
    with pytest.raises(ValidationFailed, match=r"not an ONIX message \(root element <feed>"):
        read_onix_works(io.BytesIO(b"<feed><entry/></feed>"))


def test_seed_lists_what_consonance_api_cannot_serve(tmp_path: Path):
    # The round trip's rich message: what seeding says the API cannot serve is what
    # ``onix compare`` finds dropped after the round trip (test_onix_round_trip_fidelity).
    from tests.integration.test_onix_round_trip_fidelity import rich_message

    onix = tmp_path / "rich.xml"
    onix.write_bytes(rich_message())
    done = seed_cli(tmp_path / "data", onix)
    assert done.returncode == 0, done.stderr
    block = done.stdout.split("held but not served", 1)[1].splitlines()[1:]
    assert sorted(line.split(None, 1)[1] for line in block) == sorted(
        [
            "PublishingDetail/SalesRights (02: set sales_rights_type per recipient)",
            "ProductSupply/SupplyDetail/Price/Tax",
            "DescriptiveDetail/ProductPart/PrimaryPart",
            "PublishingDetail/PublishingDate (role 02)",
            "PublishingDetail/PublishingDate (role 19)",
            "RelatedMaterial/RelatedProduct (not another product of the work, or not the "
            "relation Consonance writes for it)",
            "PublishingDetail/SalesRights/Territory (regions other than WORLD)",
        ]
    )
    assert "5  PublishingDetail/SalesRights" in done.stdout
    assert "2  ProductSupply/SupplyDetail/Price/Tax" in done.stdout
