"""Inbox polling on the scale-out backend (PostgreSQL for the store and the engine): the same
file polled at the same moment by the executor and by a second process enqueuing through the
DBOS client is taken in by one workflow, into one ledger row."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from consonance_sftp.app import App
from consonance_sftp.app.intake import poll_inbox
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.config import Settings
from consonance_sftp.config.flows import SalesInFlow
from consonance_sftp.engine import EngineClient
from consonance_sftp.models import IntakeOutcome
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.fixtures.postgres import PostgresCluster
from tests.sales_reports import Row, write_vendor_report
from tests.settings import offline_settings, openssh_partner

pytestmark = pytest.mark.postgres


async def test_two_processes_polling_at_once_take_the_file_once(
    openssh: OpenSshServer, postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    inbox = tmp_path / "sftp"
    inbox.mkdir()
    # A real report (the flow reads it: random bytes would be quarantined as unreadable).
    report = write_vendor_report(
        inbox / "royalties-q3.csv", (Row(n) for n in range(3000)), age_s=60
    )
    data = report.read_bytes()
    store_db = postgres_cluster.create_database()
    system_db = postgres_cluster.create_database()
    raw = offline_settings(
        tmp_path,
        database={"url": store_db, "dbos_system_url": system_db},
        partners={
            "distributor": openssh_partner(
                openssh, {"reports": str(inbox)}, transfer={"stable_interval": 0.3}
            )
        },
        flows={"sales": {"kind": "sales_in", "partners": ["distributor"], "folder": "reports"}},
        engine={"executor_id": "pg-inbox-1"},
    )
    executor_app = App(Settings.model_validate(raw))
    other_app = App(Settings.model_validate(raw))
    flow = executor_app.settings.flows["sales"]
    assert isinstance(flow, SalesInFlow)
    try:
        async with (
            DeliveryRunner(executor_app, executor=True) as executor,
            DeliveryRunner(other_app) as other,
        ):
            assert executor.in_process and not other.in_process
            mine, theirs = await asyncio.gather(
                poll_inbox(executor_app, executor, "sales", flow, trigger="test:a"),
                poll_inbox(other_app, other, "sales", flow, trigger="test:b"),
            )
            ids = {f.workflow_id for f in mine.taken + theirs.taken}
            assert len(ids) == 1 and len(mine.taken) == len(theirs.taken) == 1
            [workflow_id] = ids
            assert workflow_id is not None
            result = await executor.wait(workflow_id, timeout_s=60)
        assert result["sha256"] == hashlib.sha256(data).hexdigest()
        assert Path(result["local_path"]).read_bytes() == data
        [row] = executor_app.store.list_intakes()
        assert (row.outcome, row.flow, row.sha256) == (
            IntakeOutcome.STORED,
            "sales",
            result["sha256"],
        )
        client = EngineClient(executor_app.engine_settings())
        try:
            assert client.statuses(prefix="ing-") == {workflow_id: "SUCCESS"}
        finally:
            client.close()
    finally:
        executor_app.store.close()
        other_app.store.close()
