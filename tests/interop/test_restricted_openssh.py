"""OpenSSH ``internal-sftp`` restricted as partners restrict it: read-only (``-R``). A large
upload fails at once with the server's refusal, named, not retried and not taken for a write
model the transport could work around."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from consonance_sftp import errors
from consonance_sftp.adapters.sftp.endpoint import SftpEndpoint
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.config.transfer import TransferSettings
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.fixtures.interop_servers import MIB
from tests.fixtures.sshd import running_sshd
from tests.interop.test_upload_interop import _write_random


@pytest.fixture(scope="module")
def read_only_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenSshServer]:
    yield from running_sshd(
        tmp_path_factory.mktemp("sshd-readonly"),
        chroot=False,
        extra_config="ForceCommand internal-sftp -R",
    )


async def test_read_only_server_refuses_a_large_upload_clearly(
    read_only_sshd: OpenSshServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sshd = read_only_sshd
    local = tmp_path / "interior.pdf"
    _write_random(local, 24 * MIB)
    endpoint = SftpEndpoint(
        partner="openssh-read-only",
        host=sshd.host,
        port=sshd.port,
        user=sshd.shell_user,
        host_keys=(sshd.known_hosts_line,),
        key_path=sshd.client_key_path,
        transfer=TransferSettings(segment_size=4 * MIB, segmented_threshold=8 * MIB),
    )
    with caplog.at_level(logging.WARNING):
        async with SftpRemoteFS(endpoint, state_dir=tmp_path / "state") as fs:
            with pytest.raises(errors.RemotePermissionDenied) as info:
                await fs.upload(local, str(tmp_path / "interior.pdf.out"))
    assert "openssh-read-only" in str(info.value)
    assert not info.value.retryable
    assert not any("sequential stream" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "interior.pdf.out").exists()
