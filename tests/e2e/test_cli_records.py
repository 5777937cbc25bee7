"""``run`` that fails, then ``status``, ``history`` and ``retry`` as an operator uses them, with
real processes: a sandbox, and the CLI running the engine in-process (no ``serve``).

The fault is real: the printer's server has a plain file where the title's folder must go, so
the upload fails and, once retries are spent, the delivery ends failed with the reason. After
the file is removed, ``retry ID`` finishes the same workflow and the same ledger rows become
``sent``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consonance_sftp.config.starter import CONFIG_NAME, init_project
from tests.cli import cli, free_port, running_sandbox
from tests.e2e.test_cli_service import _printable_titles

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("records")
    init_project(folder, sftp_port=free_port(), api_port=free_port())
    path = folder / CONFIG_NAME
    with path.open("a") as f:
        f.write("\n[engine]\nretry_max_attempts = 2\nretry_initial_interval_s = 0.2\n")
    with running_sandbox(path, folder):
        yield path


def test_failed_delivery_shows_in_status_and_history_and_retry_finishes_it(config: Path) -> None:
    folder = config.parent
    _work, isbn = _printable_titles(config)[0]
    blocker = folder / "var" / "sandbox" / "sftp" / "printer" / "in" / isbn
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")

    started = time.monotonic()
    failed = cli(config, "run", "print-files", "--isbn", isbn)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    match = re.search(r"failed (dlv-\S+): (.+)", failed.stdout)
    assert match, failed.stdout
    workflow_id = match.group(1)
    assert "printer" in match.group(2)
    assert time.monotonic() - started < 90

    status = cli(config, "status").stdout
    assert workflow_id in status and "failed" in status
    # The final failure raised an alert: status shows it open, and acknowledging it is recorded.
    assert "open alerts" in status and "delivery_failed" in status
    (alert,) = json.loads(
        cli(config, "alerts", "list", "--json", "--kind", "delivery_failed").stdout
    )
    assert alert["partner"] == "printer" and alert["acknowledged_at"] is None
    acked = cli(config, "alerts", "ack", str(alert["id"]), "--by", "dana", "--reason", "fixing it")
    assert acked.returncode == 0 and f"alert {alert['id']} acknowledged" in acked.stdout
    assert "no open alerts" in cli(config, "alerts", "list").stdout
    assert "alerts: none open" in cli(config, "status").stdout
    seen = json.loads(cli(config, "alerts", "list", "--all", "--json").stdout)
    assert [a["acknowledged_by"] for a in seen if a["id"] == alert["id"]] == ["dana"]
    unknown = cli(config, "alerts", "ack", "987654")
    assert unknown.returncode == 1 and "no alert 987654" in unknown.stdout

    rows = list(csv.DictReader(io.StringIO(cli(config, "history", "--csv").stdout)))
    assert rows and {r["outcome"] for r in rows} == {"failed"}
    assert all(r["workflow_id"] == workflow_id and r["error"] for r in rows)

    blocker.unlink()  # the fault is gone
    retried = cli(config, "retry", workflow_id, "--by", "carol")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert f"done {workflow_id}" in retried.stdout

    landed = sorted(p.name for p in blocker.glob("*") if p.is_file())
    assert len(landed) == len(rows)
    with sqlite3.connect(folder / "var" / "consonance-sftp.db") as db:
        ledger = db.execute(
            "SELECT outcome, workflow_id FROM delivery_ledger WHERE isbn = ?", (isbn,)
        ).fetchall()
        actors = db.execute(
            "SELECT actor FROM audit_events WHERE action = 'delivery.retry'"
        ).fetchall()
        acks = db.execute(
            "SELECT actor, subject FROM audit_events WHERE action = 'alert.acknowledged'"
        ).fetchall()
    assert len(ledger) == len(rows), "retry made new ledger rows instead of moving the old"
    assert {o for o, _ in ledger} == {"sent"} and {w for _, w in ledger} == {workflow_id}
    assert actors == [("user:carol",)]
    assert acks == [("user:dana", f"alert:{alert['id']}")]

    # history says how each file sent was verified: the sandbox's server offers no check-file
    # and the starter config no shell, so every file was read back (never a size check by
    # default); the failed rows said nothing.
    assert {r["verified_by"] for r in rows} == {""}
    after = list(csv.DictReader(io.StringIO(cli(config, "history", "--csv").stdout)))
    assert {(r["outcome"], r["verified_by"]) for r in after} == {("sent", "read_back")}
    lines = cli(config, "history", "--json").stdout.splitlines()
    assert {json.loads(line)["verified_by"] for line in lines} == {"read_back"}
    table = cli(config, "history").stdout
    assert "verified by" in table and "read_back" in table
