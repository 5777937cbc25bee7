"""Change detection: poll Consonance, compare with snapshots, emit domain events.

Consonance has no webhooks. Each poll reads only the works Consonance says changed since the
last poll (``changedSince`` plus a watermark), so its cost grows with the number of changes,
not with the catalogue. A full reconcile, on a slower cycle, reads everything and catches what
the date filter could miss. The very first poll is a baseline: it records snapshots and emits
nothing (otherwise starting the service would fire every trigger in the catalogue).

A poll is two halves: ``read`` compares and returns the events with the snapshots they came
from, still unsaved; ``commit`` saves them and advances the watermarks. The service puts the
work the events cause somewhere durable (the engine's event workflows) between the two, so an
event whose flow then fails to plan is retried by the engine, never lost with a snapshot that
moved past it. ``poll`` does both at once, for callers that only look.

A snapshot per work and per product holds a content hash (identical records are skipped
cheaply) and the few fields triggers look at. Events are computed by comparing those fields:

- ``work_entered_stage``: the work's project stage changed to a new value;
- ``todo_completed``: a to-do went from open to done (subject: its name);
- ``publishing_status_changed`` / ``publication_date_changed``: per product;
- ``supporting_resource_added`` / ``supporting_resource_replaced``: a resource of a variant
  the work did not have / a new or changed file for a variant it had;
- ``price_changed``: a price slot (``GBP-02-05``) appeared, vanished or changed amount.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, Literal

from consonance_sftp.flows.triggers import TitleState, due
from consonance_sftp.logs import get_logger
from consonance_sftp.models import ChangeEvent, ChangeKind, Product, Work
from consonance_sftp.ports.clock import Clock, SystemClock
from consonance_sftp.ports.consonance import ConsonanceAPI
from consonance_sftp.ports.snapshots import Snapshot, SnapshotStore

log = get_logger(__name__)

WORK = "work"
PRODUCT = "product"
INCREMENTAL_MARK = "consonance.changes.incremental"  # ISO date the last poll started
RECONCILE_MARK = "consonance.changes.reconcile"  # ISO datetime of the last full reconcile
# ISO datetime of a poll whose events were handed on (``hand_on``) but not yet saved: the next
# poll, reading the same changes again, gives them the same detection time, so the work they
# fire is recognised as the same (the engine's event workflow IDs include it).
PENDING_MARK = "consonance.changes.pending"

Mode = Literal["baseline", "incremental", "reconcile"]


@dataclass(frozen=True, slots=True)
class PollReport:
    mode: Mode
    started_at: datetime
    works_read: int
    products_read: int
    events: tuple[ChangeEvent, ...] = ()
    changed_records: int = 0
    seconds: float = 0.0


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def work_snapshot(work: Work) -> Snapshot:
    # repr of frozen dataclasses is deterministic; updated_at and products are left out (a
    # product change alone must not mark the work changed; products have their own snapshot).
    body = replace(work, products=(), updated_at=None)
    fields: dict[str, str | None] = {"stage": work.project_stage}
    for todo in work.todos:
        fields[f"todo.{todo.id}"] = f"{'done' if todo.completed else 'open'}|{todo.name}"
    for res in work.supporting_resources:
        fields[f"resource.{res.id}"] = _resource_value(
            res.variant, res.filename, res.file_size, res.url
        )
    return Snapshot(content_hash=_hash(repr(body)), fields=fields)


def product_snapshot(product: Product) -> Snapshot:
    body = replace(product, updated_at=None)
    fields: dict[str, str | None] = {
        "work": str(product.work_id),
        "status": product.publishing_status,
        "pubdate": product.publication_date.isoformat() if product.publication_date else None,
        # The sales_in flow checks each report line's ISBN against these (no API call a line).
        "isbn": product.isbn13,
        # ... and a KDP line's ASIN (``B0...``, a Kindle ebook's) against these.
        "asin": product.asin,
    }
    for price in product.prices:
        fields[f"price.{price.slot}"] = str(price.amount)
    return Snapshot(content_hash=_hash(repr(body)), fields=fields)


def todo_state(value: str | None) -> tuple[str | None, str]:
    """(state, name) of a to-do snapshot field, ``done|Files to printer``."""
    if value is None:
        return None, ""
    state, _, name = value.partition("|")
    return state, name


def _resource_value(variant: str, filename: str, size: int | None, url: str | None) -> str:
    return f"{variant}|{filename}|{size}|{url or ''}"


def _variant(value: str | None) -> str:
    return (value or "").split("|", 1)[0]


def _pending(value: str | None) -> bool:
    """A resource Consonance created but whose file has not been uploaded (no URL yet)."""
    return value is not None and value.endswith("|")


def _prefixed(fields: Mapping[str, str | None], prefix: str) -> dict[str, str | None]:
    return {k[len(prefix) :]: v for k, v in fields.items() if k.startswith(prefix)}


def work_events(
    work_id: int, old: Snapshot | None, new: Snapshot, at: datetime
) -> list[ChangeEvent]:
    events: list[ChangeEvent] = []
    before: Mapping[str, str | None] = old.fields if old else {}
    stage = new.fields.get("stage")
    if stage and stage != before.get("stage"):
        events.append(
            ChangeEvent(
                kind=ChangeKind.WORK_ENTERED_STAGE,
                work_id=work_id,
                subject=stage,
                old=before.get("stage"),
                new=stage,
                detected_at=at,
            )
        )
    old_todos, new_todos = _prefixed(before, "todo."), _prefixed(new.fields, "todo.")
    for todo_id, value in new_todos.items():
        state, name = todo_state(value)
        was, _ = todo_state(old_todos.get(todo_id))
        if state == "done" and was != "done" and old is not None:
            events.append(
                ChangeEvent(
                    kind=ChangeKind.TODO_COMPLETED,
                    work_id=work_id,
                    subject=name,
                    old=was,
                    new=state,
                    detected_at=at,
                )
            )
    old_res, new_res = _prefixed(before, "resource."), _prefixed(new.fields, "resource.")
    for res_id, value in new_res.items():
        if old_res.get(res_id) == value or _pending(value):
            continue  # unchanged, or created but its upload has not arrived yet
        variant = _variant(value)
        had_file = res_id in old_res and not _pending(old_res.get(res_id))
        other_variants = {
            _variant(v) for k, v in old_res.items() if k != res_id and not _pending(v)
        }
        replaced = had_file or variant in other_variants
        events.append(
            ChangeEvent(
                kind=ChangeKind.SUPPORTING_RESOURCE_REPLACED
                if replaced
                else ChangeKind.SUPPORTING_RESOURCE_ADDED,
                work_id=work_id,
                subject=variant,
                old=old_res.get(res_id),
                new=value,
                detected_at=at,
            )
        )
    return events


def product_events(
    work_id: int, product_id: int, old: Snapshot | None, new: Snapshot, at: datetime
) -> list[ChangeEvent]:
    if old is None:
        return []  # a new product: its status, date and prices are not changes yet
    events: list[ChangeEvent] = []
    for key, kind in (
        ("status", ChangeKind.PUBLISHING_STATUS_CHANGED),
        ("pubdate", ChangeKind.PUBLICATION_DATE_CHANGED),
    ):
        if old.fields.get(key) != new.fields.get(key):
            events.append(
                ChangeEvent(
                    kind=kind,
                    work_id=work_id,
                    product_id=product_id,
                    subject=key,
                    old=old.fields.get(key),
                    new=new.fields.get(key),
                    detected_at=at,
                )
            )
    old_prices, new_prices = _prefixed(old.fields, "price."), _prefixed(new.fields, "price.")
    for slot in sorted(set(old_prices) | set(new_prices)):
        if old_prices.get(slot) != new_prices.get(slot):
            events.append(
                ChangeEvent(
                    kind=ChangeKind.PRICE_CHANGED,
                    work_id=work_id,
                    product_id=product_id,
                    subject=slot,
                    old=old_prices.get(slot),
                    new=new_prices.get(slot),
                    detected_at=at,
                )
            )
    return events


@dataclass
class _Pass:
    """One comparison pass over works read from Consonance."""

    at: datetime
    work_snaps: dict[int, Snapshot]
    product_snaps: dict[int, Snapshot]
    emit: bool
    events: list[ChangeEvent] = field(default_factory=list)
    new_works: dict[int, Snapshot] = field(default_factory=dict)
    new_products: dict[int, Snapshot] = field(default_factory=dict)
    works_read: int = 0
    products_read: int = 0

    def feed(self, work: Work) -> None:
        self.works_read += 1
        snap = work_snapshot(work)
        old = self.work_snaps.get(work.id)
        if old is None or old.content_hash != snap.content_hash:
            if self.emit:
                self.events.extend(work_events(work.id, old, snap, self.at))
            self.new_works[work.id] = snap
        for product in work.products:
            self.products_read += 1
            psnap = product_snapshot(product)
            pold = self.product_snaps.get(product.id)
            if pold is None or pold.content_hash != psnap.content_hash:
                if self.emit:
                    self.events.extend(product_events(work.id, product.id, pold, psnap, self.at))
                self.new_products[product.id] = psnap
            elif pold.fields.get("isbn") != psnap.fields.get("isbn"):
                # A snapshot saved before it carried the ISBN: saved again, no event.
                self.new_products[product.id] = psnap


@dataclass(frozen=True, slots=True)
class PendingPoll:
    """A poll read but not saved: its report, and the snapshots ``commit`` will save."""

    report: PollReport
    works: Mapping[int, Snapshot]
    products: Mapping[int, Snapshot]


class ChangeDetector:
    """Polls through the ConsonanceAPI port and remembers through the SnapshotStore port."""

    def __init__(
        self,
        api: ConsonanceAPI,
        snapshots: SnapshotStore,
        clock: Clock | None = None,
        *,
        reconcile_every: timedelta = timedelta(hours=24),
        progress: Callable[[str, int, int, bool], None] | None = None,
    ) -> None:
        """``progress(mode, works read, products read, done)`` is called as a poll reads
        (and once more, ``done``, at its end): the first poll (and each reconcile) reads the
        whole catalogue, which takes a while."""
        self.api = api
        self.snapshots = snapshots
        self.clock = clock or SystemClock()
        self.reconcile_every = reconcile_every
        self.progress = progress

    async def poll(self) -> PollReport:
        """``read`` then ``commit``: the events, with the snapshots already past them."""
        pending = await self.read()
        await self.commit(pending)
        return pending.report

    async def read(self) -> PendingPoll:
        """Baseline on the first run, a reconcile when one is due, else an incremental poll;
        nothing is saved until ``commit``."""
        last_poll = await asyncio.to_thread(self.snapshots.get_watermark, INCREMENTAL_MARK)
        if last_poll is None:
            return await self._reconcile(emit=False)
        last_reconcile = await asyncio.to_thread(self.snapshots.get_watermark, RECONCILE_MARK)
        now = self.clock.now()
        if (
            last_reconcile is None
            or now - datetime.fromisoformat(last_reconcile) >= self.reconcile_every
        ):
            return await self._reconcile()
        return await self._run("incremental", emit=True, since_mark=last_poll)

    async def incremental(self) -> PollReport:
        last_poll = await asyncio.to_thread(self.snapshots.get_watermark, INCREMENTAL_MARK)
        if last_poll is None:
            return await self.reconcile(emit=False)
        pending = await self._run("incremental", emit=True, since_mark=last_poll)
        await self.commit(pending)
        return pending.report

    async def reconcile(self, *, emit: bool = True) -> PollReport:
        """Read the whole catalogue and compare every record (``emit=False``: baseline)."""
        pending = await self._reconcile(emit=emit)
        await self.commit(pending)
        return pending.report

    async def _reconcile(self, *, emit: bool = True) -> PendingPoll:
        return await self._run("reconcile" if emit else "baseline", emit=emit, since_mark=None)

    async def hand_on(self, pending: PendingPoll) -> None:
        """Note that this poll's events are about to be handed on (to durable work): should
        ``commit`` never come, the next poll sees the same changes at this same time."""
        at = pending.report.started_at.isoformat()
        await asyncio.to_thread(self.snapshots.set_watermark, PENDING_MARK, at)

    async def commit(self, pending: PendingPoll) -> None:
        """Save the poll's snapshots, then advance the watermarks: from here on its events are
        never seen again."""
        await asyncio.to_thread(self._save, pending)

    async def _run(self, mode: Mode, *, emit: bool, since_mark: str | None) -> PendingPoll:
        handed_on = await asyncio.to_thread(self.snapshots.get_watermark, PENDING_MARK)
        # A poll whose events were handed on but never saved: this one reads them again, as of
        # the same time (see PENDING_MARK).
        started = datetime.fromisoformat(handed_on) if handed_on else self.clock.now()
        t0 = asyncio.get_running_loop().time()
        work_snaps, product_snaps = await asyncio.gather(
            asyncio.to_thread(self.snapshots.load_snapshots, WORK),
            asyncio.to_thread(self.snapshots.load_snapshots, PRODUCT),
        )
        state = _Pass(started, work_snaps, product_snaps, emit)
        since = datetime.fromisoformat(since_mark).date() if since_mark else None
        async for work in self.api.iter_works(changed_since=since):
            state.feed(work)
            if self.progress is not None:
                self.progress(mode, state.works_read, state.products_read, False)
        if self.progress is not None:
            self.progress(mode, state.works_read, state.products_read, True)
        report = PollReport(
            mode=mode,
            started_at=started,
            works_read=state.works_read,
            products_read=state.products_read,
            events=tuple(state.events),
            changed_records=len(state.new_works) + len(state.new_products),
            seconds=asyncio.get_running_loop().time() - t0,
        )
        log.info(
            "Consonance %s poll: %d works, %d products read, %d changed, %d events",
            mode,
            report.works_read,
            report.products_read,
            report.changed_records,
            len(report.events),
        )
        return PendingPoll(report, state.new_works, state.new_products)

    def _save(self, pending: PendingPoll) -> None:
        # Snapshots first, watermarks last: a crash in between re-reads, never skips.
        if pending.works:
            self.snapshots.save_snapshots(WORK, dict(pending.works))
        if pending.products:
            self.snapshots.save_snapshots(PRODUCT, dict(pending.products))
        started, mode = pending.report.started_at, pending.report.mode
        self.snapshots.set_watermark(INCREMENTAL_MARK, started.date().isoformat())
        if mode != "incremental":
            self.snapshots.set_watermark(RECONCILE_MARK, started.isoformat())
        if self.snapshots.get_watermark(PENDING_MARK):
            self.snapshots.set_watermark(PENDING_MARK, "")


def event_to_json(event: ChangeEvent) -> dict[str, Any]:
    """An event as JSON (the input of its durable workflow); ``event_from_json`` reads it."""
    return {
        "kind": event.kind.value,
        "work_id": event.work_id,
        "product_id": event.product_id,
        "subject": event.subject,
        "old": event.old,
        "new": event.new,
        "detected_at": event.detected_at.isoformat() if event.detected_at else None,
    }


def event_from_json(data: Mapping[str, Any]) -> ChangeEvent:
    at = data.get("detected_at")
    product = data.get("product_id")
    return ChangeEvent(
        kind=ChangeKind(data["kind"]),
        work_id=int(data["work_id"]),
        product_id=int(product) if product is not None else None,
        subject=data.get("subject"),
        old=data.get("old"),
        new=data.get("new"),
        detected_at=datetime.fromisoformat(at) if at else None,
    )


def summarize(events: Iterable[ChangeEvent]) -> dict[str, int]:
    """Counts per event kind, for logs and the dashboard."""
    out: dict[str, int] = {}
    for event in events:
        out[event.kind.value] = out.get(event.kind.value, 0) + 1
    return out


class TitleStates:
    """What ``when`` conditions test, read from the detector's snapshots (once per poll): each
    work's stage and completed to-dos, its products' statuses and publication dates.
    ``pending``: a poll read but not yet committed, whose snapshots count as saved."""

    def __init__(self, snapshots: SnapshotStore, pending: PendingPoll | None = None) -> None:
        self._works = dict(snapshots.load_snapshots(WORK))
        products = dict(snapshots.load_snapshots(PRODUCT))
        if pending is not None:
            self._works.update(pending.works)
            products.update(pending.products)
        self._products: dict[int, list[tuple[int, Snapshot]]] = {}
        for product_id, snap in products.items():
            work = snap.fields.get("work")
            if work is not None:
                self._products.setdefault(int(work), []).append((product_id, snap))

    def state(self, work_id: int) -> TitleState:
        work = self._works.get(work_id)
        fields: Mapping[str, str | None] = work.fields if work else {}
        done = {
            name
            for state, name in map(todo_state, _prefixed(fields, "todo.").values())
            if state == "done"
        }
        products = [snap.fields for _id, snap in self._products.get(work_id, [])]
        return TitleState(
            stage=fields.get("stage"),
            todos_done=frozenset(done),
            statuses=frozenset(s for p in products if (s := p.get("status"))),
            publication_dates=tuple(
                date.fromisoformat(d) for p in products if (d := p.get("pubdate"))
            ),
        )

    def due(self, days: int, today: date) -> list[ChangeEvent]:
        """A ``publication_due`` event for each product within ``days`` of its publication."""
        events = []
        for work_id, products in self._products.items():
            for product_id, snap in products:
                pubdate = snap.fields.get("pubdate")
                if pubdate and due(days, date.fromisoformat(pubdate), today):
                    events.append(
                        ChangeEvent(
                            kind=ChangeKind.PUBLICATION_DUE,
                            work_id=work_id,
                            product_id=product_id,
                            subject=str(days),
                            new=pubdate,
                        )
                    )
        return events
