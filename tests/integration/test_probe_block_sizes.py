"""The probe's block-size advice comes from measured write and read sizes, apart.

``rclone serve sftp`` offers no ``limits`` extension, takes 256 KiB writes and answers reads
with at most 32 KiB: the probe must not recommend 32 KiB writes there (they cost a third of
the upload speed), and sets the read size apart. OpenSSH takes and answers 255 KiB both ways.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from consonance_sftp.adapters.sftp.endpoint import SftpEndpoint
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.config.transfer import MAX_OPENSSH_BLOCK, TransferSettings
from consonance_sftp.sandbox.openssh import OpenSshServer, free_port
from tests.fixtures.sshd import shell_endpoint


@dataclass
class Rclone:
    port: int
    root: Path
    host_key: asyncssh.SSHKey
    client_key: Path

    def endpoint(self, **transfer: object) -> SftpEndpoint:
        kind, blob = self.host_key.export_public_key("openssh").decode().split()[:2]
        return SftpEndpoint(
            partner="rclone",
            host="127.0.0.1",
            port=self.port,
            user="partner",
            host_keys=(f"{kind} {blob}",),
            key_path=self.client_key,
            folders=("/",),  # rclone serves its root folder as /
            transfer=TransferSettings(**transfer),  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
def rclone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rclone]:
    binary = shutil.which("rclone")
    if binary is None:
        pytest.skip("rclone is not installed")
    work = tmp_path_factory.mktemp("rclone")
    root = work / "root"
    root.mkdir()
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key.write_private_key(work / "host_key")
    (work / "host_key").chmod(0o600)
    client = asyncssh.generate_private_key("ssh-ed25519")
    client.write_private_key(work / "client_key")
    (work / "client_key").chmod(0o600)
    (work / "authorized_keys").write_bytes(client.export_public_key("openssh"))
    (work / "rclone.conf").write_text("")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary, "serve", "sftp", str(root),
            "--addr", f"127.0.0.1:{port}",
            "--key", str(work / "host_key"),
            "--authorized-keys", str(work / "authorized_keys"),
            "--user", "partner",
        ],
        env={**os.environ, "RCLONE_CONFIG": str(work / "rclone.conf")},
        stdout=subprocess.DEVNULL,
        stderr=(work / "rclone.log").open("wb"),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (work / "rclone.log").read_text()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            assert time.monotonic() < deadline, "rclone did not listen"
            time.sleep(0.05)
        yield Rclone(port, root, host_key, work / "client_key")
    finally:
        proc.terminate()
        proc.wait(10)


async def test_rclone_gets_256k_writes_and_32k_reads(rclone: Rclone, tmp_path: Path) -> None:
    async with SftpRemoteFS(rclone.endpoint(), state_dir=tmp_path / "s") as fs:
        report = await fs.probe()
    assert report.limits == {}  # no limits extension to go by
    # the default block_size (the largest write) already fits: no 32 KiB advice for writes
    assert "block_size" not in report.recommended, report.recommended
    assert report.max_write_size == MAX_OPENSSH_BLOCK
    assert report.max_read_size == 32_768
    assert report.recommended["read_block_size"] == 32_768
    assert any("answers reads with at most 32768" in note for note in report.notes)
    assert not [p for p in rclone.root.iterdir() if p.name.startswith(".consonance-probe-")]


async def test_rclone_downloads_with_the_recommended_read_size(
    rclone: Rclone, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 123)
    (tmp_path / "up.bin").write_bytes(data)
    ep = rclone.endpoint(read_block_size=32_768)
    async with SftpRemoteFS(ep, state_dir=tmp_path / "s") as fs:
        # sent over SFTP: rclone's cached listing would not show a file put there behind it
        await fs.upload(tmp_path / "up.bin", "/big.bin")
        result = await fs.download("/big.bin", tmp_path / "big.bin")
    assert result.size == len(data)
    assert (tmp_path / "big.bin").read_bytes() == data


@pytest.mark.sshd
async def test_openssh_takes_and_answers_255k_both_ways(
    openssh_multikey: OpenSshServer, tmp_path: Path
) -> None:
    folder = tmp_path / "remote"
    folder.mkdir()
    ep = shell_endpoint(openssh_multikey, folders=(str(folder),), block_size=32_768)
    async with SftpRemoteFS(ep, state_dir=tmp_path / "s") as fs:
        report = await fs.probe()
    assert (report.max_write_size, report.max_read_size) == (MAX_OPENSSH_BLOCK, MAX_OPENSSH_BLOCK)
    # a partner configured with small blocks is told it may use large ones
    assert report.recommended["block_size"] == MAX_OPENSSH_BLOCK
    assert "read_block_size" not in report.recommended
    assert list(folder.iterdir()) == []


async def test_rclone_download_with_reads_larger_than_it_answers_is_byte_identical(
    rclone: Rclone, tmp_path: Path
) -> None:
    # No read_block_size: every 255 KiB read is answered with 32 KiB and the rest is asked
    # again at once (segmented's read pipeline), which must leave no hole.
    data = os.urandom(2 * 1024 * 1024 + 4321)
    (tmp_path / "up.bin").write_bytes(data)
    async with SftpRemoteFS(rclone.endpoint(), state_dir=tmp_path / "s") as fs:
        await fs.upload(tmp_path / "up.bin", "/short-reads.bin")
        result = await fs.download("/short-reads.bin", tmp_path / "short-reads.bin")
    assert result.size == len(data)
    assert (tmp_path / "short-reads.bin").read_bytes() == data
