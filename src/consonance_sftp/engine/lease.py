"""Executor leases, heartbeats and the write fence.

Each executor process holds a lease for its executor ID while it runs:

* PostgreSQL: a session advisory lock on a dedicated connection, plus a heartbeat row in the
  ``consonance_engine.executors`` table of the DBOS system database (our own schema, not
  DBOS's). The lock proves the process's database session is alive; the row says when it last
  did work. A second process with the same executor ID cannot start (it waits, then fails).
* SQLite: an exclusive ``flock`` on ``<system db>.lease`` (one executor process per SQLite file,
  which DBOS requires) and a heartbeat written into that file.

The fence turns the lease into a guarantee for writers: the transport calls ``fence.check()``
before every chunk and before a rename. If the last successful heartbeat is older than the lease
TTL (half the takeover threshold), or the lease connection is gone, the process is no longer
allowed to write; the default reaction is to exit at once, so that DBOS records nothing more
for it and its supervisor restarts it under the same ID.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from consonance_sftp.errors import EngineError, Fenced
from consonance_sftp.logs import get_logger

from .settings import EngineSettings

log = get_logger(__name__)

SCHEMA = "consonance_engine"
FENCED_EXIT_CODE = 70


def _default_on_lost(reason: str) -> None:
    log.critical("executor lease lost, stopping at once: %s", reason)
    os._exit(FENCED_EXIT_CODE)


class LeaseFence:
    """``check()`` passes while the lease was renewed within its TTL and was never lost."""

    def __init__(self, ttl_s: float, on_lost: Callable[[str], None] | None = None) -> None:
        self._ttl_s = ttl_s
        self._on_lost = on_lost or _default_on_lost
        self._last_ok = time.monotonic()
        self._lost: str | None = None

    def renewed(self) -> None:
        self._last_ok = time.monotonic()

    def lose(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
            self._on_lost(reason)

    def close(self) -> None:
        """After shutdown: any straggling writer is refused, without stopping the process."""
        if self._lost is None:
            self._lost = "the engine has shut down"

    @property
    def lost(self) -> str | None:
        return self._lost

    def check(self) -> None:
        if self._lost is None:
            silent = time.monotonic() - self._last_ok
            if silent <= self._ttl_s:
                return
            self.lose(f"no successful heartbeat for {silent:.1f} s (lease TTL {self._ttl_s:g} s)")
        raise Fenced(f"this executor may no longer write: {self._lost}")


def advisory_key(executor_id: str) -> int:
    """A signed 64-bit advisory-lock key for an executor ID (stable across processes)."""
    digest = hashlib.sha256(f"consonance-executor:{executor_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def pg_conninfo(url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (``postgresql+psycopg://`` -> ``postgresql://``)."""
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+', 1)[0]}://{rest}"


def connect_pg(url: str) -> psycopg.Connection[Any]:
    # Keepalives make a dead peer visible in seconds, not the kernel's default two hours.
    return psycopg.connect(
        pg_conninfo(url),
        autocommit=True,
        connect_timeout=10,
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=3,
        application_name="consonance-engine-lease",
    )


def ensure_schema(conn: psycopg.Connection[Any]) -> None:
    # Serialise concurrent first starts (CREATE ... IF NOT EXISTS races on the catalog): the
    # transaction-scoped lock needs an explicit transaction on this autocommit connection.
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(7346101)")
        cur.execute("CREATE SCHEMA IF NOT EXISTS consonance_engine")
        cur.execute(
            """CREATE TABLE IF NOT EXISTS consonance_engine.executors (
                executor_id text PRIMARY KEY,
                application_version text NOT NULL,
                hostname text NOT NULL,
                pid integer NOT NULL,
                started_at timestamptz NOT NULL DEFAULT now(),
                last_seen_at timestamptz NOT NULL DEFAULT now(),
                status text NOT NULL DEFAULT 'running',
                taken_over_by text,
                taken_over_at timestamptz,
                recovered_workflows integer
            )"""
        )


class ExecutorLease:
    """Base: holds the lease, renews it from a daemon thread, feeds the fence."""

    def __init__(
        self, settings: EngineSettings, on_lost: Callable[[str], None] | None = None
    ) -> None:
        self.settings = settings
        self.fence = LeaseFence(settings.lease_ttl_s, on_lost)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        raise NotImplementedError

    def renew(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="consonance-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.release()

    def _run(self) -> None:
        interval = self.settings.heartbeat_interval_s
        while not self._stop.wait(interval):
            try:
                self.renew()
                self.fence.renewed()
            except Exception as exc:
                self.fence.lose(f"heartbeat failed: {exc}")
                return


class PostgresLease(ExecutorLease):
    def __init__(
        self, settings: EngineSettings, on_lost: Callable[[str], None] | None = None
    ) -> None:
        super().__init__(settings, on_lost)
        self._conn: psycopg.Connection[Any] | None = None
        self.key = advisory_key(settings.executor_id)

    def acquire(self) -> None:
        s = self.settings
        conn = connect_pg(s.system_database_url)
        ensure_schema(conn)
        deadline = time.monotonic() + s.lease_acquire_timeout_s
        while True:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            if row and row[0]:
                break
            if time.monotonic() >= deadline:
                conn.close()
                raise EngineError(
                    f"executor ID {s.executor_id!r} is held by another live process "
                    f"(waited {s.lease_acquire_timeout_s:g} s); give each process its own ID",
                    hint="Set a distinct executor ID per worker process.",
                )
            time.sleep(0.5)
        conn.execute(
            """INSERT INTO consonance_engine.executors
                  (executor_id, application_version, hostname, pid)
                VALUES (%s, %s, %s, %s)
                ON CONFLICT (executor_id) DO UPDATE SET
                  application_version = EXCLUDED.application_version,
                  hostname = EXCLUDED.hostname, pid = EXCLUDED.pid,
                  started_at = now(), last_seen_at = now(), status = 'running',
                  taken_over_by = NULL, taken_over_at = NULL, recovered_workflows = NULL""",
            (s.executor_id, s.application_version, socket.gethostname(), os.getpid()),
        )
        self._conn = conn
        self.fence.renewed()

    def renew(self) -> None:
        if self._conn is None:
            raise EngineError("lease not acquired")
        self._conn.execute(
            "UPDATE consonance_engine.executors SET last_seen_at = now(), status = 'running' "
            "WHERE executor_id = %s",
            (self.settings.executor_id,),
        )

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            conn.execute(
                "UPDATE consonance_engine.executors SET status = 'stopped' WHERE executor_id = %s",
                (self.settings.executor_id,),
            )
            conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        with contextlib.suppress(Exception):
            conn.close()


class SqliteLease(ExecutorLease):
    """One executor per SQLite file: an exclusive flock, refused if another process has it."""

    def __init__(
        self, settings: EngineSettings, on_lost: Callable[[str], None] | None = None
    ) -> None:
        super().__init__(settings, on_lost)
        self.path = Path(settings.sqlite_path + ".lease")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.settings.lease_acquire_timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise EngineError(
                        f"another process already runs the engine on {self.settings.sqlite_path}"
                        " (one executor process per SQLite file)",
                        hint="Stop the other 'serve', or use the DBOS client for reads.",
                    ) from None
                time.sleep(0.2)
        self._fd = fd
        self.renew()
        self.fence.renewed()

    def renew(self) -> None:
        if self._fd is None:
            raise EngineError("lease not acquired")
        body = json.dumps(
            {
                "executor_id": self.settings.executor_id,
                "pid": os.getpid(),
                "application_version": self.settings.application_version,
                "last_seen_at": time.time(),
            }
        ).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, body, 0)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def make_lease(
    settings: EngineSettings, on_lost: Callable[[str], None] | None = None
) -> ExecutorLease:
    if settings.is_postgres:
        return PostgresLease(settings, on_lost)
    return SqliteLease(settings, on_lost)
