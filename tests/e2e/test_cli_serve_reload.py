"""A changed host key, as an operator lives through it, against a real OpenSSH ``sshd``.

The printer partner is a private sshd whose host key is replaced (restarted on the same port
with a new key) while the service is set up. The delivery fails, the partner is paused with one
alert, a rerun is held; after ``partner trust`` and ``partner resume`` the held package must
reach the printer, whether ``serve`` starts afterwards or was running all along (then it must
have picked up the new pin from the rewritten config, without a second alert). ``serve`` also
reloads its config on SIGHUP, and keeps the old config when the file is edited into an invalid
one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomlkit

from consonance_sftp.sandbox.openssh import OpenSshServer, OpenSshUnavailable, start_openssh
from tests.cli import CLI, free_port, running_sandbox
from tests.e2e.test_cli_service import FLOW, Project, _printable_titles, _wait

pytestmark = pytest.mark.slow


class Printer:
    """The printer partner: a private sshd whose host key can be replaced (same port)."""

    def __init__(self, workdir: Path, inbox: Path) -> None:
        self.workdir = workdir
        self.inbox = inbox
        self.server: OpenSshServer = start_openssh(workdir, chroot=False)
        self.port = self.server.port

    def new_host_key(self) -> str:
        """Restart on the same port with a fresh host key; return its fingerprint. (The client
        key is regenerated at the same path, and the config points at that path.)"""
        self.server.stop()
        self.server = start_openssh(self.workdir, port=self.port, chroot=False)
        return self.server.fingerprint

    def landed(self, isbn: str) -> list[str]:
        folder = self.inbox / isbn
        if not folder.exists():
            return []
        return sorted(
            p.name for p in folder.glob("*") if p.is_file() and not p.name.startswith(".")
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Project, Printer]]:
    from consonance_sftp.config.starter import init_project

    folder = tmp_path_factory.mktemp("reload")
    init_project(folder, sftp_port=free_port(), api_port=free_port())
    project = Project(folder)
    inbox = folder / "printer-in"
    inbox.mkdir()
    try:
        printer = Printer(folder / "sshd", inbox)
    except OpenSshUnavailable as exc:
        pytest.skip(f"OpenSSH sshd is not available: {exc}")
    doc = tomlkit.parse(project.config.read_text())
    entry = doc["partners"]["printer"]  # type: ignore[index]
    entry["port"] = printer.port  # type: ignore[index]
    entry["user"] = printer.server.shell_user  # type: ignore[index]
    entry["host_keys"] = [printer.server.known_hosts_line]  # type: ignore[index]
    entry["auth"] = {"key": str(printer.server.client_key_path)}  # type: ignore[index]
    entry["folders"] = {"send": str(inbox), "receive": str(inbox)}  # type: ignore[index]
    project.config.write_text(tomlkit.dumps(doc))
    try:
        with running_sandbox(project.config, folder):
            yield project, printer
    finally:
        printer.server.stop()


class Serve:
    """A real ``serve`` process whose output goes to a file the test reads as it grows."""

    def __init__(self, project: Project, *args: str) -> None:
        self.log = project.folder / f"serve-{time.monotonic_ns()}.log"
        self._out = self.log.open("w")
        self.proc = subprocess.Popen(
            [*CLI, "--config", str(project.config), "serve", "--poll-interval", "1", *args],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "USER": "tester"},
        )
        _wait(lambda: "serving:" in self.text(), 90, "serve to start")

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        finally:
            self._out.close()


def _alerts(project: Project) -> int:
    found = project.rows("SELECT count(*) FROM alerts WHERE kind = 'host_key_mismatch'")
    return int(str(found[0][0])) if found else 0


def _paused(project: Project) -> bool:
    found = project.rows("SELECT paused FROM pauses WHERE scope = 'partner' AND name = 'printer'")
    return bool(found) and bool(found[0][0])


def _fail_then_hold(project: Project, printer: Printer, isbn: str) -> str:
    """The host key changes; the delivery fails and pauses the partner; a rerun is held.
    Returns the new key's fingerprint."""
    fingerprint = printer.new_host_key()
    failed = project.cli("run", FLOW, "--isbn", isbn, check=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "host key" in (failed.stdout + failed.stderr).lower()
    assert _paused(project)
    held = project.cli("run", FLOW, "--isbn", isbn).stdout
    assert "held" in held and "paused" in held, held
    assert printer.landed(isbn) == []
    return fingerprint


def test_released_work_goes_when_serve_starts_after_trust_and_resume(
    world: tuple[Project, Printer],
) -> None:
    project, printer = world
    isbn = _printable_titles(project.config)[0][1]
    fingerprint = _fail_then_hold(project, printer, isbn)
    assert _alerts(project) == 1
    project.cli("partner", "trust", "printer", "--fingerprint", fingerprint, "--replace")
    resumed = project.cli("partner", "resume", "printer", "--reason", "key confirmed").stdout
    # Nothing runs: it must not promise the work goes at once.
    assert "within a second" not in resumed
    assert "no service is running" in resumed and "serve" in resumed, resumed
    assert "failed earlier" not in resumed, resumed  # the held package resends that one
    status = project.cli("status").stdout
    assert "within a second" not in status and f"{isbn} production" in status, status

    serve = Serve(project)
    try:
        _wait(lambda: len(printer.landed(isbn)) >= 5, 90, "the released package on the printer")
        _wait(lambda: project.ledger_rows(isbn) >= 5, 30, "the released package's ledger rows")
    finally:
        code = serve.stop()
    assert code == 0, serve.text()
    outcomes = project.rows("SELECT DISTINCT outcome FROM delivery_ledger WHERE isbn = ?", isbn)
    assert outcomes == [("sent",)]
    released = project.rows(
        "SELECT details FROM audit_events WHERE action = 'delivery.released' AND subject = ?",
        f"printer:{isbn} production",
    )
    assert len(released) == 1
    # The release says it sent the failed delivery again, not that it attached to it.
    assert json.loads(str(released[0][0])).get("resumed_failed") is True
    assert _alerts(project) == 1 and not _paused(project)


def test_running_serve_follows_trust_then_sighup_and_keeps_a_valid_config(
    world: tuple[Project, Printer],
) -> None:
    project, printer = world
    titles = _printable_titles(project.config)
    assert len(titles) >= 3
    isbn, other = titles[1][1], titles[2][1]
    serve = Serve(project, "--watch-config", "1")
    try:
        fingerprint = _fail_then_hold(project, printer, isbn)
        alerts = _alerts(project)
        assert alerts >= 1
        project.cli("partner", "trust", "printer", "--fingerprint", fingerprint, "--replace")
        _wait(lambda: "config reloaded" in serve.text(), 30, "serve to reload the config")
        resumed = project.cli("partner", "resume", "printer", "--reason", "key confirmed").stdout
        assert "no service is running" not in resumed, resumed
        _wait(lambda: len(printer.landed(isbn)) >= 5, 90, "the released package on the printer")
        # The failed rows are already there: wait for them to turn 'sent' (files are renamed
        # into place a moment before their rows are written).
        sent_rows = "SELECT count(*) FROM delivery_ledger WHERE isbn = ? AND outcome = 'sent'"
        _wait(lambda: project.rows(sent_rows, isbn) == [(5,)], 30, "the released package's rows")
        # The running service used the new pin: no second alert, the partner not paused again.
        assert _alerts(project) == alerts and not _paused(project)
        # serve's log says what it did: the release, then one line per file sent.
        sent_line = f"sent /{str(printer.inbox).strip('/')}/{isbn}/"
        _wait(lambda: sent_line in serve.text(), 10, "serve's log line for each file sent")
        assert f"released {isbn} production for printer" in serve.text(), serve.text()

        # An invalid edit is refused with its problem; the config in force stays. (The
        # delivery is asked for with a copy of the valid file: the CLI reads its own config.)
        good = project.config.read_text()
        copy = project.config.with_name("good.toml")
        copy.write_text(good)
        typo = good.replace("[partners.printer]", "[partners.printer]\nhots = 1")
        project.config.write_text(typo)
        _wait(lambda: "partners.printer.hots" in serve.text(), 30, "the refused reload")
        assert "keeps the config in force" in serve.text()
        done = project.cli("--config", str(copy), "run", FLOW, "--isbn", other, check=False)
        assert done.returncode == 0 and "done" in done.stdout, done.stdout + done.stderr
        assert len(printer.landed(other)) >= 5
        project.config.write_text(good)
        _wait(lambda: "config reloaded (the file changed)" in serve.text(), 30, "the file reload")

        # SIGHUP reloads at once.
        serve.proc.send_signal(signal.SIGHUP)
        _wait(lambda: "config reloaded (SIGHUP)" in serve.text(), 30, "the SIGHUP reload")
        assert serve.proc.poll() is None, "SIGHUP stopped serve"
    finally:
        code = serve.stop()
    assert code == 0, serve.text()


def test_a_refused_token_alerts_once_status_tells_and_recovery_is_noted(
    world: tuple[Project, Printer],
) -> None:
    """A token Consonance refuses (HTTP 401): one alert with the reason however many polls
    fail, ``status`` shows the poller's last success and last error; once the token is right
    again (reloaded on SIGHUP) a recovery note, and polling works again."""
    project, _printer = world
    token = project.folder / "keys" / "consonance-sandbox-token"
    good = token.read_text()

    def alerts(kind: str) -> list[str]:
        return [str(m) for (m,) in project.rows("SELECT message FROM alerts WHERE kind = ?", kind)]

    serve = Serve(project, "--watch-config", "0")
    try:
        _wait(lambda: "Consonance poller: last read" in project.cli("status").stdout, 60, "a poll")
        token.write_text("not-the-token\n")
        serve.proc.send_signal(signal.SIGHUP)
        _wait(lambda: alerts("consonance_poll_failed"), 60, "the alert on a refused token")
        failed = serve.text().count("Consonance poll failed")
        _wait(lambda: serve.text().count("Consonance poll failed") >= failed + 3, 30, "more polls")
        found = alerts("consonance_poll_failed")
        assert len(found) == 1, found
        assert "refused the API token" in found[0] and "401" in found[0]
        status = project.cli("status").stdout
        assert "Consonance poller: last read" in status, status
        assert "last error" in status and "refused the API token" in status, status
        assert "Consonance poller: failing since" in status, status

        token.write_text(good)
        serve.proc.send_signal(signal.SIGHUP)
        _wait(lambda: alerts("consonance_poll_recovered"), 60, "the recovery note")
        assert len(alerts("consonance_poll_failed")) == 1
        # The poller's line no longer says it fails (the alert stays listed until acknowledged).
        assert "Consonance poller: failing since" not in project.cli("status").stdout
    finally:
        token.write_text(good)
        code = serve.stop()
    assert code == 0, serve.text()
    # serve's log names what it did, one INFO line each (its default level shows them)
    text = serve.text()
    assert "Consonance incremental poll" in text or "Consonance reconcile poll" in text, text


def test_retry_while_serve_runs_follows_the_work_until_it_ends(
    world: tuple[Project, Printer],
) -> None:
    """``retry`` hands the work to the running ``serve`` and shows its state and progress
    until it ends, instead of waiting without a word."""
    import re

    project, printer = world
    isbn = _printable_titles(project.config)[3][1]
    serve = Serve(project, "--watch-config", "1")
    try:
        fingerprint = printer.new_host_key()
        failed = project.cli("run", FLOW, "--isbn", isbn, check=False)
        assert failed.returncode == 1
        found = re.search(r"failed (dlv-\S+):", failed.stdout)
        assert found, failed.stdout
        wid = found.group(1)
        project.cli("partner", "trust", "printer", "--fingerprint", fingerprint, "--replace")
        _wait(lambda: serve.text().count("config reloaded") >= 1, 30, "serve to reload")
        # Nothing was held: resume says the failed delivery stays failed until retried.
        resumed = project.cli("partner", "resume", "printer").stdout
        assert f"failed earlier, not held: {wid}" in resumed, resumed
        out = project.cli("retry", wid, "--by", "alice").stdout
        lines = out.splitlines()
        assert lines[0] == f"retrying {wid}"
        progress = [ln for ln in lines if ln.startswith(f"{wid}: ")]
        assert progress, out
        assert all(re.search(r": (queued|running)\b.*\(\d+ s\)$", ln) for ln in progress), out
        assert lines[-1] == f"done {wid}: 5 files sent", out
        assert len(printer.landed(isbn)) == 5
    finally:
        code = serve.stop()
    assert code == 0, serve.text()
