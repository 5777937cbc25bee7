"""The onix_feed flow against the Consonance sandbox over real HTTP and a real SQLite store:
full feeds validated before sending, deltas from per-recipient hashes, recipient rules.

Delivery itself is the engine's (see test_flow_onix_delivery.py); here a successful send is
recorded the way the engine's ledger records it, so ``record_sent`` can advance the baseline.
"""

from __future__ import annotations

import asyncio
import gzip
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from consonance_sftp.adapters.store import SqlStore, open_store
from consonance_sftp.config import OnixFeedFlow
from consonance_sftp.errors import ConsonanceAuthError
from consonance_sftp.flows.onix_baseline import baseline, feed_delivered, last_sent
from consonance_sftp.flows.onix_feed import (
    FeedNotDelivered,
    OnixFeedPackage,
    SpreadsheetPackage,
    prepare_onix_feed,
    record_sent,
)
from consonance_sftp.formats.onix import iter_onix_records, record_reference
from consonance_sftp.models import DeliveryOutcome, Product, Work
from consonance_sftp.ports.delivery import DeliveryRecord
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from tests.fixtures.consonance_sandbox import SandboxHandle

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
FOLDER = "/in"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield s
    s.close()


@pytest.fixture
def sandbox(consonance_sandbox_factory: Callable[..., SandboxHandle]) -> SandboxHandle:
    return consonance_sandbox_factory(generate_catalogue(60, seed=7))


def _flow(**values: Any) -> OnixFeedFlow:
    return OnixFeedFlow.model_validate(
        {"kind": "onix_feed", "partners": ["dist"], "sender_name": "Test Books", **values}
    )


async def _prepare(
    sandbox: SandboxHandle, store: SqlStore, flow: OnixFeedFlow, tmp_path: Path, **kw: Any
) -> tuple[list[OnixFeedPackage], Any]:
    kw.setdefault("now", NOW)
    kw.setdefault("validate", "inline")
    async with sandbox.client() as api:
        return await prepare_onix_feed(api, store, "feed", flow, staging=tmp_path / "staging", **kw)


def _delivered(store: SqlStore, package: OnixFeedPackage | SpreadsheetPackage) -> None:
    """What the engine's ledger holds after delivering the package."""
    _ledger(store, package)
    record_sent(store, package, folder=FOLDER)


def _ledger(
    store: SqlStore,
    package: OnixFeedPackage | SpreadsheetPackage,
    outcome: DeliveryOutcome = DeliveryOutcome.SENT,
) -> None:
    for key, f in zip(package.delivery_keys(FOLDER), package.plan.files, strict=True):
        store.record_delivery(
            DeliveryRecord(
                flow=package.flow,
                partner=package.partner,
                remote_path=key.remote_path,
                sha256=f.sha256,
                size=f.size,
                package=package.label,
                outcome=outcome,
            )
        )


def _records(package: OnixFeedPackage) -> list[Any]:
    source = package.plan.files[0].source
    assert source is not None
    return list(iter_onix_records(source))


def _all_products(sandbox: SandboxHandle) -> list[tuple[Work, Product]]:
    return [(w, p) for w in sandbox.catalogue.works.values() for p in w.products]


async def test_full_feed_is_validated_in_a_second_process_and_planned(
    sandbox: SandboxHandle, store: SqlStore, tmp_path: Path
):
    packages, report = await _prepare(
        sandbox, store, _flow(), tmp_path, validate="process", force_full=True
    )
    assert report.ok, report.lines()
    assert report.products_read == 60
    [pkg] = packages
    assert pkg.kind == "full" and pkg.partner == "dist" and pkg.isbn is None
    records = _records(pkg)
    expected = {
        record_reference(p)
        for _w, p in _all_products(sandbox)
        if p.publishing_status not in {"01", "11"}
    }
    assert {r.product.record_reference for r in records} == expected
    [planned] = pkg.plan.files
    assert planned.remote_path == pkg.file_name == "Test_Books_dist_20261124060000_full.xml"
    assert planned.size == pkg.result.bytes
    assert report.recipients[0].status == "ready"
    assert [e.action for e in store.list_audit(subject="dist:feed")] == ["onix.feed.prepared"]
    # Prepared is not sent: no baseline yet.
    assert baseline(store, "feed", "dist") == {}
    assert last_sent(store, "feed", "dist") is None


async def test_an_invalid_product_blocks_the_file_with_a_report_alert_and_audit(
    sandbox: SandboxHandle, store: SqlStore, tmp_path: Path
):
    work, product = next(
        (w, p)
        for w, p in _all_products(sandbox)
        if p.publishing_status not in {"01", "11"} and len(w.products) == 1
    )
    # A title with no title at all: TitleDetail loses its mandatory TitleText.
    await asyncio.to_thread(sandbox.ctl.update_product, product.id, title="")
    await asyncio.to_thread(sandbox.ctl.update_work, work.id, title="")

    packages, report = await _prepare(sandbox, store, _flow(), tmp_path)

    assert packages == []  # nothing goes
    assert not report.ok
    [line] = report.recipients
    assert line.status == "invalid"
    reference = record_reference(product)
    assert line.problems and all(reference in p for p in line.problems)
    assert any("TitleElement" in p or "TitleText" in p for p in line.problems), line.problems
    [alert] = store.list_alerts(kind="onix_invalid")
    assert (
        alert.partner == "dist" and alert.flow == "feed" and reference in alert.details["problems"]
    )
    [event] = store.list_audit(action="onix.feed.blocked")
    assert event.details["invalid_products"] == [reference]
    assert baseline(store, "feed", "dist") == {}


async def test_delta_holds_exactly_the_changed_products_then_nothing_then_a_forced_full(
    sandbox: SandboxHandle, store: SqlStore, tmp_path: Path
):
    flow = _flow()
    first, _ = await _prepare(sandbox, store, flow, tmp_path)
    [full] = first
    assert full.kind == "delta" and full.result.new == full.result.products > 2
    _delivered(store, full)
    assert baseline(store, "feed", "dist") == full.state
    assert last_sent(store, "feed", "dist") == NOW

    live = [
        p
        for _w, p in _all_products(sandbox)
        if p.publishing_status not in {"01", "11"} and p.prices
    ]
    priced, retitled = live[0], live[1]
    price = priced.prices[0]
    await asyncio.to_thread(
        sandbox.ctl.update_product,
        priced.id,
        price=(price.currency, price.price_type, price.qualifier, price.amount + Decimal("1.00")),
    )
    await asyncio.to_thread(sandbox.ctl.update_product, retitled.id, title="A New Title")

    later = NOW + timedelta(days=1)
    second, report = await _prepare(sandbox, store, flow, tmp_path, now=later)
    [delta] = second
    assert (full.message_number, delta.message_number) == (1, 2)
    assert b"<MessageNumber>2</MessageNumber>" in delta.plan.files[0].source.read_bytes()[:2000]  # type: ignore[union-attr]
    assert {r.product.record_reference for r in _records(delta)} == {
        record_reference(priced),
        record_reference(retitled),
    }
    assert (delta.result.changed, delta.result.new, delta.result.deleted) == (2, 0, [])
    titles = {r.product.record_reference: r.title for r in _records(delta)}
    assert titles[record_reference(retitled)] == "A New Title"
    assert report.recipients[0].line().startswith("dist: delta ready")

    # Not delivered: the baseline stays, and the same two products come again.
    with pytest.raises(FeedNotDelivered):
        record_sent(store, delta, folder=FOLDER)
    assert baseline(store, "feed", "dist") == full.state
    again, _ = await _prepare(sandbox, store, flow, tmp_path, now=later + timedelta(hours=1))
    assert again[0].result.sent.keys() == delta.result.sent.keys()
    assert again[0].message_number == 2  # the undelivered message did not use up its number
    _delivered(store, again[0])

    third, report = await _prepare(sandbox, store, flow, tmp_path, now=later + timedelta(days=1))
    assert third == []
    assert report.recipients[0].status == "empty"
    assert report.ok

    forced, _ = await _prepare(
        sandbox, store, flow, tmp_path, now=later + timedelta(days=2), force_full=True
    )
    assert forced[0].kind == "full"
    assert forced[0].result.products == full.result.products

    wants_empty = _flow(recipient={"send_empty": True})
    empty, _ = await _prepare(sandbox, store, wants_empty, tmp_path, now=later + timedelta(days=3))
    assert [p.result.products for p in empty] == [0]
    source = empty[0].plan.files[0].source
    assert source is not None and b"NoProduct" in source.read_bytes()


async def test_recipient_rules_from_config_shape_each_partners_feed(
    sandbox: SandboxHandle, store: SqlStore, tmp_path: Path
):
    products = _all_products(sandbox)
    imprint = next(w.imprint.name for w, _p in products if w.imprint is not None)
    flow = OnixFeedFlow.model_validate(
        {
            "kind": "onix_feed",
            "sender_name": "Test Books",
            "partners": ["google", "shop", "plain"],
            "partner_recipients": {
                "google": {
                    "preset": "google_play_books",
                    "file_name": "{sender}_{sent:%Y%m%d}.xml",
                    "compression": "zip",
                },
                "shop": {
                    "imprints": [imprint],
                    "price_types": ["02"],
                    "currencies": ["GBP"],
                    "compression": "gzip",
                    "onix_version": "3.1",
                    "tag_style": "short",
                },
            },
            "recipient": {"mode": "full", "notification_types": ["03", "05"]},
        }
    )
    packages, report = await _prepare(sandbox, store, flow, tmp_path)
    assert report.ok, report.lines()
    by = {p.partner: p for p in packages}

    google = by["google"]
    assert google.file_name == "Test_Books_20261124.xml.zip"
    with zipfile.ZipFile(google.plan.files[0].source) as archive:  # type: ignore[arg-type]
        assert archive.namelist() == ["Test_Books_20261124.xml"]
        (tmp_path / "google.xml").write_bytes(archive.read("Test_Books_20261124.xml"))
    google_records = list(iter_onix_records(tmp_path / "google.xml"))
    assert google_records
    assert {r.notification_type for r in google_records} <= {"01", "02", "03", "05"}
    assert all(r.product.typename == "ElectronicBookProduct" for r in google_records)

    shop = by["shop"]
    assert shop.file_name.endswith("_delta.xml.gz")
    (tmp_path / "shop.xml").write_bytes(gzip.decompress(shop.plan.files[0].source.read_bytes()))  # type: ignore[union-attr]
    assert b'release="3.1"' in (tmp_path / "shop.xml").read_bytes()[:500]
    shop_records = list(iter_onix_records(tmp_path / "shop.xml"))
    allowed = {record_reference(p) for w, p in products if w.imprint and w.imprint.name == imprint}
    assert shop_records and {r.product.record_reference for r in shop_records} <= allowed
    assert shop.result.filtered_out == len(products) - len(allowed)
    for r in shop_records:
        assert {(p.price_type, p.currency) for p in r.product.prices} <= {("02", "GBP")}

    plain = by["plain"]
    assert plain.kind == "full"
    assert {r.notification_type for r in _records(plain)} == {"03"}

    # A product leaving the shop's filter: the shop gets it as 05 and never the product.
    _delivered(store, shop)
    leaving = next(
        p
        for w, p in products
        if w.imprint and w.imprint.name == imprint and p.publishing_status == "04"
    )
    await asyncio.to_thread(sandbox.ctl.update_product, leaving.id, publishing_status="11")
    after, _ = await _prepare(
        sandbox, store, flow, tmp_path, now=NOW + timedelta(days=1), partners=["shop"]
    )
    [shop2] = after
    (tmp_path / "shop2.xml").write_bytes(gzip.decompress(shop2.plan.files[0].source.read_bytes()))  # type: ignore[union-attr]
    records = list(iter_onix_records(tmp_path / "shop2.xml"))
    assert [(r.product.record_reference, r.notification_type) for r in records] == [
        (record_reference(leaving), "05")
    ]


async def test_a_test_feed_samples_products_into_the_test_folder_and_never_sets_the_baseline(
    sandbox: SandboxHandle, store: SqlStore, tmp_path: Path
):
    flow = _flow(recipient={"test_sample_size": 3})
    packages, report = await _prepare(sandbox, store, flow, tmp_path, test=True)
    [pkg] = packages
    assert pkg.kind == "test" and pkg.state is None
    assert pkg.plan.files[0].remote_path == f"test/{pkg.file_name}"
    assert len(_records(pkg)) == 3
    assert report.recipients[0].line().endswith("3 products (a test sample)")
    _delivered(store, pkg)
    assert baseline(store, "feed", "dist") == {}
    assert last_sent(store, "feed", "dist") is None
    actions = [e.action for e in store.list_audit(subject="dist:feed")]
    assert actions == ["onix.test_feed.sent", "onix.test_feed.prepared"]


async def test_spreadsheet_exports_go_with_the_feed_or_alone(
    sandbox: SandboxHandle, store: SqlStore, tmp_path: Path
):
    flow = OnixFeedFlow.model_validate(
        {
            "kind": "onix_feed",
            "sender_name": "Test Books",
            "partners": ["dist", "retail"],
            "partner_recipients": {"retail": {"currencies": ["GBP"]}},
            "spreadsheets": {
                "dist": {"format": "xlsx"},
                "retail": {
                    "format": "csv",
                    "columns": ["isbn13", "title", "price:GBP"],
                    "headers": {"price:GBP": "RRP (GBP)"},
                    "only": True,
                },
            },
        }
    )
    packages, report = await _prepare(sandbox, store, flow, tmp_path)
    assert report.ok, report.lines()
    kinds = sorted((p.partner, p.kind) for p in packages)
    assert kinds == [("dist", "delta"), ("dist", "spreadsheet"), ("retail", "spreadsheet")]
    retail = next(p for p in packages if p.partner == "retail")
    assert isinstance(retail, SpreadsheetPackage)
    assert retail.file_name == "Test_Books_retail_20261124_metadata.csv"
    source = retail.plan.files[0].source
    assert source is not None
    lines = source.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "isbn13,title,RRP (GBP)"
    isbns = {p.isbn13 for _w, p in _all_products(sandbox)}
    assert len(lines) - 1 == retail.rows == len(isbns)
    assert {line.split(",")[0] for line in lines[1:]} == isbns
    _delivered(store, retail)  # a spreadsheet is on the record but has no baseline
    assert baseline(store, "feed", "retail") == {}
    assert store.list_audit(action="onix.spreadsheet.sent")[0].subject == "retail:feed"
    sheet = next(p for p in packages if p.partner == "dist" and p.kind == "spreadsheet")
    assert sheet.plan.files[0].remote_path.endswith("_metadata.xlsx")
    # Test feeds are ONIX samples only.
    tested, _ = await _prepare(sandbox, store, flow, tmp_path, test=True)
    assert [(p.partner, p.kind) for p in tested] == [("dist", "test")]

    bad = OnixFeedFlow.model_validate(
        {"kind": "onix_feed", "partners": ["x"], "spreadsheets": {"x": {"columns": ["nope"]}}}
    )
    none, report = await _prepare(sandbox, store, bad, tmp_path)
    assert [p.kind for p in none] == ["delta"]
    failed = next(r for r in report.recipients if r.kind == "spreadsheet")
    assert failed.status == "failed" and "nope" in failed.problems[0]
    assert store.list_alerts(kind="onix_failed")


async def test_onix_21_recipient_gets_valid_21_and_never_an_empty_message(
    sandbox: SandboxHandle, store: SqlStore, tmp_path: Path
):
    flow = _flow(recipient={"onix_version": "2.1", "send_empty": True})
    [first], report = await _prepare(sandbox, store, flow, tmp_path)
    assert report.ok, report.lines()
    source = first.plan.files[0].source
    assert source is not None and b'release="2.1"' in source.read_bytes()[:400]
    _delivered(store, first)
    nothing, report = await _prepare(sandbox, store, flow, tmp_path, now=NOW + timedelta(days=1))
    assert nothing == [] and report.recipients[0].status == "empty"
    assert store.list_alerts() == []


class _FailsAfterFirstPage:
    """The real client, with the sandbox refusing requests once the first work is read."""

    def __init__(self, api: Any, sandbox: SandboxHandle) -> None:
        self.api = api
        self.sandbox = sandbox

    async def iter_works(self, **kw: Any) -> Any:
        async for n, work in _enumerate(self.api.iter_works(**kw)):
            if n == 0:
                await asyncio.to_thread(self.sandbox.inject, "unauthorized", 50)
            yield work


async def _enumerate(items: Any) -> Any:
    n = 0
    async for item in items:
        yield n, item
        n += 1


async def test_a_catalogue_read_failing_midway_sends_nothing_and_deletes_nothing(
    consonance_sandbox_factory: Callable[..., SandboxHandle], store: SqlStore, tmp_path: Path
):
    sandbox = consonance_sandbox_factory(generate_catalogue(60, seed=7), page_size=5)
    flow = _flow()
    [first], _ = await _prepare(sandbox, store, flow, tmp_path)
    _delivered(store, first)
    held = baseline(store, "feed", "dist")

    async with sandbox.client() as api:
        with pytest.raises(ConsonanceAuthError) as caught:
            await prepare_onix_feed(
                _FailsAfterFirstPage(api, sandbox),  # type: ignore[arg-type]
                store,
                "feed",
                flow,
                now=NOW + timedelta(days=1),
                staging=tmp_path / "staging",
                validate="inline",
            )
    sandbox.clear_faults()
    # A truncated read must never look like a catalogue whose other products were deleted.
    assert "HTTP 401" in str(caught.value)
    assert baseline(store, "feed", "dist") == held
    assert [e.action for e in store.list_audit(action="onix.feed.prepared")] == [
        "onix.feed.prepared"
    ]


async def test_a_full_feed_reports_what_it_holds_not_everything_as_changed(
    sandbox: SandboxHandle, store: SqlStore, tmp_path: Path
):
    [first], _ = await _prepare(sandbox, store, _flow(), tmp_path)
    _delivered(store, first)
    [full], report = await _prepare(
        sandbox, store, _flow(), tmp_path, now=NOW + timedelta(days=1), force_full=True
    )
    [line] = report.lines()[1:]
    assert line.startswith(f"dist: full ready: {full.file_name}, {full.result.bytes:,} bytes, ")
    assert f"{full.result.products} products (every product the filter passes" in line
    assert "changed" not in line and "new" not in line
    # A delta still counts what changed.
    await asyncio.to_thread(
        sandbox.ctl.update_product, _all_products(sandbox)[0][1].id, title="Retitled"
    )
    _delivered(store, full)
    [_delta], report = await _prepare(sandbox, store, _flow(), tmp_path, now=NOW + timedelta(2))
    assert "1 product (0 new, 1 changed, 0 deletions as 05;" in report.lines()[1]


async def test_a_feed_delivered_later_moves_the_baseline_once_and_an_older_one_never_back(
    sandbox: SandboxHandle, store: SqlStore, tmp_path: Path
):
    """The engine records a failed feed delivered on a later ``retry``: the baseline, the last
    sent time and the MessageNumber follow then (``feed_delivered``, as the service's ledger
    calls it), once. A feed older than the baseline never moves it back."""
    flow = _flow()
    [first], _ = await _prepare(sandbox, store, flow, tmp_path)
    _ledger(store, first, DeliveryOutcome.FAILED)  # the send failed
    assert baseline(store, "feed", "dist") == {}
    [key] = first.delivery_keys(FOLDER)

    row = store.find_delivery(key)
    assert row is not None and row.id is not None
    # ... and a retry delivered it: the engine's ledger moves the row to sent.
    store.update_delivery(row.id, outcome=DeliveryOutcome.SENT, workflow_id="dlv-retried")
    assert feed_delivered(store, "feed", key, "dlv-retried")
    assert baseline(store, "feed", "dist") == first.state
    assert last_sent(store, "feed", "dist") == NOW
    assert not feed_delivered(store, "feed", key, "dlv-retried")  # once
    record_sent(store, first, folder=FOLDER)  # the run that waited for it: nothing more
    sent = store.list_audit(action="onix.feed.sent")
    assert [e.details["workflow_id"] for e in sent] == ["dlv-retried"]

    # Nothing changed since the retried feed: the next delta is empty, not the same again.
    again, report = await _prepare(sandbox, store, flow, tmp_path, now=NOW + timedelta(1))
    assert again == [] and report.recipients[0].status == "empty"

    # Two deltas prepared before either went (the first failed); the newer goes first.
    product = _all_products(sandbox)[1][1]
    await asyncio.to_thread(sandbox.ctl.update_product, product.id, title="Older")
    [older], _ = await _prepare(sandbox, store, flow, tmp_path, now=NOW + timedelta(2))
    await asyncio.to_thread(sandbox.ctl.update_product, product.id, title="Newer")
    [newer], _ = await _prepare(sandbox, store, flow, tmp_path, now=NOW + timedelta(3))
    assert older.message_number == newer.message_number == 2
    _ledger(store, newer)
    assert feed_delivered(store, "feed", newer.delivery_keys(FOLDER)[0], "dlv-newer")
    held = baseline(store, "feed", "dist")
    assert held == newer.state
    _ledger(store, older)  # the older one retried late
    assert not feed_delivered(store, "feed", older.delivery_keys(FOLDER)[0], "dlv-older")
    assert baseline(store, "feed", "dist") == held
    assert last_sent(store, "feed", "dist") == NOW + timedelta(3)
    nothing, _ = await _prepare(sandbox, store, flow, tmp_path, now=NOW + timedelta(4))
    assert nothing == []
    [full], _ = await _prepare(
        sandbox, store, flow, tmp_path, now=NOW + timedelta(5), force_full=True
    )
    assert full.message_number == 3


async def test_a_feed_whose_every_product_is_skipped_is_an_incident_not_nothing_to_send(
    sandbox: SandboxHandle, store: SqlStore, tmp_path: Path
):
    def flow(send_empty: bool) -> OnixFeedFlow:
        return _flow(recipient={"on_invalid_product": "skip", "send_empty": send_empty})

    first, _ = await _prepare(sandbox, store, flow(False), tmp_path)
    _delivered(store, first[0])
    # The one change since: a product that loses every title (invalid once written).
    work, product = next(
        (w, p)
        for w, p in _all_products(sandbox)
        if p.publishing_status not in {"01", "11"} and len(w.products) == 1
    )
    await asyncio.to_thread(sandbox.ctl.update_product, product.id, title="")
    await asyncio.to_thread(sandbox.ctl.update_work, work.id, title="")
    reference = record_reference(product)

    later = NOW + timedelta(days=1)
    packages, report = await _prepare(sandbox, store, flow(False), tmp_path, now=later)
    assert packages == []
    [line] = report.recipients
    assert line.status == "skipped" and line.incomplete and reference in line.incomplete
    assert "invalid and skipped; nothing sent" in line.line()
    # Not "nothing changed": no onix.feed.empty, one alert as for a blocked feed.
    assert store.list_audit(action="onix.feed.empty") == []
    [event] = store.list_audit(action="onix.feed.skipped")
    assert [s["record_reference"] for s in event.details["skipped"]] == [reference]
    [alert] = store.list_alerts(kind="onix_invalid")
    assert "carried no product" in alert.message and "nothing sent" in alert.message
    assert store.list_alerts(kind="onix_skipped") == []

    # A recipient that wants a message every run gets the empty one; the publisher still
    # gets the incident, and the product goes once fixed (its baseline is unchanged).
    packages, report = await _prepare(
        sandbox, store, flow(True), tmp_path, now=later + timedelta(hours=1)
    )
    [empty] = packages
    source = empty.plan.files[0].source
    assert source is not None
    assert b"<NoProduct/>" in source.read_bytes() and _records(empty) == []
    [line] = report.recipients
    assert line.status == "ready" and line.incomplete and reference in line.incomplete
    alerts = store.list_alerts(kind="onix_invalid")
    assert any("an empty message was sent" in a.message for a in alerts)
    _delivered(store, empty)
    assert baseline(store, "feed", "dist")[reference] == first[0].state[reference]
