"""Every file delivered is on ``serve``'s log: one INFO line with its outcome, written as the
ledger records it (real SQLite store). (Each file received has its INFO line from the intake
workflow.)"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from consonance_sftp.app import App, LoggedLedger
from consonance_sftp.config import load_settings
from consonance_sftp.config.starter import CONFIG_NAME, init_project
from consonance_sftp.engine import StoreLedger
from consonance_sftp.models import DeliveryKey, DeliveryOutcome
from consonance_sftp.ports.delivery import DeliveryRecord


@pytest.fixture
def app(tmp_path: Path) -> App:
    init_project(tmp_path, sftp_port=2222, api_port=8123)
    return App(load_settings(tmp_path / CONFIG_NAME))


def test_each_delivered_file_logs_its_outcome(app: App, caplog: pytest.LogCaptureFixture) -> None:
    ledger = LoggedLedger(StoreLedger(app.store))
    key = DeliveryKey(partner="printer", remote_path="/in/9781900200011/cover.pdf", sha256="a" * 64)
    with caplog.at_level(logging.INFO, logger="consonance_sftp.activity"):
        ledger.record(
            DeliveryRecord(
                workflow_id="dlv-printer-x-g0",
                flow="print-files",
                partner=key.partner,
                remote_path=key.remote_path,
                sha256=key.sha256,
                size=560,
                generation=0,
                outcome=DeliveryOutcome.SENT,
                package="9781900200011 production",
            )
        )
    assert ledger.already_sent(key, 0)
    lines = [r.getMessage() for r in caplog.records if r.name == "consonance_sftp.activity"]
    assert lines == [
        "delivery dlv-printer-x-g0: sent /in/9781900200011/cover.pdf to printer (560 bytes, "
        "9781900200011 production)",
    ]
