"""The whole Store API, on SQLite and on the real PostgreSQL of the test fixtures."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from consonance_sftp.adapters.store import SqlStore, migrations, open_store
from consonance_sftp.adapters.store.schema import metadata
from consonance_sftp.errors import StoreError
from consonance_sftp.models import (
    Alert,
    AlertSeverity,
    DeliveryKey,
    DeliveryOutcome,
    IntakeOutcome,
)
from consonance_sftp.ports.delivery import DeliveryRecord
from consonance_sftp.ports.snapshots import Snapshot
from consonance_sftp.ports.store import AssetVersion, IntakeRecord, Store
from tests.cli import free_port
from tests.threads import all_at_once


class StepClock:
    """A clock that moves one second per reading, so orderings are deterministic."""

    def __init__(self, start: datetime) -> None:
        self.t = start

    def now(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


@pytest.fixture
def clock() -> StepClock:
    return StepClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def store(store_url: str, clock: StepClock) -> Iterator[SqlStore]:
    s = open_store(store_url, clock=clock)
    try:
        yield s
    finally:
        s.close()


def delivery(**overrides: object) -> DeliveryRecord:
    values: dict[str, object] = {
        "flow": "production",
        "partner": "printer",
        "remote_path": "/in/9781234567897_interior.pdf",
        "sha256": "a" * 64,
        "size": 1234,
        "isbn": "9781234567897",
        "package": "pkg-1",
        "trigger": "manual:alice",
    }
    values.update(overrides)
    return DeliveryRecord(**values)  # type: ignore[arg-type]


def test_sqlstore_satisfies_the_port(store: SqlStore) -> None:
    port: Store = store  # mypy checks the structure; here we check it at run time too
    for name in Store.__dict__:
        if not name.startswith("_"):
            assert callable(getattr(port, name)), name


def test_migrations_create_every_table_from_empty(empty_url: str) -> None:
    store = open_store(empty_url)
    names = set(sa.inspect(store.engine).get_table_names())
    assert {
        "delivery_ledger",
        "intake_ledger",
        "asset_versions",
        "audit_events",
        "audit_chains",
        "alerts",
        "consonance_snapshots",
        "watermarks",
        "alembic_version",
    } <= names
    scripts = ScriptDirectory(str(Path(migrations.__file__).parent))
    with store.engine.connect() as conn:
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    assert version == scripts.get_current_head()  # every migration ran
    store.append_audit("test", "migrated", "store")  # the audit guards were created too
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_events"))
    store.close()


@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_migrations_match_the_table_definitions(store: SqlStore) -> None:
    """No drift between the migration scripts and schema.py (PostgreSQL compares indexes too)."""
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_reopening_migrates_nothing_and_keeps_data(store_url: str, clock: StepClock) -> None:
    with open_store(store_url, clock=clock) as first:
        first.record_delivery(delivery())
    with open_store(store_url, clock=clock) as second:
        assert len(second.list_deliveries()) == 1


# --- delivery ledger -------------------------------------------------------------------------


def test_record_delivery_is_idempotent_per_key_and_generation(store: SqlStore) -> None:
    first = store.record_delivery(delivery())
    assert first.id is not None
    again = store.record_delivery(delivery(size=999, trigger="replay"))
    assert again.id == first.id
    assert again.size == 1234  # the stored row, not the replayed values
    resend = store.record_delivery(delivery(generation=1, trigger="resend:bob"))
    assert resend.id != first.id
    key = DeliveryKey(partner="printer", remote_path=first.remote_path, sha256="a" * 64)
    latest = store.find_delivery(key)
    assert latest is not None and latest.generation == 1
    gen0 = store.find_delivery(key, generation=0)
    assert gen0 is not None and gen0.id == first.id
    assert store.find_delivery(DeliveryKey(partner="x", remote_path="/y", sha256="z")) is None


def test_update_delivery_changes_only_given_fields(store: SqlStore) -> None:
    rec = store.record_delivery(delivery())
    assert rec.id is not None
    started = datetime(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=2)))
    running = store.update_delivery(
        rec.id, outcome=DeliveryOutcome.RUNNING, started_at=started, attempts=1
    )
    assert running.outcome is DeliveryOutcome.RUNNING
    assert running.started_at == started  # same instant, given in another zone
    assert running.started_at is not None and running.started_at.tzinfo is not None
    done = store.update_delivery(
        rec.id, outcome=DeliveryOutcome.SENT, finished_at=started + timedelta(minutes=1)
    )
    assert done.attempts == 1 and done.started_at == started
    assert done.finished_at == started + timedelta(minutes=1)
    assert store.get_delivery(rec.id) == done
    assert done.created_at is not None and done.created_at == rec.created_at
    failed_once = store.update_delivery(rec.id, error="connection lost")
    assert failed_once.error == "connection lost"
    assert store.update_delivery(rec.id, error="").error is None
    with pytest.raises(StoreError, match="no delivery with id 999999"):
        store.update_delivery(999999, attempts=2)


def test_list_deliveries_filters_for_history(store: SqlStore) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for i, (flow, partner, isbn) in enumerate(
        [
            ("production", "printer", "9781111111111"),
            ("onix_feed", "distributor", None),
            ("production", "printer", "9782222222222"),
            ("formats", "epub-vendor", "9781111111111"),
        ]
    ):
        rec = store.record_delivery(
            delivery(flow=flow, partner=partner, isbn=isbn, remote_path=f"/f{i}")
        )
        assert rec.id is not None
        store.update_delivery(rec.id, started_at=base + timedelta(days=i))
    assert [d.remote_path for d in store.list_deliveries()] == ["/f3", "/f2", "/f1", "/f0"]
    assert [d.remote_path for d in store.list_deliveries(isbn="9781111111111")] == ["/f3", "/f0"]
    assert [d.remote_path for d in store.list_deliveries(partner="printer")] == ["/f2", "/f0"]
    assert [d.remote_path for d in store.list_deliveries(flow="onix_feed")] == ["/f1"]
    window = store.list_deliveries(since=base + timedelta(days=1), until=base + timedelta(days=3))
    assert [d.remote_path for d in window] == ["/f2", "/f1"]
    assert len(store.list_deliveries(limit=2)) == 2
    assert store.list_deliveries(outcome=DeliveryOutcome.SENT) == []


def test_delivery_with_unknown_asset_version_is_a_store_error(store: SqlStore) -> None:
    with pytest.raises(StoreError, match="recording a delivery") as info:
        store.record_delivery(delivery(asset_version_id=424242))
    assert isinstance(info.value.__cause__, sa.exc.IntegrityError)


# --- intake ledger ---------------------------------------------------------------------------


def test_intake_is_one_row_per_listing_entry(store: SqlStore) -> None:
    entry = IntakeRecord(
        partner="typesetter", remote_path="/out/978_interior_v2.pdf", size=10, remote_mtime=1.5e9
    )
    first = store.record_intake(entry)
    assert first.id is not None and first.received_at is not None
    assert store.record_intake(entry).id == first.id
    changed = store.record_intake(IntakeRecord(**{**_fields(entry), "size": 11}))
    assert changed.id != first.id
    updated = store.update_intake(
        first.id,
        outcome=IntakeOutcome.ATTACHED,
        sha256="b" * 64,
        local_path="/var/intake/x.pdf",
        work_id=7,
        product_id=70,
    )
    assert updated.outcome is IntakeOutcome.ATTACHED and updated.work_id == 7
    assert store.find_intake("typesetter", entry.remote_path, 10, 1.5e9) == updated
    quarantined = store.update_intake(
        changed.id or 0, outcome=IntakeOutcome.QUARANTINED, reason="no ISBN in the file name"
    )
    assert quarantined.reason == "no ISBN in the file name"
    assert [i.id for i in store.list_intakes(outcome=IntakeOutcome.QUARANTINED)] == [changed.id]
    assert len(store.list_intakes(partner="typesetter")) == 2
    assert store.list_intakes(partner="nobody") == []


def _fields(record: IntakeRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


# --- asset versions --------------------------------------------------------------------------


def test_asset_versions_count_up_and_supersede(store: SqlStore) -> None:
    v1 = store.add_asset_version(AssetVersion(work_id=1, kind="interior", sha256="1", size=1))
    v2 = store.add_asset_version(
        AssetVersion(work_id=1, kind="interior", sha256="2", size=2, derived_from=v1.id)
    )
    other_product = store.add_asset_version(
        AssetVersion(work_id=1, product_id=10, kind="interior", sha256="3", size=3)
    )
    cover = store.add_asset_version(AssetVersion(work_id=1, kind="cover", sha256="4", size=4))
    assert (v1.version, v2.version, other_product.version, cover.version) == (1, 2, 1, 1)
    assert v1.id is not None and v2.id is not None
    old = store.get_asset_version(v1.id)
    assert old is not None and old.superseded_by == v2.id
    current = store.current_asset_version(1, None, "interior")
    assert current is not None and current.id == v2.id and current.derived_from == v1.id
    product_current = store.current_asset_version(1, 10, "interior")
    assert product_current is not None and product_current.id == other_product.id
    assert store.current_asset_version(2, None, "interior") is None
    assert len(store.list_asset_versions(1)) == 4
    assert [v.version for v in store.list_asset_versions(1, kind="interior", product_id=10)] == [1]
    approved = store.approve_asset_version(v2.id, datetime(2026, 2, 2, tzinfo=UTC))
    assert approved.approved_at == datetime(2026, 2, 2, tzinfo=UTC)


def test_concurrent_asset_versions_get_distinct_numbers(store_url: str) -> None:
    stores = [open_store(store_url), open_store(store_url)]

    def add(s: SqlStore) -> None:
        for i in range(8):
            s.add_asset_version(AssetVersion(work_id=9, kind="cover", sha256=str(i), size=i))

    errors = all_at_once(add, [(s,) for s in stores])
    try:
        assert not errors, errors
        versions = stores[0].list_asset_versions(9, kind="cover")
        assert sorted(v.version or 0 for v in versions) == list(range(1, 17))
        assert [v.version for v in versions if v.superseded_by is None] == [16]
    finally:
        for s in stores:
            s.close()


def test_asset_version_derived_from_must_exist(store: SqlStore) -> None:
    with pytest.raises(StoreError):
        store.add_asset_version(
            AssetVersion(work_id=1, kind="epub", sha256="x", size=1, derived_from=987654)
        )


def test_asset_version_numbers_are_unique_per_scope(store: SqlStore) -> None:
    with store.engine.begin() as conn:
        row = {
            "work_id": 5,
            "product_id": None,
            "kind": "cover",
            "version": 1,
            "sha256": "s",
            "size": 1,
            "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        }
        conn.execute(
            sa.text(
                "INSERT INTO asset_versions (work_id, product_id, kind, version, sha256, size, "
                "created_at) VALUES (:work_id, :product_id, :kind, :version, :sha256, :size, "
                ":created_at)"
            ),
            row,
        )
    # the expression index makes NULL product ids collide, as they must
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO asset_versions (work_id, product_id, kind, version, sha256, size, "
                "created_at) VALUES (:work_id, :product_id, :kind, :version, :sha256, :size, "
                ":created_at)"
            ),
            row,
        )


# --- alerts ----------------------------------------------------------------------------------


def test_alerts_are_recorded_and_logged(store: SqlStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="consonance_sftp.alerts")
    critical = store.raise_alert(
        Alert(
            severity=AlertSeverity.CRITICAL,
            kind="host_key_mismatch",
            message="printer presented an unknown host key",
            partner="printer",
            details={"fingerprint": "SHA256:abc"},
        )
    )
    store.raise_alert(Alert(severity=AlertSeverity.WARNING, kind="slow", message="slow partner"))
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.CRITICAL, "alert: printer presented an unknown host key") in levels
    assert (logging.WARNING, "alert: slow partner") in levels
    listed = store.list_alerts()
    assert [a.kind for a in listed] == ["slow", "host_key_mismatch"]
    assert listed[1].details == {"fingerprint": "SHA256:abc"}
    assert store.list_alerts(partner="printer")[0].id == critical.id
    acked = store.acknowledge_alert(critical.id, by="alice")
    assert acked.acknowledged_by == "alice" and acked.acknowledged_at is not None
    assert [a.kind for a in store.list_alerts(unacknowledged=True)] == ["slow"]
    assert [a.kind for a in store.list_alerts(kind="host_key_mismatch")] == ["host_key_mismatch"]


# --- snapshots and watermarks ----------------------------------------------------------------


def test_snapshots_insert_replace_and_keep_others(store: SqlStore) -> None:
    assert store.load_snapshots("work") == {}
    store.save_snapshots("work", {1: Snapshot("h1", {"stage": "editing"}), 2: Snapshot("h2")})
    store.save_snapshots("work", {1: Snapshot("h1b", {"stage": "production", "status": None})})
    store.save_snapshots("product", {1: Snapshot("p1")})
    assert store.load_snapshots("work") == {
        1: Snapshot("h1b", {"stage": "production", "status": None}),
        2: Snapshot("h2", {}),
    }
    assert store.load_snapshots("product") == {1: Snapshot("p1", {})}
    many = {i: Snapshot(f"h{i}") for i in range(1200)}  # more than one batch
    store.save_snapshots("bulk", many)
    assert store.load_snapshots("bulk") == many


def test_watermarks(store: SqlStore) -> None:
    assert store.get_watermark("works.changed_since") is None
    store.set_watermark("works.changed_since", "2026-03-01")
    store.set_watermark("works.changed_since", "2026-03-02")
    assert store.get_watermark("works.changed_since") == "2026-03-02"


# --- audit trail basics (tampering: test_store_audit.py) -------------------------------------


def test_audit_append_list_and_verify(store: SqlStore) -> None:
    e1 = store.append_audit("alice", "partner.trust", "partner:printer", {"fp": "SHA256:x"})
    e2 = store.append_audit("engine", "delivery.sent", "delivery:1", {"attempts": 2, "ok": True})
    assert (e1.seq, e2.seq) == (1, 2)
    assert e2.prev_hash == e1.hash and e1.chain_id == e2.chain_id == store.chain_id
    listed = store.list_audit()
    assert [e.action for e in listed] == ["delivery.sent", "partner.trust"]
    assert listed[0] == e2
    assert [e.seq for e in store.list_audit(subject="partner:printer")] == [1]
    assert [e.seq for e in store.list_audit(action="delivery.sent")] == [2]
    report = store.verify_audit()
    assert report.ok and (report.events, report.chains) == (2, 1)
    assert store.verify_audit_or_raise() == report


def test_audit_details_must_be_json(store: SqlStore) -> None:
    with pytest.raises(StoreError, match="plain JSON"):
        store.append_audit("a", "b", "c", {"when": datetime.now(UTC)})
    with pytest.raises(StoreError, match="NaN"):
        store.append_audit("a", "b", "c", {"x": float("nan")})


def test_bad_url_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unsupported database"):
        open_store("mysql://localhost/db")
    with pytest.raises(StoreError, match="no database at"):
        open_store(f"sqlite:///{tmp_path / 'missing.db'}", must_exist=True)


@pytest.mark.postgres
def test_unreachable_postgres_is_a_retryable_store_error() -> None:
    port = free_port()  # nothing listens here
    with pytest.raises(StoreError, match="database unavailable") as info:
        open_store(f"postgresql://nobody@127.0.0.1:{port}/nothing")
    assert info.value.retryable
