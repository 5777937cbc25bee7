"""Engine pieces that need no worker process: IDs, settings, the fence, DBOS config, and the
guard on the private DBOS call that executor takeover relies on."""

from __future__ import annotations

import importlib.metadata
import inspect

import pytest

from consonance_sftp.engine import (
    EngineSettings,
    RetryPolicy,
    dbos_config,
    delivery_queue_name,
    delivery_workflow_id,
    withdrawal_workflow_id,
)
from consonance_sftp.engine.delivery import failure_reason, is_retryable, step_options
from consonance_sftp.engine.lease import LeaseFence, advisory_key, pg_conninfo
from consonance_sftp.engine.takeover import private_recovery_signature
from consonance_sftp.errors import (
    ConnectionLost,
    EngineError,
    Fenced,
    RemotePermissionDenied,
)
from consonance_sftp.models import DeliveryKey
from consonance_sftp.ports.delivery import DeliveryRequest, FileToSend


def key(path: str, sha: str = "ab" * 32, partner: str = "printer") -> DeliveryKey:
    return DeliveryKey(partner=partner, remote_path=path, sha256=sha)


def settings(**kw: object) -> EngineSettings:
    base: dict[str, object] = {
        "system_database_url": "sqlite:////tmp/x/dbos.sqlite",
        "application_version": "1",
        "executor_id": "host-0",
    }
    return EngineSettings(**{**base, **kw})  # type: ignore[arg-type]


# --- workflow IDs and queues -------------------------------------------------------------


def test_workflow_id_is_a_function_of_keys_and_generation_only() -> None:
    a, b = key("/in/a.pdf"), key("/in/b.pdf", "cd" * 32)
    wid = delivery_workflow_id([a, b])
    assert wid == delivery_workflow_id([b, a])  # file order does not matter
    assert wid.startswith("dlv-printer-") and wid.endswith("-g0")
    assert delivery_workflow_id([a, b], 1) != wid  # a resend is a new workflow
    assert delivery_workflow_id([a]) != wid
    assert delivery_workflow_id([a, key("/in/b.pdf", "ce" * 32)]) != wid  # new content
    assert delivery_workflow_id([a, key("/in/c.pdf", "cd" * 32)]) != wid  # new place
    assert delivery_workflow_id([a, key("/in/b.pdf", ("cd" * 32).upper())]) == wid


def test_workflow_id_rejects_mixed_partners_and_empty_packages() -> None:
    with pytest.raises(EngineError, match="exactly one partner"):
        delivery_workflow_id([key("/a"), key("/b", partner="other")])
    with pytest.raises(EngineError, match="at least one file"):
        delivery_workflow_id([])
    with pytest.raises(EngineError, match="generation"):
        delivery_workflow_id([key("/a")], -1)


def test_partner_names_are_made_safe_in_ids() -> None:
    wid = delivery_workflow_id([key("/a", partner="Höffmann & Söhne/EU")])
    assert wid.startswith("dlv-H_ffmann_S_hne_EU-")


def test_one_queue_per_connection_cap() -> None:
    assert delivery_queue_name(2) == "deliveries-c2"
    with pytest.raises(EngineError):
        delivery_queue_name(0)


def test_request_round_trips_through_plain_dicts() -> None:
    f = FileToSend(source="/s/a.pdf", remote_path="/in/a.pdf", sha256="ab" * 32, size=3)
    req = DeliveryRequest(
        flow="production", partner="p", package="x", files=(f,), generation=2, trigger="resend"
    )
    assert DeliveryRequest.from_dict(req.to_dict()) == req
    old = req.to_dict()
    del old["generation"], old["trigger"]  # queued by an older release
    assert DeliveryRequest.from_dict(old).generation == 0


def test_a_withdrawal_is_a_request_with_its_own_workflow_id() -> None:
    from consonance_sftp.ports.delivery import RequestAction

    f = FileToSend(source="", remote_path="/in/a.pdf", sha256="ab" * 32, size=3)
    plain = DeliveryRequest(flow="m", partner="p", package="x", files=(f,), isbn="978")
    # A delivery's dict is what it was before withdrawals existed (its hold key, and work a
    # previous release queued, stay the same).
    assert set(plain.to_dict()) == {
        "flow", "partner", "package", "files", "generation", "trigger", "isbn"
    }  # fmt: skip
    assert not plain.withdraws
    req = DeliveryRequest(
        flow="m", partner="p", package="x withdrawal", files=(f,), generation=1,
        action=RequestAction.WITHDRAW, work_id=7,
    )  # fmt: skip
    back = DeliveryRequest.from_dict(req.to_dict())
    assert back == req and back.withdraws and back.work_id == 7
    keys = req.keys()
    wid = withdrawal_workflow_id(keys, 1)
    assert wid.startswith("wdr-p-") and wid.endswith("-g1")
    assert wid.removeprefix("wdr-") == delivery_workflow_id(keys, 1).removeprefix("dlv-")
    assert withdrawal_workflow_id(keys, 0) != wid  # withdrawn again after a new release


# --- settings and DBOS config ------------------------------------------------------------


def test_settings_refuse_what_would_strand_or_confuse_work() -> None:
    with pytest.raises(EngineError, match="application_version"):
        settings(application_version=" ")
    with pytest.raises(EngineError, match="executor_id"):
        settings(executor_id="bad id/with spaces")
    with pytest.raises(EngineError, match="sqlite:/// or postgresql://"):
        settings(system_database_url="mysql://x")
    with pytest.raises(EngineError, match="3 heartbeat intervals"):
        settings(heartbeat_interval_s=2.0, takeover_after_s=5.0)


def test_backend_detection_and_lease_ttl() -> None:
    pg = settings(system_database_url="postgresql+psycopg://u@h:5/db", takeover_after_s=20.0)
    assert pg.is_postgres and pg.lease_ttl_s == 10.0
    assert pg_conninfo(pg.system_database_url) == "postgresql://u@h:5/db"
    assert settings().sqlite_path == "/tmp/x/dbos.sqlite"


def test_dbos_config_pins_version_and_executor() -> None:
    cfg = dbos_config(settings(application_version="2026.11", executor_id="w-3"))
    assert cfg["application_version"] == "2026.11"
    assert cfg["executor_id"] == "w-3"
    assert cfg["system_database_url"] == "sqlite:////tmp/x/dbos.sqlite"


def test_retry_policy_waits_grow_exponentially() -> None:
    assert RetryPolicy(max_attempts=4, initial_interval_s=1, backoff_rate=2).waits() == [1, 2, 4]
    with pytest.raises(EngineError):
        RetryPolicy(max_attempts=0)


def test_only_retryable_errors_are_retried() -> None:
    assert is_retryable(ConnectionLost("reset", partner="p"))
    assert not is_retryable(RemotePermissionDenied("denied", partner="p"))
    assert not is_retryable(ValueError("bug"))
    opts = step_options("upload:/a", RetryPolicy(max_attempts=3, initial_interval_s=0.5))
    assert opts["max_attempts"] == 3 and opts["interval_seconds"] == 0.5
    assert step_options("plan", RetryPolicy(max_attempts=1)) == {"name": "plan"}


def test_failure_reason_names_the_last_error_and_attempts() -> None:
    from dbos._error import DBOSMaxStepRetriesExceeded

    errors: list[Exception] = [ConnectionLost("reset", partner="p"), ConnectionLost("gone")]
    reason = failure_reason(DBOSMaxStepRetriesExceeded("upload:/a", 2, errors))
    assert reason == "gone (gave up after 2 attempts)"
    assert failure_reason(RemotePermissionDenied("denied", partner="p")) == ("denied (partner 'p')")


# --- the fence ---------------------------------------------------------------------------


def test_fence_passes_while_renewed_and_stops_writers_once_stale() -> None:
    lost: list[str] = []
    fence = LeaseFence(ttl_s=0.05, on_lost=lost.append)
    fence.check()
    import time

    time.sleep(0.08)
    with pytest.raises(Fenced, match="no successful heartbeat"):
        fence.check()
    assert len(lost) == 1
    fence.renewed()
    with pytest.raises(Fenced):  # once lost, lost for good: the process must restart
        fence.check()
    assert len(lost) == 1


def test_a_heartbeat_answered_late_counts_from_when_it_was_sent() -> None:
    """A process stopped (SIGSTOP) after sending a heartbeat reads its answer on waking: that
    must not pass for a fresh lease, or it writes while its rescuer does."""
    import time

    lost: list[str] = []
    fence = LeaseFence(ttl_s=0.05, on_lost=lost.append)
    sent_at = time.monotonic()
    time.sleep(0.08)  # stopped between sending the heartbeat and reading its answer
    fence.renewed(sent_at)
    with pytest.raises(Fenced, match="no successful heartbeat"):
        fence.check()
    assert len(lost) == 1


def test_advisory_keys_are_stable_signed_64_bit() -> None:
    k = advisory_key("worker-1")
    assert k == advisory_key("worker-1") != advisory_key("worker-2")
    assert -(2**63) <= k < 2**63


# --- the private DBOS call executor takeover depends on ----------------------------------


def test_dbos_is_the_pinned_version() -> None:
    """Upgrading DBOS is deliberate: re-run the engine acceptance tests, then move this pin."""
    assert importlib.metadata.version("dbos") == "3.4.0"


def test_private_recovery_call_keeps_its_shape() -> None:
    """Executor takeover calls ``DBOS._recover_pending_workflows(executor_ids)``; if an upgrade
    renames or reshapes it, this fails before production does (the behaviour is covered by
    test_engine_postgres.py::test_silent_executor_is_taken_over...)."""
    from dbos import DBOS
    from dbos._recovery import recover_pending_workflows
    from dbos._sys_db import SystemDatabase

    assert private_recovery_signature() == ["executor_ids"]
    assert isinstance(inspect.getattr_static(DBOS, "_recover_pending_workflows"), classmethod)
    assert list(inspect.signature(recover_pending_workflows).parameters) == [
        "dbos",
        "executor_ids",
    ]
    # Recovery re-enqueues on the workflow's own queue (and partition), keeping the cap.
    src = inspect.getsource(SystemDatabase.reenqueue_for_recovery)
    assert "coalesce" in src and "queue_name" in src


# --- the ledger on the real store ----------------------------------------------------------


def test_store_ledger_keeps_one_row_per_key_and_generation(tmp_path: object) -> None:
    from pathlib import Path

    from consonance_sftp.adapters.store import open_store
    from consonance_sftp.engine import StoreLedger
    from consonance_sftp.models import DeliveryOutcome
    from consonance_sftp.ports.delivery import DeliveryRecord

    with open_store(f"sqlite:///{Path(str(tmp_path)) / 'store.db'}") as store:
        ledger = StoreLedger(store)
        k = key("/in/a.pdf")

        def rec(outcome: DeliveryOutcome, error: str | None = None, gen: int = 0) -> None:
            ledger.record(
                DeliveryRecord(
                    workflow_id="dlv-x",
                    flow="production",
                    partner=k.partner,
                    remote_path=k.remote_path,
                    sha256=k.sha256,
                    size=10,
                    generation=gen,
                    outcome=outcome,
                    error=error,
                )
            )

        assert not ledger.already_sent(k, 0)
        rec(DeliveryOutcome.FAILED, "permission denied")
        assert not ledger.already_sent(k, 0)  # a failure is not a delivery
        rec(DeliveryOutcome.SENT)
        rec(DeliveryOutcome.SENT)  # a replayed step
        assert ledger.already_sent(k, 0) and not ledger.already_sent(k, 1)
        rec(DeliveryOutcome.SKIPPED, gen=1)
        rows = sorted(store.list_deliveries(), key=lambda r: r.generation)
        assert [(r.generation, r.outcome, r.error) for r in rows] == [
            (0, "sent", None),
            (1, "skipped", None),
        ]
        # Every change of outcome is on the audit trail as well (a replay adds nothing), and the
        # trail verifies.
        actions = [e.action for e in store.list_audit(subject=f"{k.partner}:{k.remote_path}")]
        assert sorted(actions) == sorted(["delivery.failed", "delivery.sent", "delivery.skipped"])
        assert store.verify_audit().ok


def test_the_engine_records_the_row_the_store_keeps(tmp_path: object) -> None:
    """One ``DeliveryRecord``: the row the engine records is the one the store reads back,
    field for field (no conversion between an engine record and a ledger row), and a later
    outcome of the same row says which executor recorded it."""
    import dataclasses
    from datetime import UTC, datetime
    from pathlib import Path

    from consonance_sftp.adapters.store import open_store
    from consonance_sftp.engine import StoreLedger
    from consonance_sftp.models import DeliveryOutcome
    from consonance_sftp.ports.delivery import DeliveryRecord

    started = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    failed = DeliveryRecord(
        flow="production",
        partner="printer",
        remote_path="/in/a.pdf",
        sha256="ab" * 32,
        size=10,
        generation=0,
        source="/s/a.pdf",
        package="9780000000001 production",
        isbn="9780000000001",
        workflow_id="dlv-x",
        executor_id="host-a-0",
        trigger="manual:alice",
        started_at=started,
        finished_at=started.replace(minute=1),
        attempts=3,
        outcome=DeliveryOutcome.FAILED,
        error="permission denied",
    )
    with open_store(f"sqlite:///{Path(str(tmp_path)) / 'store.db'}") as store:
        ledger = StoreLedger(store)
        ledger.record(failed)
        [row] = store.list_deliveries()
        assert row.id is not None and row.created_at is not None
        assert dataclasses.replace(row, id=None, created_at=None) == failed
        # A retry on another executor moves the same row on, and says who sent it.
        ledger.record(
            dataclasses.replace(
                failed,
                workflow_id="dlv-x",
                executor_id="host-b-0",
                attempts=1,
                outcome=DeliveryOutcome.SENT,
                error=None,
                finished_at=started.replace(minute=5),
            )
        )
        [sent] = store.list_deliveries()
        assert (sent.id, sent.outcome, sent.error, sent.executor_id, sent.attempts) == (
            row.id,
            DeliveryOutcome.SENT,
            None,
            "host-b-0",
            4,
        )
        assert sent.finished_at == started.replace(minute=5)
        actors = [e.actor for e in store.list_audit(subject="printer:/in/a.pdf")]
        assert sorted(actors) == ["engine:host-a-0", "engine:host-b-0"]
        assert store.verify_audit().ok


def test_a_withdrawal_is_recorded_once_however_often_its_step_replays(tmp_path: object) -> None:
    from pathlib import Path

    from consonance_sftp.adapters.store import open_store
    from consonance_sftp.engine import StoreLedger
    from consonance_sftp.ports.delivery import DeliveryRecord as Row
    from consonance_sftp.ports.delivery import RequestAction, WithdrawalRecord

    with open_store(f"sqlite:///{Path(str(tmp_path)) / 'store.db'}") as store:
        for path, sha in (("/in/a.jpg", "aa"), ("/in/a.jpg", "bb"), ("/in/b.txt", "cc")):
            store.record_delivery(
                Row(flow="m", partner="p", remote_path=path, sha256=sha * 32, size=1,
                    generation=0, workflow_id="dlv-p-1-g0", isbn="978", outcome="sent")
            )  # fmt: skip
        store.record_delivery(
            Row(flow="m", partner="q", remote_path="/in/a.jpg", sha256="aa" * 32, size=1,
                generation=0, workflow_id="dlv-q-1-g0", isbn="978", outcome="sent")
        )  # fmt: skip
        files = tuple(
            FileToSend(source="", remote_path=p, sha256=s * 32, size=1)
            for p, s in (("/in/a.jpg", "bb"), ("/in/b.txt", "cc"))
        )
        req = DeliveryRequest(
            flow="m", partner="p", package="978 marketing withdrawal", files=files,
            isbn="978", action=RequestAction.WITHDRAW, work_id=7,
        )  # fmt: skip
        record = WithdrawalRecord(
            workflow_id="wdr-p-1-g0", request=req, removed=("/in/a.jpg",),
            already_gone=("/in/b.txt",), executor_id="host-0",
        )  # fmt: skip
        ledger = StoreLedger(store)
        assert ledger.withdrawn(record)
        assert not ledger.withdrawn(record)  # a replayed step
        outcomes = {(r.partner, r.sha256[:2]): r.outcome for r in store.list_deliveries()}
        # Both versions sent to the same path are withdrawn; the other partner's row is not.
        assert outcomes == {
            ("p", "aa"): "withdrawn", ("p", "bb"): "withdrawn", ("p", "cc"): "withdrawn",
            ("q", "aa"): "sent",
        }  # fmt: skip
        # Each withdrawn row says which executor recorded its outcome; the other keeps none.
        executors = {(r.partner, r.sha256[:2]): r.executor_id for r in store.list_deliveries()}
        assert executors == {
            ("p", "aa"): "host-0", ("p", "bb"): "host-0", ("p", "cc"): "host-0",
            ("q", "aa"): None,
        }  # fmt: skip
        [event] = store.list_audit(action="package.withdrawn")
        assert (event.subject, event.actor) == ("p:978", "engine:host-0")
        assert event.details["removed"] == ["/in/a.jpg"]
        assert event.details["already_gone"] == ["/in/b.txt"]
        assert event.details["work_id"] == 7 and event.details["workflow_id"] == "wdr-p-1-g0"
