"""The ``sales_in`` flow's pure parts: the known products from the change detector's
snapshots (their ``isbn`` field), and the settings a partner's reports are read with."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from consonance_sftp.config.flows import SalesInFlow
from consonance_sftp.flows import sales_in
from consonance_sftp.flows.changes import _Pass, product_snapshot
from consonance_sftp.formats.sales.parse import KnownAsin
from consonance_sftp.models import Product, Work
from consonance_sftp.ports.snapshots import Snapshot

ISBN = "9780306406157"


def _work(isbn: str | None) -> Work:
    product = Product(id=11, work_id=1, typename="PhysicalBookProduct", isbn13=isbn, title="T")
    return Work(id=1, title="T", products=(product,))


def test_product_snapshots_carry_the_isbn_and_old_ones_are_saved_again() -> None:
    work = _work(ISBN)
    snap = product_snapshot(work.products[0])
    assert snap.fields["isbn"] == ISBN
    # A snapshot saved by an earlier release (same content, no `isbn` field) is saved again
    # on the next poll, without an event; an up-to-date one is not.
    legacy = Snapshot(content_hash=snap.content_hash, fields={"work": "1", "status": None})
    for old, resaved in ((legacy, True), (snap, False)):
        p = _Pass(at=datetime.now(UTC), work_snaps={}, product_snaps={11: old}, emit=True)
        p.feed(work)
        assert (11 in p.new_products) is resaved
        assert not [e for e in p.events if e.product_id == 11]


def test_known_isbns_come_from_the_snapshots_and_none_before_any_poll() -> None:
    snaps = {
        11: product_snapshot(_work(ISBN).products[0]),
        12: product_snapshot(_work(None).products[0]),
    }
    assert sales_in.known_isbns(snaps) == {ISBN}
    assert sales_in.known_isbns({}) is None


def test_settings_per_partner(tmp_path: Path) -> None:
    flow = SalesInFlow.model_validate(
        {
            "kind": "sales_in",
            "partners": ["lsi", "kobo"],
            "partner_layouts": {"lsi": "lightning_source"},
            "channels": {"map": {"GB": "UK"}},
            "check_products": False,
        }
    )
    asked: list[bool] = []

    def isbns() -> set[str]:
        asked.append(True)
        return {ISBN}

    s = sales_in.settings_of("sales", flow, "lsi", default_outbox=tmp_path, isbns=isbns)
    assert (s.layout, s.outbox, s.isbns, s.on_rejected) == (
        "lightning_source",
        tmp_path,
        None,
        "hold",
    )
    assert s.channel_for is not None and s.channel_for("", "GB") == "UK"
    k = sales_in.settings_of(
        "sales",
        flow.model_copy(update={"check_products": True}),
        "kobo",
        default_outbox=tmp_path,
        isbns=isbns,
    )
    assert k.layout == "auto" and k.isbns is isbns
    assert not asked  # read when a report is, not when settings are looked up


def test_known_asins_map_each_asin_to_its_product_and_isbn_and_none_before_any_poll() -> None:
    kind = "ElectronicBookProduct"
    ebook = Product(id=21, work_id=1, typename=kind, isbn13=ISBN, title="T", asin="B0ABC12345")
    no_isbn = Product(id=22, work_id=1, typename=kind, isbn13=None, title="T", asin="B0XYZ")
    snaps = {p.id: product_snapshot(p) for p in (ebook, no_isbn, _work(ISBN).products[0])}
    assert snaps[21].fields["asin"] == "B0ABC12345"
    assert snaps[11].fields["asin"] is None
    assert sales_in.known_asins(snaps) == {
        "B0ABC12345": KnownAsin(21, ISBN),
        "B0XYZ": KnownAsin(22, None),
    }
    # products known, none with an ASIN: every ASIN line is unknown (not unchecked)
    assert sales_in.known_asins({11: snaps[11]}) == {}
    assert sales_in.known_asins({}) is None
