"""ONIX 3.x products are written as text, tag by tag, not built as lxml trees: the bytes must be
exactly what lxml writes for the same content (escaping, empty elements, markup, short tags)."""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from lxml import etree

from consonance_sftp.formats.onix import MessageHeader, OnixVersion, OnixWriter, TagStyle
from consonance_sftp.formats.onix.synthetic import synthetic_works
from consonance_sftp.models import Contact, Contribution, PublishingDate, Work

HEADER = MessageHeader(sender_name="Text Books", sent_at=datetime(2026, 3, 1, tzinfo=UTC))
TRICKY = "Café & <Co> \"quoted\" 'single' ]]> a\rb\nc\td \u2028 «»"


def _tricky_work() -> Work:
    work = next(iter(synthetic_works(3, seed=11)))
    org = Contribution(
        id=900,
        contributor=Contact(
            id=900, name=TRICKY, is_organisation=True, biographical_note="Bio\r\n&amp; <i>it</i>"
        ),
        role="B01",
        sequence_number=3,
    )
    product = work.products[0]
    product = dataclasses.replace(
        product,
        title=TRICKY,
        subtitle="",
        publishing_dates=(PublishingDate(role="02", value="2027", dateformat="05"),),
        prices=tuple(
            dataclasses.replace(
                p,
                effective_from=date(2026, 1, 1),
                tax_rate_percent=Decimal("20"),
                tax_rate_code="S",
            )
            for p in product.prices
        ),
    )
    return dataclasses.replace(
        work,
        contributions=(*work.contributions, org),
        marketing_texts=(
            *work.marketing_texts,
            dataclasses.replace(work.marketing_texts[0], text="<p>not <b>XHTML</p> & so escaped"),
        ),
        products=(product,),
    )


@pytest.mark.parametrize("style", [TagStyle.REFERENCE, TagStyle.SHORT])
@pytest.mark.parametrize("version", [OnixVersion.V30, OnixVersion.V31])
def test_each_product_is_byte_for_byte_what_lxml_writes(
    version: OnixVersion, style: TagStyle
) -> None:
    works = [*synthetic_works(40, seed=5), _tricky_work()]
    with OnixWriter(io.BytesIO(), HEADER, version=version, style=style) as writer:
        for work in works:
            for product in work.products:
                data = writer.product_bytes(work, product, "03")
                # lxml reads the text and writes it again: the same bytes, or the text path
                # escaped or shaped something differently from lxml
                assert etree.tostring(etree.fromstring(data), encoding="utf-8") == data
                assert writer.product_bytes(work, product, "03") == data  # reused codes


def test_tricky_text_reads_back_as_written() -> None:
    work = _tricky_work()
    with OnixWriter(io.BytesIO(), HEADER) as writer:
        element = writer.product_element(work, work.products[0], "03")
    assert element.findtext("DescriptiveDetail/TitleDetail/TitleElement/TitleText") == TRICKY
    assert element.find("DescriptiveDetail/TitleDetail/TitleElement/Subtitle") is None
    org = element.findall("DescriptiveDetail/Contributor")[-1]
    assert org.findtext("CorporateName") == TRICKY
    bio = org.find("BiographicalNote")
    assert bio is not None and bio.get("textformat") == "05" and bio.find("i") is not None
    texts = [t for t in element.iter("Text") if t.get("textformat") == "02"]
    assert [t.text for t in texts] == ["<p>not <b>XHTML</p> & so escaped"]
    dates = element.findall("PublishingDetail/PublishingDate/Date")
    assert ("2027", "05") in [(d.text, d.get("dateformat")) for d in dates]
    assert element.find("ProductSupply/SupplyDetail/Price/PriceDate/Date") is not None


def test_control_characters_inside_markup_are_removed_before_it_is_read() -> None:
    work = next(iter(synthetic_works(1, seed=2)))
    work = dataclasses.replace(
        work,
        marketing_texts=(
            dataclasses.replace(
                work.marketing_texts[0], text="<p>a\x01b <em>c\x0bd</em></p>", text_format="05"
            ),
        ),
    )
    with OnixWriter(io.BytesIO(), HEADER) as writer:
        data = writer.product_bytes(work, work.products[0], "03")
    assert b'<Text textformat="05"><p>ab <em>cd</em></p></Text>' in data
    assert b"\x01" not in data and b"\x0b" not in data


def test_the_byte_check_for_characters_xml_cannot_carry_agrees_with_the_text_check() -> None:
    """``_not_xml_bytes`` (on the encoded product) finds exactly what ``_NOT_XML`` finds in
    the text: every string of up to 4 characters from a set with each kind of neighbour."""
    import itertools

    from consonance_sftp.formats.onix.writer import _NOT_XML, _not_xml_bytes

    alphabet = ["\x00", "\x08", "\t", "\n", "\x0b", "\r", "\x1f", " ", "a", "\x7f", "é"]
    alphabet += ["\ufffd", "\ufffe", "\uffff", "\uefbf", "\u0fbf", "\U0001f600", "\U0010ffff"]
    checked = found = 0
    for size in range(5):
        for chars in itertools.product(alphabet, repeat=size):
            text = "".join(chars)
            expected = _NOT_XML.search(text) is not None
            assert _not_xml_bytes(text.encode()) == expected, repr(text)
            checked += 1
            found += expected
    assert checked > 100_000 and 0 < found < checked


class _CountingSink(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes, /) -> int:  # type: ignore[override]
        self.writes += 1
        return super().write(data)


def _message_through(chunk: int, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, int, int]:
    from consonance_sftp.formats.onix import writer as writer_module

    monkeypatch.setattr(writer_module._Tee, "CHUNK", chunk)
    sink = _CountingSink()
    with OnixWriter(sink, HEADER) as writer:
        for work in synthetic_works(120, seed=4):
            for product in work.products:
                writer.write(work, product)
    written = writer.bytes_written
    return sink.getvalue(), written, sink.writes


def test_products_reach_the_sink_in_chunks_and_the_bytes_do_not_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    every, every_count, every_writes = _message_through(1, monkeypatch)  # one write each
    chunked, chunked_count, chunked_writes = _message_through(256 << 10, monkeypatch)
    assert chunked == every and chunked_count == every_count == len(every)
    assert every_writes > 120
    assert chunked_writes <= len(chunked) // (256 << 10) + 3  # chunks, the header, the end
    etree.fromstring(chunked)  # one well-formed message


def test_what_was_written_before_an_error_still_reaches_the_sink() -> None:
    sink = io.BytesIO()
    works = list(synthetic_works(3, seed=4))

    def stopped() -> None:
        with OnixWriter(sink, HEADER) as writer:
            writer.write(works[0], works[0].products[0])
            raise RuntimeError("the feed stopped")

    with pytest.raises(RuntimeError):
        stopped()
    assert b"<RecordReference>" in sink.getvalue()
