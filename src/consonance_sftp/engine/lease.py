"""Executor leases, heartbeats and the write fence.

Each executor process holds a lease for its executor ID while it runs:

* PostgreSQL: a session advisory lock on a dedicated connection, plus a heartbeat row in the
  ``consonance_engine.executors`` table of the DBOS system database (our own schema, not
  DBOS's). The lock proves the process's database session is alive; the row says when it last
  did work. A second process with the same executor ID cannot start (it waits, then fails).
* SQLite: an exclusive ``flock`` on ``<system db>.lease`` (one executor process per SQLite file,
  which DBOS requires) and a heartbeat written into that file, with the holder's pid, command
  and role, so a second process can say who holds it (``engine_holder``). The kernel drops the
  lock when the process dies, however it dies.

``FlowLock`` is the same idea per flow: the process that runs a flow (a manual ``run``, a
scheduled tick) holds it from the plan to the recorded outcome, so two runs of one flow never
plan from the same baseline (an ONIX delta and its MessageNumber). SQLite: a ``flock`` on a file
beside the system database; PostgreSQL: a session advisory lock.

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
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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


SERVICE = "service"
"""Role of a long-running executor (``serve``, ``worker``): others hand it their work."""
ONE_SHOT = "one-shot"
"""Role of a command that runs the engine only while it works (``run``, ``retry``, ...)."""


def current_command() -> str:
    """This process's command line as a user typed it (``consonance-sftp run feed --full``)."""
    argv = list(sys.argv)
    if not argv:
        return "python"
    if argv[0].endswith("__main__.py") or argv[0] == "-m":
        argv[0] = "consonance-sftp"
    else:
        argv[0] = Path(argv[0]).name
    # The config path says nothing about what runs; leave it out of the description.
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--config":
            skip = True
            continue
        if not arg.startswith("--config="):
            out.append(arg)
    return " ".join(out)[:200]


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds an engine or flow lock, as it wrote itself into the lock."""

    pid: int | None
    command: str
    role: str = ONE_SHOT
    host: str = ""

    def describe(self) -> str:
        who = f"pid {self.pid}" if self.pid is not None else "another process"
        if self.host and self.host != socket.gethostname():
            who += f" on {self.host}"
        return f"{who} ({self.command})" if self.command else who


def _holder_body(role: str, **more: Any) -> bytes:
    return json.dumps(
        {
            "pid": os.getpid(),
            "command": current_command(),
            "role": role,
            "host": socket.gethostname(),
            "last_seen_at": time.time(),
            **more,
        }
    ).encode()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_holder(path: Path) -> LockHolder | None:
    """The holder written in a lock file, or None if it says nothing (yet) of a live process
    (the holder writes it right after taking the lock; a dead one's text may linger)."""
    try:
        data = json.loads(path.read_bytes() or b"{}")
    except (OSError, ValueError):
        return None
    pid = data.get("pid")
    if not isinstance(pid, int) or not _pid_alive(pid):
        return None
    return LockHolder(
        pid=pid,
        command=str(data.get("command") or ""),
        role=str(data.get("role") or ONE_SHOT),
        host=str(data.get("host") or ""),
    )


def probe_flock(path: Path) -> LockHolder | None:
    """Who holds the ``flock`` on ``path`` (None: nobody). Does not keep any lock."""
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(path) or LockHolder(pid=None, command="")
    finally:
        os.close(fd)  # closing drops our probe lock too
    return None


class EngineBusy(EngineError):
    """Another live process holds the lock this one needs; ``holder`` says who."""

    def __init__(self, message: str, holder: LockHolder, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.holder = holder


class LeaseFence:
    """``check()`` passes while the lease was renewed within its TTL and was never lost."""

    def __init__(self, ttl_s: float, on_lost: Callable[[str], None] | None = None) -> None:
        self._ttl_s = ttl_s
        self._on_lost = on_lost or _default_on_lost
        self._last_ok = time.monotonic()
        self._lost: str | None = None

    def renewed(self, sent_at: float | None = None) -> None:
        """A heartbeat sent at ``sent_at`` (``time.monotonic()``; default now) succeeded. It
        counts from when it was sent, not answered: a process stopped (SIGSTOP, a VM pause)
        between the two reads an old answer on waking, and must not take it for a fresh lease
        while a rescuer has taken its work over."""
        self._last_ok = max(self._last_ok, time.monotonic() if sent_at is None else sent_at)

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
        self.role = ONE_SHOT  # set by the engine before ``acquire``; written into the lease
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, timeout_s: float | None = None) -> None:
        """Take the lease; wait up to ``timeout_s`` (default ``lease_acquire_timeout_s``)."""
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
                sent_at = time.monotonic()
                self.renew()
                self.fence.renewed(sent_at)
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

    def acquire(self, timeout_s: float | None = None) -> None:
        s = self.settings
        conn = connect_pg(s.system_database_url)
        ensure_schema(conn)
        wait = s.lease_acquire_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + wait
        while True:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            if row and row[0]:
                break
            if time.monotonic() >= deadline:
                conn.close()
                raise EngineError(
                    f"executor ID {s.executor_id!r} is held by another live process "
                    f"(waited {wait:g} s); give each process its own ID",
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

    def acquire(self, timeout_s: float | None = None) -> None:
        """Take the file's lock, waiting up to ``timeout_s`` (default
        ``lease_acquire_timeout_s``; 0: try once); ``EngineBusy`` names the process holding
        it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        wait = self.settings.lease_acquire_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + wait
        grace = True
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = read_holder(self.path)
                    if holder is None and grace:
                        # A probe's brief shared lock, or a holder that has not written its
                        # name yet: look again (once, for half a second) before calling the
                        # file busy.
                        grace = False
                        deadline = time.monotonic() + 0.5
                        continue
                    holder = holder or LockHolder(pid=None, command="")
                    os.close(fd)
                    raise EngineBusy(
                        f"the engine on {self.settings.sqlite_path} is in use by "
                        f"{holder.describe()} (one executor process per SQLite file)",
                        holder,
                        hint="Wait for it to finish, or stop it; while 'serve' runs, other "
                        "commands hand their work to it.",
                    ) from None
                time.sleep(0.1)
        self._fd = fd
        self.renew()
        self.fence.renewed()

    def renew(self) -> None:
        if self._fd is None:
            raise EngineError("lease not acquired")
        body = _holder_body(
            self.role,
            executor_id=self.settings.executor_id,
            application_version=self.settings.application_version,
        )
        # Written in place, then cut to length: a reader never sees an empty file.
        os.pwrite(self._fd, body, 0)
        os.ftruncate(self._fd, len(body))

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


# --- one run of a flow at a time ---------------------------------------------------------------


def _flow_key(flow: str) -> int:
    digest = hashlib.sha256(f"consonance-flow:{flow}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def flow_lock_path(settings: EngineSettings, flow: str) -> Path:
    """The SQLite engine's lock file for one flow, beside the system database."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in flow)
    tag = hashlib.sha256(flow.encode()).hexdigest()[:8]  # two names that sanitise alike
    return Path(f"{settings.sqlite_path}.flow-{safe}-{tag}.lock")


class FlowLock:
    """The right to run one flow now: held from a run's plan to its recorded outcome.

    ``try_acquire()`` returns None once held, or the holder (pid and command) while another
    process has it; ``release()`` gives it up. It dies with the process: SQLite, a ``flock`` on
    a file beside the system database (one machine, as the SQLite engine is); PostgreSQL, a
    session advisory lock on a connection of its own (every machine sharing the database).
    """

    def __init__(self, settings: EngineSettings, flow: str, role: str = ONE_SHOT) -> None:
        self.settings = settings
        self.flow = flow
        self.role = role
        self._fd: int | None = None
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None or self._conn is not None

    def try_acquire(self) -> LockHolder | None:
        if self.held:
            return None
        if self.settings.is_postgres:
            return self._try_pg()
        path = flow_lock_path(self.settings, self.flow)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return read_holder(path) or LockHolder(pid=None, command="")
        body = _holder_body(self.role, flow=self.flow)
        os.pwrite(fd, body, 0)
        os.ftruncate(fd, len(body))
        self._fd = fd
        return None

    def _try_pg(self) -> LockHolder | None:
        key = _flow_key(self.flow)
        name = f"consonance-flow {os.getpid()} {current_command()}"[:63]
        conn = connect_pg(self.settings.system_database_url)
        conn.execute("SELECT set_config('application_name', %s, false)", (name,))
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if row and row[0]:
            self._conn = conn
            return None
        try:
            # A bigint advisory key shows in pg_locks as (classid, objid) = (high, low) halves.
            found = conn.execute(
                """SELECT a.application_name, a.client_hostname
                     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                      AND l.classid = %s AND l.objid = %s""",
                ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF),
            ).fetchone()
        finally:
            conn.close()
        if not found:
            return LockHolder(pid=None, command="")
        parts = str(found[0] or "").split(" ", 2)
        if len(parts) == 3 and parts[0] == "consonance-flow" and parts[1].isdigit():
            return LockHolder(pid=int(parts[1]), command=parts[2], host=str(found[1] or ""))
        return LockHolder(pid=None, command=str(found[0] or ""))

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.execute("SELECT pg_advisory_unlock(%s)", (_flow_key(self.flow),))
            with contextlib.suppress(Exception):
                conn.close()


def engine_holder(settings: EngineSettings) -> LockHolder | None:
    """Who runs the engine on this SQLite file now (None: nobody). PostgreSQL executors run
    elsewhere by design; this answers None there (callers use the DBOS client)."""
    if settings.is_postgres:
        return None
    return probe_flock(Path(settings.sqlite_path + ".lease"))
