"""A long Consonance read is not silent: the poller reports how far it has read (the first
poll reads the whole catalogue), and ``serve`` logs it every few seconds."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from consonance_sftp.app import serving
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
