"""Counts read as English: one product, two products; never "1 products" or "file(s)"."""

from __future__ import annotations

import pytest

from consonance_sftp.formats.wording import counted, plural


@pytest.mark.parametrize(
    ("count", "noun", "expected"),
    [
        (0, "product", "0 products"),
        (1, "product", "1 product"),
        (2, "chain", "2 chains"),
        (1, "chain", "1 chain"),
        (3, "entry", "3 entries"),
        (2, "pass", "2 passes"),
        (1, "file", "1 file"),
    ],
)
def test_counted(count: int, noun: str, expected: str) -> None:
    assert counted(count, noun) == expected


def test_thousands_and_an_explicit_plural() -> None:
    assert counted(20_000, "product", sep=True) == "20,000 products"
    assert plural(2, "person", "people") == "people"
    assert plural(1, "person", "people") == "person"


def test_the_onix_feed_report_reads_one_work_one_product() -> None:
    from consonance_sftp.flows.onix_feed import FeedReport

    line = FeedReport(flow="onix", works_read=1, products_read=1).lines()[0]
    assert line == "flow onix: read 1 work, 1 product in 0.0 s"
