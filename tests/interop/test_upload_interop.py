"""The upload contract against servers nobody on the project wrote (issue 13).

Each test runs against every server of ``tests/fixtures/interop_servers.py`` (ProFTPD mod_sftp
with ``AllowOverwrite`` off and on, rclone serve sftp in both cache modes, paramiko), with the
settings a partner gets untouched: only the segment sizes scale with ``--interop-size``. Every
file is checked by reading it back over SFTP (SHA-256), never by its size and never on the
server's disk behind its back (rclone's write cache reaches the disk later).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from pathlib import Path

import asyncssh
import pytest

from consonance_sftp import errors
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from tests.fixtures.interop_servers import InteropServer, InteropSize


def _write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        left = size
        while left:
            block = os.urandom(min(left, 8 * 1024 * 1024))
            fh.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


async def read_back(server: InteropServer, remote: str) -> tuple[int, str] | None:
    """(size, SHA-256) of ``remote`` read over SFTP, or None when the name does not exist.

    Bounded: one 1 GiB run under heavy load once waited forever here after rclone dropped the
    connection; a read that stalls fails the test instead of hanging the suite."""
    async with asyncio.timeout(900):
        return await _read_back(server, remote)


async def _read_back(server: InteropServer, remote: str) -> tuple[int, str] | None:
    async with (
        asyncssh.connect(
            server.host,
            server.port,
            username=server.user,
            client_keys=[str(server.client_key_path)],
            known_hosts=None,
        ) as conn,
        conn.start_sftp_client() as sftp,
    ):
        try:
            async with sftp.open(remote, "rb", encoding=None) as fh:
                digest = hashlib.sha256()
                size = 0
                while chunk := await fh.read(4 * 1024 * 1024):
                    assert isinstance(chunk, bytes)
                    digest.update(chunk)
                    size += len(chunk)
        except asyncssh.SFTPNoSuchFile:
            return None
    return size, digest.hexdigest()


async def test_fresh_upload_is_byte_identical(
    server_at: InteropServer, interop_size: InteropSize, tmp_path: Path
) -> None:
    """A large file goes up in one call with the default settings (issue items 2 and 3:
    ProFTPD's ``AllowOverwrite off`` refused to reopen the temporary file; rclone without a
    write cache refused out-of-order writes)."""
    local = tmp_path / "interior.pdf"
    sha = _write_random(local, interop_size.size)
    name = f"fresh-{random.randrange(10**9)}.pdf"
    async with SftpRemoteFS(
        server_at.endpoint(**interop_size.transfer), state_dir=tmp_path / "state", retries=0
    ) as fs:
        result = await fs.upload(local, name)
    assert result.sha256 == sha
    assert await read_back(server_at, name) == (interop_size.size, sha)
    # Verified by hash with the defaults: ProFTPD's check-file, else read back (rclone's
    # sha1sum/md5sum need allow_shell, which the probe recommends); never by size alone.
    expected = "check_file" if server_at.kind.startswith("proftpd") else "read_back"
    assert result.verified_by == expected


async def test_upload_killed_at_a_random_offset_and_retried_is_byte_identical(
    server_at: InteropServer, interop_size: InteropSize, tmp_path: Path
) -> None:
    """The server is killed (SIGKILL, every session) at a random point of the upload and
    started again; the retry ends with exactly the local bytes under the final name and
    says how it verified them: never by size alone after an interruption (issue item 1:
    rclone's write cache left zeros that a size check passed)."""
    size = interop_size.size
    local = tmp_path / "print.pdf"
    sha = _write_random(local, size)
    name = f"killed-{random.randrange(10**9)}.pdf"
    kill_at = random.randrange(size // 5, size * 4 // 5)
    killed = False

    def progress(done: int, total: int) -> None:
        nonlocal killed
        if not killed and done >= kill_at:
            killed = True
            server_at.kill()

    endpoint = server_at.endpoint(**interop_size.transfer)
    with pytest.raises(errors.TransportError):
        async with SftpRemoteFS(endpoint, state_dir=tmp_path / "state", retries=0) as fs:
            await fs.upload(local, name, progress=progress)
    assert killed
    await asyncio.to_thread(server_at.restart)
    # Never half a file under its final name, whatever the server did with the rest.
    assert await read_back(server_at, name) is None

    async with SftpRemoteFS(endpoint, state_dir=tmp_path / "state", retries=0) as fs:
        result = await fs.upload(local, name)
    assert result.sha256 == sha
    assert await read_back(server_at, name) == (size, sha)
    assert result.resumed_from % interop_size.transfer["segment_size"] == 0
    # After an interruption, never "size": a hash of the whole file, read back or server-side.
    assert result.verified_by != "size"


@pytest.mark.parametrize("interop_server", ["rclone"], indirect=True)
async def test_sequential_upload_after_an_interruption_is_not_stuck(
    interop_server: InteropServer, interop_size: InteropSize, tmp_path: Path
) -> None:
    """rclone without a write cache empties a file it was writing when the client goes; the
    journal said the segments were there, and every retry failed until someone deleted the
    journal by hand (issue item 3, with the documented ``segment_connections = 1``)."""
    server = interop_server
    if server.process is None:
        server.restart()
    size = interop_size.size
    local = tmp_path / "audio.wav"
    sha = _write_random(local, size)
    name = f"seq-{random.randrange(10**9)}.wav"
    endpoint = server.endpoint(**interop_size.transfer, segment_connections=1)
    kill_at = random.randrange(size // 3, size * 2 // 3)

    def progress(done: int, total: int) -> None:
        if done >= kill_at and server.process is not None:
            server.kill()

    with pytest.raises(errors.TransportError):
        async with SftpRemoteFS(endpoint, state_dir=tmp_path / "state", retries=0) as fs:
            await fs.upload(local, name, progress=progress)
    await asyncio.to_thread(server.restart)
    async with SftpRemoteFS(endpoint, state_dir=tmp_path / "state", retries=0) as fs:
        result = await fs.upload(local, name)
    assert result.sha256 == sha
    assert await read_back(server, name) == (size, sha)


@pytest.mark.parametrize("interop_server", ["paramiko"], indirect=True)
async def test_a_resume_sends_again_the_segments_the_server_lost(
    interop_server: InteropServer, interop_size: InteropSize, tmp_path: Path
) -> None:
    """The journal says what was sent, the server what it kept: a segment whose bytes were
    lost on the server (here zeroed behind its back, as rclone's write cache did) is sent
    again, the others are kept, and the whole file is verified by hash."""
    server = interop_server
    if server.process is None:
        server.restart()
    transfer = interop_size.transfer
    segment = transfer["segment_size"]
    size = 6 * segment
    local = tmp_path / "jacket.pdf"
    sha = _write_random(local, size)
    name = f"lost-{random.randrange(10**9)}.pdf"
    endpoint = server.endpoint(**transfer)

    journals = tmp_path / "state" / "journals"

    def progress(done: int, total: int) -> None:
        # Killed once the journal records segment 1 and at least one other.
        if done < 3 * segment or server.process is None:
            return
        lines = next(journals.glob("up-*.journal")).read_text().splitlines()[1:]
        marked = {line.split()[0] for line in lines}
        if "1" in marked and len(marked) >= 2:
            server.kill()

    with pytest.raises(errors.TransportError):
        async with SftpRemoteFS(endpoint, state_dir=tmp_path / "state", retries=0) as fs:
            await fs.upload(local, name, progress=progress)
    await asyncio.to_thread(server.restart)
    temp = server.local(f".{name}.part")
    assert temp.stat().st_size >= 3 * segment
    with open(temp, "r+b") as fh:  # segment 1 lost: zeros, the same size
        fh.seek(segment)
        fh.write(b"\0" * segment)

    [journal_file] = journals.glob("up-*.journal")
    recorded = journal_file.read_text()  # a header line, then "INDEX SHA256" per segment
    recorded_segments = {int(line.split()[0]) for line in recorded.splitlines()[1:]}
    assert 1 in recorded_segments  # the journal says segment 1 is there

    async with SftpRemoteFS(endpoint, state_dir=tmp_path / "state", retries=0) as fs:
        result = await fs.upload(local, name)
    # Every recorded segment but the lost one is kept (parallel segments: any of them).
    assert result.resumed_from == (len(recorded_segments) - 1) * segment
    assert result.verified_by == "read_back"
    assert await read_back(server, name) == (size, sha)
