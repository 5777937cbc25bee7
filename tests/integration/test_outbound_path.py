"""The outbound path in docs/reference/architecture.md is the path the code takes.

A real run (the Consonance sandbox over HTTP, the sandbox SFTP printer, the engine on SQLite):
a title's work enters "Production approval", the serve loop's poll sees it, and its files
reach the printer and the ledger. A profiler records each move of the code from one module of
the package to another; the page's numbered list must be entered in that order, and every
other ``app``/``flows`` module entered must be named on the page as called in passing.
"""

from __future__ import annotations

import asyncio
import re
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from consonance_sftp.app import App
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.app.serving import ServeLoop
from consonance_sftp.config import load_settings
from consonance_sftp.config.starter import CONFIG_NAME, init_project
from consonance_sftp.flows.changes import ChangeDetector
from consonance_sftp.sandbox.consonance.control import SandboxControl
from consonance_sftp.sandbox.services import sandbox_services
from tests.cli import free_port
from tests.integration.test_durable_triggers import STAGE, _printable_work, _until

PAGE = Path(__file__).parents[2] / "docs" / "reference" / "architecture.md"
PACKAGE = "consonance_sftp."

pytestmark = pytest.mark.slow


def _page_section(title: str) -> str:
    text = PAGE.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _module(path: str) -> str:
    """``app/serving.py`` -> ``consonance_sftp.app.serving``; a folder (or its
    ``__init__.py``) names its package."""
    dotted = path.removesuffix(".py").removesuffix("/").removesuffix("/__init__")
    return PACKAGE + dotted.replace("/", ".")


def documented_path() -> tuple[list[str], list[str]]:
    """The numbered list of the outbound section, and the modules it says are called in
    passing."""
    section = _page_section("One outbound file")
    steps = [_module(m) for m in re.findall(r"^\d+\. `([^`]+)`", section, re.M)]
    passing = section[section.index("Called in passing") :].split("\n\n")[0]
    return steps, [_module(m) for m in re.findall(r"`([a-z_/]+(?:\.py|/))`", passing)]


class Moves:
    """The package's modules in the order the code moves into them, in any thread (a module
    calling its own functions is one entry)."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.recording = False

    def __call__(self, frame: FrameType, event: str, _arg: Any) -> None:
        if event != "call" or not self.recording:
            return
        name = str(frame.f_globals.get("__name__", ""))
        if name.startswith(PACKAGE) and (not self.order or self.order[-1] != name):
            self.order.append(name)  # list.append is atomic under the GIL

    def __enter__(self) -> Moves:
        sys.setprofile(self)
        threading.setprofile(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]


def _in_order(steps: list[str], moves: list[str]) -> bool:
    """Are ``steps`` entered in that order (each after the one before it)?"""
    it = iter(moves)
    return all(step in it for step in steps)


def _covered(module: str, named: list[str]) -> bool:
    return any(module == n or module.startswith(n + ".") for n in named)


async def test_the_outbound_path_on_the_page_is_the_path_the_code_takes(tmp_path: Path) -> None:
    steps, passing = documented_path()
    assert 0 < len(steps) <= 8, steps
    init_project(tmp_path, sftp_port=free_port(), api_port=free_port())
    app = App(load_settings(tmp_path / CONFIG_NAME), tmp_path / CONFIG_NAME)
    loop = ServeLoop(app)
    with Moves() as moves:
        async with sandbox_services(app.settings) as sb, app.consonance() as api:
            with SandboxControl(sb.api_url) as control:
                detector = ChangeDetector(api, app.store)
                async with DeliveryRunner(app) as runner:
                    await loop.poll_once(detector, runner, api)  # the baseline
                    work_id, isbn = await _printable_work(api)
                    await asyncio.to_thread(control.move_stage, work_id, STAGE)
                    moves.recording = True
                    await loop.poll_once(detector, runner, api)

                    def sent() -> bool:
                        rows = app.store.list_deliveries(flow="print-files")
                        return any(r.isbn == isbn and r.outcome.value == "sent" for r in rows)

                    await _until(sent, f"{isbn} recorded as sent")
                    moves.recording = False
    entered = list(dict.fromkeys(moves.order))
    missing = [m for m in steps if m not in entered]
    assert not missing, f"on the page, never entered: {missing}; entered: {entered}"
    assert _in_order(steps, moves.order), f"not entered in the page's order; entered: {entered}"
    layers = (PACKAGE + "app", PACKAGE + "flows")
    unnamed = [
        m
        for m in entered
        if m.startswith(layers) and not _covered(m, steps) and not _covered(m, passing)
    ]
    assert not unnamed, f"entered but not on the page: {unnamed}"
