"""``worker`` on PostgreSQL with real processes: two workers with stable IDs, ``run`` enqueues
through the DBOS client (it never becomes an executor on PostgreSQL), the package lands on the
sandbox printer once with one ledger row per file, and SIGTERM stops each worker cleanly."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from consonance_sftp.config.starter import CONFIG_NAME, init_project
from tests.cli import CLI, free_port, running_sandbox
from tests.e2e.test_cli_service import _printable_titles

pytestmark = pytest.mark.slow


def _start(args: list[str], ready: str, timeout: float = 90) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ}
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        if ready in line:
            return proc
        assert time.monotonic() < deadline, f"not ready: {ready}"
    raise AssertionError(f"exited before {ready!r}: code {proc.wait()}")


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(40)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_two_workers_deliver_what_run_enqueues(tmp_path: Path, pg_url: str) -> None:
    init_project(tmp_path, sftp_port=free_port(), api_port=free_port())
    config = tmp_path / CONFIG_NAME
    text = config.read_text()
    marker = 'dbos_system_url = "sqlite:///{state_dir}/dbos-system.db"'
    assert marker in text
    config.write_text(text.replace(marker, f'dbos_system_url = "{pg_url}"'))
    base = [*CLI, "--config", str(config)]

    workers: list[subprocess.Popen[str]] = []
    with running_sandbox(config, tmp_path):
        try:
            for wid in ("w-a", "w-b"):
                workers.append(_start([*base, "worker", "--id", wid], f"worker {wid} started"))
            _work, isbn = _printable_titles(config)[0]
            done = subprocess.run(
                [*base, "run", "print-files", "--isbn", isbn],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert re.search(r"done dlv-printer-\S+: 5 sent", done.stdout), done.stdout
            landed = tmp_path / "var" / "sandbox" / "sftp" / "printer" / "in" / isbn
            files = sorted(p.name for p in landed.glob("*") if p.is_file())
            assert len(files) == 5, files
            with sqlite3.connect(tmp_path / "var" / "consonance-sftp.db") as db:
                rows = db.execute(
                    "SELECT remote_path, outcome FROM delivery_ledger WHERE isbn = ?", (isbn,)
                ).fetchall()
            assert len(rows) == len(files) and {o for _, o in rows} == {"sent"}
        finally:
            codes = [_stop(w) for w in workers]
    assert codes == [0, 0]
