"""The engine's transport over the SFTP adapter: delivery conventions that fix the temporary
name (TitlePage uploads ``.XOT`` and renames it to ``.COT``) reach the server as configured."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.app.delivery import SftpDeliveryTransport
from consonance_sftp.app.dispatch import delivery_request
from consonance_sftp.errors import HostKeyMismatch
from consonance_sftp.formats.packaging import PackagePlan, PlannedFile
from consonance_sftp.ports.delivery import FileToSend
from tests.cli import free_port
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.sftp_servers import EndpointFactory


class _OpenFence:
    def check(self) -> None:
        return None


@dataclass
class _Outbound:
    partner: str
    plan: PackagePlan
    label: str = "9780000000002 titlepage"
    isbn: str | None = "9780000000002"


def test_requests_carry_the_conventions_temporary_name_under_the_partner_folder(
    tmp_path: Path,
) -> None:
    src = tmp_path / "pkg.zip"
    src.write_bytes(b"zip bytes")
    sha = hashlib.sha256(b"zip bytes").hexdigest()
    planned = PlannedFile(
        role="zip", remote_path="20261124.COT", size=9, sha256=sha, source=src,
        upload_path="20261124.XOT",
    )  # fmt: skip
    request = delivery_request(
        _Outbound("titlepage", PackagePlan(files=(planned,))),
        flow="feeds",
        folder="/incoming",
        trigger="manual",
    )
    assert [(f.remote_path, f.upload_path) for f in request.files] == [
        ("/incoming/20261124.COT", "/incoming/20261124.XOT")
    ]
    assert request.isbn == "9780000000002"


async def test_the_fixed_temporary_name_is_written_then_renamed(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    (fault_server.home("partner") / "in").mkdir()
    local = tmp_path / "pkg.zip"
    local.write_bytes(b"x" * 5000)
    file = FileToSend(
        source=str(local),
        remote_path="/in/20261124.COT",
        sha256=hashlib.sha256(local.read_bytes()).hexdigest(),
        size=5000,
        upload_path="/in/20261124.XOT",
    )
    transport = SftpDeliveryTransport(
        lambda partner: SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s")
    )
    try:
        sent = await transport.stage("fault-partner", file, _OpenFence())
        await transport.publish("fault-partner", file, _OpenFence())
        again = await transport.stage("fault-partner", file, _OpenFence())  # a re-run
    finally:
        await transport.close()
    assert sent.sent == 5000
    assert again.sent == 0  # the partner already holds exactly these bytes: nothing is resent
    assert list(fault_server.recorder.writes) == ["/in/20261124.XOT"]
    renames = fault_server.recorder.ops("rename") + fault_server.recorder.ops("posix_rename")
    assert renames == [("/in/20261124.XOT", "/in/20261124.COT")]
    assert sorted(p.name for p in (fault_server.home("partner") / "in").iterdir()) == [
        "20261124.COT"
    ]


async def test_a_changed_host_key_is_reported_once_and_sends_nothing(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    local = tmp_path / "a.pdf"
    local.write_bytes(b"%PDF-1.7\n" + b"x" * 100)
    file = FileToSend(
        source=str(local),
        remote_path="/a.pdf",
        sha256=hashlib.sha256(local.read_bytes()).hexdigest(),
        size=local.stat().st_size,
    )
    reported: list[tuple[str, str]] = []
    wrong_pin = ("SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8",)
    transport = SftpDeliveryTransport(
        lambda partner: SftpRemoteFS(fault_endpoint(host_keys=wrong_pin), state_dir=tmp_path),
        on_host_key_changed=lambda partner, exc: reported.append((partner, type(exc).__name__)),
    )
    try:
        with pytest.raises(HostKeyMismatch):
            await transport.stage("printer", file, _OpenFence())
    finally:
        await transport.close()
    assert reported == [("printer", "HostKeyMismatch")]
    assert fault_server.recorder.bytes_written == 0
    assert fault_server.recorder.sessions == 0


def test_the_app_alerts_and_stops_the_partner_on_a_changed_host_key(tmp_path: Path) -> None:
    from consonance_sftp.app import App
    from consonance_sftp.app.runner import Controls
    from consonance_sftp.config import load_settings
    from consonance_sftp.config.starter import CONFIG_NAME, init_project

    init_project(tmp_path, sftp_port=free_port(), api_port=free_port())
    app = App(load_settings(tmp_path / CONFIG_NAME))
    app.host_key_changed("printer", HostKeyMismatch("the server presented SHA256:abc"))
    alerts = app.store.list_alerts()
    assert [(a.kind, a.severity, a.partner) for a in alerts] == [
        ("host_key_mismatch", "critical", "printer")
    ]
    assert Controls(app).hold_reason("print-files", "printer") == "partner 'printer' is paused"
    assert [e.action for e in app.store.list_audit(subject="partner:printer")] == ["partner.paused"]
