"""The ONIX reader on EDItEUR's sample message, in reference names and in short tags."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from consonance_sftp.errors import ValidationFailed
from consonance_sftp.formats.onix import iter_onix_records, read_onix_works
from consonance_sftp.models import SubjectScheme
from tests.samples import ONIX_SAMPLES

SAMPLES = ONIX_SAMPLES


def _sample(name: str) -> Path:
    path = SAMPLES / name
    if not path.exists():  # tests/data ships with the repo; fail loudly, never skip
        pytest.fail(f"missing sample (tests/data) {path}")
    return path


@pytest.mark.parametrize("style", ["reference", "short"])
def test_editeur_sample_reads_into_one_work(style: str) -> None:
    works = read_onix_works(_sample(f"editeur-sample-onix3-{style}.xml"))

    assert len(works) == 1
    work = works[0]
    assert work.title == "Roseanna"
    assert work.imprint is not None and work.imprint.name == "HarperPerennial"
    assert work.publisher_name == "HarperCollins Publishers"
    assert [(i.id_type, i.value) for i in work.identifiers] == [("11", "A0220090000154FA")]
    names = [(c.contributor.name, c.role, c.sequence_number) for c in work.contributions]
    assert names == [
        ("Maj Sjöwall", "A01", 1),
        ("Per Wahlöö", "A01", 2),
        ("Lois Roth", "B06", 3),
        ("Henning Mankell", "A24", 4),
    ]
    bio = work.contributions[0].contributor.biographical_note or ""
    assert bio.startswith("<p><strong>Maj Sjöwall</strong>") and "xmlns" not in bio
    assert work.contributions[0].contributor.identifiers[1].value == "0000000121479135"
    subjects = {(s.scheme, s.code, s.main) for s in work.subjects}
    assert (SubjectScheme.BISAC, "FIC022000", True) in subjects
    assert (SubjectScheme.THEMA, "FFP", True) in subjects
    assert (SubjectScheme.THEMA, "1DNS", False) in subjects
    assert "police procedural" in work.keywords
    assert {t.variant for t in work.marketing_texts} >= {"SHORT_DESCRIPTION", "DESCRIPTION"}
    assert work.supporting_resources[0].variant == "FRONT_COVER"
    assert (
        work.supporting_resources[0].url
        == "http://www.harpercollins.co.uk/covers/9780007232833.jpg"
    )

    (product,) = work.products
    assert product.work_id == work.id
    assert product.isbn13 == "9780007232833"
    assert product.record_reference == "com.globalbookinfo.onix.01734529"
    assert product.typename == "PhysicalBookProduct"
    assert (product.product_form, product.onix_product_form) == ("BC", "BC")
    assert product.product_form_details == ("B105",)
    assert product.publishing_status == "04"
    assert product.publication_date == date(2006, 8, 7)
    assert product.language == "eng"
    assert product.page_count == 245
    assert product.height_mm == Decimal(197)
    assert [(e.extent_type, e.value) for e in product.extents] == [("00", "245"), ("04", "16")]
    assert "GB" in product.for_sale_countries
    assert [(r.rights_type, len(r.territory.countries_included)) for r in product.sales_rights] == [
        ("01", 77),
        ("06", 8),
    ]
    assert product.related_products[0].isbn13 == "9780007324378"
    assert product.availability == "21"
    prices = [
        (p.price_type, p.amount, p.currency, p.territories, p.regions) for p in product.prices
    ]
    assert prices[0] == ("02", Decimal("7.99"), "GBP", ("GB",), ())
    assert prices[1][:3] == ("01", Decimal("8.99"), "EUR")
    assert prices[2][3:] == ((), ("WORLD",))
    assert product.prices[0].tax_rate_code == "Z"


def test_reference_and_short_read_identically() -> None:
    reference = read_onix_works(_sample("editeur-sample-onix3-reference.xml"))
    short = read_onix_works(_sample("editeur-sample-onix3-short.xml"))
    assert reference == short


def test_products_without_work_identifier_become_one_work_each() -> None:
    works = read_onix_works(_sample("google-valid-onix3.xml"))
    assert [w.id for w in works] == [1]
    product = works[0].products[0]
    assert product.onix_product_form == "ED"
    assert product.product_form == "DG"  # Consonance's ONIX 2.1 code for an ebook
    assert product.typename == "ElectronicBookProduct"
    assert [(p.amount, p.currency) for p in product.prices] == [(Decimal("9.99"), "USD")]


def test_products_sharing_a_work_identifier_are_grouped_with_stable_ids() -> None:
    source = (_sample("editeur-sample-onix3-reference.xml")).read_bytes()
    # Two copies of the product under new references and ISBNs, same work identifier.
    head, rest = source.split(b"<Product>", 1)
    body, tail = rest.rsplit(b"</Product>", 1)
    second = body.replace(b"01734529", b"01734530").replace(b"9780007232833", b"9780007232840")
    doubled = head + b"<Product>" + body + b"</Product><Product>" + second + b"</Product>" + tail

    works = read_onix_works(io.BytesIO(doubled))
    again = read_onix_works(io.BytesIO(doubled))

    assert works == again
    assert len(works) == 1
    assert [p.id for p in works[0].products] == [1, 2]
    assert [p.isbn13 for p in works[0].products] == ["9780007232833", "9780007232840"]
    assert all(c.product_ids == () for c in works[0].contributions)


def test_notification_types_are_kept_per_record() -> None:
    records = list(iter_onix_records(_sample("delta-delete_test.xml")))
    assert [r.notification_type for r in records] == ["05"]


def test_broken_xml_raises_validation_failed() -> None:
    with pytest.raises(ValidationFailed, match="not well-formed"):
        read_onix_works(io.BytesIO(b"<ONIXMessage release='3.0'><Product>"))
