"""The engine's transport over the SFTP adapter: delivery conventions that fix the temporary
name (TitlePage uploads ``.XOT`` and renames it to ``.COT``) reach the server as configured."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.app.delivery import SftpDeliveryTransport, delivery_request
from consonance_sftp.engine import FileToSend
from consonance_sftp.formats.packaging import PackagePlan, PlannedFile
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
        sent = await transport.upload("fault-partner", file, _OpenFence())
        await transport.commit("fault-partner", file, _OpenFence())
        again = await transport.upload("fault-partner", file, _OpenFence())  # a re-run
    finally:
        await transport.close()
    assert sent == 5000
    assert again == 0  # the partner already holds exactly these bytes: nothing is resent
    assert list(fault_server.recorder.writes) == ["/in/20261124.XOT"]
    renames = fault_server.recorder.ops("rename") + fault_server.recorder.ops("posix_rename")
    assert renames == [("/in/20261124.XOT", "/in/20261124.COT")]
    assert sorted(p.name for p in (fault_server.home("partner") / "in").iterdir()) == [
        "20261124.COT"
    ]
