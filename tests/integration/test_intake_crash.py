"""kill -9 of the executor in the middle of a large inbox download, then a restart under the
same executor ID: the intake workflow resumes from the bytes already here (not from zero), and
the file ends up taken in once: one ledger row, one local copy, byte-identical.

The executor is ``tests/intake_worker.py`` (the application's own engine, SFTP adapter and
store); this test process polls next to it the way ``run`` does next to ``serve``, enqueuing
through the DBOS client.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from consonance_sftp.app import App
from consonance_sftp.app.intake import poll_inbox
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.config import Settings
from consonance_sftp.config.flows import IntakeFlow
from consonance_sftp.models import IntakeOutcome
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.engine_worker import ScriptWorker, wait_for_workflow
from tests.settings import offline_settings, openssh_partner

WORKER = Path(__file__).resolve().parents[1] / "intake_worker.py"
SIZE = 24 * 1024 * 1024
RATE = 6 * 1024 * 1024  # bytes per second: the download takes about 4 s


def Worker(settings: Path, executor_id: str, progress: Path, log: Path) -> ScriptWorker:
    return ScriptWorker(WORKER, [str(settings), executor_id, str(progress)], log)


def _done_bytes(progress: Path) -> int:
    try:
        return int(progress.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return 0


@pytest.mark.slow
async def test_kill9_mid_download_resumes_and_takes_the_file_once(
    openssh: OpenSshServer, tmp_path: Path, workers: list[Worker]
) -> None:
    inbox = tmp_path / "sftp" / "in"
    inbox.mkdir(parents=True)
    data = os.urandom(SIZE)
    (inbox / "audio-master.wav").write_bytes(data)
    then = time.time() - 60
    os.utime(inbox / "audio-master.wav", (then, then))
    raw = offline_settings(
        tmp_path,
        partners={
            "studio": openssh_partner(
                openssh,
                {"receive": str(inbox)},
                max_connections=2,
                transfer={
                    "stable_interval": 0.2,
                    "bandwidth_limit": RATE,
                    "segment_size": 1024 * 1024,  # the resume journal marks each MiB
                    "post_action": "delete",
                },
            )
        },
        flows={"masters": {"kind": "intake", "partners": ["studio"]}},
    )
    settings_path = tmp_path / "settings.json"
    settings_path.write_text(json.dumps(raw))
    progress = tmp_path / "progress"
    log = tmp_path / "worker.log"

    first = Worker(settings_path, "inbox-1", progress, log)
    workers.append(first)
    first.wait_ready()

    app = App(Settings.model_validate(raw))
    flow = app.settings.flows["masters"]
    assert isinstance(flow, IntakeFlow)
    async with DeliveryRunner(app) as runner:
        assert not runner.in_process  # the worker is the executor: enqueue through the client
        report = await poll_inbox(app, runner, "masters", flow, trigger="test")
    [taken] = report.taken
    workflow_id = taken.workflow_id or ""

    deadline = time.monotonic() + 30
    while _done_bytes(progress) < SIZE // 4:
        assert time.monotonic() < deadline, first.tail()
        await asyncio.sleep(0.05)
    first.proc.kill()  # kill -9, mid-download
    first.proc.wait(10)
    at_kill = _done_bytes(progress)
    assert at_kill < SIZE
    assert app.store.list_intakes(partner="studio") == []  # nothing recorded yet
    assert (inbox / "audio-master.wav").exists()

    second = Worker(settings_path, "inbox-1", progress, log)  # same ID: DBOS recovers it
    workers.append(second)
    second.wait_ready()
    status = await wait_for_workflow(
        app.settings.database.dbos_system_url, workflow_id, 60, second.tail
    )
    assert status.status == "SUCCESS", status.error
    result = status.output
    assert result["resumed_from"] > 0  # resumed from the journal, not from zero
    assert result["resumed_from"] <= at_kill + 1024 * 1024
    assert result["sha256"] == hashlib.sha256(data).hexdigest()
    assert Path(result["local_path"]).read_bytes() == data
    [row] = app.store.list_intakes(partner="studio")
    assert (row.outcome, row.sha256, row.size) == (IntakeOutcome.STORED, result["sha256"], SIZE)
    assert not (inbox / "audio-master.wav").exists()  # deleted only after all of that
    local_copies = [p for p in (tmp_path / "var" / "inbox").rglob("*") if p.is_file()]
    assert local_copies == [Path(result["local_path"])]  # no staging file left behind
    app.store.close()
