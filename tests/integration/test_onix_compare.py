"""``onix compare SOURCE PRODUCED``: the fidelity report (issue 18), through the command line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.cli import CLI
from tests.integration.test_onix_fidelity import message, product_xml
from tests.samples import EDITEUR_REFERENCE, GOOGLE_ONIX21, ONIX_SAMPLES

EDITEUR_SHORT = ONIX_SAMPLES / "editeur-sample-onix3-short.xml"

A, B = "9780000000002", "9781234567897"


def compare(source: Path, produced: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "onix", "compare", str(source), str(produced), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_same_record_in_reference_and_short_tags_matches():
    done = compare(EDITEUR_REFERENCE, EDITEUR_SHORT, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    (product,) = report["products"]
    assert product["key"] == "ISBN 9780007232833" and product["status"] == "match"
    facets = {f["facet"]: f for f in product["facets"]}
    # Every facet the sample has was compared, and each item matched.
    assert set(facets) >= {"identifiers", "form", "titles", "contributors", "prices", "dates"}
    assert all(f["status"] == "match" and f["matched"] > 0 for f in facets.values())


def dates(*pairs: tuple[str, str]) -> str:
    return "<PublishingStatus>04</PublishingStatus>" + "".join(
        f"<PublishingDate><PublishingDateRole>{role}</PublishingDateRole><Date>{value}</Date>"
        "</PublishingDate>"
        for role, value in pairs
    )


def test_changes_and_drops_are_named_by_product_and_facet(tmp_path: Path):
    source, produced = tmp_path / "source.xml", tmp_path / "produced.xml"
    source.write_bytes(
        message(
            product_xml(A, publishing=dates(("01", "20270115"), ("02", "20270110"))),
            product_xml(B),
        )
    )
    produced.write_bytes(
        message(
            product_xml(A, publishing=dates(("01", "20270115"))).replace("9.99", "12.50"),
        )
    )
    done = compare(source, produced, "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    by_key = {p["key"]: p for p in report["products"]}
    assert by_key[f"ISBN {B}"]["status"] == "dropped"  # not in the produced file at all
    changed = {f["facet"]: f for f in by_key[f"ISBN {A}"]["facets"] if f["status"] != "match"}
    assert changed == {
        "dates": {
            "facet": "dates",
            "status": "dropped",
            "matched": 1,
            "dropped": ["PublishingDate 02 20270110"],  # the embargo
            "added": [],
        },
        "prices": {
            "facet": "prices",
            "status": "changed",
            "matched": 0,
            "dropped": ["Price 02 9.99 GBP in (no territory)"],
            "added": ["Price 02 12.5 GBP in (no territory)"],
        },
    }
    text = compare(source, produced)
    assert text.returncode == 1
    assert "- PublishingDate 02 20270110" in text.stdout
    assert "2 products: 0 match, 1 changed, 1 dropped, 0 added" in text.stdout


def test_two_products_with_one_isbn_are_refused_by_name(tmp_path: Path):
    source, produced = tmp_path / "source.xml", tmp_path / "produced.xml"
    source.write_bytes(message(product_xml(A)))
    produced.write_bytes(message(product_xml(A), product_xml(A, title="Another")))
    done = compare(source, produced)
    assert done.returncode == 2  # neither "same" (0) nor "different" (1): cannot compare
    assert f"ISBN {A} is on more than one product" in done.stdout + done.stderr


def test_an_onix_21_feed_compares_with_a_30_one(tmp_path: Path):
    # The publisher's 2.1 feed against the same record in 3.0 (the reader's view of it,
    # written by the 3.0 writer): every facet is compared; only what 3.0 adds is named.
    from datetime import UTC, datetime

    from consonance_sftp.formats.onix import MessageHeader, OnixWriter, read_onix_works

    ours = tmp_path / "ours.xml"
    with (
        ours.open("wb") as sink,
        OnixWriter(sink, MessageHeader(sender_name="T", sent_at=datetime.now(UTC))) as writer,
    ):
        for work in read_onix_works(GOOGLE_ONIX21, accept_21=True):
            for product in work.products:
                writer.write(work, product)
    same = compare(GOOGLE_ONIX21, GOOGLE_ONIX21)
    assert same.returncode == 0, same.stdout + same.stderr
    done = compare(GOOGLE_ONIX21, ours)
    assert done.returncode == 1, done.stdout + done.stderr
    out = " ".join(done.stdout.split())
    assert "CHANGED ISBN 9789999999991" in out and "+ Market region WORLD" in out, out
    assert "- Supplier My Supplier Name role -" in out and "titles" not in out, out
