"""Test-wide setup: fixture plugins, and CI's rule that a skipped real-server test is a failure."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.store",
    "tests.fixtures.sshd",
    "tests.fixtures.sftp_servers",
    "tests.fixtures.consonance_sandbox",
    "tests.fixtures.interop_servers",
    "tests.fixtures.clamd",
    "tests.fixtures.notify_sinks",
    "tests.fixtures.ftp_servers",
]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI=true a skip (a missing sshd, PostgreSQL, browser...) fails the test instead."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {report.longrepr}"


@pytest.fixture
def workers() -> Iterator[list[Any]]:
    """The worker subprocesses a test starts (``Worker`` of tests/engine_worker.py or of
    test_intake_crash.py): each is closed when the test ends, passed or failed."""
    started: list[Any] = []
    yield started
    for w in started:
        w.close()
