"""What the tests that drive the real command line share: how to call it (``CLI``), a free port
for a server the test starts (``free_port``), and a running ``consonance-sftp sandbox``
(Consonance API + SFTP partners) for the length of a ``with`` block (``running_sandbox``), and
the starter's designer intake flow made store-only (``store_only_intake``) for the tests of
taking files in rather than of matching them."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# One implementation of "a port on 127.0.0.1 that nothing listens on": the sandbox's own. A test
# uses it for a server it starts, or for a partner that must refuse the connection.
from consonance_sftp.sandbox.openssh import free_port

__all__ = ["CLI", "cli", "free_port", "running_sandbox", "store_only_intake"]

# The CLI as ``python -m``, with this interpreter: no reliance on the console script being on PATH.
CLI = [sys.executable, "-m", "consonance_sftp"]

SANDBOX_READY = "stops the sandbox"  # the sandbox prints "Ctrl-C stops the sandbox" once it serves


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``consonance-sftp --config CONFIG ARGS...``, its output captured; never a traceback."""
    done = subprocess.run(
        [*CLI, "--config", str(config), *args], capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in done.stdout + done.stderr
    return done


@contextmanager
def running_sandbox(
    config: Path, cwd: Path, *, timeout: float = 60
) -> Iterator[subprocess.Popen[str]]:
    """``consonance-sftp --config CONFIG sandbox`` run in ``cwd``, ready (its servers listen)
    inside the block; stopped with Ctrl-C (SIGINT) on the way out, killed if it will not stop."""
    sandbox = subprocess.Popen(
        [*CLI, "--config", str(config), "sandbox"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
    )
    try:
        assert sandbox.stdout is not None
        deadline = time.monotonic() + timeout
        said: list[str] = []  # what it printed, for the failure message
        for line in sandbox.stdout:
            if SANDBOX_READY in line:
                break
            said.append(line)
            assert time.monotonic() < deadline, "sandbox did not start: " + "".join(said)
        else:
            raise AssertionError("sandbox exited before it was ready: " + "".join(said))
        yield sandbox
    finally:
        sandbox.send_signal(signal.SIGINT)
        try:
            sandbox.wait(15)
        except subprocess.TimeoutExpired:
            sandbox.kill()


def store_only_intake(config: Path) -> None:
    """Drop the starter's ``[flows.design-intake.match]`` table: the flow then stores each
    file, awaiting processing, without matching it to a title (the inbox tests' subject)."""
    text = config.read_text()
    stripped = re.sub(r"^\[flows\.design-intake\.match\]\n(?:(?!\[).*\n)*", "", text, flags=re.M)
    if stripped == text:
        raise AssertionError(f"{config} has no [flows.design-intake.match] table")
    config.write_text(stripped)
