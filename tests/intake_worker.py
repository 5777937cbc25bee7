"""A real executor process for the inbox crash test, running the application's own engine.

Run as ``python tests/intake_worker.py SETTINGS.json EXECUTOR_ID PROGRESS_FILE``. It builds the
``App`` from the settings (JSON, the same fields as the TOML config), launches its engine
(deliveries and intake through the SFTP adapter, records in the store), writes the bytes done
of the download under way to ``PROGRESS_FILE`` as it advances, prints ``READY`` and serves until
SIGTERM. The test kills it with SIGKILL mid-download and starts it again under the same ID.
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
from consonance_sftp.engine import SERVICE, Engine


async def main(settings_path: str, executor_id: str, progress_path: str) -> None:
    app = App(Settings.model_validate(json.loads(Path(settings_path).read_text())))
    progress_file = Path(progress_path)

    def progress(partner: str, path: str, done: int, total: int) -> None:
        tmp = progress_file.with_suffix(".tmp")
        tmp.write_text(f"{done} {total}")
        os.replace(tmp, progress_file)

    await serve(app, app.engine(executor_id=executor_id, progress=progress), executor_id)


async def serve(app: App, engine: Engine, executor_id: str) -> None:
    """Run ``engine`` as a long-lived executor (the test's polls hand it their work), say
    ``READY`` on stdout, and stop on SIGTERM."""
    engine.lease.role = SERVICE
    await asyncio.to_thread(engine.launch)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("READY", executor_id, flush=True)
    await stop.wait()
    await engine.aclose()
    app.store.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
