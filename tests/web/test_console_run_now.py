"""'Run now' clicked in a real browser: the real sandbox (Consonance + SFTP partners), ``serve
--web`` carrying out the run an operator starts from the flows page in Chromium (Playwright),
the title's files then sent to the printer, recorded with the operator's name as the trigger."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from consonance_sftp.app import App
from consonance_sftp.config.starter import CONFIG_NAME, init_project
from tests.cli import free_port, running_sandbox
from tests.e2e.test_cli_service import _printable_titles
from tests.web.conftest import PASSWORDS, log_in, run_cli, serving_web, wait_until_sent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """(config, ISBN of a printable title), the sandbox running."""
    folder = tmp_path_factory.mktemp("run-now")
    init_project(folder, sftp_port=free_port(), api_port=free_port())
    config = folder / CONFIG_NAME
    with running_sandbox(config, folder):
        # In a thread of its own: Playwright's sync API may run an event loop in this one.
        with ThreadPoolExecutor(1) as pool:
            _work, isbn = pool.submit(_printable_titles, config).result()[0]
        added = run_cli(
            config, "users", "add", "otto", "--role", "operator", stdin=PASSWORDS["otto"]
        )
        assert added.returncode == 0, added.stdout + added.stderr
        yield config, isbn


@pytest.fixture
def serving(sandbox: tuple[Path, str]) -> Iterator[str]:
    config = sandbox[0]
    with serving_web(config) as url:
        yield url


def test_run_now_from_the_flows_page_sends_the_title(
    sandbox: tuple[Path, str], serving: str, page: Page, tmp_path: Path
) -> None:
    config, isbn = sandbox
    log_in(page, serving, "otto")
    page.get_by_role("navigation").get_by_role("link", name="Flows").click()
    card = page.locator("#flow-print-files")
    card.get_by_label("ISBNs to run (optional)").fill(isbn)
    card.get_by_role("button", name=re.compile("^Run now")).click()
    expect(page.get_by_role("status")).to_contain_text("Ran print-files:")
    page.screenshot(path=str(tmp_path / "run-now.png"), full_page=True)
    wait_until_sent(page, serving, isbn, "printer", "the run's delivery")
    page.screenshot(path=str(tmp_path / "sent.png"), full_page=True)
    store = App.from_config(config).store
    try:
        rows = store.list_deliveries(isbn=isbn, partner="printer")
    finally:
        store.close()
    assert rows and {r.trigger for r in rows} == {"manual:otto"}
    assert {r.outcome.value for r in rows} == {"sent"}
