"""A scheduled tick of an ONIX flow says when its feed was blocked or products were skipped
(issue 18): the tick's result and its log line carry them under ``incomplete``."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consonance_sftp.app import App
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.app.serving import run_tick
from consonance_sftp.config import load_settings
from consonance_sftp.config.starter import CONFIG_NAME, init_project
from consonance_sftp.sandbox.consonance.control import SandboxControl
from consonance_sftp.sandbox.services import sandbox_services
from tests.cli import free_port

ONIX = "onix-distributor"


@pytest.fixture
def app(tmp_path: Path) -> App:
    init_project(tmp_path, sftp_port=free_port(), api_port=free_port())
    return App(load_settings(tmp_path / CONFIG_NAME))


@pytest.mark.slow
async def test_a_tick_whose_feed_is_blocked_says_so(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    tick = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    async with sandbox_services(app.settings) as sb:
        async with app.consonance() as api:
            active = [
                p async for p in api.iter_products() if p.publishing_status == "04" and p.isbn13
            ]
        product = active[0]
        with SandboxControl(sb.api_url) as control:
            await asyncio.to_thread(control.update_product, product.id, publishing_status="09")
        with caplog.at_level(logging.INFO, logger="consonance_sftp.app.serving"):
            async with DeliveryRunner(app) as runner:
                done = await run_tick(app, ONIX, tick, runner=runner)
        landed = [p for p in sb.partner_folder("distributor", "/in").rglob("*") if p.is_file()]

    assert landed == []  # blocked: nothing went
    assert done["deliveries"] == []
    [line] = done["incomplete"]
    assert "distributor: ONIX delta feed blocked" in line and str(product.isbn13) in line
    logged = [r.getMessage() for r in caplog.records if r.name == "consonance_sftp.app.serving"]
    assert any("incomplete" in m and str(product.isbn13) in m for m in logged), logged
