"""``serve``'s config watcher (``app.reload``): a changed file is validated, then put in force;
an invalid one is refused once with its problems and the config in force stays; a rewrite with
the same bytes does nothing; the sections a running engine cannot switch are kept."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from consonance_sftp.app.reload import ConfigChange, ConfigWatcher, compare, in_force
from consonance_sftp.config import Settings, load_settings
from consonance_sftp.config.starter import CONFIG_NAME, init_project


@pytest.fixture
def config(tmp_path: Path) -> Path:
    init_project(tmp_path, sftp_port=2222, api_port=8123)
    return tmp_path / CONFIG_NAME


def _run_watcher(watcher: ConfigWatcher, edits: list[tuple[str, bool]]) -> None:
    """Run the watcher; apply each edit (file text, SIGHUP?) with pauses between."""

    async def main() -> None:
        stop, sighup = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(watcher.run(stop, sighup))
        for text, hup in edits:
            if text:
                watcher.path.write_text(text)
            if hup:
                sighup.set()
            await asyncio.sleep(0.3)
        stop.set()
        await task

    asyncio.run(main())


def test_a_valid_change_is_applied_an_invalid_one_refused_once(
    config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    current = [load_settings(config)]
    applied: list[tuple[Settings, ConfigChange]] = []

    async def apply(settings: Settings, change: ConfigChange) -> None:
        applied.append((settings, change))
        current[0] = settings

    good = config.read_text()
    pinned = good.replace("max_connections = 2", "max_connections = 3", 1)
    invalid = good.replace("[partners.printer]", "[partners.printer]\nhots = 1")
    watcher = ConfigWatcher(config, lambda: current[0], apply, interval_s=0.05)
    with caplog.at_level(logging.INFO, logger="consonance_sftp.app.reload"):
        _run_watcher(
            watcher,
            [(pinned, False), (pinned, False), (invalid, False), ("", False), ("", True)],
        )
    # the valid edit applied once (the same bytes again: nothing), naming what changed
    assert len(applied) == 1
    settings, change = applied[0]
    assert settings.partners["printer"].max_connections == 3
    assert change.partners == ("printer",) and change.summary() == "changed partners printer"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    # the invalid file: refused with its problem, once while it stays, again on SIGHUP
    assert len(errors) == 2, errors
    assert all("partners.printer.hots" in e and "keeps the config in force" in e for e in errors)
    assert current[0].partners["printer"].max_connections == 3


def test_database_engine_and_state_dir_are_kept_until_a_restart(config: Path) -> None:
    old = load_settings(config)
    moved = config.read_text().replace('state_dir = "var"', 'state_dir = "elsewhere"')
    assert moved != config.read_text()
    config.write_text(moved)
    new = load_settings(config)
    change = compare(old, new)
    assert "state_dir" in change.kept and "database" in change.kept
    kept = in_force(old, new)
    assert kept.state_dir == old.state_dir and kept.database == old.database
