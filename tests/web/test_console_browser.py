"""The console in a real browser: Playwright for Python driving Debian's Chromium (Playwright's
own browser download is not reachable here; ``executable_path`` points at /usr/bin/chromium,
installed by scripts/system-deps.sh) against ``consonance-sftp web`` run as a real server, with
its default Secure cookies on http://127.0.0.1. Screenshots go to each test's temp folder."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from consonance_sftp.models import Alert, AlertSeverity
from tests.cli import CLI, free_port
from tests.web.conftest import ISBN, Project, log_in

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def console_url(project: Project) -> Iterator[str]:
    """``consonance-sftp web`` on a free port, serving the test project until the module ends."""
    port = free_port()
    server = subprocess.Popen(
        [*CLI, "--config", str(project.config), "web", "--port", str(port)],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                out = server.stdout.read() if server.stdout else ""
                pytest.fail(f"the console did not start:\n{out}")
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def test_log_in_search_by_isbn_and_see_the_timeline(
    console_url: str, page: Page, tmp_path: Path
) -> None:
    log_in(page, console_url, "vera")
    page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
    page.get_by_role("navigation").get_by_role("link", name="Deliveries").click()
    expect(page.get_by_role("heading", level=1, name="Deliveries")).to_be_visible()
    page.wait_for_load_state()
    assert page.evaluate("typeof htmx") == "object"  # served from the package, allowed by the CSP
    page.get_by_label("ISBN").fill(ISBN)
    page.get_by_role("button", name="Search").click()
    # htmx swaps the results in and pushes the search into the address bar
    expect(page).to_have_url(re.compile(rf"isbn={ISBN}"))
    results = page.locator("#results")
    expect(results.get_by_text(f"/in/{ISBN}_interior.pdf")).to_be_visible()
    expect(results.get_by_text("2 ledger rows")).to_be_visible()
    page.screenshot(path=str(tmp_path / "deliveries.png"), full_page=True)
    results.get_by_role("link", name=f"Timeline of {ISBN}").click()
    expect(page.get_by_role("heading", level=1, name=f"Title {ISBN}")).to_be_visible()
    sent = page.locator("ol.timeline").first
    expect(sent.get_by_text("printer")).to_be_visible()
    expect(sent.get_by_text("distributor")).to_be_visible()
    page.screenshot(path=str(tmp_path / "timeline.png"), full_page=True)
    assert (tmp_path / "timeline.png").stat().st_size > 1000


def test_an_operator_acknowledges_an_alert(
    project: Project, console_url: str, page: Page, tmp_path: Path
) -> None:
    alert = project.app.store.raise_alert(
        Alert(severity=AlertSeverity.CRITICAL, kind="browser_test", message="host key changed")
    )
    log_in(page, console_url, "otto")
    page.get_by_role("navigation").get_by_role("link", name="Alerts").click()
    row = page.locator(f"#alert-{alert.id}")
    expect(row.get_by_text("host key changed")).to_be_visible()
    row.get_by_label("Note").fill("new key confirmed by phone")
    row.get_by_role("button", name=re.compile("Acknowledge")).click()
    expect(page.get_by_role("status")).to_have_text(
        f"Alert {alert.id} acknowledged (browser_test)."
    )
    expect(page.locator(f"#alert-{alert.id}")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "alerts.png"), full_page=True)
    acked = next(a for a in project.app.store.list_alerts() if a.id == alert.id)
    assert acked.acknowledged_by == "otto"


def test_a_viewer_sees_no_buttons_and_hostile_names_stay_text(
    console_url: str, page: Page, tmp_path: Path
) -> None:
    log_in(page, console_url, "vera")
    page.goto(console_url + "/failures")
    expect(page.get_by_role("heading", level=1, name="Failures")).to_be_visible()
    expect(page.get_by_text("<script>alert('x')</script>", exact=False).first).to_be_visible()
    expect(page.get_by_role("button", name="Resend")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "failures.png"), full_page=True)


def test_serve_web_serves_the_console_beside_the_service(project: Project) -> None:
    """``serve --web``: the service and the console in one process; SIGTERM stops both."""
    port = free_port()
    serve = subprocess.Popen(
        [*CLI, "--config", str(project.config), "serve", "--web", "--web-port", str(port)],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert serve.poll() is None, serve.stdout.read() if serve.stdout else ""
                assert time.monotonic() < deadline, "the console did not start"
                time.sleep(0.2)
        login = httpx.get(f"http://127.0.0.1:{port}/login", timeout=10)
        assert login.status_code == 200
        assert "Log in" in login.text
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 303
    finally:
        serve.terminate()
        out, _ = serve.communicate(timeout=60)
    assert serve.returncode == 0, out
    assert f"console on http://127.0.0.1:{port}/" in out


def test_an_operator_pauses_a_partner_and_verifies_the_audit_trail(
    project: Project, console_url: str, page: Page, tmp_path: Path
) -> None:
    log_in(page, console_url, "otto")
    page.get_by_role("navigation").get_by_role("link", name="Partners").click()
    card = page.locator("#partner-distributor")
    card.get_by_label("Reason").fill("their server is moving")
    card.get_by_role("button", name=re.compile("^Pause")).click()
    expect(page.get_by_role("status")).to_have_text("Partner distributor paused.")
    card = page.locator("#partner-distributor")
    expect(card.get_by_text("their server is moving")).to_be_visible()
    expect(card.get_by_role("button", name=re.compile("^Resume"))).to_be_visible()
    page.screenshot(path=str(tmp_path / "partners.png"), full_page=True)
    page.get_by_role("navigation").get_by_role("link", name="Audit").click()
    page.get_by_label("Action").select_option("partner.paused")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("cell", name="user:otto").first).to_be_visible()
    page.get_by_role("button", name="Verify the trail now").click()
    expect(page.get_by_role("heading", name="Verified: intact")).to_be_visible()
    page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)
    paused = [p for p in project.app.store.list_pauses() if p.name == "distributor"]
    assert paused and paused[0].paused and paused[0].by == "otto"
