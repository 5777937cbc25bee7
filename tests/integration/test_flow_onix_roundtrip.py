"""Round trip through the onix_feed flow: seed the sandbox (the EDItEUR sample, a generated
catalogue), produce a full feed over real HTTP, validate it, read it back, compare with the
source: ISBNs, titles, contributors, subjects, dates and prices, nothing lost."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consonance_sftp.adapters.store import SqlStore, open_store
from consonance_sftp.config import OnixFeedFlow
from consonance_sftp.flows.onix_feed import prepare_onix_feed
from consonance_sftp.formats.onix import read_onix_works, validate_file
from consonance_sftp.models import Work
from consonance_sftp.sandbox.consonance.catalogue import Catalogue
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from consonance_sftp.sandbox.consonance.seed import catalogue_from_onix
from tests.fixtures.consonance_sandbox import SandboxHandle
from tests.samples import EDITEUR_REFERENCE

SAMPLE = EDITEUR_REFERENCE
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
FLOW = OnixFeedFlow.model_validate(
    {"kind": "onix_feed", "partners": ["dist"], "recipient": {"mode": "full"}}
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield s
    s.close()


def _facts(works: list[Work]) -> dict[str, dict[str, Any]]:
    """Per ISBN, what must survive the round trip."""
    out: dict[str, dict[str, Any]] = {}
    for work in works:
        for p in work.products:
            if p.isbn13 is None or p.publishing_status in {"01", "11"}:
                continue  # cancelled and withdrawn titles go out as deletions only
            out[p.isbn13] = {
                "title": p.title or work.title,
                "contributors": sorted(
                    (c.contributor.name, c.role)
                    for c in work.contributions
                    if not c.product_ids or p.id in c.product_ids
                ),
                "subjects": {(s.scheme, s.code) for s in work.subjects},
                "published": p.publication_date,
                "prices": {(x.currency, x.price_type, x.amount) for x in p.prices},
            }
    return out


async def _round_trip(
    catalogue: Catalogue,
    factory: Callable[..., SandboxHandle],
    store: SqlStore,
    tmp_path: Path,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    source = _facts(list(catalogue.works.values()))
    sandbox = factory(catalogue)
    async with sandbox.client() as api:
        packages, report = await prepare_onix_feed(
            api, store, "feed", FLOW, now=NOW, staging=tmp_path / "staging", validate="inline"
        )
    assert report.ok, report.lines()
    [pkg] = packages
    path = pkg.plan.files[0].source
    assert path is not None
    assert validate_file(path).ok  # valid again, read from disk as sent
    return source, _facts(read_onix_works(path))


async def test_the_editeur_sample_survives_the_feed(
    consonance_sandbox_factory: Callable[..., SandboxHandle], store: SqlStore, tmp_path: Path
):
    original = _facts(read_onix_works(SAMPLE))
    source, back = await _round_trip(
        catalogue_from_onix(SAMPLE), consonance_sandbox_factory, store, tmp_path
    )
    assert source == original  # the seed kept what the file says
    assert back == original
    [facts] = back.values()
    assert facts["contributors"] and facts["subjects"] and facts["prices"]


async def test_a_generated_catalogue_survives_the_feed(
    consonance_sandbox_factory: Callable[..., SandboxHandle], store: SqlStore, tmp_path: Path
):
    source, back = await _round_trip(
        generate_catalogue(120, seed=3), consonance_sandbox_factory, store, tmp_path
    )
    assert len(back) > 100
    for fact in ("contributors", "subjects", "published", "prices"):
        assert sum(bool(f[fact]) for f in source.values()) > 50, fact  # nothing vacuous
    assert back.keys() == source.keys()
    for isbn, facts in source.items():
        assert back[isbn] == facts, isbn
