"""A real executor process for the kill -9 test between attaching in Consonance and recording.

Run as ``python tests/intake_attach_worker.py SETTINGS.json EXECUTOR_ID CRASH_MARKER``. It builds
the ``App`` from the settings (JSON, the same fields as the TOML config) and launches its
engine, whose ``intake`` hand-off is the application's own processor, wrapped: while
``CRASH_MARKER`` exists, the first file the processor has attached kills this process with
SIGKILL (the marker removed first) right after the attachment, before the hand-off step
returns, so the engine has neither checkpointed the step nor recorded the outcome. It prints
``READY`` and serves until SIGTERM; the test starts it again under the same ID.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from consonance_sftp.app import App
from consonance_sftp.config import Settings
from consonance_sftp.flows.intake import IntakeProcessor
from consonance_sftp.models import IntakeOutcome
from consonance_sftp.ports.intake import FetchedFile, HandOffResult, IntakeRequest
from intake_worker import serve  # run as a script: its folder (tests/) is on sys.path


class CrashAfterAttaching:
    def __init__(self, inner: IntakeProcessor, marker: Path) -> None:
        self.inner = inner
        self.marker = marker

    def applies(self, request: IntakeRequest) -> bool:
        return self.inner.applies(request)

    async def handle(self, request: IntakeRequest, file: FetchedFile) -> HandOffResult:
        result = await self.inner.handle(request, file)
        if result.outcome is IntakeOutcome.ATTACHED and self.marker.exists():
            self.marker.unlink()
            print("ATTACHED, KILLING", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return result


async def main(settings_path: str, executor_id: str, marker: str) -> None:
    app = App(Settings.model_validate(json.loads(Path(settings_path).read_text())))
    engine = app.engine(executor_id=executor_id)
    inner = engine.intake_handlers["intake"]
    assert isinstance(inner, IntakeProcessor)
    engine.intake_handlers["intake"] = CrashAfterAttaching(inner, Path(marker))
    await serve(app, engine, executor_id)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
