"""Delivery failures as an operator meets them: the real CLI, the real sandbox, and a partner
whose port nothing listens on.

``run`` shows each retried attempt (its cause, the next try) within the default schedule's
bounded time, then one line naming the partner, host:port and "connection refused", exits 1
with no traceback; ``history`` shows the ``failed`` rows; the alert table holds one alert per
final failure; ``retry`` and ``resend`` of the failed delivery fail the same way, each raising
one more alert.
"""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consonance_sftp.config.starter import CONFIG_NAME, init_project
from tests.cli import CLI, free_port, running_sandbox
from tests.e2e.test_cli_service import _printable_titles

FLOW = "print-files"

pytestmark = pytest.mark.slow


class Project:
    def __init__(self, folder: Path, closed_port: int) -> None:
        self.folder = folder
        self.config = folder / CONFIG_NAME
        self.db = folder / "var" / "consonance-sftp.db"
        self.closed_port = closed_port

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*CLI, "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "USER": "tester", "COLUMNS": "400"},
        )
        assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
        return done

    def rows(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        if not self.db.exists():
            return []
        with sqlite3.connect(self.db) as db:
            try:
                return db.execute(sql, params).fetchall()
            except sqlite3.OperationalError:  # not migrated yet
                return []

    def alerts(self) -> list[tuple[object, ...]]:
        return self.rows("SELECT partner, flow, message FROM alerts WHERE kind = 'delivery_failed'")


def _point_printer_at(config: Path, port: int) -> None:
    """The printer partner on a port nothing listens on (its host key pinned without a host)."""
    text = config.read_text()
    head, rest = text.split("[partners.printer]", 1)
    table, tail = rest.split("\n[", 1)
    table = re.sub(r"(?m)^port = \d+$", f"port = {port}", table)
    table = re.sub(r"\[127\.0\.0\.1\]:\d+ ", "", table)
    config.write_text(f"{head}[partners.printer]{table}\n[{tail}")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    folder = tmp_path_factory.mktemp("failures")
    init_project(folder, sftp_port=free_port(), api_port=free_port())
    proj = Project(folder, free_port())
    _point_printer_at(proj.config, proj.closed_port)
    with running_sandbox(proj.config, folder):
        yield proj


def _failed_line(out: str) -> str:
    (line,) = [x for x in out.splitlines() if x.startswith("failed ")]
    return line


def test_an_unreachable_partner_fails_with_one_clear_line_a_record_and_an_alert(
    project: Project,
) -> None:
    titles = _printable_titles(project.config)
    assert titles, "the sandbox catalogue has no printable title"
    _work, isbn = titles[0]
    address = f"127.0.0.1:{project.closed_port}"

    started = time.monotonic()
    done = project.cli("run", FLOW, "--isbn", isbn)
    took = time.monotonic() - started
    assert done.returncode == 1, done.stdout + done.stderr
    # The default schedule (2, 4, 8, 16 s between five attempts) ends well within a minute.
    assert took < 60, took

    # Progress while retrying: which attempt, the cause, when the next try is.
    for n, wait in ((1, 2), (2, 4), (3, 8), (4, 16)):
        assert f"attempt {n} of 5 failed" in done.stderr, done.stderr
        assert f"next try in {wait} s" in done.stderr
    assert done.stderr.count("connection refused") >= 4
    assert "DBOS" not in done.stdout + done.stderr

    # Then one line naming the partner, the address and the cause.
    line = _failed_line(done.stdout)
    assert "partner 'printer'" in line and address in line and "connection refused" in line
    assert "retry" in done.stdout  # what to do about it

    # On the record: every file of the package, failed with the reason.
    out = project.cli("history", "--isbn", isbn, "--csv").stdout
    table = list(csv.DictReader(io.StringIO(out)))
    assert len(table) == 5, out
    assert {r["outcome"] for r in table} == {"failed"}
    assert all("connection refused" in r["error"] and address in r["error"] for r in table)

    # One alert for the final failure (not one per attempt).
    (alert,) = project.alerts()
    assert alert[0] == "printer" and alert[1] == FLOW
    assert "connection refused" in str(alert[2]) and address in str(alert[2])

    # retry and resend fail the same way: one line, exit 1, one more alert each.
    workflow_id = table[0]["workflow_id"]
    with project.config.open("a") as fh:
        fh.write("\n[engine]\nretry_initial_interval_s = 0.1\n")
    retried = project.cli("retry", workflow_id)
    assert retried.returncode == 1
    line = _failed_line(retried.stdout)
    assert workflow_id in line and address in line and "connection refused" in line
    assert len(project.alerts()) == 2

    resent = project.cli("resend", workflow_id, "--reason", "printer asked again")
    assert resent.returncode == 1
    line = _failed_line(resent.stdout)
    assert "partner 'printer'" in line and "connection refused" in line
    assert len(project.alerts()) == 3
    generations = project.rows(
        "SELECT DISTINCT generation, outcome FROM delivery_ledger WHERE isbn = ?", isbn
    )
    assert sorted(generations) == [(0, "failed"), (1, "failed")]


def test_under_serve_a_failed_delivery_is_one_alert_and_lines_not_tracebacks(
    project: Project,
) -> None:
    titles = _printable_titles(project.config)
    assert len(titles) >= 2
    _work, isbn = titles[1]
    with project.config.open() as fh:
        if "[engine]" not in fh.read():
            with project.config.open("a") as out:
                out.write("\n[engine]\nretry_initial_interval_s = 0.1\n")
    before = len(project.alerts())
    log = project.folder / "serve.log"
    serve = subprocess.Popen(
        [*CLI, "--config", str(project.config), "serve", "--poll-interval", "5"],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "USER": "tester"},
    )
    try:
        queued = project.cli("run", FLOW, "--isbn", isbn, "--no-wait")
        assert queued.returncode == 0 and "queued" in queued.stdout, queued.stdout
        deadline = time.monotonic() + 60
        while len(project.alerts()) == before:
            assert time.monotonic() < deadline, "no alert for the failed delivery"
            time.sleep(0.3)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
    out = log.read_text()
    assert len(project.alerts()) == before + 1
    assert "Traceback" not in out, out
    assert "attempt 1 of 5 failed" in out and "connection refused" in out
    rows = project.rows("SELECT DISTINCT outcome FROM delivery_ledger WHERE isbn = ?", isbn)
    assert rows == [("failed",)]


def test_retry_before_anything_ran_says_so_and_creates_no_engine_database(
    tmp_path: Path,
) -> None:
    init_project(tmp_path, sftp_port=free_port(), api_port=free_port())
    done = subprocess.run(
        [*CLI, "--config", str(tmp_path / CONFIG_NAME), "retry", "dlv-nothing"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in out
    assert "no workflow 'dlv-nothing': nothing has run on this config yet" in out
    assert not list(tmp_path.rglob("dbos-system.db"))
