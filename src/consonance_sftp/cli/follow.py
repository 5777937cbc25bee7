"""A command that waits for durable work follows it on the console until it ends.

``retry`` and ``resend`` hand their work to the engine: to this process's own engine when
nothing else runs (then each file shows a progress bar with bytes and speed), or to a running
``serve`` (then this process cannot see bytes move, but it sees the workflow's state and the
steps it has finished: ``queued``, ``running: 2 of 5 file(s) uploaded``). On a terminal that is a
live line; otherwise (a log, a pipe) one line each time it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

if TYPE_CHECKING:
    from consonance_sftp.app import App
    from consonance_sftp.app.delivery import ProgressSink
    from consonance_sftp.app.runner import DeliveryRunner


@contextlib.contextmanager
def transfer_bars(console: Console, label: str = "") -> Iterator[ProgressSink]:
    """A progress bar per file (bytes and speed) for transfers this process runs; ``label``
    follows each file's name, e.g. ``(download)``."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    with Progress(*columns, TransferSpeedColumn(), console=console, transient=False) as bars:
        tasks: dict[str, Any] = {}

        def on_progress(partner: str, path: str, done: int, total: int) -> None:
            key = f"{partner}:{path}"
            if key not in tasks:
                # A name that is not UTF-8 arrives with surrogates: show its bytes as \xNN.
                shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                description = f"{partner} {escape(shown)}" + (f" {label}" if label else "")
                tasks[key] = bars.add_task(description, total=total)
            bars.update(tasks[key], completed=done)

        yield on_progress


@contextlib.contextmanager
def following(app: App, console: Console) -> Iterator[ProgressSink | None]:
    """Progress bars when this process will run the work itself (nothing else holds the
    engine); ``None`` when a running service does (``follow`` shows its state instead)."""
    from consonance_sftp.app.runner import executor_running

    if executor_running(app):
        yield None
        return
    with transfer_bars(console) as bars:
        yield bars


async def follow(
    console: Console,
    runner: DeliveryRunner,
    workflow_id: str,
    *,
    files: int | None = None,
    poll_s: float = 0.5,
) -> dict[str, Any]:
    """Wait for the workflow's outcome (``runner.wait``); meanwhile, when another process runs
    it, show its state and progress (see the module docstring)."""
    from consonance_sftp.app.operations import work_progress

    waiting = asyncio.ensure_future(runner.wait(workflow_id))
    if runner.client is None:
        return await waiting  # our own engine: the progress bars show it
    client = runner.client
    started = time.monotonic()
    shown = ""
    status = console.status(f"{workflow_id}: waiting") if console.is_terminal else None
    if status is not None:
        status.start()
    try:
        while not waiting.done():
            text = await asyncio.to_thread(work_progress, client, workflow_id, files)
            if text != shown and not text.startswith(("done", "failed")):
                shown = text
                line = f"{workflow_id}: {text} ({time.monotonic() - started:.0f} s)"
                if status is not None:
                    status.update(line)
                else:
                    console.print(line, markup=False, highlight=False)
            await asyncio.wait({waiting}, timeout=poll_s)
    finally:
        if status is not None:
            status.stop()
    return waiting.result()
