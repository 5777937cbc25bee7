"""kill -9 of the executor while it loads a 200,000-line sales report into the sales ledger,
then a restart under the same executor ID: nothing of the interrupted load is left (one
transaction), and after the restart the report is loaded once, with every line, and its
import file holds every line once.

The executor is ``tests/intake_worker.py`` (the application's own engine, SFTP adapter, store
and sales hand-off); this test process polls next to it, enqueuing through the DBOS client.
The load is seen to be under way by the store's SQLite write-ahead log growing: a 200,000-line
transaction spills its pages there long before it commits.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from pathlib import Path

import pytest

from consonance_sftp.app import App
from consonance_sftp.app.intake import poll_inbox
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.config import Settings
from consonance_sftp.config.flows import SalesInFlow
from consonance_sftp.models import IntakeOutcome
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.engine_worker import ScriptWorker, wait_for_workflow
from tests.sales_reports import Row, write_vendor_report
from tests.settings import offline_settings, openssh_partner

WORKER = Path(__file__).resolve().parents[1] / "intake_worker.py"
LINES = 200_000
SPILL = 8 * 1024 * 1024  # WAL bytes beyond its size at the hand-off: the load is under way


def Worker(settings: Path, executor_id: str, progress: Path, log: Path) -> ScriptWorker:
    return ScriptWorker(WORKER, [str(settings), executor_id, str(progress)], log)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


@pytest.mark.slow
async def test_kill9_during_the_load_of_a_200k_line_report_loads_it_once_after_restart(
    openssh: OpenSshServer, tmp_path: Path, workers: list[ScriptWorker]
) -> None:
    inbox = tmp_path / "sftp" / "in"
    inbox.mkdir(parents=True)
    write_vendor_report(inbox / "vendor-2026-10.csv", (Row(n) for n in range(LINES)))
    raw = offline_settings(
        tmp_path,
        partners={
            "amazon": openssh_partner(
                openssh, {"receive": str(inbox)}, transfer={"stable_interval": 0.2}
            )
        },
        flows={
            "sales": {
                "kind": "sales_in",
                "partners": ["amazon"],
                "channels": {"default": "AMZ"},
                "outbox": str(tmp_path / "finance"),
            }
        },
    )
    settings_path = tmp_path / "settings.json"
    settings_path.write_text(json.dumps(raw))
    progress = tmp_path / "progress"
    log = tmp_path / "worker.log"
    app = App(Settings.model_validate(raw))
    wal = Path(app.settings.database.url.removeprefix("sqlite:///") + "-wal")

    first = Worker(settings_path, "sales-1", progress, log)
    workers.append(first)
    first.wait_ready()
    flow = app.settings.flows["sales"]
    assert isinstance(flow, SalesInFlow)
    async with DeliveryRunner(app) as runner:
        assert not runner.in_process  # the worker is the executor: enqueue through the client
        report = await poll_inbox(app, runner, "sales", flow, trigger="test")
    [taken] = report.taken
    workflow_id = taken.workflow_id or ""

    # The file is stored and recorded (the row comes just before the hand-off)...
    deadline = time.monotonic() + 60
    while not app.store.list_intakes(partner="amazon"):
        assert time.monotonic() < deadline, first.tail()
        await asyncio.sleep(0.02)
    at_hand_off = _size(wal)
    # ...and the load's transaction is writing: kill -9 now.
    while _size(wal) < at_hand_off + SPILL:
        assert time.monotonic() < deadline, first.tail()
        assert first.proc.poll() is None, first.tail()
        await asyncio.sleep(0.01)
    first.proc.kill()
    first.proc.wait(10)
    assert app.store.list_sales_reports() == []  # nothing of the interrupted load
    assert app.store.list_sales_imports() == []

    second = Worker(settings_path, "sales-1", progress, log)  # same ID: DBOS recovers it
    workers.append(second)
    second.wait_ready()
    status = await wait_for_workflow(
        app.settings.database.dbos_system_url, workflow_id, 240, second.tail
    )
    assert status.status == "SUCCESS", status.error

    [row] = app.store.list_intakes(partner="amazon")
    assert row.outcome is IntakeOutcome.STORED, row.reason
    [loaded] = app.store.list_sales_reports()
    assert (loaded.status, loaded.lines_read, loaded.accepted, loaded.rejected) == (
        "loaded",
        LINES,
        LINES,
        0,
    )
    assert loaded.intake_id == row.id
    assert sum(1 for _ in app.store.sales_report_lines(loaded.id)) == LINES
    [imp] = app.store.list_sales_imports()
    assert imp.lines == LINES and imp.path is not None and Path(imp.path).exists()
    # The summary beside the import file sums every line once.
    summary = Path(imp.path.removesuffix(".xlsx") + ".summary.csv")
    with summary.open(newline="") as f:
        rows = list(csv.DictReader(f))
    [total] = [r for r in rows if r["ISBN"] == "All titles" and r["Channel ID"] == "All channels"]
    assert int(total["Lines"]) == LINES
    assert int(total["Sales quantity"]) == sum(Row(n).units for n in range(LINES))
    app.store.close()
