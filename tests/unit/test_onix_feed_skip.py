"""The feed policy ``skip`` on a delta (issue 18): what the recipient's state keeps of a
skipped product, and that every invalid product is found however many there are."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consonance_sftp.formats.onix import (
    FeedResult,
    MessageHeader,
    RecipientRules,
    iter_onix_records,
    remove_skipped,
    validate_file,
    write_feed,
)
from consonance_sftp.formats.onix.synthetic import synthetic_works
from consonance_sftp.formats.onix.tags import TagStyle
from consonance_sftp.formats.onix.validate import StreamValidator
from consonance_sftp.models import Work

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def _write(
    works: list[Work], path: Path, previous: dict[str, str] | None, kind: str = "delta"
) -> FeedResult:
    rules = RecipientRules(on_invalid_product="skip")
    with path.open("wb") as sink:
        result = write_feed(
            works,
            sink,
            rules=rules,
            header=MessageHeader(sender_name="Test", sent_at=NOW),
            previous=previous,
            kind=kind,  # type: ignore[arg-type]
            validate="inline",
        )
    remove_skipped(path, result)
    return result


def _broken(works: list[Work], count: int) -> tuple[list[Work], list[str]]:
    """The first ``count`` works' first products with a status that says nothing about
    availability (the writer refuses them) or a bad ISBN check digit."""
    broken: list[str] = []
    out = list(works)
    for i in range(count):
        first = out[i].products[0]
        assert first.isbn13 is not None
        bad = dataclasses.replace(first, publishing_status="09")
        out[i] = dataclasses.replace(out[i], products=(bad, *out[i].products[1:]))
        broken.append(first.isbn13)
    return out, broken


def test_a_sent_product_that_turns_invalid_is_skipped_not_deleted(tmp_path: Path) -> None:
    works = list(synthetic_works(40, seed=3))
    first = _write(works, tmp_path / "1.xml", None, kind="full")
    assert first.skipped == [] and first.state is not None

    changed, [isbn] = _broken(works, 1)
    second = _write(changed, tmp_path / "2.xml", first.state)

    assert [p.isbn13 for p in second.skipped] == [isbn]
    assert second.state is not None
    ref = next(r for r in first.state if isbn in r)
    assert second.state[ref] == first.state[ref]  # the recipient still holds what it had
    assert second.deleted == []  # never a 05 for a product that is only invalid
    records = list(iter_onix_records(tmp_path / "2.xml"))
    assert all(r.product.isbn13 != isbn for r in records)
    assert validate_file(tmp_path / "2.xml").ok


def test_every_invalid_product_is_found_beyond_the_listed_problems(tmp_path: Path) -> None:
    works = list(synthetic_works(60, seed=5))
    path = tmp_path / "m.xml"
    with path.open("wb") as sink:
        write_feed(
            works,
            sink,
            rules=RecipientRules(),
            header=MessageHeader(sender_name="Test", sent_at=NOW),
            kind="full",
            validate="none",
        )
    # Checked for a recipient that takes no form these products have: every one is invalid.
    strict = RecipientRules(product_forms=frozenset({"ZZ"}))
    report = StreamValidator(strict, max_problems=3).validate(path)

    assert report.truncated and len(report.problems) == 3
    # skip needs each invalid product, not only the listed problems: one entry per product
    references = [p.record_reference for p in report.first_problems]
    assert len(references) == report.products > 3
    assert len(set(references)) == len(references)
    assert not report.message_invalid


def _untitled(works: list[Work]) -> list[Work]:
    """Every product without any title: each fails the XSD (no ``TitleText``) once written."""
    return [
        dataclasses.replace(
            w, title="", products=tuple(dataclasses.replace(p, title="") for p in w.products)
        )
        for w in works
    ]


@pytest.mark.parametrize("style", ["reference", "short"])
def test_a_delta_whose_every_product_is_skipped_goes_as_an_empty_message_only_if_wanted(
    tmp_path: Path, style: str
) -> None:
    works = list(synthetic_works(6, seed=2))
    first = _write(works, tmp_path / "1.xml", None, kind="full")
    assert first.state is not None and first.skipped == []
    broken = _untitled(works)

    for send_empty, kind, sent in (
        (True, "delta", True),  # the recipient expects a message every run: an empty one
        (False, "delta", False),
        (True, "full", False),  # an empty full feed may read as "the catalogue is empty"
    ):
        path = tmp_path / f"{send_empty}-{kind}-{style}.xml"
        rules = RecipientRules(
            on_invalid_product="skip", send_empty=send_empty, tag_style=TagStyle(style)
        )
        with path.open("wb") as sink:
            result = write_feed(
                broken,
                sink,
                rules=rules,
                header=MessageHeader(sender_name="Test", sent_at=NOW),
                previous=first.state,
                kind=kind,  # type: ignore[arg-type]
                validate="inline",
            )
        remove_skipped(path, result)
        assert result.all_skipped and len(result.skipped) == sum(len(w.products) for w in works)
        assert result.should_send is sent, (send_empty, kind)
        # Whatever is decided, what is left on disk is a valid message saying it is empty,
        # and the recipient's baseline is what it held.
        assert validate_file(path).ok, [str(p) for p in validate_file(path).problems]
        body = path.read_bytes()
        assert body.count(b"<NoProduct/>" if style == "reference" else b"<x507/>") == 1
        assert list(iter_onix_records(path)) == []
        assert result.bytes == len(body)
        assert result.state == first.state
