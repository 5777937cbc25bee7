"""Seeding the sandbox from an ONIX 3.0 file, then reading the work back through the client."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx
from lxml import etree

from consonance_sftp.models import SubjectScheme
from consonance_sftp.sandbox.consonance.seed import catalogue_from_onix
from tests.fixtures.consonance_sandbox import SandboxHandle
from tests.samples import EDITEUR_REFERENCE

SAMPLE = EDITEUR_REFERENCE
NS = {"o": "http://ns.editeur.org/onix/3.0/reference"}


def expected_from_onix(path: Path) -> dict[str, object]:
    """What the file says, read with plain XPath (independently of the service's reader)."""
    product = etree.parse(str(path)).find(".//o:Product", NS)
    assert product is not None

    def texts(xpath: str) -> list[str]:
        return [str(t).strip() for t in product.xpath(xpath, namespaces=NS)]

    return {
        "isbn": texts("o:ProductIdentifier[o:ProductIDType='15']/o:IDValue/text()")[0],
        "title": texts(
            "o:DescriptiveDetail/o:TitleDetail[o:TitleType='01']/o:TitleElement/o:TitleWithoutPrefix/text()"
        )[0],
        "contributors": [
            f"{b} {k}"
            for b, k in zip(
                texts(".//o:Contributor/o:NamesBeforeKey/text()"),
                texts(".//o:Contributor/o:KeyNames/text()"),
                strict=True,
            )
        ],
        "thema": set(texts(".//o:Subject[o:SubjectSchemeIdentifier='93']/o:SubjectCode/text()")),
        "bisac": set(texts(".//o:Subject[o:SubjectSchemeIdentifier='10']/o:SubjectCode/text()")),
        "pubdate": texts(".//o:PublishingDate[o:PublishingDateRole='01']/o:Date/text()")[0],
        "prices": {
            (c, t, Decimal(a))
            for c, t, a in zip(
                texts(".//o:Price/o:CurrencyCode/text()"),
                texts(".//o:Price/o:PriceType/text()"),
                texts(".//o:Price/o:PriceAmount/text()"),
                strict=True,
            )
        },
    }


async def test_onix_seeded_work_reads_back_through_the_client(
    consonance_sandbox_factory: Callable[..., SandboxHandle],
):
    expected = expected_from_onix(SAMPLE)
    sandbox = consonance_sandbox_factory(catalogue_from_onix(SAMPLE))
    async with sandbox.client() as api:
        product = await api.get_product_by_isbn(str(expected["isbn"]))
        assert product is not None
        work = await api.get_work(product.work_id)
        changed = [w.id async for w in api.iter_works(changed_since=date.today())]
    assert work is not None
    assert product.title == expected["title"] == work.title
    assert [c.contributor.name for c in work.contributions] == expected["contributors"]
    assert {s.code for s in work.subjects if s.scheme is SubjectScheme.THEMA} >= expected["thema"]
    assert {s.code for s in work.subjects if s.scheme is SubjectScheme.BISAC} == expected["bisac"]
    assert product.publication_date is not None
    assert product.publication_date.strftime("%Y%m%d") == expected["pubdate"]
    assert {(p.currency, p.price_type, p.amount) for p in product.prices} == expected["prices"]
    assert work.id in changed  # a freshly imported work counts as changed today
    cover = work.supporting_resources[0]
    assert cover.url is not None
    body = httpx.get(cover.url).content
    assert body[:2] == b"\xff\xd8" and body[-2:] == b"\xff\xd9"  # a real JPEG, served locally
