"""Operational state in its own tables (migration 0006): pauses, holds, resend and
publication-due marks, on SQLite and PostgreSQL; every pause and hold change still on the audit
trail; and held deliveries read from the holds, so their cost does not grow with the trail."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from consonance_sftp.adapters.store import SqlStore, open_store
from consonance_sftp.adapters.store.audit_chain import canonical_json
from consonance_sftp.adapters.store.audit_trail import Appender
from consonance_sftp.models import DeliveryKey
from tests.cli import free_port

SHA = "c" * 64


def request(package: str = "9780000000001 production", trigger: str = "manual") -> dict[str, Any]:
    return {
        "flow": "print-files",
        "partner": "printer",
        "package": package,
        "files": [
            {
                "source": "/tmp/a.pdf",
                "remote_path": "/in/a.pdf",
                "sha256": SHA,
                "size": 3,
                "upload_path": None,
                "asset_version_id": None,
            }
        ],
        "generation": 0,
        "trigger": trigger,
        "isbn": "9780000000001",
    }


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    with open_store(store_url) as opened:
        yield opened


def _actions(store: SqlStore, subject: str) -> list[str]:
    return [e.action for e in reversed(store.list_audit(subject=subject))]


def test_a_pause_and_a_resume_are_rows_and_audit_events(store: SqlStore) -> None:
    assert store.get_pause("partner", "printer") is None
    paused = store.set_pause("partner", "printer", paused=True, by="alice", reason="key changed")
    assert store.get_pause("partner", "printer") == paused
    assert (paused.paused, paused.by, paused.reason) == (True, "alice", "key changed")
    store.set_pause("flow", "print-files", paused=True, by="bob", reason="")
    resumed = store.set_pause("partner", "printer", paused=False, by="carol", reason="ok")
    assert store.get_pause("partner", "printer") == resumed
    assert [(p.scope, p.name, p.paused) for p in store.list_pauses()] == [
        ("flow", "print-files", True),
        ("partner", "printer", False),
    ]
    assert _actions(store, "partner:printer") == ["partner.paused", "partner.resumed"]
    [event] = store.list_audit(subject="partner:printer", action="partner.resumed")
    assert (event.actor, event.details) == ("user:carol", {"reason": "ok"})
    # Nothing of it in the generic watermarks any more.
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM watermarks")).scalar() == 0


def test_a_hold_stays_open_once_and_closes_with_its_release(store: SqlStore) -> None:
    first = store.hold_delivery(request(), "partner 'printer' is paused")
    again = store.hold_delivery(request(), "partner 'printer' is paused")
    assert again.id == first.id and again.held_at == first.held_at
    other = store.hold_delivery(request(package="9780000000002 production"), "window shut")
    assert [h.id for h in store.open_holds()] == [first.id, other.id]
    assert store.open_holds()[0].request == request()
    subject = "printer:9780000000001 production"
    assert _actions(store, subject) == ["delivery.held", "delivery.held"]

    closed = store.release_hold(
        first.id, by="service", workflow_id="dlv-x", details={"resumed_failed": False}
    )
    assert closed.released_at is not None and closed.workflow_id == "dlv-x"
    assert [h.id for h in store.open_holds()] == [other.id]
    [released] = store.list_audit(subject=subject, action="delivery.released")
    assert released.details == {
        "workflow_id": "dlv-x",
        "held_at": first.held_at.isoformat(),
        "resumed_failed": False,
    }
    # A second release of the same hold records nothing more.
    store.release_hold(first.id, by="service", workflow_id="dlv-y")
    assert len(store.list_audit(subject=subject, action="delivery.released")) == 1
    # Held again after its release: a new hold.
    renewed = store.hold_delivery(request(), "partner 'printer' is paused")
    assert renewed.id not in {first.id, other.id}
    assert len(store.open_holds()) == 2
    assert store.verify_audit().ok


def test_resend_and_publication_due_marks(store: SqlStore) -> None:
    key = DeliveryKey(partner="printer", remote_path="/in/a:b.pdf", sha256=SHA)
    assert store.get_resend_mark(key) is None
    store.set_resend_mark(key, 1)
    store.set_resend_mark(key, 2)
    assert store.get_resend_mark(key) == 2
    assert store.get_publication_due(56, 12) is None
    store.set_publication_due(56, 12, "2027-01-10")
    store.set_publication_due(56, 12, "2027-02-10")
    assert store.get_publication_due(56, 12) == "2027-02-10"
    assert store.get_publication_due(14, 12) is None


def _fill_audit(store: SqlStore, count: int) -> None:
    """``count`` unrelated audit events, in one transaction (quick to write)."""

    def write(audit: Appender) -> None:
        for n in range(count):
            audit.append("test", "delivery.sent", f"delivery:{n}", canonical_json({"n": n}))

    store.audit.transaction(write)


def test_held_deliveries_are_read_from_the_holds_not_the_audit_trail(tmp_path: Path) -> None:
    from consonance_sftp.app import App
    from consonance_sftp.app.runner import Controls, DeliveryRunner, Held, held_deliveries
    from consonance_sftp.config import load_settings
    from consonance_sftp.config.starter import CONFIG_NAME, init_project
    from consonance_sftp.ports.delivery import DeliveryRequest

    init_project(tmp_path, sftp_port=free_port(), api_port=free_port())
    app = App(load_settings(tmp_path / CONFIG_NAME))
    controls = Controls(app)
    controls.set("partner", "printer", paused=True, by="alice", reason="maintenance")
    held = asyncio.run(DeliveryRunner(app).submit(DeliveryRequest.from_dict(request())))
    assert isinstance(held, Held)

    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    store = app.store
    assert isinstance(store, SqlStore)
    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        before = held_deliveries(app, controls)
        issued_before = list(statements)
        _fill_audit(store, 10_000)
        statements.clear()
        after = held_deliveries(app, controls)
        issued_after = list(statements)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)

    assert [(h.request.package, h.reason) for h in after] == [
        ("9780000000001 production", "partner 'printer' is paused")
    ]
    assert after == before
    # The same queries however long the trail, and none of them reads it.
    assert issued_after == issued_before
    assert not [s for s in issued_after if "audit_events" in s]
    # The hold itself is on the trail, as before.
    [event] = store.list_audit(action="delivery.held")
    assert json.loads(json.dumps(event.details["request"])) == request()
