"""A monthly sales report fetched from an FTPS ``OUT`` folder (as NBN International's are) by
the sales_in flow: polled, taken in by the engine (SQLite) through the FTP adapter, loaded
into the sales ledger; the remote file moved to a processed folder only after the record."""

from __future__ import annotations

from pathlib import Path

import tomlkit

from consonance_sftp.adapters.ftp.fs import FtpRemoteFS
from consonance_sftp.app import App
from consonance_sftp.app.intake import poll_inbox
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.config import Settings
from consonance_sftp.config.flows import SalesInFlow
from consonance_sftp.ports.snapshots import Snapshot
from tests.fixtures.ftp_servers import FtpServer
from tests.sales_reports import Row, isbn13, write_vendor_report
from tests.settings import offline_settings


async def test_a_sales_report_is_fetched_from_an_ftps_out_folder(
    tmp_path: Path, pyftpd_tls: FtpServer
) -> None:
    assert pyftpd_tls.certificate is not None
    password_file = tmp_path / "ftps-password"
    password_file.write_text(pyftpd_tls.password)
    password_file.chmod(0o600)
    outbox = tmp_path / "finance"
    raw = offline_settings(
        tmp_path,
        partners={
            "nbni": {
                "protocol": "ftps",
                "host": pyftpd_tls.host,
                "port": pyftpd_tls.port,
                "user": pyftpd_tls.user,
                "tls_fingerprints": [pyftpd_tls.certificate.fingerprint],
                "auth": {"password": {"file": str(password_file)}},
                "folders": {"receive": "/out"},
                "transfer": {
                    "stable_interval": 0.2,
                    "post_action": "move",
                    "processed_folder": "/out/done",
                },
            }
        },
        flows={
            "sales": {
                "kind": "sales_in",
                "partners": ["nbni"],
                "patterns": ["*.csv"],
                "outbox": str(outbox),
                "house_currency": "GBP",
                "on_rejected": "load_valid",
                "channels": {"map": {"Amazon": "AMZ"}},
            }
        },
    )
    config = tmp_path / "consonance-sftp.toml"
    config.write_text(tomlkit.dumps(raw))
    app = App(Settings.model_validate(raw), config)
    fs = app.remote_fs("nbni")
    assert isinstance(fs, FtpRemoteFS)
    await fs.close()
    known = {n: isbn13(n) for n in range(997)}
    app.store.save_snapshots(
        "product",
        {n: Snapshot(content_hash=str(n), fields={"isbn": isbn}) for n, isbn in known.items()},
    )
    (pyftpd_tls.root / "out" / "done").mkdir()
    report = write_vendor_report(pyftpd_tls.local("/out/vendor-2026-10.csv"), map(Row, range(40)))
    sent_bytes = report.read_bytes()

    flow = app.settings.flows["sales"]
    assert isinstance(flow, SalesInFlow)
    runner = DeliveryRunner(app, executor=True, quiet=True)
    await runner.__aenter__()
    try:
        polled = await poll_inbox(app, runner, "sales", flow, trigger="test")
        results = {
            Path(f.path).name: await runner.wait(f.workflow_id or "", timeout_s=120)
            for f in polled.taken
        }
    finally:
        await runner.__aexit__(None, None, None)

    assert list(results) == ["vendor-2026-10.csv"]
    assert results["vendor-2026-10.csv"]["outcome"] == "stored", results
    [loaded] = app.store.list_sales_reports(partner="nbni")
    assert (loaded.status, loaded.accepted, loaded.rejected) == ("loaded", 40, 0)
    # Taken and recorded, then moved on the server: nothing left to take twice.
    assert not pyftpd_tls.local("/out/vendor-2026-10.csv").exists()
    assert pyftpd_tls.local("/out/done/vendor-2026-10.csv").read_bytes() == sent_bytes
    assert "RETR" in pyftpd_tls.faults.commands and "RNFR" in pyftpd_tls.faults.commands
    app.store.close()
