"""Change detection end to end: the real client polling the sandbox over HTTP."""

from __future__ import annotations

from collections.abc import Callable

from consonance_sftp.flows.changes import ChangeDetector
from consonance_sftp.models import ChangeKind
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from tests.fixtures.consonance_sandbox import MemorySnapshotStore, SandboxHandle


async def test_stage_move_in_sandbox_gives_one_event_then_none(
    consonance_sandbox_factory: Callable[..., SandboxHandle],
):
    sandbox = consonance_sandbox_factory(generate_catalogue(300, seed=21), page_size=50)
    store = MemorySnapshotStore()
    work_id = sandbox.catalogue.work_ids[7]
    async with sandbox.client() as api:
        detector = ChangeDetector(api, store)
        baseline = await detector.poll()
        assert baseline.mode == "baseline" and baseline.events == ()
        assert baseline.products_read == 300

        sandbox.move_stage(work_id, "Send to printer")
        sandbox.reset_stats()
        first = await detector.poll()
        second = await detector.poll()

    assert first.mode == second.mode == "incremental"
    assert [(e.kind, e.work_id, e.new) for e in first.events] == [
        (ChangeKind.WORK_ENTERED_STAGE, work_id, "Send to printer")
    ]
    assert second.events == ()
    # Cost follows the change, not the catalogue: one page with the work, one empty page.
    assert sandbox.stats()["graphql_requests"] == 4
    assert first.works_read == 1


async def test_todo_price_and_status_changes_reach_the_poller(
    consonance_sandbox_factory: Callable[..., SandboxHandle],
):
    sandbox = consonance_sandbox_factory(generate_catalogue(120, seed=22))
    cat = sandbox.catalogue
    work = cat.works[cat.work_ids[3]]
    todo = next(t for t in work.todos if not t.completed)
    product = work.products[0]
    async with sandbox.client() as api:
        detector = ChangeDetector(api, MemorySnapshotStore())
        await detector.poll()
        sandbox.complete_todo(todo.id)
        sandbox.set_product(
            product.id,
            publishing_status="08" if product.publishing_status == "07" else "07",
            price={"currency": "GBP", "price_type": "02", "qualifier": "05", "amount": "12.49"},
        )
        report = await detector.poll()
    got = {(e.kind, e.subject) for e in report.events}
    assert (ChangeKind.TODO_COMPLETED, todo.name) in got
    assert (ChangeKind.PUBLISHING_STATUS_CHANGED, "status") in got
    assert (ChangeKind.PRICE_CHANGED, "GBP-02-05") in got
    assert len(report.events) == 3
