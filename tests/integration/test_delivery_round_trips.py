"""The SFTP bridge does not repeat the adapter's round trips: after a fresh plan it stages a file
with no extra look at the final name and publishes it with no stat, and it still looks
whenever the stage may be a re-run (nothing sent twice)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.app.delivery import SftpDeliveryTransport
from consonance_sftp.ports.delivery import FileToSend
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.sftp_servers import EndpointFactory


class _OpenFence:
    def check(self) -> None:
        return None


class _CountingFS(SftpRemoteFS):
    """The real adapter, counting the bridge's own looks at the server."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []

    async def held_by(self, remote_path: str, size: int, sha256: str) -> Any:
        self.calls.append("holds")  # the look that also says how the bytes were verified
        return await super().held_by(remote_path, size, sha256)

    async def stat(self, remote_path: str) -> Any:
        self.calls.append("stat")
        return await super().stat(remote_path)

    async def makedirs(self, remote_path: str) -> None:
        self.calls.append("makedirs")
        await super().makedirs(remote_path)


def _file(tmp_path: Path, name: str, size: int) -> FileToSend:
    local = tmp_path / name
    local.write_bytes(name.encode() * (size // len(name)))
    data = local.read_bytes()
    return FileToSend(
        source=str(local),
        remote_path=f"/in/title/{name}",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )


async def test_a_planned_file_is_sent_without_repeating_looks_and_a_rerun_looks_again(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    fs_made: list[_CountingFS] = []

    def make_fs(partner: str) -> SftpRemoteFS:
        fs_made.append(_CountingFS(fault_endpoint(), state_dir=tmp_path / "s"))
        return fs_made[-1]

    a, b = _file(tmp_path, "a.pdf", 4000), _file(tmp_path, "b.pdf", 3000)
    transport = SftpDeliveryTransport(make_fs)
    fence = _OpenFence()
    try:
        # A package of two files, as the engine's steps call the bridge.
        for f in (a, b):
            assert not (await transport.remote_state("p", f)).final_matches
        for f in (a, b):
            assert (await transport.stage("p", f, fence)).sent == f.size
        for f in (a, b):
            await transport.publish("p", f, fence)
        (fs,) = fs_made
        # One look per file, in plan; the folder made once; no look to publish.
        assert fs.calls == ["holds", "holds", "makedirs"]

        # A re-run of a step after a crash (no fresh plan in this process) looks first and
        # sends nothing; its publish trusts that look.
        fs.calls.clear()
        assert (await transport.stage("p", a, fence)).sent == 0
        await transport.publish("p", a, fence)
        assert fs.calls == ["holds"]

        # A publish with no stage of this file in this process (a re-run after its publish)
        # finds nothing under the staging name, and checks the final name.
        fs.calls.clear()
        await transport.publish("p", b, fence)
        assert fs.calls == ["stat", "stat"]
    finally:
        await transport.close()
    home = fault_server.home("partner") / "in" / "title"
    assert sorted(p.name for p in home.iterdir()) == ["a.pdf", "b.pdf"]
    assert (home / "a.pdf").read_bytes() == Path(a.source).read_bytes()
    assert fault_server.recorder.bytes_written == a.size + b.size  # each sent once
