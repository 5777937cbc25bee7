"""Migration 0006 on a database written before it (SQLite and PostgreSQL): pauses and marks kept
as watermarks move to their tables, the deliveries the audit trail shows still held become open
holds, and a downgrade puts the watermarks back as they were."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from consonance_sftp.adapters.store import open_store
from consonance_sftp.adapters.store.database import alembic_config, create_engine
from consonance_sftp.models import DeliveryKey

SHA = "d" * 64
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
PAUSED = {"paused": True, "by": "alice", "reason": "host key changed", "at": T0.isoformat()}
RESUMED = {"paused": False, "by": "bob", "reason": "", "at": (T0 + timedelta(hours=1)).isoformat()}
MARKS = {
    "operator.paused.partner.printer": json.dumps(PAUSED),
    "operator.paused.flow.print-files": json.dumps(RESUMED),
    f"resend.force.printer:/in/a:b.pdf:{SHA}": "1",
    "publication_due.56.12": "2027-01-10",
    "works.changed_since": "2026-11-29",  # not operational state: stays a watermark
}


def _request(package: str) -> dict[str, Any]:
    return {
        "flow": "print-files",
        "partner": "printer",
        "package": package,
        "files": [{"source": "/s", "remote_path": f"/in/{package}", "sha256": SHA, "size": 1}],
        "generation": 0,
        "trigger": "schedule",
        "isbn": None,
    }


# (minutes after T0, action, package): A held twice and never released; B held, released.
EVENTS = [
    (0, "delivery.held", "A"),
    (0, "delivery.held", "B"),
    (1, "delivery.released", "B"),
    (2, "delivery.held", "A"),
]


@pytest.fixture
def old_db(empty_url: str) -> str:
    """A database at revision 0005 with pauses and marks as watermarks, and holds on the trail."""
    engine = create_engine(empty_url)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")
        for name, value in MARKS.items():
            conn.execute(
                sa.text("INSERT INTO watermarks VALUES (:n, :v, :t)"),
                {"n": name, "v": value, "t": T0},
            )
        for seq, (minutes, action, package) in enumerate(EVENTS, start=1):
            details = (
                {"reason": "partner 'printer' is paused", "request": _request(package)}
                if action == "delivery.held"
                else {"workflow_id": "dlv-b"}
            )
            conn.execute(
                sa.text(
                    "INSERT INTO audit_events VALUES ('old', :q, :t, 'service', :a, :s, :d, "
                    "'x', 'y')"
                ),
                {
                    "q": seq,
                    "t": T0 + timedelta(minutes=minutes),
                    "a": action,
                    "s": f"printer:{package}",
                    "d": json.dumps(details),
                },
            )
    engine.dispose()
    return empty_url


def _watermarks(url: str) -> dict[str, str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT name, value FROM watermarks")).all()
    finally:
        engine.dispose()
    return {str(name): str(value) for name, value in rows}


def test_upgrade_keeps_pauses_marks_and_holds_and_downgrade_gives_them_back(
    old_db: str,
) -> None:
    with open_store(old_db) as store:  # migrates 0005 -> head
        paused = store.get_pause("partner", "printer")
        assert paused is not None
        assert (paused.paused, paused.by, paused.reason, paused.at) == (
            True,
            "alice",
            "host key changed",
            T0,
        )
        resumed = store.get_pause("flow", "print-files")
        assert resumed is not None and not resumed.paused and resumed.by == "bob"
        key = DeliveryKey(partner="printer", remote_path="/in/a:b.pdf", sha256=SHA)
        assert store.get_resend_mark(key) == 1
        assert store.get_publication_due(56, 12) == "2027-01-10"
        [hold] = store.open_holds()
        assert (hold.package, hold.held_at, hold.reason) == (
            "A",
            T0,
            "partner 'printer' is paused",
        )
        assert hold.request == _request("A")
        # Held again while held: the same hold, not a second one.
        assert store.hold_delivery(_request("A"), "again").id == hold.id
    assert _watermarks(old_db) == {"works.changed_since": "2026-11-29"}

    engine = create_engine(old_db)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
    engine.dispose()
    back = _watermarks(old_db)
    assert set(back) == set(MARKS)
    for name, value in MARKS.items():
        if name.startswith("operator.paused."):
            assert json.loads(back[name]) == json.loads(value)
        else:
            assert back[name] == value
