"""The ONIX feed policy through the real command line (issue 18), against a real ``sandbox``
process (Consonance API + SFTP partners): one product of the catalogue is made invalid (a
publishing status that says nothing about availability), then

* with the default ``on_invalid_product = "block"``, ``run`` sends nothing, names the product
  and exits non-zero (it exited 0 before, so cron and monitoring could not see it);
* with ``"skip"``, the rest of the feed is delivered to the distributor's SFTP folder, the
  product is named in the output and in the alert, and ``run`` still exits non-zero.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from consonance_sftp.config.starter import CONFIG_NAME, init_project
from tests.cli import CLI, free_port, running_sandbox

FLOW = "onix-distributor"
RECIPIENT = 'recipient = { onix_version = "3.0", mode = "delta", compression = "none" }'

pytestmark = pytest.mark.slow


class Project:
    def __init__(self, folder: Path, api_port: int) -> None:
        self.folder = folder
        self.config = folder / CONFIG_NAME
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.inbox = folder / "var" / "sandbox" / "sftp" / "distributor" / "in"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*CLI, "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "USER": "tester", "COLUMNS": "400"},
        )
        assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
        return done

    def feeds(self) -> list[Path]:
        return sorted(p for p in self.inbox.glob("*.xml") if not p.name.startswith("."))

    def active_product(self) -> tuple[int, str]:
        """An active product with an ISBN: its id and ISBN."""
        from consonance_sftp.app import App

        async def first() -> tuple[int, str]:
            async with App.from_config(self.config).consonance() as api:
                async for work in api.iter_works():
                    for p in work.products:
                        if p.publishing_status == "04" and p.isbn13:
                            return p.id, p.isbn13
            raise AssertionError("no active product in the sandbox catalogue")

        return asyncio.run(first())

    def set_status(self, product_id: int, status: str) -> None:
        from consonance_sftp.sandbox.consonance.control import SandboxControl

        with SandboxControl(self.api_url) as ctl:
            ctl.update_product(product_id, publishing_status=status)

    def policy(self, value: str) -> None:
        text = self.config.read_text()
        assert RECIPIENT in text, "the starter config's recipient line changed"
        self.config.write_text(
            text.replace(RECIPIENT, RECIPIENT[:-2] + f', on_invalid_product = "{value}" }}')
        )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    folder = tmp_path_factory.mktemp("onix-policy")
    api_port = free_port()
    init_project(folder, sftp_port=free_port(), api_port=api_port)
    proj = Project(folder, api_port)
    with running_sandbox(proj.config, folder):
        yield proj


def test_a_blocked_feed_exits_non_zero_and_with_skip_the_rest_is_delivered(
    project: Project,
) -> None:
    product_id, isbn = project.active_product()
    project.set_status(product_id, "09")  # "unknown": says nothing about availability

    blocked = project.cli("run", FLOW, "--full")
    assert blocked.returncode == 1, blocked.stdout + blocked.stderr
    out = " ".join(blocked.stdout.split())
    assert "full invalid" in out and isbn in out, out
    assert "not sent in full" in out and "feed blocked" in out, out
    assert project.feeds() == []  # nothing went
    alerts = " ".join(project.cli("alerts", "list").stdout.split())
    assert "was not sent" in alerts and isbn in alerts, alerts

    project.policy("skip")
    skipped = project.cli("run", FLOW, "--full")
    assert skipped.returncode == 1, skipped.stdout + skipped.stderr
    out = " ".join(skipped.stdout.split())
    assert "full ready" in out and "1 invalid product skipped" in out, out
    assert f"ISBN {isbn}" in out and "says nothing about availability" in out, out
    # The rest went to the distributor's SFTP folder, without the skipped product.
    feeds = project.feeds()
    assert len(feeds) == 1, [f.name for f in feeds]
    body = feeds[0].read_bytes()
    assert body.count(b"<Product>") > 10
    # No record of it (its siblings may still name it as a RelatedProduct).
    from consonance_sftp.formats.onix import iter_onix_records

    held = [r.product.isbn13 for r in iter_onix_records(feeds[0])]
    assert len(held) > 10 and isbn not in held
    # One alert for the feed, naming the skipped product.
    alerts = " ".join(project.cli("alerts", "list").stdout.split())
    assert "left out 1 invalid product" in alerts and isbn in alerts, alerts

    # Fixed in Consonance, the next run sends it and exits 0.
    project.set_status(product_id, "04")
    fixed = project.cli("run", FLOW)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    feeds = project.feeds()
    assert len(feeds) == 2 and isbn in [r.product.isbn13 for r in iter_onix_records(feeds[-1])]
