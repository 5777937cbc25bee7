"""A real engine worker process for the engine tests, with a test transport.

Run as ``python tests/engine_worker.py CONFIG.json``. It starts ``Engine`` with:

* ``FolderTransport``: "uploads" by copying a local file into ``dest/<partner>/<remote path>``
  through a ``.part`` file, in chunks, slowly (``chunk_delay_s``), resuming from the bytes
  already there, and logs every start, chunk, end and rename to an events file (JSON lines,
  appended atomically by every process). The events are where the tests measure concurrency
  per partner, resumption and exactly-once: where the bytes land.
* ``SqliteLedger``: a real SQLite ledger with one row per (partner, path, sha256, generation).
* faults: ``fail_when_exists`` (a file: while it exists, uploads to ``fault_partner`` raise
  ``fault_error``), ``crash_after_rename`` (exit with 137 right after the first rename, before
  DBOS checkpoints it).

It prints ``READY <executor id>`` once launched and serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbos import DBOS, DBOSClient

from consonance_sftp.engine import (
    Engine,
    EngineSettings,
    RetryPolicy,
    StoreLedger,
)
from consonance_sftp.engine.schedules import FlowSchedule
from consonance_sftp.errors import (
    ConnectionLost,
    IntegrityError,
    RemotePermissionDenied,
)
from consonance_sftp.models import Alert, DeliveryKey, DeliveryOutcome

try:
    from consonance_sftp.ports.delivery import (
        DeliveryRecord,
        DeliveryRequest,
        Fence,
        FileToSend,
        RemoteFileState,
    )
except ImportError:  # bench/engine.py --against a commit from before ports/delivery.py
    from consonance_sftp.engine import (  # type: ignore[attr-defined,no-redef]
        DeliveryRecord,
        DeliveryRequest,
        Fence,
        FileToSend,
        RemoteFileState,
    )

try:
    from consonance_sftp.ports.delivery import StageResult, verification
except ImportError:  # bench/engine.py --against a commit whose stage returned the bytes alone
    StageResult = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:  # for annotations only
    from collections.abc import Callable
    from subprocess import Popen

    from dbos import WorkflowStatus


class EventLog:
    def __init__(self, path: str, executor_id: str) -> None:
        self.path = path
        self.executor_id = executor_id

    def write(self, ev: str, **fields: Any) -> None:
        line = json.dumps(
            {"ev": ev, "t": time.time(), "pid": os.getpid(), "executor": self.executor_id, **fields}
        )
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


def read_events(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        return []
    out = []
    for line in p.read_text().splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class FolderTransport:
    def __init__(self, cfg: dict[str, Any], events: EventLog) -> None:
        self.dest = Path(cfg["dest"])
        self.chunk = int(cfg.get("chunk_size", 65536))
        self.delay = float(cfg.get("chunk_delay_s", 0.0))
        self.fault_file = cfg.get("fail_when_exists")
        self.fault_partner = cfg.get("fault_partner")
        self.fault_error = cfg.get("fault_error", "connection")
        self.crash_after_rename = bool(cfg.get("crash_after_rename", False))
        self.events = events

    def _final(self, partner: str, f: FileToSend) -> Path:
        return self.dest / partner / f.remote_path.lstrip("/")

    async def remote_state(self, partner: str, f: FileToSend) -> RemoteFileState:
        self.events.write("plan", partner=partner, path=f.remote_path)
        final = self._final(partner, f)
        part = final.with_name(final.name + ".part")
        matches = (
            final.exists() and final.stat().st_size == f.size and sha256_file(final) == f.sha256
        )
        return RemoteFileState(
            final_matches=matches, partial_bytes=part.stat().st_size if part.exists() else 0
        )

    async def stage(self, partner: str, f: FileToSend, fence: Fence) -> Any:
        sent = await self._upload(partner, f, fence)
        await self._verify(partner, f)
        if StageResult is None:
            return sent
        # The copy is hashed here, on "the server": a read-back.
        return StageResult(sent=sent, verified_by=verification("read_back"))

    async def _upload(self, partner: str, f: FileToSend, fence: Fence) -> int:
        self.events.write("attempt", partner=partner, path=f.remote_path)
        if self.fault_file and partner == self.fault_partner and os.path.exists(self.fault_file):
            if self.fault_error == "permission":
                raise RemotePermissionDenied(
                    "permission denied", partner=partner, path=f.remote_path
                )
            raise ConnectionLost("connection reset by peer", partner=partner, path=f.remote_path)
        final = self._final(partner, f)
        final.parent.mkdir(parents=True, exist_ok=True)
        part = final.with_name(final.name + ".part")
        offset = part.stat().st_size if part.exists() else 0
        if offset > f.size:
            offset = 0
        self.events.write("upload_start", partner=partner, path=f.remote_path, offset=offset)
        sent = 0
        try:
            with open(f.source, "rb") as src, open(part, "r+b" if part.exists() else "wb") as dst:
                dst.truncate(offset)
                src.seek(offset)
                dst.seek(offset)
                while True:
                    fence.check()
                    # When the write was allowed: a process stopped between the check and the
                    # event below logs that chunk late, though the fence passed before the stop.
                    checked_at = time.time()
                    block = src.read(self.chunk)
                    if not block:
                        break
                    dst.write(block)
                    dst.flush()
                    sent += len(block)
                    self.events.write(
                        "chunk",
                        partner=partner,
                        path=f.remote_path,
                        end=offset + sent,
                        checked_at=checked_at,
                    )
                    if self.delay:
                        await asyncio.sleep(self.delay)
        finally:
            self.events.write("upload_end", partner=partner, path=f.remote_path, sent=sent)
        return sent

    async def _verify(self, partner: str, f: FileToSend) -> None:
        final = self._final(partner, f)
        part = final.with_name(final.name + ".part")
        if part.exists() and part.stat().st_size == f.size and sha256_file(part) == f.sha256:
            return
        if final.exists() and sha256_file(final) == f.sha256:
            return
        part.unlink(missing_ok=True)
        raise IntegrityError("size or SHA-256 mismatch", partner=partner, path=f.remote_path)

    async def publish(self, partner: str, f: FileToSend, fence: Fence) -> None:
        final = self._final(partner, f)
        part = final.with_name(final.name + ".part")
        if final.exists() and sha256_file(final) == f.sha256 and not part.exists():
            self.events.write("rename_skipped", partner=partner, path=f.remote_path)
            return
        fence.check()
        os.replace(part, final)
        self.events.write("rename", partner=partner, path=f.remote_path)
        if self.crash_after_rename:
            os._exit(137)

    async def remove(self, partner: str, remote_path: str, fence: Fence) -> bool:
        final = self.dest / partner / remote_path.lstrip("/")
        fence.check()
        try:
            final.unlink()
        except FileNotFoundError:
            return False  # already gone: no error (a re-run)
        self.events.write("remove", partner=partner, path=remote_path)
        return True


class SqliteLedger:
    def __init__(self, path: str) -> None:
        self.path = path
        # WAL is a property of the file: set it once. Two workers starting together race for
        # the switch, and SQLite answers the loser "locked" without waiting: try again.
        for _ in range(100):
            try:
                with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
                    db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError:
                time.sleep(0.05)
        with self._db() as db:
            db.execute(
                """CREATE TABLE IF NOT EXISTS ledger (
                    partner TEXT, remote_path TEXT, sha256 TEXT, generation INTEGER,
                    workflow_id TEXT, outcome TEXT, reason TEXT, executor TEXT, writes INTEGER,
                    PRIMARY KEY (partner, remote_path, sha256, generation))"""
            )

    def _db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def already_sent(self, key: DeliveryKey, generation: int) -> bool:
        with self._db() as db:
            row = db.execute(
                "SELECT outcome FROM ledger WHERE partner=? AND remote_path=? AND sha256=? "
                "AND generation=?",
                (key.partner, key.remote_path, key.sha256, generation),
            ).fetchone()
        return row is not None and row[0] in {DeliveryOutcome.SENT, DeliveryOutcome.SKIPPED}

    def record(self, r: DeliveryRecord) -> None:
        with self._db() as db:
            db.execute(
                """INSERT INTO ledger VALUES (?,?,?,?,?,?,?,?,1)
                   ON CONFLICT DO UPDATE SET outcome=excluded.outcome, reason=excluded.reason,
                   workflow_id=excluded.workflow_id, executor=excluded.executor,
                   writes=writes+1""",
                (
                    r.key.partner,
                    r.key.remote_path,
                    r.key.sha256,
                    r.generation,
                    r.workflow_id,
                    str(r.outcome),
                    # ``reason``: an engine record of a commit before the one DeliveryRecord
                    # (bench/engine.py --against)
                    getattr(r, "error", None) or getattr(r, "reason", None),
                    r.executor_id,
                ),
            )


class EventAlerts:
    def __init__(self, events: EventLog) -> None:
        self.events = events

    def raise_alert(self, alert: Alert) -> None:
        self.events.write("alert", kind=alert.kind, message=alert.message, details=alert.details)


# --- harness used by the tests (the parent side) -------------------------------------------


def wait_ready(proc: Popen[bytes], log_tail: Callable[[], str], timeout: float) -> None:
    """Wait for a worker subprocess's ``READY`` line on its stdout; if it exits first or takes
    longer than ``timeout`` seconds, fail with the tail of its log."""
    import select

    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited {proc.returncode}: {log_tail()}")
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready and proc.stdout.readline().startswith(b"READY"):
            return
    raise TimeoutError(f"worker not ready: {log_tail()}")


class ScriptWorker:
    """A worker subprocess running a test script with its arguments (``tests/intake_worker.py``
    and the like): ``READY`` on its stdout once it serves, its stderr in ``log``."""

    def __init__(self, script: Path, args: list[str], log: Path) -> None:
        self._log = log.open("ab")
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=str(script.parents[1]),
        )

    def wait_ready(self, timeout: float = 60) -> None:
        wait_ready(self.proc, self.tail, timeout)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


class Worker:
    """One worker subprocess."""

    def __init__(self, cfg: dict[str, Any], workdir: Path) -> None:
        import subprocess

        self.cfg = cfg
        self.cfg_path = workdir / f"worker-{cfg['executor_id']}-{time.monotonic_ns()}.json"
        self.cfg_path.write_text(json.dumps(cfg))
        self.log_path = workdir / f"worker-{cfg['executor_id']}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(self.cfg_path)],
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=str(Path(__file__).resolve().parents[1]),
        )

    def wait_ready(self, timeout: float = 30) -> None:
        wait_ready(self.proc, self.log_tail, timeout)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


async def wait_for_workflow(
    system_url: str, workflow_id: str, timeout: float, tail: Callable[[], str]
) -> WorkflowStatus:
    """Ask DBOS until the workflow has ended (SUCCESS or ERROR) and return its status; ``tail``
    (a worker's log) is what a time-out prints."""
    client = DBOSClient(system_database_url=system_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            [status] = await asyncio.to_thread(client.list_workflows, workflow_ids=[workflow_id])
            if status.status in ("SUCCESS", "ERROR"):
                return status
            assert time.monotonic() < deadline, tail()
            await asyncio.sleep(0.2)
    finally:
        client.destroy()


def make_source(path: Path, size: int, seed: int = 0) -> FileToSend:
    """A file of ``size`` pseudo-random bytes, and its FileToSend."""
    import random

    rnd = random.Random(seed)
    path.write_bytes(rnd.randbytes(size))
    return FileToSend(
        source=str(path), remote_path=f"/in/{path.name}", sha256=sha256_file(path), size=size
    )


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> float:
    """Poll until ``predicate()`` is truthy; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


def max_overlap(events: list[dict[str, Any]], partner: str) -> int:
    """Most uploads to ``partner`` in progress at the same instant, from start/end events.

    An upload cut short by ``kill -9`` has no end event: its bytes stopped landing with the
    process's last event, so it is closed there.
    """
    last_t: dict[int, float] = {}
    for e in events:
        last_t[e["pid"]] = max(last_t.get(e["pid"], 0.0), e["t"])
    open_at: dict[tuple[int, str], float] = {}
    edges: list[tuple[float, int]] = []
    for e in events:
        if e.get("partner") != partner or e["ev"] not in {"upload_start", "upload_end"}:
            continue
        key = (e["pid"], e["path"])
        if e["ev"] == "upload_start":
            open_at[key] = e["t"]
            edges.append((e["t"], 1))
        elif open_at.pop(key, None) is not None:
            edges.append((e["t"], 0))
    for (pid, _), _t in open_at.items():
        edges.append((last_t[pid], 0))
    level = best = 0
    for _, kind in sorted(edges):
        level += 1 if kind else -1
        best = max(best, level)
    return best


def ledger_rows(path: str | Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(str(path)) as db:
        return db.execute(
            "SELECT partner, remote_path, sha256, generation, outcome, reason, writes "
            "FROM ledger ORDER BY partner, remote_path"
        ).fetchall()


class TeeAlerts:
    def __init__(self, *sinks: Any) -> None:
        self.sinks = sinks

    def raise_alert(self, alert: Alert) -> None:
        for sink in self.sinks:
            sink.raise_alert(alert)


_EVENTS: EventLog | None = None
_HOLD_FIRST_TICK_S = 0.0
_TICK_DURATION_S = 0.0


async def run_tick(flow: str, scheduled_at: datetime) -> dict[str, Any]:
    """The flow runner this worker binds: what the service's ``run_tick`` is in production."""
    assert _EVENTS is not None
    _EVENTS.write("tick_start", flow=flow, tick=scheduled_at.isoformat())
    first = len([e for e in read_events(_EVENTS.path) if e["ev"] == "tick_start"]) == 1
    if first and _HOLD_FIRST_TICK_S:
        await asyncio.sleep(_HOLD_FIRST_TICK_S)  # the test kills the process meanwhile
    await asyncio.sleep(_TICK_DURATION_S)
    _EVENTS.write("tick", flow=flow, tick=scheduled_at.isoformat())
    return {"flow": flow, "tick": scheduled_at.isoformat()}


def settings_from(cfg: dict[str, Any]) -> EngineSettings:
    retry = cfg.get("retry", {})
    return EngineSettings(
        system_database_url=cfg["db"],
        application_version=cfg.get("app_version", "test-1"),
        executor_id=cfg["executor_id"],
        heartbeat_interval_s=float(cfg.get("heartbeat_s", 0.5)),
        takeover_after_s=float(cfg.get("takeover_after_s", 3.0)),
        lease_acquire_timeout_s=float(cfg.get("lease_acquire_timeout_s", 10)),
        shutdown_grace_s=float(cfg.get("shutdown_grace_s", 0)),
        worker_concurrency=int(cfg.get("worker_concurrency", 32)),
        queue_polling_interval_s=float(cfg.get("queue_polling_interval_s", 0.05)),
        retry=RetryPolicy(
            max_attempts=int(retry.get("max_attempts", 3)),
            initial_interval_s=float(retry.get("initial_interval_s", 0.2)),
            backoff_rate=float(retry.get("backoff_rate", 2.0)),
        ),
    )


async def main(cfg: dict[str, Any]) -> None:
    global _EVENTS, _HOLD_FIRST_TICK_S, _TICK_DURATION_S
    events = EventLog(cfg["events"], cfg["executor_id"])
    _EVENTS = events
    _HOLD_FIRST_TICK_S = float(cfg.get("hold_first_tick_s", 0))
    _TICK_DURATION_S = float(cfg.get("tick_duration_s", 0))
    if cfg.get("code_change"):
        # A new release: one more workflow changes the source hash DBOS would use as version.
        @DBOS.workflow(name="test.added_in_v2")
        async def added_in_v2() -> None:
            return None

    ledger: Any = SqliteLedger(cfg["ledger"])
    alerts: Any = EventAlerts(events)
    if cfg.get("store_url"):
        # The service's real store (ledger and alerts), as ``app`` will wire it.
        from consonance_sftp.adapters.store import open_store

        store = open_store(cfg["store_url"], writer=cfg["executor_id"])
        ledger = StoreLedger(store)
        alerts = TeeAlerts(EventAlerts(events), store)
    engine = Engine(
        settings_from(cfg), transport=FolderTransport(cfg, events), ledger=ledger, alerts=alerts
    )
    engine.bind_flow_runner(run_tick)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    server = asyncio.create_task(engine.run_until_signal(stop))
    while not engine._launched:
        if server.done():
            await server  # raises the start-up error
        await asyncio.sleep(0.05)
    for cap in cfg.get("caps", []):
        await asyncio.to_thread(engine.ensure_delivery_queue, int(cap))
    if "schedule" in cfg:
        schedule = {"tick-test": FlowSchedule(cfg["schedule"])}
        await asyncio.to_thread(engine.ensure_flow_schedules, schedule)
    for item in cfg.get("enqueue_on_start", []):
        # The in-process path ``serve`` uses (flows enqueue through the running engine).
        req = DeliveryRequest.from_dict(item["request"])
        wid = await engine.enqueue_delivery(req, max_connections=int(item["max_connections"]))
        events.write("enqueued", workflow=wid)
    events.write("ready")
    print(f"READY {cfg['executor_id']}", flush=True)
    del loop
    await server


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))
