"""A store with something of everything ``/metrics`` shows (SQLite under a temporary folder):
for the metrics tests (tests/unit/test_metrics.py, tests/integration/test_metrics_promtool.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncssh

from consonance_sftp.app import App
from consonance_sftp.config import Settings
from consonance_sftp.engine import StoreLedger
from consonance_sftp.models import (
    Alert,
    AlertSeverity,
    AuditAction,
    DeliveryOutcome,
    IntakeOutcome,
)
from consonance_sftp.ports.delivery import DeliveryRecord
from consonance_sftp.ports.store import IntakeRecord

ISBN = "9781900200011"
OTHER_ISBN = "9781900200028"


def settings(root: Path) -> Settings:
    key = asyncssh.generate_private_key("ssh-ed25519")
    line = "sftp.example " + key.export_public_key("openssh").decode().strip()
    (root / "token").write_text("unused")

    def partner() -> dict[str, Any]:
        return {
            "host": "sftp.example",
            "user": "pub",
            "host_keys": [line],
            "auth": {"password": {"file": str(root / "token")}},
            "folders": {"send": "/in", "inbox": "/out"},
        }

    calendar = [{"partner": "vendor", "layout": "amazon-vendor", "due_day": 10}]
    token = {"file": str(root / "token")}
    return Settings.model_validate(
        {
            "state_dir": str(root / "var"),
            "consonance": {"base_url": "http://127.0.0.1:9", "token": token},
            "partners": {"printer": partner(), "vendor": partner(), "designer": partner()},
            "flows": {
                "print": {
                    "kind": "production",
                    "partners": ["printer"],
                    "when": {"project_stage": "Approved"},
                },
                "sales": {
                    "kind": "sales_in",
                    "partners": ["vendor"],
                    "outbox": str(root / "outbox"),
                    "channels": {"default": "AMZ"},
                    "calendar": calendar,
                },
                "vault": {"kind": "archive"},
            },
        }
    )


def file_record(
    name: str, outcome: DeliveryOutcome, *, size: int = 1000, isbn: str = ISBN, took: float = 3.0
) -> DeliveryRecord:
    start = datetime.now(UTC) - timedelta(seconds=took)
    return DeliveryRecord(
        flow="print",
        partner="printer",
        remote_path=f"/in/{isbn}/{name}",
        sha256=(name.encode().hex() * 64)[:64],
        size=size,
        isbn=isbn,
        package=f"{isbn} production",
        workflow_id=f"dlv-printer-{isbn}",
        executor_id="w-a",
        started_at=start,
        finished_at=start + timedelta(seconds=took),
        outcome=outcome,
        error="refused" if outcome is DeliveryOutcome.FAILED else None,
    )


def fill(app: App) -> None:
    ledger = StoreLedger(app.store)
    ledger.record(file_record(f"{ISBN}_interior.pdf", DeliveryOutcome.SENT, size=4000, took=2.0))
    ledger.record(file_record(f"{ISBN}_cover.pdf", DeliveryOutcome.SENT, size=1500, took=40.0))
    # Failed, then sent by a retry: the row moves to sent, both events stay.
    ledger.record(
        file_record(f"{OTHER_ISBN}_interior.pdf", DeliveryOutcome.FAILED, isbn=OTHER_ISBN)
    )
    ledger.record(file_record(f"{OTHER_ISBN}_interior.pdf", DeliveryOutcome.SENT, isbn=OTHER_ISBN))
    app.store.record_intake(
        IntakeRecord(
            partner="designer",
            remote_path=f"/out/{ISBN}_cover_v2.pdf",
            size=321,
            remote_mtime=1.0,
            flow="design",
            outcome=IntakeOutcome.QUARANTINED,
            reason="unmatched",
        )
    )
    app.store.raise_alert(
        Alert(
            severity=AlertSeverity.WARNING,
            kind="delivery_failed",
            message=f"{OTHER_ISBN}_interior.pdf refused",
            partner="printer",
            flow="print",
        )
    )
    app.store.append_audit(
        "drill:vault", AuditAction.ARCHIVE_DRILL, "flow:vault", {"ok": True, "outcome": "ok"}
    )
