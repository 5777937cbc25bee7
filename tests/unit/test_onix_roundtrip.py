"""Round trips: ONIX or a generated catalogue -> write -> validate -> read back, nothing lost."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from consonance_sftp.formats.onix import (
    MessageHeader,
    OnixVersion,
    OnixWriter,
    RecipientRules,
    TagStyle,
    read_onix_works,
    validate_file,
    write_feed,
)
from consonance_sftp.formats.onix.synthetic import synthetic_works
from consonance_sftp.formats.onix.tags import schema_path
from consonance_sftp.models import Product, Work
from tests.samples import ONIX_SAMPLES

SAMPLES = ONIX_SAMPLES
HEADER = MessageHeader(
    sender_name="Snowbooks", sent_at=datetime(2026, 3, 1, 9, 30, tzinfo=UTC), email="x@y.z"
)


def _sample(name: str) -> Path:
    path = SAMPLES / name
    if not path.exists():
        pytest.fail(f"missing sample (tests/data) {path}")
    return path


def _essentials(works: list[Work]) -> dict[str, tuple[object, ...]]:
    """What must survive a round trip, per ISBN."""
    out: dict[str, tuple[object, ...]] = {}
    for work in works:
        for product in work.products:
            assert product.isbn13 is not None
            out[product.isbn13] = (
                product.title,
                product.subtitle,
                tuple(
                    (c.contributor.name, c.role, c.sequence_number, c.contributor.biographical_note)
                    for c in sorted(work.contributions, key=lambda c: c.sequence_number)
                    if not c.product_ids or product.id in c.product_ids
                ),
                tuple(sorted((s.scheme.value, s.code, s.main) for s in work.subjects)),
                tuple(sorted(work.keywords)),
                product.publication_date,
                product.publishing_status,
                tuple(
                    (p.price_type, p.amount, p.currency, p.territories, p.regions)
                    for p in product.prices
                ),
                _form(product),
                product.page_count,
                work.imprint.name if work.imprint else None,
            )
    return out


def _form(product: Product) -> str | None:
    return product.product_form


def _write(works: list[Work], version: OnixVersion, style: TagStyle) -> bytes:
    sink = io.BytesIO()
    with OnixWriter(sink, HEADER, version=version, style=style) as writer:
        for work in works:
            for product in work.products:
                writer.write(work, product)
    return sink.getvalue()


@pytest.mark.parametrize(
    ("version", "style"),
    [
        (OnixVersion.V30, TagStyle.REFERENCE),
        (OnixVersion.V30, TagStyle.SHORT),
        (OnixVersion.V31, TagStyle.REFERENCE),
    ],
)
def test_editeur_sample_round_trip(version: OnixVersion, style: TagStyle) -> None:
    source = read_onix_works(_sample("editeur-sample-onix3-reference.xml"))

    data = _write(source, version, style)
    report = validate_file(io.BytesIO(data))
    back = read_onix_works(io.BytesIO(data))

    assert report.ok, [str(p) for p in report.problems]
    assert (report.version, report.style) == (version.value, style.value)
    assert _essentials(back) == _essentials(source)
    # The product record survives whole, down to extents, sales rights and tax.
    assert back[0].products == source[0].products
    assert back[0].marketing_texts == source[0].marketing_texts


def test_written_message_is_valid_for_the_unmodified_bundled_xsd() -> None:
    """Cross-check the streaming validator with a plain whole-document lxml validation."""
    works = list(synthetic_works(30))
    for version in (OnixVersion.V30, OnixVersion.V31):
        data = _write(works, version, TagStyle.REFERENCE)
        schema = etree.XMLSchema(etree.parse(str(schema_path(version, TagStyle.REFERENCE))))
        assert schema.validate(etree.parse(io.BytesIO(data))), schema.error_log


def test_generated_catalogue_round_trip_through_feed_and_second_process() -> None:
    works = list(synthetic_works(120, seed=11))
    sink = io.BytesIO()

    result = write_feed(works, sink, rules=RecipientRules(), header=HEADER, kind="full")

    assert result.report.ok, [str(p) for p in result.report.problems]
    assert result.report.products == 120
    assert result.should_send
    back = read_onix_works(io.BytesIO(sink.getvalue()))
    assert len(back) == len(works)  # grouped into the same works again
    assert _essentials(back) == _essentials(works)


def test_onix_21_output_validates_against_the_21_schema() -> None:
    works = list(synthetic_works(25))
    for style in TagStyle:
        sink = io.BytesIO()
        result = write_feed(
            works,
            sink,
            rules=RecipientRules(onix_version=OnixVersion.V21, tag_style=style),
            header=HEADER,
            kind="full",
            validate="inline",
        )
        assert result.report.ok, [str(p) for p in result.report.problems]
        assert result.report.version == "2.1"
        root = etree.fromstring(sink.getvalue())
        assert root.get("release") == "2.1"
        # Consonance's own 2.1 product forms go out unchanged in 2.1.
        forms = {e.text for e in root.iter("{*}ProductForm", "{*}b012")}
        assert forms <= {"BC", "BB", "DG"} and "DG" in forms


def test_ebook_form_is_mapped_from_onix21_to_30_in_one_place() -> None:
    work = next(w for w in synthetic_works(40) if any(p.product_form == "DG" for p in w.products))
    data = _write([work], OnixVersion.V30, TagStyle.REFERENCE)
    root = etree.fromstring(data)
    ns = {"o": "http://ns.editeur.org/onix/3.0/reference"}
    ebook = next(
        p
        for p in root.iterfind("o:Product", ns)
        if p.findtext(".//o:ProductForm", namespaces=ns) == "ED"
    )
    assert ebook.findtext(".//o:ProductFormDetail", namespaces=ns) == "E101"


def test_reading_onix_21_is_refused_clearly() -> None:
    from consonance_sftp.errors import ValidationFailed

    sink = io.BytesIO()
    write_feed(
        list(synthetic_works(2)),
        sink,
        rules=RecipientRules(onix_version=OnixVersion.V21),
        header=HEADER,
        validate="none",
    )
    with pytest.raises(ValidationFailed, match=r"ONIX 2\.1"):
        read_onix_works(io.BytesIO(sink.getvalue()))
