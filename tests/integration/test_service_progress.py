"""A long Consonance read is not silent: the poller reports how far it has read (the first
poll reads the whole catalogue), and ``serve`` logs it every few seconds."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from consonance_sftp.app import poller_health, serving
from consonance_sftp.flows.changes import ChangeDetector
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from tests.fixtures.consonance_sandbox import MemorySnapshotStore, SandboxHandle


async def test_a_catalogue_read_reports_its_progress_and_logs_it(
    consonance_sandbox_factory: Callable[..., SandboxHandle],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sandbox = consonance_sandbox_factory(generate_catalogue(120, seed=31), page_size=20)
    seen: list[tuple[str, int, int, bool]] = []
    monkeypatch.setattr(serving, "PROGRESS_LOG_S", 0.0)
    shown = serving._logging_progress(lambda *a: seen.append(a))
    async with sandbox.client() as api:
        detector = ChangeDetector(api, MemorySnapshotStore(), progress=shown)
        with caplog.at_level(logging.INFO, logger="consonance_sftp.app.serving"):
            report = await detector.poll()
    assert report.mode == "baseline"
    reading = [s for s in seen if not s[3]]
    # one report per work read, counts growing to the whole catalogue, then one "done"
    assert [s[1] for s in reading] == list(range(1, report.works_read + 1))
    assert seen[-1] == ("baseline", report.works_read, report.products_read, True)
    assert reading[-1][2] == report.products_read == 120
    lines = [r.getMessage() for r in caplog.records if "so far" in r.getMessage()]
    assert lines and lines[-1].startswith("Consonance baseline poll: reading"), lines


def test_poller_health_alerts_once_per_kind_of_failure_and_notes_the_recovery(
    store_url: str,
) -> None:
    """Consonance unreachable: no alert for a poll or two (it may come back), one after
    ``ALERT_AFTER`` in a row, none for the polls after; a refused token (final) alerts at
    once, once; the first poll that works raises a recovery note and clears the failure."""
    from consonance_sftp.adapters.store import open_store
    from consonance_sftp.errors import ConsonanceAuthError, ConsonanceUnavailable
    from consonance_sftp.flows.changes import PollReport

    store = open_store(store_url)
    try:

        def kinds() -> list[str]:
            return [a.kind for a in reversed(store.list_alerts())]

        down = ConsonanceUnavailable("cannot reach Consonance at http://x: ConnectError()")
        for _ in range(poller_health.ALERT_AFTER - 1):
            poller_health.record_poll_failure(store, down)
        assert kinds() == []
        for _ in range(3):
            poller_health.record_poll_failure(store, down)
        assert kinds() == ["consonance_poll_failed"]
        refused = ConsonanceAuthError("Consonance refused the API token (HTTP 401) for works")
        for _ in range(3):
            poller_health.record_poll_failure(store, refused)
        alerts = store.list_alerts()
        assert kinds() == ["consonance_poll_failed", "consonance_poll_failed"]
        assert "HTTP 401" in alerts[0].message and str(alerts[0].severity) == "critical"
        health = poller_health.PollerHealth.load(store)
        assert health is not None and health.failures == poller_health.ALERT_AFTER + 5
        assert health.last_error == str(refused) and health.failing_since is not None

        report = PollReport(
            mode="incremental", started_at=datetime.now(UTC), works_read=0, products_read=0
        )
        poller_health.record_poll_success(store, report)
        poller_health.record_poll_success(store, report)
        assert kinds()[-1] == "consonance_poll_recovered" and len(kinds()) == 3
        health = poller_health.PollerHealth.load(store)
        assert health is not None and health.failing_since is None and health.failures == 0
        assert health.last_success is not None and health.last_mode == "incremental"
        assert health.last_error == str(refused)  # the last error stays on show
    finally:
        store.close()
