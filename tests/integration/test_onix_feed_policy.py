"""ONIX feed policy and the Google preset (issue 18).

The sandbox's generated catalogue is read through the Consonance client (the code that reads
the real service) and written for the ``google_play_books`` preset; the output is checked with
onixcheck itself, on the whole file, against the Google profile it bundles (and the XSD). A
product that cannot satisfy the profile is left out and named with ``skip``, and blocks the
message, named, with ``block``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import onixcheck
import pytest
from lxml import etree

from consonance_sftp.config.flows import OnixRecipient
from consonance_sftp.flows.onix_feed import recipient_rules
from consonance_sftp.formats.onix import (
    FeedResult,
    MessageHeader,
    RecipientRules,
    remove_skipped,
    write_feed,
)
from consonance_sftp.models import SubjectScheme, Work
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from tests.fixtures.consonance_sandbox import SandboxHandle

NS = "http://ns.editeur.org/onix/3.0/reference"
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


async def catalogue_works(factory: Callable[..., SandboxHandle]) -> list[Work]:
    # 400 products (seed 11): ebooks with Thema subjects, keywords and out-of-print titles
    # (availability 51), each of which the bundled Google profile refused before.
    sandbox = factory(generate_catalogue(400, seed=11))
    async with sandbox.client() as api:
        return [work async for work in api.iter_works()]


def google(**overrides: object) -> RecipientRules:
    """The rules a config's ``preset = "google_play_books"`` recipient gets."""
    return recipient_rules(OnixRecipient(preset="google_play_books", mode="full", **overrides))


def write(works: list[Work], rules: RecipientRules, path: Path) -> FeedResult:
    with path.open("wb") as sink:
        result = write_feed(
            works,
            sink,
            rules=rules,
            header=MessageHeader(sender_name="Test", sent_at=NOW),
            kind="full",
            validate="process",  # as the flow does: in a second process, while writing
        )
    remove_skipped(path, result)
    return result


def isbns(path: Path) -> list[str]:
    root = etree.parse(str(path)).getroot()
    return [
        str(v)
        for v in root.xpath(
            "o:Product/o:ProductIdentifier[o:ProductIDType='15']/o:IDValue/text()",
            namespaces={"o": NS},
        )
    ]


def onixcheck_google(path: Path) -> list[str]:
    return [str(m) for m in onixcheck.validate(str(path), schemas=("xsd", "google"))]


@pytest.mark.slow
async def test_the_google_preset_feed_of_the_sandbox_catalogue_passes_onixchecks_google_profile(
    consonance_sandbox_factory: Callable[..., SandboxHandle], tmp_path: Path
) -> None:
    works = await catalogue_works(consonance_sandbox_factory)
    rules = google()
    ebooks = [
        (w, p)
        for w in works
        for p in w.products
        if rules.accepts(w, p) and p.publishing_status not in rules.delete_statuses
    ]
    # The catalogue holds what the profile refused: Thema and keyword subjects on ebooks, and
    # out-of-print ebooks (list 65 code 51, newer than the profile).
    assert any(s.scheme is SubjectScheme.THEMA for w, _ in ebooks for s in w.subjects)
    assert any(w.keywords for w, _ in ebooks)
    assert any(p.publishing_status == "07" for _, p in ebooks)

    path = tmp_path / "google.xml"
    result = write(works, rules, path)

    assert result.report.ok, [str(p) for p in result.report.problems]
    assert result.skipped == []
    assert len(isbns(path)) == len(ebooks) > 10
    assert onixcheck_google(path) == []
    # ...and the same catalogue for the profile as it was (every scheme, code 51 as held)
    # fails it: the check is real.
    plain = RecipientRules.google_play_books(subject_schemes=None, availability_map=None)
    before = write(works, plain.model_copy(update={"profile": None}), tmp_path / "plain.xml")
    assert before.report.ok
    refused = onixcheck_google(tmp_path / "plain.xml")
    assert any('"93" not one of' in m for m in refused), refused[:3]
    assert any('"51" not one of' in m for m in refused), refused[:3]


@pytest.mark.slow
async def test_a_product_google_cannot_take_is_skipped_or_blocks_with_its_reason(
    consonance_sandbox_factory: Callable[..., SandboxHandle], tmp_path: Path
) -> None:
    works = await catalogue_works(consonance_sandbox_factory)
    rules = google()
    # An ebook with no price: Google's profile needs a Price in every SupplyDetail.
    index, work = next(
        (i, w)
        for i, w in enumerate(works)
        if any(rules.accepts(w, p) and p.publishing_status == "04" for p in w.products)
    )
    product = next(p for p in work.products if rules.accepts(work, p))
    unpriced = dataclasses.replace(product, prices=())
    works[index] = dataclasses.replace(
        work, products=tuple(unpriced if p is product else p for p in work.products)
    )
    isbn = product.isbn13
    assert isbn is not None

    skipped = write(works, google(on_invalid_product="skip"), tmp_path / "skip.xml")
    assert [(p.isbn13, p.element) for p in skipped.skipped] == [(isbn, "SupplyDetail")]
    assert "Missing element Price within SupplyDetail" in skipped.skipped[0].reason
    assert "google profile" in skipped.skipped[0].reason
    assert skipped.report.ok and skipped.should_send
    sent = isbns(tmp_path / "skip.xml")
    assert isbn not in sent and len(sent) == skipped.products > 10
    assert onixcheck_google(tmp_path / "skip.xml") == []  # what goes passes the profile
    assert skipped.state is not None
    assert all(ref in skipped.state for ref in skipped.sent)
    assert not any(isbn in ref for ref in skipped.state)  # resent once it is fixed
    assert skipped.bytes == (tmp_path / "skip.xml").stat().st_size

    blocked = write(works, google(), tmp_path / "block.xml")  # the default: block
    assert not blocked.report.ok and blocked.skipped == []
    assert {p.isbn13 for p in blocked.report.problems} == {isbn}
    assert "Missing element Price within SupplyDetail" in str(blocked.report.problems[0])
