"""FTPS to ProFTPD 1.3.8 with mod_tls and mod_digest: a server-side SHA-256 by the ``HASH``
command (draft-bryan-ftpext-hash) on a server nobody on the project wrote (issue 20).

ProFTPD is the Debian package unpacked privately by ``scripts/system-deps.sh`` (as for the
SFTP interop tier); its ``mod_tls.so`` and ``mod_digest.so`` are loaded by the fixture
(``tests/fixtures/ftp_servers.py::start_proftpd_ftps``): explicit TLS required on control
and data with its default TLS session reuse required, ``HASH`` offered with SHA-256 and its
digest cache off. Every command the server gets is in its log, so a test can say that the
upload was hashed by the server and never read back.
"""

from __future__ import annotations

import ftplib
import hashlib
import os
import random
from pathlib import Path
from typing import Any

import pytest

from consonance_sftp import errors
from consonance_sftp.adapters.ftp import ops
from consonance_sftp.adapters.ftp.fs import FtpRemoteFS
from consonance_sftp.models import Verification
from tests.fixtures.ftp_servers import FtpServer, proftpd_commands


def _random_file(path: Path, size: int, seed: int) -> str:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _after(commands: list[str], first: str) -> list[str]:
    """The commands after the last ``first``."""
    at = len(commands) - 1 - commands[::-1].index(first)
    return commands[at + 1 :]


async def test_an_upload_is_verified_by_the_servers_hash(
    proftpd_ftps: FtpServer, tmp_path: Path
) -> None:
    local = tmp_path / "interior.pdf"
    sha = _random_file(local, 2 * 1024 * 1024 + 5, seed=1)
    async with FtpRemoteFS(proftpd_ftps.endpoint(), state_dir=tmp_path / "state") as fs:
        features = await fs.features()
        result = await fs.upload(local, "/in/interior.pdf")
    assert any(f.startswith("HASH ") and "SHA-256" in f for f in features), features
    assert result.verified_by is Verification.SERVER_HASH  # what the ledger records
    assert result.sha256 == sha
    assert hashlib.sha256(proftpd_ftps.local("/in/interior.pdf").read_bytes()).hexdigest() == sha
    commands = proftpd_commands(proftpd_ftps)
    assert "OPTS_HASH" in commands  # SHA-256 chosen for HASH on login
    assert "HASH" in _after(commands, "STOR")  # the staged file hashed by the server...
    assert "RETR" not in commands  # ...and never read back
    assert [n for n in os.listdir(proftpd_ftps.root / "in") if n.startswith(".")] == []


async def test_a_corrupted_upload_is_caught_by_the_servers_hash(
    proftpd_ftps: FtpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One byte changed on the server after the STOR (same size: SIZE cannot see it): the
    HASH answer differs, the upload fails, the staged file is removed and the final name is
    never written. The next upload of the same file goes through, hashed again."""
    local = tmp_path / "cover.jpg"
    sha = _random_file(local, 600_000, seed=2)
    real_put = ops.put
    corrupted: list[str] = []

    def put_then_corrupt(ftp: ftplib.FTP, local_path: Path, remote: str, *rest: Any) -> None:
        real_put(ftp, local_path, remote, *rest)
        if not corrupted:
            on_disk = proftpd_ftps.local(remote)
            with open(on_disk, "r+b") as fh:
                fh.seek(300_000)
                byte = fh.read(1)
                fh.seek(300_000)
                fh.write(bytes([byte[0] ^ 0xFF]))
            corrupted.append(remote)

    monkeypatch.setattr(ops, "put", put_then_corrupt)
    endpoint = proftpd_ftps.endpoint()
    async with FtpRemoteFS(endpoint, state_dir=tmp_path / "state", retries=0) as fs:
        with pytest.raises(errors.IntegrityError) as caught:
            await fs.upload(local, "/in/cover.jpg")
        assert corrupted == ["/in/.cover.jpg.part"]
        assert "does not match the local SHA-256" in str(caught.value)
        assert not proftpd_ftps.local("/in/cover.jpg").exists()
        assert os.listdir(proftpd_ftps.root / "in") == []  # the bad staged file is gone
        commands = proftpd_commands(proftpd_ftps)
        assert "HASH" in _after(commands, "STOR") and "RNFR" not in commands
        result = await fs.upload(local, "/in/cover.jpg")
    assert result.verified_by is Verification.SERVER_HASH and result.sha256 == sha
    assert hashlib.sha256(proftpd_ftps.local("/in/cover.jpg").read_bytes()).hexdigest() == sha
    assert "RETR" not in proftpd_commands(proftpd_ftps)


@pytest.mark.slow
async def test_probe_finds_hash_and_session_reuse(proftpd_ftps: FtpServer, tmp_path: Path) -> None:
    """About 20 s: mod_tls refuses the session-reuse check's data connection at once (an EOF
    right after the handshake) but sends its ``425`` on the control connection only ~11 s
    later, and the probe waits for that answer (and QUIT then waits behind it)."""
    async with FtpRemoteFS(proftpd_ftps.endpoint(), state_dir=tmp_path / "state") as fs:
        report = await fs.probe()
    facts = report.ftp
    assert facts is not None
    assert facts.server_hash == "HASH" and facts.server_hash_works is True
    assert report.check_file  # a working server SHA-256: no read-back needed
    assert not any("reading it back" in note for note in report.notes)
    assert facts.session_reuse_required is True  # mod_tls's default, like vsftpd
    assert facts.prot_p and facts.mlsd and facts.rest_stream
    assert report.rename and report.rename_over_existing
    assert report.recommended == {}
    assert report.leftovers == ()
    assert os.listdir(proftpd_ftps.root / "in") == []
