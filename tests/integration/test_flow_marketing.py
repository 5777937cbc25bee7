"""Marketing release (flow 5) against the sandbox over HTTP and a real SQLite store: the embargo
holds a title until its date (time moved with a manual clock), every partner gets the same
approved set, renditions are recorded as derivatives of the master, a replaced cover supersedes
the old one, and a withdrawn title gets nothing."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from consonance_sftp.adapters.store import open_store
from consonance_sftp.config import MarketingFlow
from consonance_sftp.flows.marketing import MarketingRelease, release_date
from consonance_sftp.flows.triggers import triggered
from consonance_sftp.formats.packaging import sha256_file
from consonance_sftp.models import AssetKind, ChangeEvent, ChangeKind, SupportingResource, Work
from consonance_sftp.sandbox.consonance.catalogue import Catalogue
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from tests.fixtures.consonance_sandbox import ManualClock

PUBLICATION = date(2027, 3, 1)
FLOW = MarketingFlow.model_validate(
    {
        "kind": "marketing",
        "partners": ["retailer", "sales-team", "agency"],
        "when": {"todo_done": "Marketing copy approved"},
        "release_days_before": 14,
        "partner_profiles": {
            # TitleLeaf-style retail images: ingest/ISBN_fc.jpg, an RGB JPEG rendition.
            "retailer": "titleleaf",
            "sales-team": {
                "assets": ["cover_image", "jacket_copy", "author_bio", "promo"],
                "cover_rendition": {"format": "PNG", "mode": "RGB", "max_long_side": 30},
                "withdraw": True,
            },
            "agency": {"assets": ["cover_image", "jacket_copy", "author_bio", "promo"]},
        },
    }
)


def _marketable(work: Work) -> bool:
    return bool(work.contributions) and any(
        t.variant == "SHORT_DESCRIPTION" for t in work.marketing_texts
    )


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield s
    s.close()


def _catalogue() -> tuple[Catalogue, Work]:
    catalogue = generate_catalogue(40, seed=5)
    work = next(w for w in catalogue.works.values() if _marketable(w))
    for product in work.products:
        catalogue.update_product(product.id, publication_date=PUBLICATION, publishing_status="02")
    return catalogue, catalogue.get_work(work.id)


def test_triggers_and_release_date():
    done = ChangeEvent(
        kind=ChangeKind.TODO_COMPLETED, work_id=1, subject="Marketing copy approved", new="done"
    )
    assert triggered(FLOW, done)
    assert not triggered(FLOW, dataclasses.replace(done, subject="Cover brief"))
    _, work = _catalogue()
    assert release_date(FLOW, work) == PUBLICATION - timedelta(days=14)


async def test_an_embargoed_title_sends_nothing_before_its_date_and_everything_after(
    consonance_sandbox_factory, store, tmp_path: Path
):
    catalogue, work = _catalogue()
    sandbox = consonance_sandbox_factory(catalogue)
    lifts = PUBLICATION - timedelta(days=14)
    clock = ManualClock(datetime.combine(lifts - timedelta(days=1), datetime.min.time(), UTC))
    async with sandbox.client() as api:
        fresh = await api.get_work(work.id)
        assert fresh is not None
        release = MarketingRelease(api, store, tmp_path / "staging", clock)
        before, held = await release.prepare(FLOW, fresh)
        assert before == []
        assert [h.reason for h in held] == [f"embargoed until {lifts.isoformat()}"]
        assert store.list_asset_versions(work.id) == []  # nothing fetched while embargoed
        assert [e.action for e in store.list_audit()] == ["package.held"]
        assert release.pending_releases() == [work.id]  # a scheduled run re-checks it

        clock.current += timedelta(days=1)
        after, held_after = await release.prepare(FLOW, fresh)
        assert release.pending_releases() == []

    assert held_after == []
    assert sorted(p.partner for p in after) == ["agency", "retailer", "sales-team"]
    isbn = after[0].isbn13
    files = {p.partner: sorted(f.remote_path for f in p.plan.assets) for p in after}
    assert files["retailer"] == [f"ingest/{isbn}_fc.jpg"]
    assert files["agency"] == sorted(
        [
            f"{isbn}/{isbn}_frontcover.jpg",
            f"{isbn}/{isbn}_jacket_copy.txt",
            f"{isbn}/{isbn}_promo_01.pdf",
        ]
        + [f"{isbn}/{isbn}_author_bio_{i:02d}.txt" for i in range(1, _bios(fresh) + 1)]
    )
    # The same approved texts and promo to every partner that takes them.
    agency, sales = (next(p for p in after if p.partner == n) for n in ("agency", "sales-team"))
    texts = {(f.kind, f.sha256) for f in agency.plan.assets if f.kind != AssetKind.COVER_IMAGE}
    assert texts == {(f.kind, f.sha256) for f in sales.plan.assets if f.kind != "cover_image"}
    for pkg in after:
        for f in pkg.plan.files:
            assert f.source is not None and sha256_file(f.source) == (f.size, f.sha256)


def _bios(work: Work) -> int:
    return len([c for c in work.contributions if c.role in ("A01", "A12")])


async def test_renditions_are_derivatives_and_a_replaced_cover_supersedes_the_old(
    consonance_sandbox_factory, store, tmp_path: Path
):
    catalogue, work = _catalogue()
    sandbox = consonance_sandbox_factory(catalogue)
    clock = ManualClock(datetime(2027, 3, 1, 9, tzinfo=UTC))
    async with sandbox.client() as api:
        release = MarketingRelease(api, store, tmp_path / "staging", clock)
        fresh = await api.get_work(work.id)
        assert fresh is not None
        first, _ = await release.prepare(FLOW, fresh)

        old = fresh.supporting_resources[0]
        new_cover = SupportingResource(
            id=old.id + 900_000,
            variant="FRONT_COVER",
            filename="new-cover.jpg",
            url=f"/files/generated/sr-{old.id + 900_000}-80x120.jpg",
            status="APPROVED",
            content_type="image/jpeg",
            created_at=datetime.now(UTC) + timedelta(seconds=1),
        )
        catalogue.update_work(
            work.id,
            supporting_resources=(*catalogue.get_work(work.id).supporting_resources, new_cover),
        )
        replaced = await api.get_work(work.id)
        assert replaced is not None
        second, _ = await release.prepare(FLOW, replaced)

    masters = store.list_asset_versions(work.id, kind="cover_image")
    assert [m.version for m in masters] == [1, 2]
    assert masters[0].superseded_by == masters[1].id
    assert masters[1].source == f"consonance:supporting_resource:{new_cover.id}"
    # The retailer's JPEG rendition: one derivative per master version, made from that master.
    key = "cover_image@JPEG-RGB-full-q90"
    derived = store.list_asset_versions(work.id, kind=key)
    assert [d.derived_from for d in derived] == [masters[0].id, masters[1].id]
    assert derived[0].superseded_by == derived[1].id

    def retail_cover(packages):
        pkg = next(p for p in packages if p.partner == "retailer")
        return next(f for f in pkg.plan.assets if f.kind == AssetKind.COVER_IMAGE)

    one, two = retail_cover(first), retail_cover(second)
    assert one.remote_path == two.remote_path and one.sha256 != two.sha256
    assert two.version_id == derived[1].id
    assert two.source is not None
    with Image.open(two.source) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (80, 120))
    sales = next(p for p in second if p.partner == "sales-team")
    png = next(f for f in sales.plan.assets if f.kind == AssetKind.COVER_IMAGE)
    assert png.source is not None
    with Image.open(png.source) as image:
        assert (image.format, max(image.size)) == ("PNG", 30)


async def test_a_withdrawn_title_gets_no_package(consonance_sandbox_factory, store, tmp_path):
    catalogue, work = _catalogue()
    for product in work.products:
        catalogue.update_product(product.id, publishing_status="11")
    sandbox = consonance_sandbox_factory(catalogue)
    clock = ManualClock(datetime(2027, 6, 1, tzinfo=UTC))
    async with sandbox.client() as api:
        fresh = await api.get_work(work.id)
        assert fresh is not None
        packages, held = await MarketingRelease(api, store, tmp_path, clock).prepare(FLOW, fresh)
    assert packages == []
    assert [h.reason for h in held] == ["the title is withdrawn"]


def test_the_how_to_example_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from consonance_sftp.config import FormatsFlow, load_settings
    from tests.unit.test_profiles import partners

    monkeypatch.setenv("T", "x")
    doc = Path(__file__).resolve().parents[2] / "docs" / "how-to" / "outbound-packages.md"
    example = doc.read_text(encoding="utf-8").split("```toml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "c.toml"
    config.write_text(
        '[consonance]\ntoken = {env = "T"}\n'
        + example
        + partners("printer", "ebook-house", "audio-house", "retailer", "sales-team"),
        encoding="utf-8",
    )
    settings = load_settings(config)
    release = settings.flows["release"]
    assert isinstance(release, MarketingFlow)
    assert release.release_days_before == 14
    assert release.profile_for("retailer").preset == "titleleaf"
    assert release.profile_for("sales-team").withdraw
    formats = settings.flows["formats"]
    assert isinstance(formats, FormatsFlow)
    assert formats.profile_for("audio-house").assets == [AssetKind.AUDIO]
