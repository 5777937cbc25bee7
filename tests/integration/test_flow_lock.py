"""The per-flow run lock (``engine.lease.FlowLock``) between real processes, on SQLite (a
``flock`` beside the system database) and on a real PostgreSQL (a session advisory lock): a
second process is told who holds it (pid and command), and the lock dies with its holder,
``kill -9`` included."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from consonance_sftp.engine import EngineSettings, FlowLock

HOLDER = """
import sys, time
from consonance_sftp.engine import EngineSettings, FlowLock
settings = EngineSettings(
    system_database_url=sys.argv[2], application_version="t", executor_id="holder"
)
lock = FlowLock(settings, sys.argv[1])
while lock.try_acquire() is not None:
    time.sleep(0.1)
print("HELD", flush=True)
time.sleep(600)
"""


def _settings(url: str) -> EngineSettings:
    return EngineSettings(system_database_url=url, application_version="t", executor_id="me")


def _hold(tmp_path: Path, url: str, flow: str) -> subprocess.Popen[str]:
    script = tmp_path / "holder.py"
    script.write_text(textwrap.dedent(HOLDER))
    proc = subprocess.Popen(
        [sys.executable, str(script), flow, url], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "HELD"
    return proc


def _check(tmp_path: Path, url: str) -> None:
    holder = _hold(tmp_path, url, "onix-feed")
    mine = FlowLock(_settings(url), "onix-feed")
    other_flow = FlowLock(_settings(url), "print-files")
    try:
        found = mine.try_acquire()
        assert found is not None and found.pid == holder.pid
        assert found.command.startswith("holder.py onix-feed ")
        assert f"pid {holder.pid} (holder.py" in found.describe()
        assert not mine.held
        # Another flow is not held up by it.
        assert other_flow.try_acquire() is None and other_flow.held
        holder.kill()  # kill -9: no chance to let go
        holder.wait(10)
        deadline = time.monotonic() + 10
        while (found := mine.try_acquire()) is not None:
            assert time.monotonic() < deadline, f"still held by {found}"
            time.sleep(0.1)
        assert mine.held
        # Held by this process now: a second lock object (another run here) waits too.
        again = FlowLock(_settings(url), "onix-feed").try_acquire()
        assert again is not None and again.pid == os.getpid()
    finally:
        mine.release()
        other_flow.release()
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


def test_flow_lock_on_sqlite_names_its_holder_and_dies_with_it(tmp_path: Path) -> None:
    _check(tmp_path, f"sqlite:///{tmp_path / 'dbos.sqlite'}")


@pytest.mark.slow
def test_flow_lock_on_postgres_names_its_holder_and_dies_with_it(
    tmp_path: Path, pg_url: str
) -> None:
    _check(tmp_path, pg_url)
