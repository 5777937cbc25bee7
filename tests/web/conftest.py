"""The console against a real project: ``consonance-sftp init``'s starter config (keys made at
run time) on a real SQLite store, with users added through ``users add`` and ledger rows and
alerts written through the store's own methods (one carrying an XSS payload in its file name,
its ISBN's title and its message)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, expect, sync_playwright

from consonance_sftp.app import App
from consonance_sftp.models import Alert, AlertSeverity, DeliveryOutcome, IntakeOutcome
from consonance_sftp.ports.delivery import DeliveryRecord
from consonance_sftp.ports.store import IntakeRecord
from consonance_sftp.web.app import create_app
from consonance_sftp.web.auth import LoginThrottle
from tests.cli import CLI, free_port

ISBN = "9781900200011"
OTHER_ISBN = "9781900200028"
XSS = "<script>alert('x')</script><img src=x onerror=alert(1)>"
# A 1x1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
PASSWORDS = {"vera": "viewer-password-1", "otto": "operator-password-1"}


@dataclass
class Project:
    root: Path
    config: Path
    app: App
    alert_id: int


def run_cli(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=config.parent,
        timeout=120,
        check=False,
    )


def _row(
    flow: str, partner: str, isbn: str, path: str, outcome: DeliveryOutcome, **kw: object
) -> DeliveryRecord:
    now = datetime.now(UTC)
    return DeliveryRecord(
        flow=flow,
        partner=partner,
        remote_path=path,
        sha256=hashlib.sha256(path.encode()).hexdigest(),
        size=1234,
        isbn=isbn,
        package=f"{isbn} production",
        workflow_id=f"dlv-{partner}-{isbn}",
        started_at=now - timedelta(minutes=5),
        finished_at=now,
        attempts=1,
        outcome=outcome,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("console")
    subprocess.run([*CLI, "init"], cwd=root, check=True, capture_output=True, timeout=120)
    config = root / "consonance-sftp.toml"
    for name, role in (("vera", "viewer"), ("otto", "operator")):
        done = run_cli(config, "users", "add", name, "--role", role, stdin=PASSWORDS[name] + "\n")
        assert done.returncode == 0, done.stdout + done.stderr
    app = App.from_config(config)
    store = app.store
    store.record_delivery(
        _row("print-files", "printer", ISBN, f"/in/{ISBN}_interior.pdf", DeliveryOutcome.SENT)
    )
    store.record_delivery(
        _row("print-files", "distributor", ISBN, f"/in/{ISBN}_cover.pdf", DeliveryOutcome.SENT)
    )
    store.record_delivery(
        _row(
            "print-files",
            "printer",
            OTHER_ISBN,
            f"/in/{XSS}.pdf",
            DeliveryOutcome.FAILED,
            error=f"refused: {XSS}",
        )
    )
    alert = store.raise_alert(
        Alert(
            severity=AlertSeverity.WARNING,
            kind="delivery_failed",
            message=f"failed {XSS}",
            partner="printer",
        )
    )
    assert alert.id is not None
    for n in (1, 2):
        store.record_intake(
            IntakeRecord(
                partner="designer",
                remote_path=f"/out/{XSS}-{n}.pdf",
                size=100 + n,
                remote_mtime=1_700_000_000.0 + n,
                flow="design-intake",
                outcome=IntakeOutcome.QUARANTINED,
                reason=f"no rule matched: {XSS}",
            )
        )
    inbox = app.state_dir / "inbox" / "designer"
    inbox.mkdir(parents=True, exist_ok=True)
    previews = {
        "cover.png": PNG,
        "proof.pdf": b"%PDF-1.4\n%fake but typed\n",
        "notes.html": b"<html><script>alert(1)</script></html>",
    }
    for n, (name, data) in enumerate(previews.items(), start=10):
        (inbox / name).write_bytes(data)
        store.record_intake(
            IntakeRecord(
                partner="designer",
                remote_path=f"/out/{name}",
                size=len(data),
                remote_mtime=1_700_000_000.0 + n,
                flow="design-intake",
                local_path=str(inbox / name),
                sha256=hashlib.sha256(data).hexdigest(),
                outcome=IntakeOutcome.QUARANTINED,
                reason="no rule matched: kept for a person",
            )
        )
    yield Project(root, config, app, alert.id)
    store.close()


@pytest.fixture
def client(project: Project) -> Iterator[TestClient]:
    """A client of a fresh console (its own login limits; the failed-login counts are in the
    project's database, shared by every console on it), cookies not Secure: the test client
    speaks plain http."""
    web = create_app(project.app, secure_cookies=False, throttle=LoginThrottle())
    with TestClient(web, base_url="http://testserver", follow_redirects=False) as c:
        yield c


def login(client: TestClient, name: str, password: str | None = None) -> str:
    """Log in through the form; returns the session's CSRF token (read from a page's form)."""
    form = client.get("/login")
    csrf = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    done = client.post(
        "/login",
        data={"username": name, "password": password or PASSWORDS[name], "csrf_token": csrf},
    )
    assert done.status_code == 303, done.text
    page = client.get("/alerts")
    assert page.status_code == 200
    return page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def chromium_path() -> str:
    return os.environ.get("CONSONANCE_SFTP_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Per module, not per session: Playwright's sync API keeps an event loop running in this
    # thread while it is open, which an asyncio test run after it (in any order, or on the
    # same xdist worker) would meet as "cannot be called from a running event loop".
    path = chromium_path()
    if shutil.which(path) is None:
        pytest.skip(f"no Chromium at {path} (scripts/system-deps.sh installs Debian's)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        print(f"Chromium {b.version}")
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, tmp_path: Path) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    p = context.new_page()
    dialogs: list[str] = []
    p.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    yield p
    p.screenshot(path=str(tmp_path / "last.png"), full_page=True)
    context.close()
    assert dialogs == [], f"a script ran in the page: {dialogs}"  # no XSS payload executed


def log_in(page: Page, url: str, name: str) -> None:
    page.goto(url + "/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1, name="Overview")).to_be_visible()


@contextmanager
def serving_web(config: Path) -> Iterator[str]:
    """``serve --web`` for ``config`` on a free port, running while the block runs; yields its
    base URL. Its output is printed when it stops (pytest shows it on failure)."""
    port = free_port()
    serve = subprocess.Popen(
        [*CLI, "--config", str(config), "serve", "--web", "--web-port", str(port)],
        cwd=config.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 90
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if serve.poll() is not None or time.monotonic() > deadline:
                serve.kill()
                pytest.fail(f"serve --web did not start:\n{serve.communicate()[0]}")
            time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.terminate()
        try:
            out, _ = serve.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
            out, _ = serve.communicate()
        print(out[-3000:])


def wait_until_sent(page: Page, url: str, isbn: str, has_text: str, what: str) -> None:
    """Reload the ledger of ``isbn``'s sent deliveries until a row shows ``has_text`` (two
    minutes at the most; ``what`` names the delivery in the failure)."""
    deadline = time.monotonic() + 120
    while True:
        page.goto(f"{url}/deliveries?isbn={isbn}&outcome=sent")
        if page.locator("#results tbody tr").filter(has_text=has_text).count() >= 1:
            return
        assert time.monotonic() < deadline, f"{what} was not sent"
        time.sleep(2)
