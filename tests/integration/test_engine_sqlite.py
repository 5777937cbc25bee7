"""The engine on its embedded default (SQLite), with real worker processes.

Each test starts ``tests/engine_worker.py`` as a subprocess, enqueues through ``EngineClient``
(the way the CLI does next to ``serve``), and checks what landed in the destination folder, the
events the transport logged, the ledger and DBOS's workflow status.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from consonance_sftp.engine import EngineClient
from consonance_sftp.ports.delivery import DeliveryRequest
from tests.engine_worker import (
    Worker,
    ledger_rows,
    make_source,
    read_events,
    settings_from,
    sha256_file,
    wait_for,
)


@pytest.fixture
def base_cfg(tmp_path: Path) -> dict[str, Any]:
    return {
        "db": f"sqlite:///{tmp_path}/dbos.sqlite",
        "executor_id": "serve-1",
        "events": str(tmp_path / "events.jsonl"),
        "ledger": str(tmp_path / "ledger.sqlite"),
        "dest": str(tmp_path / "dest"),
        "chunk_size": 65536,
        "chunk_delay_s": 0.0,
        "caps": [2],
    }


def start(workers: list[Worker], cfg: dict[str, Any], tmp_path: Path) -> Worker:
    w = Worker(cfg, tmp_path)
    workers.append(w)
    w.wait_ready()
    return w


def store_rows(url: str) -> list[Any]:
    """The delivery ledger rows of the service's real store."""
    from consonance_sftp.adapters.store import open_store

    with open_store(url) as store:
        return store.list_deliveries()


def events_of(cfg: dict[str, Any], ev: str, path: str | None = None) -> list[dict[str, Any]]:
    return [
        e
        for e in read_events(cfg["events"])
        if e["ev"] == ev and (path is None or e.get("path") == path)
    ]


@pytest.mark.slow
def test_kill9_mid_upload_resumes_and_sends_once(
    tmp_path: Path, base_cfg: dict[str, Any], workers: list[Worker]
) -> None:
    cfg = {**base_cfg, "chunk_delay_s": 0.02}
    small = make_source(tmp_path / "spec.pdf", 50_000, seed=1)
    big = make_source(tmp_path / "interior.pdf", 4_000_000, seed=2)  # 62 chunks, ~1.3 s
    w1 = start(workers, cfg, tmp_path)
    client = EngineClient(settings_from(cfg))
    req = DeliveryRequest(flow="production", partner="printer", package="pkg", files=(small, big))
    wf = client.enqueue_delivery(req, max_connections=2)

    wait_for(
        lambda: any(e["end"] >= big.size * 0.4 for e in events_of(cfg, "chunk", big.remote_path)),
        30,
        "40% of the big file",
        interval=0.02,
    )
    w1.kill9()
    killed_at = max(e["end"] for e in events_of(cfg, "chunk", big.remote_path))
    assert killed_at < big.size
    assert client.status(wf) == "PENDING"

    start(workers, cfg, tmp_path)  # same executor ID: DBOS recovers its own pending work
    wait_for(lambda: client.status(wf) == "SUCCESS", 60, "the delivery to finish")

    final = Path(cfg["dest"]) / "printer" / "in" / "interior.pdf"
    assert sha256_file(final) == big.sha256
    assert sorted(p.name for p in final.parent.iterdir()) == ["interior.pdf", "spec.pdf"]
    # The completed steps before the crash (plan, the small file's upload) did not run again.
    assert len(events_of(cfg, "plan")) == 2  # one remote_state call per file, once
    assert len(events_of(cfg, "upload_start", small.remote_path)) == 1
    starts = events_of(cfg, "upload_start", big.remote_path)
    assert len(starts) == 2
    assert starts[0]["offset"] == 0
    # Resumed from the bytes already there, not from zero, and nothing after them was lost.
    assert 0 < starts[1]["offset"] <= killed_at
    rows = ledger_rows(cfg["ledger"])
    assert [(r[1], r[4], r[6]) for r in rows] == [
        (big.remote_path, "sent", 1),
        (small.remote_path, "sent", 1),
    ]
    assert len(client.statuses()) == 1
    client.close()


def test_crash_between_rename_and_checkpoint_does_not_send_again(
    tmp_path: Path, base_cfg: dict[str, Any], workers: list[Worker]
) -> None:
    f = make_source(tmp_path / "cover.pdf", 300_000, seed=3)
    w1 = Worker({**base_cfg, "crash_after_rename": True}, tmp_path)
    workers.append(w1)
    w1.wait_ready()
    client = EngineClient(settings_from(base_cfg))
    wf = client.enqueue_delivery(
        DeliveryRequest(flow="production", partner="printer", package="cover", files=(f,)),
        max_connections=1,
    )
    assert w1.proc.wait(30) == 137  # died right after the rename, before DBOS's checkpoint
    final = Path(base_cfg["dest"]) / "printer" / "in" / "cover.pdf"
    inode, mtime = final.stat().st_ino, final.stat().st_mtime_ns
    assert ledger_rows(base_cfg["ledger"]) == []

    start(workers, base_cfg, tmp_path)
    wait_for(lambda: client.status(wf) == "SUCCESS", 30, "the delivery to finish")
    assert (final.stat().st_ino, final.stat().st_mtime_ns) == (inode, mtime)
    assert len(events_of(base_cfg, "upload_start")) == 1
    assert len(events_of(base_cfg, "rename")) == 1
    assert len(events_of(base_cfg, "rename_skipped")) == 1
    assert [(r[4], r[6]) for r in ledger_rows(base_cfg["ledger"])] == [("sent", 1)]
    client.close()


def test_same_files_enqueued_twice_run_once_and_resend_bumps_generation(
    tmp_path: Path, base_cfg: dict[str, Any], workers: list[Worker]
) -> None:
    f = make_source(tmp_path / "feed.xml", 10_000, seed=4)
    start(workers, base_cfg, tmp_path)
    client = EngineClient(settings_from(base_cfg))
    req = DeliveryRequest(flow="onix_feed", partner="dist", package="feed", files=(f,))
    first = client.enqueue_delivery(req, max_connections=2)
    again = client.enqueue_delivery(req, max_connections=2)
    assert first == again
    wait_for(lambda: client.status(first) == "SUCCESS", 30, "the delivery")
    assert client.enqueue_delivery(req, max_connections=2) == first  # after completion too
    time.sleep(0.3)
    assert len(events_of(base_cfg, "upload_start")) == 1

    # A resend is explicit: a new generation is a new workflow; the identical file already at
    # its final name is recorded as skipped, not uploaded again.
    resend = client.enqueue_delivery(
        _with_gen(req, 1),
        max_connections=2,
    )
    assert resend != first and resend.endswith("-g1")
    wait_for(lambda: client.status(resend) == "SUCCESS", 30, "the resend")
    assert [(r[3], r[4]) for r in ledger_rows(base_cfg["ledger"])] == [(0, "sent"), (1, "skipped")]
    client.close()


def _with_gen(req: DeliveryRequest, generation: int) -> DeliveryRequest:
    return DeliveryRequest(
        flow=req.flow,
        partner=req.partner,
        package=req.package,
        files=req.files,
        generation=generation,
        trigger="resend",
    )


def test_retryable_errors_back_off_exponentially_then_fail_with_reason_and_retry_succeeds(
    tmp_path: Path, base_cfg: dict[str, Any], workers: list[Worker]
) -> None:
    fault = tmp_path / "fault"
    fault.touch()
    cfg = {
        **base_cfg,
        "fail_when_exists": str(fault),
        "fault_partner": "flaky",
        "fault_error": "connection",
        "retry": {"max_attempts": 4, "initial_interval_s": 0.25, "backoff_rate": 2.0},
        # The service's real store as the ledger (separate from DBOS's file).
        "store_url": f"sqlite:///{tmp_path}/consonance-sftp.db",
    }
    f = make_source(tmp_path / "royalties.csv", 20_000, seed=5)
    start(workers, cfg, tmp_path)
    client = EngineClient(settings_from(cfg))
    wf = client.enqueue_delivery(
        DeliveryRequest(flow="finance_out", partner="flaky", package="q3", files=(f,)),
        max_connections=2,
    )
    wait_for(lambda: client.status(wf) == "ERROR", 30, "the delivery to fail")
    times = [e["t"] for e in events_of(cfg, "attempt")]
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # 0.25, 0.5, 1.0 s: each wait about twice the previous one.
    assert gaps[0] == pytest.approx(0.25, abs=0.15)
    for a, b in itertools.pairwise(gaps):
        assert 1.5 < b / a < 2.7, gaps
    error = client.error(wf) or ""
    assert "connection reset by peer" in error and "gave up after 4 attempts" in error
    assert "partner 'flaky'" in error
    (row,) = store_rows(cfg["store_url"])
    assert row.outcome == "failed" and "connection reset by peer" in (row.error or "")
    assert row.workflow_id == wf and row.remote_path == f.remote_path and row.sha256 == f.sha256

    fault.unlink()  # the partner is fixed: an operator retries
    client.retry(wf)
    wait_for(lambda: client.status(wf) == "SUCCESS", 30, "the retried delivery")
    (row,) = store_rows(cfg["store_url"])  # still one row: the retry moved it to sent
    # 4 failed attempts, then the retry's one: the row counts every attempt.
    assert (row.outcome, row.error, row.attempts) == ("sent", None, 5)
    assert sha256_file(Path(cfg["dest"]) / "flaky" / "in" / "royalties.csv") == f.sha256
    client.close()


def test_terminal_error_fails_at_once_with_reason(
    tmp_path: Path, base_cfg: dict[str, Any], workers: list[Worker]
) -> None:
    fault = tmp_path / "fault"
    fault.touch()
    cfg = {
        **base_cfg,
        "fail_when_exists": str(fault),
        "fault_partner": "locked",
        "fault_error": "permission",
        "retry": {"max_attempts": 5, "initial_interval_s": 0.2},
    }
    f = make_source(tmp_path / "a.epub", 5_000, seed=6)
    start(workers, cfg, tmp_path)
    client = EngineClient(settings_from(cfg))
    wf = client.enqueue_delivery(
        DeliveryRequest(flow="formats", partner="locked", package="epub", files=(f,)),
        max_connections=1,
    )
    wait_for(lambda: client.status(wf) == "ERROR", 30, "the delivery to fail")
    assert len(events_of(cfg, "attempt")) == 1  # not retryable: no second attempt
    assert "permission denied" in (client.error(wf) or "")
    assert ledger_rows(cfg["ledger"])[0][4] == "failed"
    client.close()


@pytest.mark.slow
def test_sigterm_stops_at_a_resumable_point_and_restart_finishes(
    tmp_path: Path, base_cfg: dict[str, Any], workers: list[Worker]
) -> None:
    cfg = {**base_cfg, "chunk_delay_s": 0.02, "shutdown_grace_s": 0}
    big = make_source(tmp_path / "audio.wav", 3_000_000, seed=7)
    w1 = start(workers, cfg, tmp_path)
    client = EngineClient(settings_from(cfg))
    wf = client.enqueue_delivery(
        DeliveryRequest(flow="formats", partner="audio", package="wav", files=(big,)),
        max_connections=1,
    )
    wait_for(lambda: len(events_of(cfg, "chunk")) >= 10, 30, "10 chunks")
    os.kill(w1.proc.pid, signal.SIGTERM)
    assert w1.proc.wait(20) == 0
    sent_before = max(e["end"] for e in events_of(cfg, "chunk"))
    assert sent_before < big.size
    assert client.status(wf) == "PENDING"

    start(workers, cfg, tmp_path)
    wait_for(lambda: client.status(wf) == "SUCCESS", 30, "the delivery to finish")
    starts = events_of(cfg, "upload_start")
    assert [s["offset"] > 0 for s in starts] == [False, True]
    assert sha256_file(Path(cfg["dest"]) / "audio" / "in" / "audio.wav") == big.sha256
    client.close()


def test_second_executor_on_one_sqlite_file_is_refused(
    tmp_path: Path, base_cfg: dict[str, Any], workers: list[Worker]
) -> None:
    start(workers, base_cfg, tmp_path)
    second = Worker({**base_cfg, "executor_id": "serve-2", "lease_acquire_timeout_s": 1}, tmp_path)
    workers.append(second)
    # Refused, naming the process that holds the file (its pid and command).
    first = workers[0].proc.pid
    with pytest.raises(
        RuntimeError, match=rf"in use by pid {first} \(engine_worker\.py .*one executor process"
    ):
        second.wait_ready()


@pytest.mark.slow
def test_new_release_with_work_in_flight_loses_nothing(
    tmp_path: Path, base_cfg: dict[str, Any], workers: list[Worker]
) -> None:
    """Queued and running deliveries survive a deploy that changes workflow code, because the
    application version is pinned rather than derived from the code."""
    cfg = {**base_cfg, "chunk_delay_s": 0.02, "app_version": "2026.11"}
    files = [make_source(tmp_path / f"v{i}.pdf", 1_000_000, seed=10 + i) for i in range(3)]
    w1 = start(workers, cfg, tmp_path)
    client = EngineClient(settings_from(cfg))
    ids = [
        client.enqueue_delivery(
            DeliveryRequest(flow="production", partner="printer", package=f"v{i}", files=(f,)),
            max_connections=1,  # one running, two queued at the deploy
        )
        for i, f in enumerate(files)
    ]
    wait_for(lambda: len(events_of(cfg, "chunk")) >= 5, 30, "the first upload under way")
    w1.kill9()
    assert sorted(client.statuses().values()) == ["ENQUEUED", "ENQUEUED", "PENDING"]

    start(workers, {**cfg, "code_change": True}, tmp_path)
    wait_for(
        lambda: all(client.status(i) == "SUCCESS" for i in ids), 60, "every delivery after deploy"
    )
    assert len(ledger_rows(cfg["ledger"])) == 3
    for f in files:
        assert sha256_file(Path(cfg["dest"]) / "printer" / "in" / Path(f.source).name) == f.sha256
    client.close()


def test_engine_enqueues_in_process_and_duplicates_attach(
    tmp_path: Path, base_cfg: dict[str, Any], workers: list[Worker]
) -> None:
    files = [make_source(tmp_path / f"m{i}.jpg", 30_000, seed=20 + i) for i in range(2)]
    reqs = [
        DeliveryRequest(flow="marketing", partner="retail", package=f"m{i}", files=(f,)).to_dict()
        for i, f in enumerate(files)
    ]
    cfg = {
        **base_cfg,
        "enqueue_on_start": [
            {"request": r, "max_connections": 2} for r in (reqs[0], reqs[1], reqs[0])
        ],
    }
    start(workers, cfg, tmp_path)
    client = EngineClient(settings_from(cfg))
    enqueued = [e["workflow"] for e in events_of(cfg, "enqueued")]
    assert len(enqueued) == 3 and enqueued[0] == enqueued[2] != enqueued[1]
    wait_for(lambda: set(client.statuses().values()) == {"SUCCESS"}, 30, "both deliveries")
    assert len(client.statuses()) == 2
    assert len(events_of(cfg, "upload_start")) == 2
    client.close()


@pytest.mark.slow
def test_kill9_mid_tick_resumes_the_tick_after_restart(
    tmp_path: Path, base_cfg: dict[str, Any], workers: list[Worker]
) -> None:
    """A flow's tick is a DBOS workflow: killed while it runs, it is recovered when the process
    comes back and completes; no tick is lost and none completes twice."""
    cfg = {**base_cfg, "schedule": "*/2 * * * * *", "hold_first_tick_s": 60}
    w1 = start(workers, cfg, tmp_path)
    wait_for(lambda: events_of(cfg, "tick_start"), 20, "the first tick to start")
    w1.kill9()
    (killed,) = events_of(cfg, "tick_start")
    assert events_of(cfg, "tick") == []

    start(workers, cfg, tmp_path)  # same executor ID: DBOS recovers the pending tick
    wait_for(
        lambda: any(e["tick"] == killed["tick"] for e in events_of(cfg, "tick")),
        30,
        "the killed tick to complete",
    )
    wait_for(lambda: len(events_of(cfg, "tick")) >= 3, 30, "later ticks")
    done = [e["tick"] for e in events_of(cfg, "tick")]
    assert len(done) == len(set(done)), "a tick completed twice"
    assert [e["tick"] for e in events_of(cfg, "tick_start")].count(killed["tick"]) == 2
    client = EngineClient(settings_from(cfg))
    statuses = client.statuses(prefix=f"sched-flow:tick-test-{killed['tick']}")
    client.close()
    assert list(statuses.values()) == ["SUCCESS"]


@pytest.mark.slow
def test_ticks_of_one_flow_never_overlap(
    tmp_path: Path, base_cfg: dict[str, Any], workers: list[Worker]
) -> None:
    """A tick that takes longer than the schedule's period does not run beside the next one
    (which would plan from the same baseline and send the same feed twice): the flow's ticks
    queue up and run one at a time."""
    cfg = {**base_cfg, "schedule": "* * * * * *", "tick_duration_s": 1.5}
    start(workers, cfg, tmp_path)
    wait_for(lambda: len(events_of(cfg, "tick")) >= 3, 30, "three ticks")
    starts = {e["tick"]: e["t"] for e in events_of(cfg, "tick_start")}
    ends = {e["tick"]: e["t"] for e in events_of(cfg, "tick")}
    spans = sorted((starts[t], ends[t]) for t in ends)
    for (_, end), (begin, _) in itertools.pairwise(spans):
        assert begin >= end, f"a tick started at {begin} before the previous ended at {end}"
