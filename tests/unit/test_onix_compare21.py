"""``onix compare`` reads ONIX 2.1 too (issue 18): a publisher compares the 2.1 feed they send
today with ours. A 2.1 product is read as the 3.0 product it maps to, into the same facets."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path

from consonance_sftp.formats.onix import MessageHeader, OnixWriter, read_onix_works
from consonance_sftp.formats.onix.compare import compare_files, facets_of
from consonance_sftp.formats.onix.reader import ReadReport, iter_onix_records
from consonance_sftp.formats.onix.tags import OnixVersion, short_tags
from consonance_sftp.formats.onix.writer21 import Onix21Writer
from consonance_sftp.models import Work
from tests.integration.test_onix_fidelity import message, product_xml
from tests.integration.test_onix_round_trip_fidelity import rich_message
from tests.samples import GOOGLE_ONIX21

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def write(works: list[Work], path: Path, writer: type[OnixWriter], **options: object) -> Path:
    with (
        path.open("wb") as sink,
        writer(sink, MessageHeader(sender_name="T", sent_at=NOW), **options) as w,  # type: ignore[arg-type]
    ):
        for work in works:
            for product in work.products:
                w.write(work, product)
    return path


def test_a_real_onix_21_feed_is_read_into_the_same_facets_as_30():
    report = ReadReport()
    (record,) = iter_onix_records(GOOGLE_ONIX21, report, accept_21=True)
    facets = {name: sorted(items) for name, items in facets_of(record).items() if items}
    assert facets == {
        "identifiers": ["ISBN 9789999999991"],
        # DG with EpubType 029 (EPUB) is 3.0's ED + E101; NumberOfPages is extent 00 in pages.
        "form": ["Extent 00 1024 03", "ProductForm ED", "ProductFormDetail E101"],
        "titles": [
            "Language eng",
            "Subtitle This is my subtitle.",
            "Title This is my distinctive title.",
        ],
        "contributors": ["A01 Jane Smith"],
        "subjects": ["BISAC LIT014000"],
        "dates": ["PublishingDate 01 20120927"],
        "rights": ["PublishingStatus 04", "SalesRights 01 region WORLD"],
        "prices": ["Price 02 9.99 USD in US"],
        "supply": ["Supplier My Supplier Name role -, availability 20"],
        "collateral": [
            # OtherText 13 (biographical note) and 01 (main description): list 153's 12, 03.
            "TextContent BIOGRAPHICAL_NOTE: I am a bibiliographical note of a book not a "
            "specific aut...",
            "TextContent DESCRIPTION: I am the main description of the book.",
        ],
        "related": ["RelatedProduct 13 9789999999984"],
    }
    assert report.products == 1 and report.not_carried == {}


def test_the_21_feed_sent_today_against_our_30_feed_names_only_real_differences(tmp_path):
    works = read_onix_works(GOOGLE_ONIX21, accept_21=True)
    ours = write(works, tmp_path / "ours.xml", OnixWriter)
    (product,) = compare_files(GOOGLE_ONIX21, ours).products
    changes = {f.facet: (f.dropped, f.added) for f in product.facets if f.status != "match"}
    assert changes == {
        # What 3.0 says that this 2.1 record did not: our work id, the market, a supplier role.
        "identifiers": ((), ("WorkIdentifier 01 1",)),
        "markets": ((), ("Market region WORLD",)),
        "supply": (
            ("Supplier My Supplier Name role -, availability 20",),
            ("Supplier My Supplier Name role 01, availability 20",),
        ),
    }


def test_our_own_21_and_30_feeds_of_the_same_works_agree_item_for_item(tmp_path):
    # Every item the 2.1 writer writes is read back as the item the 3.0 writer writes; what
    # 2.1 (or the 2.1 writer) cannot say shows as added on the 3.0 side, nothing else.
    ebooks = message(
        product_xml("9780000000026", details=("E127",)),  # Mobipocket
        product_xml("9780000000033", details=("E116",)),  # Kindle
        product_xml("9780000000040", details=("E107",)),  # PDF
    )
    works = read_onix_works(io.BytesIO(rich_message())) + read_onix_works(io.BytesIO(ebooks))
    v21 = write(works, tmp_path / "21.xml", Onix21Writer, version=OnixVersion.V21)
    v30 = write(works, tmp_path / "30.xml", OnixWriter)
    comparison = compare_files(v21, v30)
    assert {p.status for p in comparison.products} <= {"match", "changed"}
    dropped = {
        (p.key, f.facet, item) for p in comparison.products for f in p.facets for item in f.dropped
    }
    # The 2.1 writer sends a main Thema subject as a plain Subject and has no ContentAudience.
    assert dropped == {
        ("ISBN 9780000000002", "subjects", "THEMA FBA"),
        ("ISBN 9780000000019", "subjects", "THEMA FBA"),
        ("ISBN 9780000000002", "collateral", "SupportingResource 01 mode 03 form 02"),
    }
    forms = {p.key: f.matched for p in comparison.products for f in p.facets if f.facet == "form"}
    # The ebook formats survive 2.1 (EpubType 022 Mobipocket, 031 Kindle, 002 PDF).
    assert all(forms[f"ISBN {isbn}"] == 2 for isbn in ("9780000000026", "9780000000033"))


def test_a_21_feed_in_short_tags_reads_as_in_reference_names(tmp_path):
    shorts = short_tags(OnixVersion.V21)
    text = GOOGLE_ONIX21.read_text("utf-8").replace("2.1/reference", "2.1/short")
    short = tmp_path / "short.xml"
    short.write_text(re.sub(r"<(/?)([A-Za-z]\w*)", lambda m: f"<{m[1]}{shorts[m[2]]}", text))
    assert b"<ONIXmessage" in short.read_bytes()[:100] and b"<Product>" not in short.read_bytes()
    comparison = compare_files(GOOGLE_ONIX21, short)
    assert comparison.ok
    assert sum(f.matched for f in comparison.products[0].facets) == 17
