"""``promtool check metrics`` (Debian's prometheus package) on a full ``/metrics`` page: every
family with samples (counters, gauges, the duration histogram, quarantine, a missing calendar
report, a verified restore, open alerts), read from a SQLite store."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from consonance_sftp.app import App
from consonance_sftp.app.metrics import MetricsSource
from consonance_sftp.web.metrics import render
from tests.metrics_store import fill, settings


def test_promtool_finds_nothing_to_say(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's 'prometheus' (make system-deps does)"
    app = App(settings(tmp_path))
    try:
        fill(app)
        text = render(MetricsSource(app, ttl=0)).decode()
    finally:
        app.store.close()
    empty = [f.name for f in text_string_to_metric_families(text) if not f.samples]
    # Only the engine's work is empty here (nothing ran on this store's engine).
    assert empty == ["consonance_sftp_work_items"], empty
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint
    # promtool does speak up: a counter without _total is flagged.
    bad = text.replace("consonance_sftp_deliveries_total", "consonance_sftp_deliveries")
    flagged = subprocess.run(
        [promtool, "check", "metrics"], input=bad, capture_output=True, text=True, timeout=60
    )
    assert "_total" in flagged.stdout + flagged.stderr, flagged
