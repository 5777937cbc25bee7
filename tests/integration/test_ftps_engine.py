"""An ONIX feed end to end to an FTPS partner: the sandbox Consonance API over HTTP -> the
onix_feed flow -> the durable engine (DBOS on SQLite) -> ``App.remote_fs`` picking the FTP
adapter by the partner's ``protocol`` -> pyftpdlib with TLS required, with the ledger."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import tomlkit

from consonance_sftp.adapters.ftp.fs import FtpRemoteFS
from consonance_sftp.app import App
from consonance_sftp.app.dispatch import delivery_request
from consonance_sftp.config import OnixFeedFlow, load_settings
from consonance_sftp.config.starter import CONFIG_NAME, init_project
from consonance_sftp.flows.onix_feed import prepare_onix_feed, record_sent
from consonance_sftp.formats.onix import iter_onix_records
from consonance_sftp.models import DeliveryOutcome, Verification
from consonance_sftp.sandbox.services import sandbox_services
from tests.cli import free_port
from tests.fixtures.ftp_servers import FtpServer

NAME = "onix-distributor"
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def _make_ftps_partner(config: Path, server: FtpServer) -> None:
    """The starter config's distributor, moved to the FTPS server."""
    assert server.certificate is not None
    doc = tomlkit.parse(config.read_text())
    partner = tomlkit.table()
    partner["protocol"] = "ftps"
    partner["host"] = server.host
    partner["port"] = server.port
    partner["user"] = server.user
    partner["tls_fingerprints"] = [server.certificate.fingerprint]
    partner["auth"] = {"password": {"env": "CSFTP_TEST_FTPS_PASSWORD"}}
    partner["folders"] = {"send": "/in", "receive": "/out"}
    partner["max_connections"] = 2
    doc["partners"]["distributor"] = partner  # type: ignore[index]
    config.write_text(tomlkit.dumps(doc))


@pytest.mark.slow
async def test_an_onix_feed_reaches_an_ftps_partner_through_the_engine(
    tmp_path: Path, pyftpd_tls: FtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CSFTP_TEST_FTPS_PASSWORD", pyftpd_tls.password)
    init_project(tmp_path, sftp_port=free_port(), api_port=free_port())
    _make_ftps_partner(tmp_path / CONFIG_NAME, pyftpd_tls)
    settings = load_settings(tmp_path / CONFIG_NAME)
    app = App(settings)
    flow = settings.flows[NAME]
    assert isinstance(flow, OnixFeedFlow)
    partner = app.partner_config("distributor")
    assert partner.protocol == "ftps"
    fs = app.remote_fs("distributor")
    assert isinstance(fs, FtpRemoteFS)  # the adapter follows the partner's protocol
    await fs.close()
    remote_folder = partner.folders[flow.folder]

    async with sandbox_services(settings), app.consonance() as api:
        [feed], report = await prepare_onix_feed(
            api, app.store, NAME, flow, now=NOW, staging=app.state_dir / "onix"
        )
    assert report.ok and feed.result.products > 10

    engine = app.engine()
    await asyncio.to_thread(engine.launch)
    try:
        request = delivery_request(feed, flow=NAME, folder=remote_folder, trigger="manual:test")
        wid = await engine.enqueue_delivery(request, max_connections=partner.max_connections)
        result = await engine.result(wid, timeout_s=60)
        record_sent(app.store, feed, folder=remote_folder, workflow_id=wid)
    finally:
        await engine.aclose()

    assert len(result["sent"]) == 1
    landed = pyftpd_tls.local(f"{remote_folder}/{feed.file_name}")
    source = feed.plan.files[0].source
    assert source is not None
    assert landed.read_bytes() == source.read_bytes()
    assert len(list(iter_onix_records(landed))) == feed.result.products
    # Only the final name: the temporary one was renamed away.
    assert sorted(p.name for p in landed.parent.iterdir()) == [feed.file_name]
    # Over TLS only, logged in, uploaded to the temporary name, then renamed.
    commands = pyftpd_tls.faults.commands
    assert commands[0] == "AUTH" and "PROT" in commands
    assert commands.index("STOR") < commands.index("RNFR") < commands.index("RNTO")
    [row] = app.store.list_deliveries(flow=NAME)
    assert row.outcome is DeliveryOutcome.SENT
    assert row.remote_path == f"{remote_folder}/{feed.file_name}"
    assert row.sha256 == hashlib.sha256(landed.read_bytes()).hexdigest()
    assert row.partner == "distributor"
    # pyftpdlib offers no server-side hash: the engine's record says the file was read back.
    assert row.verified_by is Verification.READ_BACK
    app.store.close()


class _OpenFence:
    def check(self) -> None:
        return None


@pytest.mark.parametrize("pins", [["SHA256:" + "00" * 32], []], ids=["changed", "unpinned"])
async def test_a_changed_certificate_alerts_pauses_and_sends_nothing(
    tmp_path: Path, pyftpd_tls: FtpServer, monkeypatch: pytest.MonkeyPatch, pins: list[str]
) -> None:
    """The App's delivery transport over an FTPS partner whose certificate is not the pinned
    one, or that has no pin yet (before ``partner trust``): the same security event as a
    changed SSH host key; an unpinned partner is not even connected to."""
    from consonance_sftp.app.delivery import SftpDeliveryTransport
    from consonance_sftp.app.runner import Controls
    from consonance_sftp.errors import TlsCertificateMismatch
    from consonance_sftp.ports.delivery import FileToSend

    monkeypatch.setenv("CSFTP_TEST_FTPS_PASSWORD", pyftpd_tls.password)
    init_project(tmp_path, sftp_port=free_port(), api_port=free_port())
    config = tmp_path / CONFIG_NAME
    _make_ftps_partner(config, pyftpd_tls)
    doc = tomlkit.parse(config.read_text())
    if pins:
        doc["partners"]["distributor"]["tls_fingerprints"] = pins  # type: ignore[index]
    else:
        del doc["partners"]["distributor"]["tls_fingerprints"]  # type: ignore[union-attr]
    config.write_text(tomlkit.dumps(doc))
    app = App(load_settings(config))
    local = tmp_path / "feed.xml"
    local.write_bytes(b"<ONIXMessage/>")
    file = FileToSend(
        source=str(local),
        remote_path="/in/feed.xml",
        sha256=hashlib.sha256(local.read_bytes()).hexdigest(),
        size=local.stat().st_size,
    )
    transport = SftpDeliveryTransport(app.remote_fs, None, app.host_key_changed)
    try:
        with pytest.raises(TlsCertificateMismatch):
            await transport.remote_state("distributor", file)
        with pytest.raises(TlsCertificateMismatch):
            await transport.stage("distributor", file, _OpenFence())
    finally:
        await transport.close()
    alerts = app.store.list_alerts()
    assert {(a.kind, a.severity, a.partner) for a in alerts} == {
        ("host_key_mismatch", "critical", "distributor")
    }
    assert Controls(app).is_paused("partner", "distributor")
    assert "PASS" not in pyftpd_tls.faults.commands and "STOR" not in pyftpd_tls.faults.commands
    if not pins:
        assert pyftpd_tls.faults.commands == []  # no connection at all
        assert "partner trust distributor" in alerts[0].message
    assert list((pyftpd_tls.root / "in").iterdir()) == []
    app.store.close()
