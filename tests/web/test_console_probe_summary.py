"""The Partners page's one-line summary of a stored probe report names what was measured: an
FTP/FTPS server's mode, TLS and hash command, an SFTP server's version and atomic rename."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from consonance_sftp.app.console import _probe_of
from consonance_sftp.ports.remote_fs import FtpProbeFacts, ProbeReport


def _stored(tmp_path: Path, report: ProbeReport) -> Any:
    (tmp_path / "probes").mkdir()
    data = {**dataclasses.asdict(report), "probed_at": "2026-12-03T10:00:00Z"}
    (tmp_path / "probes" / f"{report.partner}.json").write_text(json.dumps(data))
    return cast(Any, SimpleNamespace(state_dir=tmp_path))


def test_an_ftps_probe_is_summarised_as_ftps(tmp_path: Path) -> None:
    facts = FtpProbeFacts(
        mode="ftps", tls_version="TLSv1.3", server_hash="XSHA256", server_hash_works=True
    )
    report = ProbeReport(partner="nbni", server_version="220 (vsFTPd 3.0.3)", rename=True)
    app = _stored(tmp_path, dataclasses.replace(report, ftp=facts))
    when, summary = _probe_of(app, "nbni")
    assert when == "2026-12-03T10:00:00Z"
    assert summary == "220 (vsFTPd 3.0.3), FTPS, TLSv1.3, rename, server-side hashes (XSHA256)"
    assert "SFTP" not in summary


def test_an_sftp_probe_keeps_its_summary(tmp_path: Path) -> None:
    report = ProbeReport(partner="printer", server_version="SSH-2.0-OpenSSH_9.2", posix_rename=True)
    _, summary = _probe_of(_stored(tmp_path, report), "printer")
    assert summary == "SSH-2.0-OpenSSH_9.2, SFTP v3, atomic rename, no server-side hashes"
