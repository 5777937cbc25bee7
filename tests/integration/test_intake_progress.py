"""``run`` of an intake flow on a terminal: a progress bar per download, and one INFO line per
intake with its outcome (real OpenSSH, the engine in this process as ``run`` starts it)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from consonance_sftp.app import App
from consonance_sftp.cli import service as cli_service
from consonance_sftp.config import Settings
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.settings import offline_settings, openssh_partner

SIZE = 3 * 1024 * 1024


def _app(openssh: OpenSshServer, root: Path) -> App:
    inbox = root / "sftp" / "in"
    inbox.mkdir(parents=True)
    settings = Settings.model_validate(
        offline_settings(
            root,
            partners={
                "studio": openssh_partner(
                    openssh,
                    {"receive": str(inbox)},
                    transfer={"stable_interval": 0.2, "segment_size": 1024 * 1024},
                )
            },
            flows={"proofs": {"kind": "intake", "partners": ["studio"]}},
        )
    )
    return App(settings)


def test_run_shows_download_progress_and_logs_each_intake(
    openssh: OpenSshServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = _app(openssh, tmp_path)
    try:
        path = tmp_path / "sftp" / "in" / "proof.pdf"
        path.write_bytes(os.urandom(SIZE))
        then = time.time() - 30
        os.utime(path, (then, then))
        caplog.set_level(logging.INFO, logger="consonance_sftp.engine.intake")
        with cli_service.console.capture() as captured:
            report, results = asyncio.run(cli_service._poll_with_progress(app, "proofs", True))
        out = captured.get()
        [taken] = report.taken
        assert results[taken.workflow_id or ""]["outcome"] == "stored"
        # The progress bar: the file's name and its size, downloaded in full.
        assert f"studio {path} (download)" in out, out
        assert "3.1/3.1 MB" in out, out
        [line] = [r for r in caplog.records if r.getMessage().startswith("intake of")]
        assert line.levelno == logging.INFO
        assert line.getMessage() == (
            f"intake of {path} from studio (flow proofs): stored, {SIZE} bytes"
        )
    finally:
        app.store.close()
