"""Change detection on fakes of its ports: which edits make which events, and when."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from consonance_sftp.flows.changes import INCREMENTAL_MARK, ChangeDetector, summarize
from consonance_sftp.models import (
    ChangeKind,
    Price,
    Product,
    SupportingResource,
    Todo,
    Work,
)
from tests.fixtures.consonance_sandbox import ManualClock, MemorySnapshotStore


class FakeConsonance:
    """Just enough of the ConsonanceAPI port: works by id, filtered by updated_at."""

    def __init__(self, works: list[Work]) -> None:
        self.works = {w.id: w for w in works}
        self.calls: list[date | None] = []

    def edit(self, work_id: int, when: datetime, **changes: object) -> None:
        self.works[work_id] = dataclasses.replace(self.works[work_id], updated_at=when, **changes)

    def edit_product(self, work_id: int, when: datetime, **changes: object) -> None:
        work = self.works[work_id]
        first = dataclasses.replace(work.products[0], **changes)
        self.edit(work_id, when, products=(first, *work.products[1:]))

    async def iter_works(self, *, changed_since: date | None = None) -> AsyncIterator[Work]:
        self.calls.append(changed_since)
        for work_id in sorted(self.works):
            work = self.works[work_id]
            if changed_since is None or (
                work.updated_at is not None
                and work.updated_at.date() >= changed_since - timedelta(days=1)
            ):
                yield work


OLD = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def make_work(work_id: int) -> Work:
    product = Product(
        id=work_id * 10,
        work_id=work_id,
        typename="PhysicalBookProduct",
        isbn13=f"978000000{work_id:04d}",
        title=f"Work {work_id}",
        publishing_status="02",
        publication_date=date(2026, 6, 1),
        prices=(
            Price(id=1, amount=Decimal("9.99"), currency="GBP", price_type="02", qualifier="05"),
        ),
        updated_at=OLD,
    )
    return Work(
        id=work_id,
        title=f"Work {work_id}",
        project_stage="Editorial",
        todos=(Todo(id=work_id * 100, name="Proofs approved"),),
        supporting_resources=(
            SupportingResource(
                id=work_id * 1000, variant="FRONT_COVER", filename="c.jpg", url="/c.jpg"
            ),
        ),
        products=(product,),
        updated_at=OLD,
    )


@pytest.fixture
def setup():
    api = FakeConsonance([make_work(i) for i in range(1, 6)])
    store = MemorySnapshotStore()
    clock = ManualClock(datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
    detector = ChangeDetector(api, store, clock, reconcile_every=timedelta(days=7))
    return api, store, clock, detector


async def test_first_poll_is_a_silent_baseline(setup):
    api, store, _, detector = setup
    report = await detector.poll()
    assert report.mode == "baseline"
    assert report.events == ()
    assert report.works_read == 5
    assert len(store.snapshots["work"]) == 5 and len(store.snapshots["product"]) == 5
    assert api.calls == [None]


async def test_unchanged_catalogue_gives_no_events_and_reads_only_changes(setup):
    api, _, clock, detector = setup
    await detector.poll()
    clock.current += timedelta(hours=1)
    report = await detector.poll()
    assert report.mode == "incremental"
    assert report.events == ()
    assert report.works_read == 0  # everything is older than the watermark
    assert api.calls[-1] == date(2026, 3, 2)


async def test_stage_move_gives_exactly_one_event_then_none(setup):
    api, _, clock, detector = setup
    await detector.poll()
    clock.current += timedelta(minutes=5)
    api.edit(3, clock.current, project_stage="Production approval")
    first = await detector.poll()
    second = await detector.poll()
    assert [(e.kind, e.work_id, e.old, e.new) for e in first.events] == [
        (ChangeKind.WORK_ENTERED_STAGE, 3, "Editorial", "Production approval")
    ]
    assert second.events == ()
    assert second.works_read == 1  # still inside the over-fetched day, but not an event again


async def test_each_trigger_field_has_its_event(setup):
    api, _, clock, detector = setup
    await detector.poll()
    clock.current += timedelta(minutes=5)
    now = clock.current
    api.edit(1, now, todos=(Todo(id=100, name="Proofs approved", completed=True),))
    api.edit_product(2, now, publishing_status="04")
    api.edit_product(3, now, publication_date=date(2026, 7, 1))
    api.edit_product(
        4,
        now,
        prices=(
            Price(id=1, amount=Decimal("10.99"), currency="GBP", price_type="02", qualifier="05"),
        ),
    )
    cover = api.works[5].supporting_resources[0]
    api.edit(
        5,
        now,
        supporting_resources=(
            cover,
            SupportingResource(id=9, variant="BACK_COVER", filename="b.jpg", url="/b.jpg"),
        ),
    )
    report = await detector.poll()
    kinds = {(e.kind, e.work_id) for e in report.events}
    assert kinds == {
        (ChangeKind.TODO_COMPLETED, 1),
        (ChangeKind.PUBLISHING_STATUS_CHANGED, 2),
        (ChangeKind.PUBLICATION_DATE_CHANGED, 3),
        (ChangeKind.PRICE_CHANGED, 4),
        (ChangeKind.SUPPORTING_RESOURCE_ADDED, 5),
    }
    price = next(e for e in report.events if e.kind is ChangeKind.PRICE_CHANGED)
    assert (price.subject, price.old, price.new) == ("GBP-02-05", "9.99", "10.99")
    assert summarize(report.events)["price_changed"] == 1


async def test_new_file_for_an_existing_variant_is_a_replacement(setup):
    api, _, clock, detector = setup
    await detector.poll()
    clock.current += timedelta(minutes=5)
    new_cover = SupportingResource(id=77, variant="FRONT_COVER", filename="c2.jpg", url=None)
    api.edit(
        2, clock.current, supporting_resources=(api.works[2].supporting_resources[0], new_cover)
    )
    pending = await detector.poll()
    assert pending.events == ()  # the upload has not arrived: no event yet
    clock.current += timedelta(minutes=5)
    uploaded = dataclasses.replace(new_cover, url="/c2.jpg", file_size=1234)
    api.edit(
        2, clock.current, supporting_resources=(api.works[2].supporting_resources[0], uploaded)
    )
    report = await detector.poll()
    assert [(e.kind, e.subject) for e in report.events] == [
        (ChangeKind.SUPPORTING_RESOURCE_REPLACED, "FRONT_COVER")
    ]


async def test_reconcile_catches_changes_the_date_filter_missed(setup):
    api, store, clock, detector = setup
    await detector.poll()
    # A change whose updated_at Consonance failed to bump: invisible to changedSince.
    api.works[4] = dataclasses.replace(api.works[4], project_stage="Printing")
    clock.current += timedelta(hours=1)
    assert (await detector.poll()).events == ()
    clock.current += timedelta(days=8)
    report = await detector.poll()
    assert report.mode == "reconcile"
    assert [(e.kind, e.work_id) for e in report.events] == [(ChangeKind.WORK_ENTERED_STAGE, 4)]
    assert store.watermarks[INCREMENTAL_MARK] == clock.current.date().isoformat()
