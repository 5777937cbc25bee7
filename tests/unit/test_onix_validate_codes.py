"""The validator's code-list shortcut (``CodeListSchema``) never accepts what the unmodified
EDItEUR XSD refuses, and a message validated with it reports exactly the same problems."""

from __future__ import annotations

import copy
import io
from datetime import UTC, datetime

import pytest
from lxml import etree

from consonance_sftp.formats.onix import (
    MessageHeader,
    OnixVersion,
    RecipientRules,
    TagStyle,
    write_feed,
)
from consonance_sftp.formats.onix.synthetic import synthetic_works
from consonance_sftp.formats.onix.tags import namespace, short_tags
from consonance_sftp.formats.onix.validate import (
    CodeListSchema,
    StreamValidator,
    code_list_schema,
    load_schema,
)

HEADER = MessageHeader(sender_name="Codes Books", sent_at=datetime(2026, 3, 1, tzinfo=UTC))
# What a code may be turned into: wrong, empty, with spaces, lower case, two codes
BAD = ["", " ", "ZZZ", "zz", "01 ", " 01", "GB  US", "GB US ", " GB", "GB\tUS", "gb", "00 01"]


def _message(style: TagStyle, products: int = 12, version: OnixVersion = OnixVersion.V30) -> bytes:
    sink = io.BytesIO()
    rules = RecipientRules(tag_style=style, onix_version=version)
    write_feed(
        synthetic_works(products, seed=9),
        sink,
        rules=rules,
        header=HEADER,
        kind="full",
        validate="none",
    )
    return sink.getvalue()


def _products(style: TagStyle, version: OnixVersion) -> list[etree._Element]:
    root = etree.fromstring(_message(style, version=version))
    tag = "product" if style is TagStyle.SHORT else "Product"
    return root.findall(f"{{{namespace(version, style)}}}{tag}")


@pytest.mark.parametrize("style", [TagStyle.REFERENCE, TagStyle.SHORT])
@pytest.mark.parametrize("version", [OnixVersion.V30, OnixVersion.V31, OnixVersion.V21])
def test_the_shortcut_never_accepts_what_the_xsd_refuses(
    version: OnixVersion, style: TagStyle
) -> None:
    full = load_schema(version, style)
    fast = code_list_schema(version, style)
    products = _products(style, version)
    assert all(fast.valid(p) for p in products)  # the shortcut decides the valid ones
    refused = 0
    for product in products[:2]:
        for index, node in enumerate(product.iter()):
            if node.tag not in fast.checks:
                continue
            for bad in BAD:
                mutated = copy.deepcopy(product)
                target = list(mutated.iter())[index]
                target.text = bad
                if not full.validate(mutated):
                    refused += 1
                    assert not fast.valid(mutated), (target.tag, bad)
            for extra in (etree.ProcessingInstruction("pi", "x"), etree.Comment("c")):
                mutated = copy.deepcopy(product)
                target = list(mutated.iter())[index]
                target.append(extra)
                extra.tail = "99"  # the value libxml2 sees is the code and "99"
                assert not fast.valid(mutated) or full.validate(mutated), target.tag
    assert refused > 100  # the mutations did reach the XSD's code lists


def test_the_shortcut_covers_the_coded_elements_in_both_tag_styles() -> None:
    reference = CodeListSchema(OnixVersion.V30, TagStyle.REFERENCE)
    short = CodeListSchema(OnixVersion.V30, TagStyle.SHORT)
    ns = namespace(OnixVersion.V30, TagStyle.REFERENCE)
    assert len(reference.checks) == len(short.checks) > 30
    codes, is_list = reference.checks[f"{{{ns}}}CountriesIncluded"]
    assert is_list and {"GB", "US", "DE"} <= codes and "WORLD" not in codes
    tag = short_tags(OnixVersion.V30)["CurrencyCode"]
    codes, is_list = short.checks[f"{{{namespace(OnixVersion.V30, TagStyle.SHORT)}}}{tag}"]
    assert not is_list and {"GBP", "EUR"} <= codes


@pytest.mark.parametrize("style", [TagStyle.REFERENCE, TagStyle.SHORT])
def test_an_invalid_product_is_reported_the_same_with_or_without_the_shortcut(
    style: TagStyle,
) -> None:
    data = _message(style, products=30)
    names = short_tags(OnixVersion.V30) if style is TagStyle.SHORT else {}
    product, currency = (names.get(n, n).encode() for n in ("Product", "CurrencyCode"))
    # one product each: a currency that does not exist, in the tenth product
    tenth = [i for i in range(len(data)) if data.startswith(b"<" + product + b">", i)][9]
    at = data.index(b"<" + currency + b">EUR<", tenth)
    data = data[:at] + data[at:].replace(b">EUR<", b">XXX<", 1)
    countries = b"GB IE US CA"
    # a country that does not exist, in the last
    at = data.rindex(countries)
    data = data[:at] + b"GB ZZ" + data[at + len(countries) :]
    # two spaces between codes in the first: the shortcut leaves it to the XSD, which accepts
    # a list so
    at = data.index(countries)
    assert at < tenth
    data = data[:at] + b"GB  IE" + data[at + len(countries) :]

    with_shortcut = StreamValidator(RecipientRules(), code_lists_after=0).validate(io.BytesIO(data))
    without = StreamValidator(RecipientRules(), code_lists_after=10**9).validate(io.BytesIO(data))

    assert not with_shortcut.ok
    assert len(with_shortcut.invalid_products) == 2
    assert any("XXX" in p.reason for p in with_shortcut.problems)
    assert any("ZZ" in p.reason for p in with_shortcut.problems)
    assert with_shortcut.problems == without.problems
    assert with_shortcut.first_problems == without.first_problems


def _with_sequence_number(node: etree._Element, value: str) -> None:
    for child in node:
        if etree.QName(child).localname in ("SequenceNumber", "b034"):
            child.text = value


@pytest.mark.parametrize("style", [TagStyle.REFERENCE, TagStyle.SHORT])
@pytest.mark.parametrize("version", [OnixVersion.V30, OnixVersion.V31])
def test_the_shortcut_never_accepts_a_duplicate_the_xsd_unique_constraints_refuse(
    version: OnixVersion, style: TagStyle
) -> None:
    """The XSD's ``xs:unique`` constraints are taken out of the shortcut's XSD and checked in
    Python: every child a constraint selects, repeated (as is, with its number written
    another way, with a ``language`` attribute twice), is refused whenever the unmodified XSD
    refuses it."""
    full = load_schema(version, style)
    fast = code_list_schema(version, style)
    products = _products(style, version)
    assert all(fast.valid(p) for p in products)
    refused = 0
    for product in products[:3]:
        for index, node in enumerate(product.iter()):
            held = fast.uniques.get(node.tag)
            if held is None:
                continue
            for position, child in enumerate(node):
                if child.tag not in held.by_tag:
                    continue
                for variant in ("same", "number", "language"):
                    mutated = copy.deepcopy(product)
                    owner = list(mutated.iter())[index]
                    original = owner[position]
                    twin = copy.deepcopy(original)
                    if variant == "number":
                        _with_sequence_number(original, "1")
                        _with_sequence_number(twin, "01")
                    elif variant == "language":
                        original.set("language", "eng")
                        twin.set("language", "eng")
                    original.addnext(twin)
                    if not full.validate(mutated):
                        refused += 1
                        assert not fast.valid(mutated), (etree.QName(child).localname, variant)
    assert refused > 20  # the duplicates did reach the XSD's unique constraints


def test_a_repeated_text_in_another_language_is_still_decided_by_the_shortcut() -> None:
    fast = code_list_schema(OnixVersion.V30, TagStyle.REFERENCE)
    full = load_schema(OnixVersion.V30, TagStyle.REFERENCE)
    ns = namespace(OnixVersion.V30, TagStyle.REFERENCE)
    product = _products(TagStyle.REFERENCE, OnixVersion.V30)[0]
    text = product.find(f".//{{{ns}}}TextContent/{{{ns}}}Text")
    assert text is not None
    twin = copy.deepcopy(text)
    text.set("language", "eng")
    twin.set("language", "fre")
    text.addnext(twin)
    assert full.validate(product) and fast.valid(product)
    twin.set("language", "eng")
    assert not full.validate(product) and not fast.valid(product)
    assert "Duplicate key-sequence" in str(full.error_log)


def test_a_duplicate_is_reported_the_same_with_or_without_the_shortcut() -> None:
    data = _message(TagStyle.REFERENCE, products=30)
    # the fifth product's first Measure, twice
    fifth = [i for i in range(len(data)) if data.startswith(b"<Product>", i)][4]
    start = data.index(b"<Measure>", fifth)
    end = data.index(b"</Measure>", start) + len(b"</Measure>")
    data = data[:end] + data[start:end] + data[end:]

    with_shortcut = StreamValidator(RecipientRules(), code_lists_after=0).validate(io.BytesIO(data))
    without = StreamValidator(RecipientRules(), code_lists_after=10**9).validate(io.BytesIO(data))

    assert len(with_shortcut.invalid_products) == 1
    assert any("Duplicate key-sequence" in p.reason for p in with_shortcut.problems)
    assert with_shortcut.problems == without.problems
