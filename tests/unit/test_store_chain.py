"""The audit hash chain on its own (no database), and the store's SQLite settings and schema."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from consonance_sftp.adapters.store import open_store
from consonance_sftp.adapters.store.audit_chain import (
    GENESIS,
    ChainHead,
    StoredEvent,
    canonical_json,
    check_chains,
    event_hash,
)
from consonance_sftp.adapters.store.database import normalise_url
from consonance_sftp.adapters.store.schema import metadata
from consonance_sftp.errors import StoreError

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def chain(chain_id: str, n: int) -> list[StoredEvent]:
    events: list[StoredEvent] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        details = canonical_json({"n": seq})
        ts = T0 + timedelta(seconds=seq)
        digest = event_hash(
            prev_hash=prev,
            chain_id=chain_id,
            seq=seq,
            ts=ts,
            actor="engine",
            action="delivery.sent",
            subject=f"delivery:{seq}",
            details_json=details,
        )
        events.append(
            StoredEvent(
                chain_id,
                seq,
                ts,
                "engine",
                "delivery.sent",
                f"delivery:{seq}",
                details,
                prev,
                digest,
            )
        )
        prev = digest
    return events


def head_of(events: list[StoredEvent]) -> ChainHead:
    return ChainHead(events[-1].chain_id, events[-1].seq, events[-1].hash)


def test_hash_format_is_pinned() -> None:
    """Changing the encoding would make every stored trail fail to verify: pin it."""
    payload = '["c1",1,"2026-01-02T03:04:05.678901+00:00","alice","a.b","s",{"k":"é","n":1}]'
    expected = hashlib.sha256(f"{GENESIS}\n{payload}".encode()).hexdigest()
    got = event_hash(
        prev_hash=GENESIS,
        chain_id="c1",
        seq=1,
        ts=T0.astimezone(timezone(timedelta(hours=-5))),  # any zone: hashed as UTC
        actor="alice",
        action="a.b",
        subject="s",
        details_json=canonical_json({"n": 1, "k": "é"}),
    )
    assert got == expected


def test_canonical_json_is_order_independent_and_strict() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": None, "c": True}]}) == (
        '{"a":[1,{"c":true,"d":null}],"b":1}'
    )
    with pytest.raises(StoreError):
        canonical_json({"x": float("inf")})
    with pytest.raises(StoreError):
        canonical_json({1: "int key"})
    with pytest.raises(StoreError):
        canonical_json({"x": object()})


def test_intact_chains_verify() -> None:
    a, b = chain("a", 5), chain("b", 3)
    events, chains, problems = check_chains(a + b, {"a": head_of(a), "b": head_of(b)})
    assert (events, chains, problems) == (8, 2, [])


@pytest.mark.parametrize(
    ("tamper", "kind", "seq"),
    [
        (lambda ev: [*ev[:2], dataclasses.replace(ev[2], actor="mallory"), *ev[3:]], "edited", 3),
        (lambda ev: ev[:1] + ev[2:], "missing", 3),
        (lambda ev: ev[1:], "missing", 2),
        (lambda ev: ev[:3], "truncated", 4),
    ],
    ids=["edited", "deleted-middle", "deleted-first", "truncated-tail"],
)
def test_tampering_is_named(tamper, kind: str, seq: int) -> None:  # type: ignore[no-untyped-def]
    events = chain("a", 5)
    head = head_of(events)
    _, _, problems = check_chains(tamper(events), {"a": head})
    assert [(p.chain_id, p.kind, p.seq) for p in problems] == [("a", kind, seq)]


def test_row_from_another_chain_position_is_reordered() -> None:
    events = chain("a", 4)
    other = chain("a", 4)
    # a self-consistent row 3 whose prev_hash is not row 2's hash (built on a different row 2)
    forged_prev = "f" * 64
    details = canonical_json({"n": 3})
    forged = StoredEvent(
        "a",
        3,
        other[2].ts,
        "engine",
        "delivery.sent",
        "delivery:3",
        details,
        forged_prev,
        event_hash(
            prev_hash=forged_prev,
            chain_id="a",
            seq=3,
            ts=other[2].ts,
            actor="engine",
            action="delivery.sent",
            subject="delivery:3",
            details_json=details,
        ),
    )
    _, _, problems = check_chains([*events[:2], forged, events[3]], {"a": head_of(events)})
    assert [(p.kind, p.seq) for p in problems] == [("reordered", 3)]


def test_head_problems() -> None:
    events = chain("a", 3)
    _, _, missing = check_chains(events, {})
    assert [p.kind for p in missing] == ["head_missing"]
    _, _, behind = check_chains(events, {"a": ChainHead("a", 2, events[1].hash)})
    assert [(p.kind, p.seq) for p in behind] == [("head_mismatch", 3)]
    _, _, wrong = check_chains(events, {"a": ChainHead("a", 3, "0" * 64)})
    assert [p.kind for p in wrong] == ["head_mismatch"]
    _, chains, gone = check_chains([], {"a": head_of(events)})
    assert chains == 1 and [(p.kind, p.seq) for p in gone] == [("truncated", 1)]


# --- the SQLite database itself --------------------------------------------------------------


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'store.db'}"
    with open_store(url) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    assert (tmp_path / "nested" / "store.db").exists()


@pytest.mark.filterwarnings("ignore:.*expression-based index")
def test_migrations_match_the_table_definitions(tmp_path: Path) -> None:
    """The migration scripts and schema.py describe the same tables (no drift)."""
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store, store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        names = set(sa.inspect(conn).get_table_names())
    assert diff == []
    assert set(metadata.tables) <= names


def test_urls_are_normalised_to_psycopg() -> None:
    assert normalise_url("postgresql://u@h/db").startswith("postgresql+psycopg://")
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(StoreError, match="not a database URL"):
        normalise_url("::nonsense::")


def test_in_memory_sqlite_works_for_single_threaded_tests() -> None:
    with open_store("sqlite://") as store:
        store.append_audit("a", "b", "c")
        store.set_watermark("w", "1")
        assert store.get_watermark("w") == "1"
        assert store.verify_audit().events == 1


# --- keyed chains, ledger covers and the chain of chains (audit_cover) ------------------------


def test_keyed_hash_is_hmac_sha256_over_the_same_bytes() -> None:
    import hmac

    from consonance_sftp.adapters.store.audit_chain import link_hash

    assert link_hash("p", "x") == hashlib.sha256(b"p\nx").hexdigest()
    assert link_hash("p", "x", b"k") == hmac.new(b"k", b"p\nx", hashlib.sha256).hexdigest()


def test_keyed_chain_checks_with_the_key_only() -> None:
    events = chain("a", 2)  # hashed without a key
    head = ChainHead("a", 2, events[-1].hash)
    assert check_chains(events, {"a": head}).problems == []
    [needed] = check_chains(events, {"a": head}, keyed={"a"}).problems
    assert needed.kind == "key_needed"
    [edited] = check_chains(events, {"a": head}, keyed={"a"}, key=b"k").problems
    assert (edited.kind, edited.seq) == ("edited", 1)
    assert "different audit key" in edited.message


def _cover_event(seq: int, image: dict[str, object]) -> StoredEvent:
    from consonance_sftp.adapters.store.audit_cover import LEDGER_WRITE, row_image, write_details

    details = canonical_json(write_details("delivery_ledger", row_image(image)))
    return StoredEvent("c", seq, T0, "store", LEDGER_WRITE, "x", details, GENESIS, "h")


def test_ledger_check_takes_the_newest_rev_and_names_what_differs() -> None:
    from consonance_sftp.adapters.store.audit_cover import (
        CoverCollector,
        check_ledger,
        row_image,
    )

    first = {"id": 1, "audit_rev": 1, "sha256": "a", "outcome": "planned", "finished_at": None}
    second = {**first, "audit_rev": 2, "outcome": "sent", "finished_at": T0}
    collector = CoverCollector()
    for event in (_cover_event(2, second), _cover_event(1, first)):  # any order
        collector.feed(event)
    written = {2: row_image(second), 1: row_image(first)}

    def check(row: dict[str, object]) -> list[tuple[str, str]]:
        found = check_ledger("delivery_ledger", [row], collector.covers, lambda c: written[c.seq])
        return [(p.kind, p.message) for p in found]

    assert check(second) == []
    [(kind, message)] = check({**second, "sha256": "forged"})
    assert kind == "edited" and "sha256 is 'forged', the trail has 'a'" in message
    assert [k for k, _ in check(first)] == ["rolled_back"]
    assert [k for k, _ in check({**second, "id": 2})] == ["uncovered", "deleted"]


def test_registry_finds_a_deleted_chain_and_a_cut_back_one() -> None:
    from consonance_sftp.adapters.store.audit_cover import (
        RegistryEntry,
        check_chains_registered,
        check_registry,
        registry_hash,
    )

    entries: list[RegistryEntry] = []
    prev = GENESIS
    for seq, (chain_id, heads) in enumerate([("a", {}), ("b", {"a": 5}), ("c", {})], start=1):
        details = canonical_json({"heads": heads})
        fields = {
            "seq": seq,
            "chain_id": chain_id,
            "ts": T0,
            "writer": "w",
            "alg": "sha256",
            "details_json": details,
            "prev_hash": prev,
        }
        digest = registry_hash(**fields, key=None)  # type: ignore[arg-type]
        entries.append(RegistryEntry(**fields, hash=digest))  # type: ignore[arg-type]
        prev = digest
    registry = check_registry(entries, None)
    assert registry.problems == []
    found = check_chains_registered(
        registry, {"a": 3, "c": 1, "x": 1}, {"a": 3, "c": 1, "x": 1}, broken=set(), key=None
    )
    assert sorted((p.chain_id, p.kind) for p in found) == [
        ("a", "truncated"),
        ("b", "chain_deleted"),
        ("x", "unregistered"),
    ]
    [gap] = check_registry([entries[0], entries[2]], None).problems
    assert (gap.table, gap.seq, gap.kind) == ("audit_registry", 3, "missing")
