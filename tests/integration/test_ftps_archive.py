"""The archive flow to an FTPS partner (issue 20: every flow works with an FTP partner as with
an SFTP one): a run writes the age-encrypted bag and its sidecar and delivers both through
the engine to real vsftpd (explicit TLS, session reuse required, certificate pinned); a
drill then downloads the partner's copy over FTPS, decrypts and reads every file of it, and a
byte changed on the server's disk is named by the next drill."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from consonance_sftp.app.dispatch import run_flow
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.models import DeliveryOutcome, Verification
from tests.archive_project import add_interior, archive_project
from tests.cli import CLI
from tests.fixtures.ftp_servers import FtpServer, start_vsftpd

pytestmark = [pytest.mark.slow]

PASSWORD_ENV = "CSFTP_TEST_FTPS_PASSWORD"


@pytest.fixture
def vsftpd_explicit() -> Iterator[FtpServer]:
    server = start_vsftpd(implicit=False)
    try:
        yield server
    finally:
        server.stop()


def _drill(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--config", str(config), "archive", "drill", "--flow", "nightly", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        env=os.environ,
    )


async def test_an_archive_reaches_an_ftps_partner_and_a_drill_reads_it_back(
    tmp_path: Path, vsftpd_explicit: FtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = vsftpd_explicit
    assert server.certificate is not None
    monkeypatch.setenv(PASSWORD_ENV, server.password)
    partner = {
        "protocol": "ftps",
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "tls_fingerprints": [server.certificate.fingerprint],
        "auth": {"password": {"env": PASSWORD_ENV}},
        "folders": {"send": server.folder},
    }
    project = archive_project(
        tmp_path,
        None,
        titles=20,
        seed=5,
        vault=(partner, server.local(server.folder)),
        drill={"every": "7d", "identity_file": str(tmp_path / "publisher.key")},
    )
    try:
        app = project.app()
        asset = add_interior(app, project, 200_000)
        async with DeliveryRunner(app, executor=True, quiet=True) as runner:
            outcome = await run_flow(app, "nightly", trigger="test", runner=runner)
        assert outcome.results and not [r for r in outcome.results.values() if "error" in r]
        (archive,) = sorted(project.partner.glob("nightly-*.tar.zst.age"))
        sidecar = project.partner / f"{archive.name}.sha256"
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        assert sidecar.read_text().split()[0] == digest
        rows = {r.remote_path: r for r in app.store.list_deliveries(flow="nightly")}
        row = rows[f"{server.folder}/{archive.name}"]
        assert row.outcome is DeliveryOutcome.SENT and row.partner == "vault"
        assert row.sha256 == digest
        assert row.verified_by is Verification.READ_BACK  # vsftpd has no hash command
        app.store.close()

        done = await asyncio.to_thread(_drill, project.config)
        assert done.returncode == 0, done.stdout + done.stderr
        (report,) = json.loads(done.stdout)
        assert report["outcome"] == "ok" and report["archives"] == [archive.name]
        (copy,) = report["copies"]
        assert copy["source"] == "partner:vault" and copy["mode"] == "full"
        assert report["bytes_verified"] >= len(asset)
        assert report["archive_bytes"] == archive.stat().st_size

        damaged = bytearray(archive.read_bytes())
        damaged[len(damaged) // 2] ^= 0xFF
        archive.write_bytes(bytes(damaged))
        done = await asyncio.to_thread(_drill, project.config)
        assert done.returncode == 1, done.stdout + done.stderr
        said = " ".join((done.stdout + done.stderr).split())
        assert archive.name in said, said
    finally:
        project.sandbox.stop()
