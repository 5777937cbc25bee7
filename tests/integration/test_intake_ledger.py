"""The intake ledger as the intake workflow writes it (SQLite and PostgreSQL): one row per file
version however often a step replays, one audit event per change, a retried failure cleared."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

from consonance_sftp.adapters.store import open_store
from consonance_sftp.engine.intake import StoreIntakeLedger
from consonance_sftp.models import IntakeOutcome
from consonance_sftp.ports.intake import FetchedFile, IntakeLedgerEntry, IntakeRequest

REQ = IntakeRequest(
    flow="intake",
    kind="intake",
    partner="typesetter",
    remote_path="/out/interior.pdf",
    size=1234,
    mtime=1_763_980_000.0,
    trigger="schedule:2026-11-24T10:00:00+00:00",
)
FETCHED = FetchedFile(local_path="/var/inbox/interior.pdf", size=1234, sha256="ab" * 32)


def test_replays_write_one_row_and_one_event(store_url: str) -> None:
    with open_store(store_url) as store:
        ledger = StoreIntakeLedger(store)
        record = IntakeLedgerEntry(
            workflow_id="ing-x", request=REQ, outcome=IntakeOutcome.STORED, fetched=FETCHED
        )
        first = ledger.record(record)
        assert ledger.record(record) == first  # a replayed step
        [row] = store.list_intakes(partner="typesetter")
        assert (row.id, row.outcome, row.sha256, row.local_path, row.flow) == (
            first,
            IntakeOutcome.STORED,
            FETCHED.sha256,
            FETCHED.local_path,
            "intake",
        )
        assert store.find_intake(REQ.partner, REQ.remote_path, REQ.size, REQ.mtime) == row
        events = store.list_audit(subject="typesetter:/out/interior.pdf")
        assert [e.action for e in events] == ["intake.stored"]
        assert events[0].details["workflow_id"] == "ing-x"
        assert events[0].details["sha256"] == FETCHED.sha256


def test_a_failure_then_a_successful_retry_is_one_row_with_the_reason_cleared(
    store_url: str,
) -> None:
    with open_store(store_url) as store:
        ledger = StoreIntakeLedger(store)
        failed = IntakeLedgerEntry(
            workflow_id="ing-x",
            request=REQ,
            outcome=IntakeOutcome.FAILED,
            reason="permission denied (partner 'typesetter', /out/interior.pdf)",
        )
        row_id = ledger.record(failed)
        [row] = store.list_intakes()
        assert row.outcome is IntakeOutcome.FAILED and "permission denied" in (row.reason or "")
        assert row.sha256 is None and row.local_path is None
        stored = IntakeLedgerEntry(
            workflow_id="ing-x", request=REQ, outcome=IntakeOutcome.STORED, fetched=FETCHED
        )
        assert ledger.record(stored) == row_id
        [row] = store.list_intakes()
        assert (row.outcome, row.sha256, row.reason or None) == (
            IntakeOutcome.STORED,
            FETCHED.sha256,
            None,
        )
        actions = [
            e.action for e in reversed(store.list_audit(subject=f"typesetter:{REQ.remote_path}"))
        ]
        assert actions == ["intake.failed", "intake.stored"]


def test_a_version_begun_by_an_earlier_one_supersedes_it_as_incomplete(
    store_url: str, tmp_path: Path
) -> None:
    """The partner paused longer than ``stable_interval``: the first poll took the first
    bytes, the next the whole file. The first row becomes ``superseded-incomplete`` (a
    21-character outcome: PostgreSQL's column must hold it), the second names it; a larger
    file under the same name that does not begin with those bytes supersedes nothing."""
    whole = os.urandom(300_000)
    versions = [(whole[:120_000], 1.0), (whole, 2.0)]
    with open_store(store_url) as store:
        ledger = StoreIntakeLedger(store)
        ids = []
        for data, mtime in versions:
            req = replace(REQ, size=len(data), mtime=REQ.mtime + mtime)
            local = tmp_path / f"v{mtime}"
            local.write_bytes(data)
            fetched = FetchedFile(
                local_path=str(local), size=len(data), sha256=hashlib.sha256(data).hexdigest()
            )
            ids.append(
                ledger.record(
                    IntakeLedgerEntry(
                        workflow_id=f"ing-{mtime}",
                        request=req,
                        outcome=IntakeOutcome.STORED,
                        fetched=fetched,
                    )
                )
            )
            marked = ledger.supersede_incomplete(req, fetched)
        assert marked == [ids[0]]
        assert ledger.supersede_incomplete(req, fetched) == []  # a replayed step: done already
        rows = {r.id: r for r in store.list_intakes(partner="typesetter")}
        first, second = rows[ids[0]], rows[ids[1]]
        assert first.outcome is IntakeOutcome.SUPERSEDED_INCOMPLETE
        assert first.reason and "120,000 bytes" in first.reason and f"#{ids[1]}" in first.reason
        assert (second.outcome, second.supersedes) == (IntakeOutcome.STORED, ids[0])
        [event] = store.list_audit(action="intake.superseded_incomplete")
        assert event.subject == "typesetter:/out/interior.pdf"
        assert event.details["intake_id"] == ids[0]
        assert event.details["superseded_by"] == ids[1]

        # Not a prefix: another file under the same name, larger. Nothing is superseded.
        other = os.urandom(400_000)
        local = tmp_path / "other"
        local.write_bytes(other)
        req = replace(REQ, size=len(other), mtime=REQ.mtime + 3)
        fetched = FetchedFile(
            local_path=str(local), size=len(other), sha256=hashlib.sha256(other).hexdigest()
        )
        ledger.record(
            IntakeLedgerEntry(
                workflow_id="ing-3", request=req, outcome=IntakeOutcome.STORED, fetched=fetched
            )
        )
        assert ledger.supersede_incomplete(req, fetched) == []
        assert store.find_intake(
            "typesetter", REQ.remote_path, len(whole), REQ.mtime + 2
        ) == replace(second)


def test_a_final_failure_raises_one_alert_however_often_the_step_replays(
    store_url: str,
) -> None:
    with open_store(store_url) as store:
        ledger = StoreIntakeLedger(store)
        record = IntakeLedgerEntry(
            workflow_id="ing-f",
            request=REQ,
            outcome=IntakeOutcome.FAILED,
            reason="permission denied (partner 'typesetter', /out/interior.pdf)",
        )
        ledger.record(record)
        ledger.record(record)  # the record-failure step replayed after a crash
        [alert] = store.list_alerts(kind="intake_failed")
        assert alert.partner == "typesetter" and alert.flow == "intake"
        assert "permission denied" in alert.message and "/out/interior.pdf" in alert.message


def test_a_failure_quoting_a_name_that_is_not_utf8_is_recorded_and_alerted(
    store_url: str,
) -> None:
    """The error message of a file whose name is not UTF-8 quotes the name as the server has
    it; the row, the event and the alert still get written (the bytes shown as ``\\xNN``)."""
    odd = b"/out/Bj\xf6rk.pdf".decode("utf-8", "surrogateescape")
    req = replace(REQ, remote_path=odd)
    with open_store(store_url) as store:
        ledger = StoreIntakeLedger(store)
        ledger.record(
            IntakeLedgerEntry(
                workflow_id="ing-odd",
                request=req,
                outcome=IntakeOutcome.FAILED,
                reason=f"the file changed after it was listed (partner 'typesetter', {odd})",
            )
        )
        [row] = store.list_intakes(partner="typesetter")
        assert row.remote_path == "/out/Bj\\xf6rk.pdf" and row.raw_name == b"Bj\xf6rk.pdf".hex()
        shown = "/out/Bj\\xf6rk.pdf"
        assert row.reason == f"the file changed after it was listed (partner 'typesetter', {shown})"
        [event] = store.list_audit(subject="typesetter:/out/Bj\\xf6rk.pdf")
        assert event.action == "intake.failed" and "Bj\\xf6rk" in str(event.details["reason"])
        [alert] = store.list_alerts(kind="intake_failed")
        assert "/out/Bj\\xf6rk.pdf" in alert.message
