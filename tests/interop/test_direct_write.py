"""A server that forbids rename (OpenSSH ``internal-sftp -P rename,posix-rename``): the probe
recommends direct writes, and an interrupted direct upload must be taken over by the retry,
not refused forever as an existing file (issue 13, item 4)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from consonance_sftp import errors
from consonance_sftp.adapters.sftp.endpoint import SftpEndpoint
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.config.transfer import TransferSettings
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.fixtures.interop_servers import InteropSize
from tests.fixtures.sshd import running_sshd
from tests.interop.test_upload_interop import _write_random


@pytest.fixture(scope="module")
def no_rename_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenSshServer]:
    yield from running_sshd(
        tmp_path_factory.mktemp("sshd-norename"),
        chroot=False,
        extra_config="ForceCommand internal-sftp -P rename,posix-rename",
    )


def _kill_sessions(sshd: OpenSshServer) -> None:
    """SIGKILL the per-connection processes of our own sshd (its children), not the listener."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == sshd.process.pid:
            os.kill(int(entry.name), signal.SIGKILL)


async def test_interrupted_direct_upload_is_taken_over_by_the_retry(
    no_rename_sshd: OpenSshServer, interop_size: InteropSize, tmp_path: Path
) -> None:
    sshd = no_rename_sshd
    folder = tmp_path / "inbox"
    folder.mkdir()
    size = interop_size.size
    local = tmp_path / "cover.tif"
    sha = _write_random(local, size)
    remote = str(folder / "cover.tif")
    endpoint = SftpEndpoint(
        partner="openssh-no-rename",
        host=sshd.host,
        port=sshd.port,
        user=sshd.shell_user,
        host_keys=(sshd.known_hosts_line,),
        key_path=sshd.client_key_path,
        transfer=TransferSettings(
            upload_strategy="direct", done_marker="{name}.done", **interop_size.transfer
        ),
    )
    kill_at = random.randrange(size // 5, size * 4 // 5)
    killed = False

    def progress(done: int, total: int) -> None:
        nonlocal killed
        if not killed and done >= kill_at:
            killed = True
            _kill_sessions(sshd)

    with pytest.raises(errors.TransportError):
        async with SftpRemoteFS(endpoint, state_dir=tmp_path / "state", retries=0) as fs:
            await fs.upload(local, remote, progress=progress)
    assert killed
    assert not (folder / "cover.tif.done").exists()

    async with SftpRemoteFS(endpoint, state_dir=tmp_path / "state", retries=0) as fs:
        result = await fs.upload(local, remote)
    assert result.strategy == "direct"
    assert result.verified_by != "size"
    data = await asyncio.to_thread((folder / "cover.tif").read_bytes)
    assert hashlib.sha256(data).hexdigest() == sha
    assert (folder / "cover.tif.done").read_text().startswith(sha)
