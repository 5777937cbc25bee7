"""Delivery windows: a partner that accepts files only at night gets them held outside the
window (on the record, like a pause) and released once it opens."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path

import pytest
from pydantic import ValidationError

from consonance_sftp.app import App
from consonance_sftp.app.runner import Controls
from consonance_sftp.config import load_settings
from consonance_sftp.config.settings import DeliveryWindow
from consonance_sftp.config.starter import CONFIG_NAME, init_project
from tests.cli import free_port


def test_an_overnight_window_wraps_midnight_in_its_own_time_zone() -> None:
    nights = DeliveryWindow(start=time(22), end=time(6), timezone="Europe/London")
    assert nights.is_open(datetime(2026, 7, 1, 21, 30, tzinfo=UTC))  # 22:30 BST
    assert nights.is_open(datetime(2026, 7, 1, 4, 59, tzinfo=UTC))  # 05:59 BST
    assert not nights.is_open(datetime(2026, 7, 1, 5, 0, tzinfo=UTC))  # 06:00 BST
    assert not nights.is_open(datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    office = DeliveryWindow(start=time(9), end=time(17))
    assert office.is_open(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    assert not office.is_open(datetime(2026, 1, 5, 17, 0, tzinfo=UTC))


def test_a_window_is_checked_when_the_config_loads() -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        DeliveryWindow(start=time(22), end=time(6), timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="never open"):
        DeliveryWindow(start=time(8), end=time(8))


def test_deliveries_outside_the_window_are_held_and_inside_it_go(tmp_path: Path) -> None:
    init_project(tmp_path, sftp_port=free_port(), api_port=free_port())
    config = tmp_path / CONFIG_NAME
    text = config.read_text().replace(
        "[partners.printer]\n",
        '[partners.printer]\ndelivery_window = { start = "22:00", end = "06:00" }\n',
        1,
    )
    config.write_text(text)
    controls = Controls(App(load_settings(config)))
    noon, night = datetime(2026, 11, 24, 12, tzinfo=UTC), datetime(2026, 11, 24, 23, tzinfo=UTC)
    reason = controls.hold_reason("print-files", "printer", now=noon)
    assert reason == "outside partner 'printer''s delivery window (22:00-06:00 UTC)"
    assert controls.hold_reason("print-files", "printer", now=night) is None
    assert controls.hold_reason("print-files", "distributor", now=noon) is None
