"""Recipient rules, validation reports, delta feeds and compression for ONIX feeds."""

from __future__ import annotations

import dataclasses
import gzip
import io
import zipfile
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from consonance_sftp.errors import ValidationFailed
from consonance_sftp.formats.onix import (
    Compression,
    MessageHeader,
    RecipientRules,
    compress,
    compute_delta,
    iter_onix_records,
    record_reference,
    validate_file,
    write_feed,
)
from consonance_sftp.formats.onix.synthetic import synthetic_works
from consonance_sftp.models import Imprint, Work
from tests.samples import ONIX_SAMPLES

SAMPLES = ONIX_SAMPLES
HEADER = MessageHeader(sender_name="Snowbooks", sent_at=datetime(2026, 3, 1, 9, 30, tzinfo=UTC))


def _sample(name: str) -> Path:
    path = SAMPLES / name
    if not path.exists():
        pytest.fail(f"missing sample (tests/data) {path}")
    return path


def _catalogue(n: int = 60) -> list[Work]:
    """Synthetic works, some forthcoming (so 01/02 notifications occur), some ebooks."""
    works = list(synthetic_works(n, seed=3))
    future = date(2027, 6, 1)
    works[0] = dataclasses.replace(
        works[0],
        products=tuple(
            dataclasses.replace(p, publication_date=future, publishing_status="02")
            for p in works[0].products
        ),
    )
    return works


def _records(data: bytes) -> list[tuple[str, str]]:
    return [
        (r.product.record_reference or "", r.notification_type)
        for r in iter_onix_records(io.BytesIO(data))
    ]


# --- recipient rules -------------------------------------------------------------------------


def test_google_recipient_never_receives_notification_04() -> None:
    works = _catalogue()
    rules = RecipientRules.google_play_books()
    sink = io.BytesIO()

    first = write_feed(works, sink, rules=rules, header=HEADER, validate="inline")
    assert first.report.ok, [str(p) for p in first.report.problems]
    # A price change and a withdrawal: the cases where a block update (04) could be tempting.
    changed = [
        dataclasses.replace(
            w,
            products=tuple(
                dataclasses.replace(p, prices=p.prices[:1], publishing_status="11")
                if i == 1
                else dataclasses.replace(p, prices=p.prices[1:])
                for i, p in enumerate(w.products)
            ),
        )
        for w in works
    ]
    sink2 = io.BytesIO()
    second = write_feed(
        changed, sink2, rules=rules, header=HEADER, previous=first.state, validate="inline"
    )

    sent = _records(sink.getvalue()) + _records(sink2.getvalue())
    types = {kind for _, kind in sent}
    assert sent and "04" not in types
    assert types <= {"01", "02", "03", "05"}
    assert "05" in types  # the withdrawals went out as deletions
    assert second.report.ok


def test_google_rules_flag_the_google_sample_notification_04_and_missing_market() -> None:
    schema_only = validate_file(_sample("google-valid-onix3.xml"))
    with_rules = validate_file(
        _sample("google-valid-onix3.xml"), RecipientRules.google_play_books()
    )

    assert schema_only.ok
    assert [(p.element, p.check) for p in with_rules.problems] == [
        ("NotificationType", "rules"),
        ("ProductSupply/Market", "rules"),
        # ...and the same two from onixcheck's Google profile, checked on each product
        ("NotificationType", "rules"),
        ("ProductSupply", "rules"),
    ]
    assert "onixcheck google profile" in str(with_rules.problems[2])
    assert all(p.record_reference == "myid.9789999999991" for p in with_rules.problems)


def test_google_invalid_sample_reports_every_schema_error_with_its_place() -> None:
    report = validate_file(_sample("google-invalid-onix3.xml"), RecipientRules.google_play_books())

    schema = [p for p in report.problems if p.check == "schema"]
    assert [p.element for p in schema] == [
        "EmailAddress",
        "Sender",
        "CountriesIncluded",
        "CurrencyCode",
    ]
    assert [p.record_reference for p in schema[:2]] == [None, None]  # header problems
    assert schema[3].record_reference == "myid.9789999999991"
    assert "USDD" in schema[3].reason


def test_filtered_recipient_never_receives_a_product_outside_its_filter() -> None:
    works = _catalogue(150)
    rules = RecipientRules(
        imprints=frozenset({"Lantern"}),
        product_forms=frozenset({"BB", "DG"}),
        markets=frozenset({"GB"}),
        currencies=frozenset({"GBP"}),
    )
    expected = {
        record_reference(p)
        for w in works
        for p in w.products
        if w.imprint is not None
        and w.imprint.name == "Lantern"
        and p.product_form in {"BB", "DG"}
        and (p.for_sale_worldwide or "GB" in p.for_sale_countries)
    }
    sink = io.BytesIO()

    result = write_feed(works, sink, rules=rules, header=HEADER, kind="full", validate="inline")

    assert result.report.ok, [str(p) for p in result.report.problems]
    records = list(iter_onix_records(io.BytesIO(sink.getvalue())))
    assert {r.product.record_reference for r in records} == expected
    assert expected and result.filtered_out == sum(len(w.products) for w in works) - len(expected)
    for record in records:
        assert record.imprint_name == "Lantern"
        assert record.product.product_form in {"BB", "DG"}
        assert {p.currency for p in record.product.prices} == {"GBP"}  # prices trimmed


def test_rules_checked_on_output_catch_a_product_outside_the_filter() -> None:
    works = _catalogue(20)
    sink = io.BytesIO()
    write_feed(works, sink, rules=RecipientRules(), header=HEADER, kind="full", validate="none")

    report = validate_file(
        io.BytesIO(sink.getvalue()), RecipientRules(product_forms=frozenset({"BB"}))
    )

    assert not report.ok
    assert {p.element for p in report.problems} == {"DescriptiveDetail/ProductForm"}


def test_rules_embed_as_json_and_render_file_names() -> None:
    rules = RecipientRules.google_play_books(
        compression=Compression.ZIP, file_name="{sender}_{sent:%Y%m%d}_{kind}.xml"
    )
    again = RecipientRules.model_validate_json(rules.model_dump_json())

    assert again == rules
    name = again.render_file_name(
        sender="Snow Books/Ltd", recipient="google", sent=HEADER.sent_at, kind="delta"
    )
    assert name == "Snow_Books_Ltd_20260301_delta.xml.zip"
    with pytest.raises(ValueError, match="extra"):
        RecipientRules.model_validate({"unknown": 1})


# --- validation blocks the file -------------------------------------------------------------


def test_invalid_product_blocks_the_file_with_a_report_naming_it() -> None:
    works = _catalogue(200)  # more than one validation batch: errors still find their product
    broken_work = dataclasses.replace(
        works[70],
        title="",
        products=tuple(
            dataclasses.replace(p, title="", subtitle=None) for p in works[70].products[:1]
        ),
    )
    works[70] = broken_work
    broken = broken_work.products[0]
    sink = io.BytesIO()

    result = write_feed(works, sink, rules=RecipientRules(), header=HEADER, kind="full")

    assert not result.should_send
    assert result.report.invalid_products == [record_reference(broken)]
    problem = result.report.problems[0]
    assert problem.element == "TitleElement"
    assert "Missing child element" in problem.reason
    with pytest.raises(ValidationFailed) as caught:
        result.report.raise_if_invalid("feed for recipient 'gardners'")
    assert broken.isbn13 is not None and broken.isbn13 in str(caught.value)
    assert "gardners" in str(caught.value) and "TitleElement" in str(caught.value)


def test_control_characters_in_catalogue_text_do_not_break_the_message() -> None:
    works = _catalogue(6)
    work = works[1]
    works[1] = dataclasses.replace(
        work,
        marketing_texts=tuple(
            dataclasses.replace(t, text=t.text.replace(" ", "\x01 ", 1))
            for t in work.marketing_texts
        ),
        products=tuple(dataclasses.replace(p, title="Bad\x0bTitle") for p in work.products),
    )
    sink = io.BytesIO()

    result = write_feed(
        works, sink, rules=RecipientRules(), header=HEADER, kind="full", validate="inline"
    )

    assert result.report.ok and result.report.products == sum(len(w.products) for w in works)
    titles = {r.product.title for r in iter_onix_records(io.BytesIO(sink.getvalue()))}
    assert "BadTitle" in titles


def test_the_envelope_is_checked_too() -> None:
    ns = b'xmlns="http://ns.editeur.org/onix/3.0/reference"'
    header = (
        b"<Header><Sender><SenderName>x</SenderName></Sender>"
        b"<SentDateTime>20260101</SentDateTime></Header>"
    )
    empty = validate_file(
        io.BytesIO(b"<ONIXMessage " + ns + b' release="3.0">' + header + b"</ONIXMessage>")
    )
    no_release = validate_file(
        io.BytesIO(b"<ONIXMessage " + ns + b">" + header + b"<NoProduct/></ONIXMessage>")
    )
    said_so = validate_file(
        io.BytesIO(
            b"<ONIXMessage " + ns + b' release="3.0">' + header + b"<NoProduct/></ONIXMessage>"
        )
    )

    assert [(p.element, p.record_reference) for p in empty.problems] == [("ONIXMessage", None)]
    assert "Missing child" in empty.problems[0].reason
    assert any("release" in p.reason for p in no_release.problems)
    assert said_so.ok and str(empty.problems[0]).startswith("message: ONIXMessage")


def test_broken_xml_is_a_report_not_a_crash() -> None:
    report = validate_file(io.BytesIO(b"<ONIXMessage release='3.0'><Header>"))
    assert not report.ok and report.problems[0].check == "xml"


# --- delta ---------------------------------------------------------------------------------


def test_compute_delta_picks_new_changed_and_gone() -> None:
    plan = compute_delta({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "9", "d": "4"})
    assert (plan.send, plan.delete, plan.unchanged) == (("b", "d"), ("c",), ("a",))
    assert compute_delta({"a": "1"}, {"a": "1"}).empty
    assert compute_delta({"a": "1"}, {"a": "1"}, full=True).send == ("a",)
    assert compute_delta({"a": "1"}, {}, send_deletions=False).empty


def test_delta_holds_exactly_the_changed_products_then_nothing() -> None:
    works = _catalogue(80)
    rules = RecipientRules()
    full = write_feed(works, io.BytesIO(), rules=rules, header=HEADER, kind="full", validate="none")
    assert full.state is not None and len(full.state) == 80

    # Change one price and one title (in different works).
    price_work, title_work = works[3], works[10]
    p0 = price_work.products[0]
    new_price = dataclasses.replace(p0.prices[0], amount=p0.prices[0].amount + Decimal("1.00"))
    works[3] = dataclasses.replace(
        price_work,
        products=(
            dataclasses.replace(p0, prices=(new_price, *p0.prices[1:])),
            *price_work.products[1:],
        ),
    )
    t0 = title_work.products[0]
    works[10] = dataclasses.replace(
        title_work,
        products=(dataclasses.replace(t0, title="A New Title"), *title_work.products[1:]),
    )
    later = dataclasses.replace(HEADER, sent_at=datetime(2026, 3, 2, tzinfo=UTC))
    sink = io.BytesIO()

    delta = write_feed(works, sink, rules=rules, header=later, previous=full.state)

    assert delta.report.ok
    assert set(delta.sent) == {record_reference(p0), record_reference(t0)}
    assert {ref for ref, _ in _records(sink.getvalue())} == set(delta.sent)
    assert (delta.changed, delta.new, delta.unchanged) == (2, 0, 78)
    assert delta.should_send

    empty_sink = io.BytesIO()
    after = write_feed(
        works, empty_sink, rules=rules, header=later, previous=delta.state, validate="inline"
    )
    assert after.empty and not after.should_send
    assert after.report.ok  # an empty message is still a valid one (NoProduct)
    assert _records(empty_sink.getvalue()) == []
    wants_empty = RecipientRules(send_empty=True)
    assert write_feed(
        works, io.BytesIO(), rules=wants_empty, header=later, previous=delta.state, validate="none"
    ).should_send


def test_deleted_and_filtered_out_products_go_as_05_when_wanted() -> None:
    works = _catalogue(40)
    rules = RecipientRules()
    full = write_feed(works, io.BytesIO(), rules=rules, header=HEADER, kind="full", validate="none")
    assert full.state is not None
    removed = works.pop(2)
    moved = works[4]
    works[4] = dataclasses.replace(moved, imprint=Imprint(id=99, name="Elsewhere"))
    narrowed = RecipientRules(imprints=frozenset({"Snowbooks", "Harbour Press", "Lantern"}))
    sink = io.BytesIO()

    delta = write_feed(
        works, sink, rules=narrowed, header=HEADER, previous=full.state, validate="inline"
    )

    gone = {record_reference(p) for p in (*removed.products, *moved.products)}
    assert set(delta.deleted) == gone
    assert {ref for ref, kind in _records(sink.getvalue()) if kind == "05"} == gone
    assert delta.report.ok
    assert delta.state is not None and not gone & set(delta.state)
    quiet = RecipientRules(send_deletions=False)
    assert not write_feed(
        works, io.BytesIO(), rules=quiet, header=HEADER, previous=full.state, validate="none"
    ).deleted


def test_test_feed_is_a_sample_and_leaves_no_state() -> None:
    rules = RecipientRules(test_sample_size=5)
    result = write_feed(
        _catalogue(30), io.BytesIO(), rules=rules, header=HEADER, kind="test", validate="none"
    )
    assert len(result.sent) == 5 and result.state is None


def test_forced_full_resend_sends_everything_again() -> None:
    works = _catalogue(20)
    rules = RecipientRules()
    first = write_feed(
        works, io.BytesIO(), rules=rules, header=HEADER, kind="full", validate="none"
    )
    again = write_feed(
        works,
        io.BytesIO(),
        rules=rules,
        header=HEADER,
        previous=first.state,
        kind="full",
        validate="none",
    )
    assert len(again.sent) == 20 and again.state == first.state


def test_hash_ignores_header_and_sent_time_but_not_the_flavour() -> None:
    works = _catalogue(10)
    rules = RecipientRules()
    a = write_feed(works, io.BytesIO(), rules=rules, header=HEADER, kind="full", validate="none")
    other = MessageHeader(
        sender_name=HEADER.sender_name,
        sent_at=datetime(2026, 3, 2, 17, 5, tzinfo=UTC),
        email="a@b.c",
    )
    b = write_feed(works, io.BytesIO(), rules=rules, header=other, kind="full", validate="none")
    short = RecipientRules(tag_style="short")
    c = write_feed(works, io.BytesIO(), rules=short, header=HEADER, kind="full", validate="none")
    assert a.state == b.state
    assert a.state is not None and c.state is not None
    assert set(a.state) == set(c.state) and not set(a.state.values()) & set(c.state.values())


# --- compression -----------------------------------------------------------------------------


def test_gzip_and_zip_hold_the_message() -> None:
    data = b"<ONIXMessage/>" * 1000
    gz = io.BytesIO()
    compress(io.BytesIO(data), gz, Compression.GZIP, "feed.xml")
    assert gzip.decompress(gz.getvalue()) == data
    zipped = io.BytesIO()
    compress(io.BytesIO(data), zipped, Compression.ZIP, "feed.xml")
    with zipfile.ZipFile(io.BytesIO(zipped.getvalue())) as archive:
        assert archive.namelist() == ["feed.xml"]
        assert archive.read("feed.xml") == data
        assert archive.getinfo("feed.xml").compress_type == zipfile.ZIP_DEFLATED
    # Same input, same bytes: compressed files keep stable delivery keys.
    again = io.BytesIO()
    compress(io.BytesIO(data), again, Compression.ZIP, "feed.xml")
    assert again.getvalue() == zipped.getvalue()


def test_short_tag_feed_uses_short_tags_throughout() -> None:
    sink = io.BytesIO()
    rules = RecipientRules(tag_style="short")
    result = write_feed(
        _catalogue(5), sink, rules=rules, header=HEADER, kind="full", validate="inline"
    )
    root = etree.fromstring(sink.getvalue())
    assert result.report.ok
    assert etree.QName(root).localname == "ONIXmessage"
    assert root.find("{*}product/{*}a001") is not None
