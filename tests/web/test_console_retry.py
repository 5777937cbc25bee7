"""A failed delivery retried from the console, in a real browser, and seen sent: the real
sandbox (Consonance + SFTP partners), ``run`` failing against a printer whose port nothing
listens on, the printer put right in the config, then ``serve --web`` carrying out the retry an
operator clicks in Chromium (Playwright), and the title's deliveries showing ``sent``."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from consonance_sftp.app import App
from consonance_sftp.config.starter import CONFIG_NAME, init_project
from consonance_sftp.sandbox.consonance.files import make_pdf
from tests.cli import CLI, free_port, running_sandbox
from tests.e2e.test_cli_failures import _point_printer_at
from tests.e2e.test_cli_service import _printable_titles
from tests.web.conftest import PASSWORDS, log_in, serving_web, wait_until_sent

pytestmark = pytest.mark.slow

FAST_RETRIES = "\n[engine]\nretry_initial_interval_s = 0.1\nretry_max_attempts = 2\n"


def _cli(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "USER": "tester"},
    )


@pytest.fixture(scope="module")
def failed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    """(config, ISBN, workflow ID) of a delivery to the printer that failed for good; the
    printer is put right in the config afterwards, the sandbox kept running."""
    folder = tmp_path_factory.mktemp("retry")
    init_project(folder, sftp_port=free_port(), api_port=free_port())
    config = folder / CONFIG_NAME
    good = config.read_text() + FAST_RETRIES
    _point_printer_at(config, free_port())
    config.write_text(config.read_text() + FAST_RETRIES)
    with running_sandbox(config, folder):
        # In a thread of its own: Playwright's sync API may run an event loop in this one.
        with ThreadPoolExecutor(1) as pool:
            _work, isbn = pool.submit(_printable_titles, config).result()[0]
        done = _cli(config, "run", "print-files", "--isbn", isbn)
        assert done.returncode == 1, done.stdout + done.stderr
        history = _cli(config, "history", "--isbn", isbn, "--json")
        workflow = re.search(r'"workflow_id": "(dlv-[^"]+)"', history.stdout)
        assert workflow is not None, history.stdout
        config.write_text(good)  # the printer's real port and host key again
        added = _cli(config, "users", "add", "otto", "--role", "operator", stdin=PASSWORDS["otto"])
        assert added.returncode == 0, added.stdout + added.stderr
        yield config, isbn, workflow.group(1)


@pytest.fixture
def serving(failed: tuple[Path, str, str]) -> Iterator[str]:
    config = failed[0]
    with serving_web(config) as url:
        yield url


def test_a_dry_run_shows_the_exact_files_each_partner_would_receive(
    failed: tuple[Path, str, str], serving: str, page: Page, tmp_path: Path
) -> None:
    _config, isbn, _workflow_id = failed
    log_in(page, serving, "otto")
    page.get_by_role("navigation").get_by_role("link", name="Flows").click()
    card = page.locator("#flow-print-files")
    card.get_by_label("ISBNs (optional)").fill(isbn)
    card.get_by_role("button", name=re.compile("^Dry run")).click()
    plan = page.locator("#dry-run")
    expect(
        plan.get_by_role("heading", name="Dry run of print-files: nothing was sent")
    ).to_be_visible()
    expect(plan.get_by_text("To partner printer")).to_be_visible()
    paths = plan.locator("tbody td:first-child code").all_inner_texts()
    assert paths and all(p.startswith("/in/") for p in paths), paths
    assert any(isbn in p for p in paths), paths
    shas = plan.locator("tbody td:nth-child(3) code").all_inner_texts()
    assert all(re.fullmatch(r"[0-9a-f]{64}", s) for s in shas), shas
    page.screenshot(path=str(tmp_path / "dry-run.png"), full_page=True)


def test_retry_a_failed_delivery_and_see_it_sent(
    failed: tuple[Path, str, str], serving: str, page: Page, tmp_path: Path
) -> None:
    config, isbn, workflow_id = failed
    log_in(page, serving, "otto")
    page.get_by_role("navigation").get_by_role("link", name="Failures").click()
    row = page.get_by_role("row").filter(has_text=workflow_id)
    expect(row).to_have_count(1)
    page.screenshot(path=str(tmp_path / "failures.png"), full_page=True)
    row.get_by_role("button", name=re.compile("Retry")).click()
    expect(page.get_by_role("status")).to_contain_text(f"Retrying {workflow_id}.")
    # serve carries the retry out; the ledger then shows the title's files sent
    wait_until_sent(page, serving, isbn, "sent", "the retried delivery")
    page.goto(f"{serving}/titles/{isbn}")
    sent = page.locator("ol.timeline").first
    expect(sent.locator(".outcome-sent").first).to_be_visible()
    expect(sent.get_by_text("printer").first).to_be_visible()
    page.screenshot(path=str(tmp_path / "timeline.png"), full_page=True)
    # on the record: the retry by the user who clicked, and the files sent
    history = _cli(config, "history", "--isbn", isbn, "--json").stdout
    assert '"outcome": "sent"' in history
    store = App.from_config(config).store
    try:
        retries = [e for e in store.list_audit() if e.action == "delivery.retry"]
    finally:
        store.close()
    assert [(e.actor, e.subject) for e in retries] == [("user:otto", workflow_id)]


@pytest.fixture
def quarantined(failed: tuple[Path, str, str]) -> str:
    """A misnamed PDF the designer uploaded, taken in by ``run design-intake`` and
    quarantined (no rule matched its name); returns its name."""
    config = failed[0]
    name = "final artwork.pdf"
    inbox = config.parent / "var" / "sandbox" / "sftp" / "designer" / "out"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / name).write_bytes(make_pdf("artwork without an ISBN", 1))
    done = _cli(config, "run", "design-intake")
    assert done.returncode == 0, done.stdout + done.stderr
    listed = _cli(config, "quarantine", "list", "--json")
    assert f"/out/{name}" in listed.stdout, listed.stdout
    return name


def test_an_operator_assigns_a_quarantined_file_to_a_title(
    failed: tuple[Path, str, str], quarantined: str, serving: str, page: Page, tmp_path: Path
) -> None:
    config, isbn, _workflow_id = failed
    log_in(page, serving, "otto")
    page.get_by_role("navigation").get_by_role("link", name="Quarantine").click()
    row = page.get_by_role("row").filter(has_text=quarantined)
    expect(row).to_have_count(1)
    expect(row.get_by_role("link", name=re.compile("^Preview"))).to_be_visible()
    page.screenshot(path=str(tmp_path / "quarantine.png"), full_page=True)
    row.get_by_label("ISBN").fill(isbn)
    row.get_by_label("Kind").select_option("cover")
    row.get_by_role("button", name=re.compile("^Assign")).click()
    expect(page.get_by_role("status")).to_contain_text(f"assigned to {isbn} as cover")
    expect(page.get_by_role("row").filter(has_text=quarantined)).to_have_count(0)
    page.screenshot(path=str(tmp_path / "assigned.png"), full_page=True)
    store = App.from_config(config).store
    try:
        events = [e for e in store.list_audit() if e.action == "intake.assigned"]
    finally:
        store.close()
    assert len(events) == 1 and events[0].actor == "user:otto"
