"""kill -9 of the executor between attaching a partner's file in Consonance and recording it:
after a restart under the same executor ID the file is attached once (the sandbox shows one
attachment), with one intake row and one asset version.

The executor is ``tests/intake_attach_worker.py`` (the application's own engine, processor,
SFTP adapter and store), killing itself with SIGKILL right after the processor attached the
file, before the hand-off step returns; the restarted executor recovers the workflow and runs
the hand-off again. This test process polls next to it, as ``run`` does next to ``serve``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from consonance_sftp.app import App
from consonance_sftp.app.intake import poll_inbox
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.config import Settings
from consonance_sftp.config.flows import IntakeFlow
from consonance_sftp.models import IntakeOutcome
from consonance_sftp.sandbox.consonance.files import make_pdf
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.engine_worker import ScriptWorker, wait_for_workflow
from tests.fixtures.consonance_sandbox import SandboxHandle
from tests.settings import openssh_partner

WORKER = Path(__file__).resolve().parents[1] / "intake_attach_worker.py"
WORK, PRODUCT, ISBN = 1001, 20001, "9781900200011"
PRINT_FILES = 50004


def Worker(settings: Path, executor_id: str, marker: Path, log: Path) -> ScriptWorker:
    return ScriptWorker(WORKER, [str(settings), executor_id, str(marker)], log)


@pytest.mark.slow
async def test_kill9_between_attaching_and_recording_attaches_once(
    openssh: OpenSshServer,
    consonance_sandbox_factory: Callable[..., SandboxHandle],
    tmp_path: Path,
    workers: list[Worker],
) -> None:
    sandbox = consonance_sandbox_factory(generate_catalogue(50, seed=5))
    inbox = tmp_path / "sftp" / "in"
    inbox.mkdir(parents=True)
    name = f"{ISBN}_interior_final.pdf"
    data = make_pdf("the revised interior", 40)
    (inbox / name).write_bytes(data)
    # A manifest beside it (the first rule): read with the file, deleted with it at the end.
    manifest = inbox / f"{name}.manifest.json"
    manifest.write_text(json.dumps({"isbn": ISBN, "kind": "interior", "version": "7"}))
    then = time.time() - 60
    for path in (inbox / name, manifest):
        os.utime(path, (then, then))
    token = tmp_path / "token"
    token.write_text(sandbox.token)
    raw = {
        "state_dir": str(tmp_path / "var"),
        "consonance": {"base_url": sandbox.url, "token": {"file": str(token)}},
        "engine": {"retry_max_attempts": 3, "retry_initial_interval_s": 0.1},
        "partners": {
            "typesetter": openssh_partner(
                openssh,
                {"receive": str(inbox)},
                max_connections=2,
                transfer={"stable_interval": 0.2, "post_action": "delete"},
            )
        },
        "flows": {
            "revisions": {
                "kind": "intake",
                "partners": ["typesetter"],
                "match": {"todo": "Print files approved"},
            }
        },
    }
    settings_path = tmp_path / "settings.json"
    settings_path.write_text(json.dumps(raw))
    marker = tmp_path / "crash-after-attaching"
    marker.touch()
    log = tmp_path / "worker.log"

    first = Worker(settings_path, "attach-1", marker, log)
    workers.append(first)
    first.wait_ready()
    app = App(Settings.model_validate(raw))
    flow = app.settings.flows["revisions"]
    assert isinstance(flow, IntakeFlow)
    async with DeliveryRunner(app) as runner:
        assert not runner.in_process  # the worker is the executor
        report = await poll_inbox(app, runner, "revisions", flow, trigger="test")
    [taken] = report.taken  # the file, not its manifest
    workflow_id = taken.workflow_id or ""

    await asyncio.to_thread(first.proc.wait, 60)  # it kills itself once it has attached
    assert first.proc.returncode == -9, first.tail()
    assert not marker.exists()

    def attachments() -> list[object]:
        [product] = [p for p in sandbox.catalogue.works[WORK].products if p.id == PRODUCT]
        return [f for f in product.production_files if f.filename == name]

    assert len(attachments()) == 1  # attached in Consonance...
    [row] = app.store.list_intakes(partner="typesetter")
    assert row.outcome is IntakeOutcome.STORED  # ...but not recorded as such
    assert (inbox / name).exists()  # and the partner's file untouched

    second = Worker(settings_path, "attach-1", marker, log)  # same ID: DBOS recovers it
    workers.append(second)
    second.wait_ready()
    status = await wait_for_workflow(
        app.settings.database.dbos_system_url, workflow_id, 60, second.tail
    )
    assert status.status == "SUCCESS", status.error
    assert status.output["outcome"] == "attached"

    [attached] = attachments()  # one attachment, not two
    assert attached.file_size == len(data)
    async with sandbox.client() as api:
        work = await api.get_work(WORK)
        assert work is not None
        [product] = [p for p in work.products if p.id == PRODUCT]
        [record] = [f for f in product.production_files if f.filename == name]
        assert record.url
        size, digest = await api.download_file(record.url, tmp_path / "check")
    assert (size, digest) == (len(data), row.sha256)
    assert {t.id: t for t in work.todos}[PRINT_FILES].completed
    [row] = app.store.list_intakes(partner="typesetter")  # one row
    assert (row.outcome, row.work_id, row.product_id) == (IntakeOutcome.ATTACHED, WORK, PRODUCT)
    assert f"#{record.id}" in (row.reason or "")
    assert "(the partner's version 7)" in (row.reason or "")
    assert "matched by manifest" in (row.reason or "")
    [version] = app.store.list_asset_versions(WORK, product_id=PRODUCT, kind="interior_pdf")
    assert (version.version, version.sha256) == (1, row.sha256)
    assert not (inbox / name).exists()  # deleted only after all of that
    assert not manifest.exists()  # and its manifest with it
    app.store.close()
