"""Test-wide setup: fixture plugins, CI's rule that a skipped real-server test is a failure, and
Ctrl-C for the programs tests start."""

from __future__ import annotations

import os
import signal
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


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the programs the tests start, however the suite itself was started.

    Several tests stop a program with SIGINT, as a terminal's Ctrl-C would, and check that it
    stops cleanly (the sandbox, ``serve``, ``bench/engine.py --against``). A suite started in
    the background by a script (``make test &``, ``nohup ... &``) starts with SIGINT ignored,
    as POSIX has a non-interactive shell do for background commands, and every program it
    starts would inherit that and never see the Ctrl-C. Python's own handler is put back here
    (in the main process and in each xdist worker), so the programs start with the default."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
