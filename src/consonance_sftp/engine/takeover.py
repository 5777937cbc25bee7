"""Taking over the work of a silent executor (PostgreSQL scale-out only).

DBOS 3.4.0 recovers a crashed executor's PENDING workflows only in a process started with the
same executor ID, unless the proprietary Conductor is used. Every live executor therefore scans
the heartbeat table after each heartbeat; for an executor silent longer than
``takeover_after_s`` it:

1. tries the dead executor's advisory lock. Getting it proves the old process's database session
   is gone, so it can no longer hold its lease (and its fence has already stopped it writing:
   the fence TTL is half the takeover threshold). If the lock is still held by a session that has
   stopped heartbeating (a hung process), that session is terminated and the takeover waits for
   the next scan;
2. calls DBOS's internal ``DBOS._recover_pending_workflows([id])``, which puts the dead
   executor's PENDING workflows back on their queues (same queue and partition), where any live
   executor dequeues them; DBOS's dequeue admits exactly one runner;
3. marks the row ``taken_over`` and raises an ``executor_silent`` alert;
4. releases the lock, so the dead executor's supervisor can restart it under the same ID.

An executor that stopped on purpose (SIGTERM, scale-down) releases its lock and marks its row
``stopped``; whatever it left PENDING (stopped at a resumable point) is taken over at the next
scan, without waiting for the threshold and without an alert, and the row becomes ``drained``.

``recover_executor`` is the single place that touches the private DBOS call; the test suite
pins its signature and behaviour so that a DBOS upgrade that changes it fails loudly.
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass
from typing import Any

import psycopg
from dbos import DBOS

from consonance_sftp.errors import EngineError
from consonance_sftp.formats.wording import counted
from consonance_sftp.logs import get_logger
from consonance_sftp.models import Alert, AlertSeverity
from consonance_sftp.ports.delivery import AlertSink

from .lease import advisory_key, connect_pg
from .settings import EngineSettings

log = get_logger(__name__)


def recover_executor(executor_id: str) -> list[str]:
    """Re-enqueue the PENDING workflows of ``executor_id`` (this application version);
    return their IDs. Wraps DBOS's private ``_recover_pending_workflows``."""
    fn = getattr(DBOS, "_recover_pending_workflows", None)
    if fn is None:
        raise EngineError(
            "this DBOS version has no DBOS._recover_pending_workflows: executor takeover needs "
            "porting (see docs/reference/engine.md)"
        )
    handles = fn([executor_id])
    return [h.get_workflow_id() for h in handles]


def private_recovery_signature() -> list[str]:
    """The parameters of the private call, for the upgrade guard test."""
    return list(inspect.signature(DBOS._recover_pending_workflows).parameters)


@dataclass(frozen=True, slots=True)
class Takeover:
    executor_id: str
    silent_s: float
    workflow_ids: list[str]


class TakeoverScanner:
    """Scans every heartbeat interval, in its own thread: a slow recovery must never delay
    this executor's own heartbeat (that would fence it)."""

    def __init__(self, settings: EngineSettings, alerts: AlertSink) -> None:
        self.settings = settings
        self.alerts = alerts
        self._conn: psycopg.Connection[Any] | None = None
        self.takeovers: list[Takeover] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="consonance-takeover", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.close()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                self.scan()
            except Exception:
                log.exception("executor takeover scan failed")
                self.close()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect_pg(self.settings.system_database_url)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def scan(self) -> list[Takeover]:
        conn = self._connection()
        # Silent executors (crashed or hung), and executors that stopped on purpose (SIGTERM,
        # scale-down) leaving PENDING work behind: theirs needs no waiting, the lock is free.
        rows = conn.execute(
            """SELECT executor_id, status, EXTRACT(EPOCH FROM now() - last_seen_at)::float8
                FROM consonance_engine.executors
                WHERE executor_id <> %s AND application_version = %s
                  AND (status = 'stopped' OR (status = 'running'
                       AND last_seen_at < now() - make_interval(secs => %s)))""",
            (
                self.settings.executor_id,
                self.settings.application_version,
                self.settings.takeover_after_s,
            ),
        ).fetchall()
        done = []
        for executor_id, status, silent_s in rows:
            takeover = self._take_over(conn, str(executor_id), str(status), float(silent_s))
            if takeover is not None:
                done.append(takeover)
        self.takeovers.extend(done)
        return done

    def _take_over(
        self, conn: psycopg.Connection[Any], executor_id: str, status: str, silent_s: float
    ) -> Takeover | None:
        key = advisory_key(executor_id)
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if not (got and got[0]):
            if status == "running":
                self._end_hung_session(conn, executor_id, key, silent_s)
            # A stopped executor whose lock is held is starting again under its ID.
            return None
        try:
            # Re-check under the lock: the executor may have restarted (same ID) meanwhile.
            row = conn.execute(
                """SELECT status FROM consonance_engine.executors WHERE executor_id = %s
                    AND (status = 'stopped' OR (status = 'running'
                         AND last_seen_at < now() - make_interval(secs => %s)))""",
                (executor_id, self.settings.takeover_after_s),
            ).fetchone()
            if row is None:
                return None
            status = str(row[0])
            workflow_ids = recover_executor(executor_id)
            conn.execute(
                """UPDATE consonance_engine.executors
                    SET status = %s, taken_over_by = %s,
                    taken_over_at = now(), recovered_workflows = %s WHERE executor_id = %s""",
                (
                    "taken_over" if status == "running" else "drained",
                    self.settings.executor_id,
                    len(workflow_ids),
                    executor_id,
                ),
            )
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        takeover = Takeover(executor_id=executor_id, silent_s=silent_s, workflow_ids=workflow_ids)
        if status != "running":
            if workflow_ids:
                log.info(
                    "executor %r stopped with %d unfinished workflow(s): taken over by %r",
                    executor_id,
                    len(workflow_ids),
                    self.settings.executor_id,
                )
            return takeover
        message = (
            f"executor {executor_id!r} silent for {silent_s:.1f} s: "
            f"{counted(len(workflow_ids), 'workflow')} taken over by {self.settings.executor_id!r}"
        )
        log.warning(message)
        self.alerts.raise_alert(
            Alert(
                severity=AlertSeverity.CRITICAL,
                kind="executor_silent",
                message=message,
                details={
                    "executor_id": executor_id,
                    "taken_over_by": self.settings.executor_id,
                    "silent_s": f"{silent_s:.1f}",
                    "workflows": ",".join(workflow_ids),
                },
            )
        )
        return takeover

    def _end_hung_session(
        self, conn: psycopg.Connection[Any], executor_id: str, key: int, silent_s: float
    ) -> None:
        """The lock is held but the heartbeat is stale: the process hangs (stopped, swapping,
        partitioned from us but not from the database). Its fence already forbids it to write;
        ending its session frees the lock for the next scan."""
        unsigned = key & 0xFFFFFFFFFFFFFFFF
        rows = conn.execute(
            """SELECT pg_terminate_backend(pid) FROM pg_locks
               WHERE locktype = 'advisory' AND granted AND database = (
                 SELECT oid FROM pg_database WHERE datname = current_database())
               AND classid = %s AND objid = %s AND objsubid = 1""",
            (unsigned >> 32, unsigned & 0xFFFFFFFF),
        ).fetchall()
        log.warning(
            "executor %r silent for %.1f s but its session is alive: ended %d session(s)",
            executor_id,
            silent_s,
            len(rows),
        )
