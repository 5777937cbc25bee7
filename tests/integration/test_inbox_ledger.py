"""The intake ledger as the ingest workflow writes it (SQLite and PostgreSQL): one row per file
version however often a step replays, one audit event per change, a retried failure cleared."""

from __future__ import annotations

from consonance_sftp.adapters.store import open_store
from consonance_sftp.engine.contracts import FetchedFile, IngestRecord, IngestRequest
from consonance_sftp.engine.ingest import StoreIntakeLedger
from consonance_sftp.models import IntakeOutcome

REQ = IngestRequest(
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
        record = IngestRecord(
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
        failed = IngestRecord(
            workflow_id="ing-x",
            request=REQ,
            outcome=IntakeOutcome.FAILED,
            reason="permission denied (partner 'typesetter', /out/interior.pdf)",
        )
        row_id = ledger.record(failed)
        [row] = store.list_intakes()
        assert row.outcome is IntakeOutcome.FAILED and "permission denied" in (row.reason or "")
        assert row.sha256 is None and row.local_path is None
        stored = IngestRecord(
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
