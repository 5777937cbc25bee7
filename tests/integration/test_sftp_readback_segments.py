"""A segmented upload verified by reading it back in its segments over several connections.

The server's copy is changed on its disk after the upload (after every handle was closed and
the size was looked at) and before the verification: a byte flipped in a middle segment, one
byte appended. Either must fail the upload before the rename, as a whole-file mismatch does.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consonance_sftp import errors
from consonance_sftp.adapters.sftp import checksums, verify
from consonance_sftp.adapters.sftp import upload as upload_module
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.sftp_servers import EndpointFactory

MIB = 1024 * 1024
SIZE = 6 * MIB + 12_345  # seven segments of 1 MiB, the last one short


def _file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _segmented(fault_endpoint: EndpointFactory, **more: Any) -> Any:
    return fault_endpoint(
        checksum="read_back",
        segment_size=MIB,
        segmented_threshold=2 * MIB,
        segment_connections=4,
        **more,
    )


def _before_verification(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[str], None]
) -> list[str]:
    """Run ``change(temp name)`` right before the upload's verification (its size already
    looked at); the names it was run for."""
    real = upload_module.remote_sha256
    seen: list[str] = []

    async def hooked(fs: Any, pc: Any, path: str, **kwargs: Any) -> Any:
        seen.append(path)
        change(path)
        return await real(fs, pc, path, **kwargs)

    monkeypatch.setattr(upload_module, "remote_sha256", hooked)
    return seen


def _spy_segments(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of SFTP sessions each segmented read-back went over."""
    real = verify.read_back_segments
    sessions: list[int] = []

    async def spy(sftps: Any, path: str, **kwargs: Any) -> Any:
        sessions.append(len(sftps))
        return await real(sftps, path, **kwargs)

    monkeypatch.setattr(verify, "read_back_segments", spy)
    return sessions


async def test_a_segmented_upload_is_read_back_in_segments_over_its_connections(
    fault_endpoint: EndpointFactory,
    fault_server: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sessions = _spy_segments(monkeypatch)
    local = tmp_path / "big.bin"
    sha = _file(local, SIZE)
    async with SftpRemoteFS(_segmented(fault_endpoint), state_dir=tmp_path / "s") as fs:
        result = await fs.upload(local, "big.bin")
    assert result.verified_by == "read_back" and result.sha256 == sha
    assert (
        hashlib.sha256((fault_server.home("partner") / "big.bin").read_bytes()).hexdigest() == sha
    )
    assert sessions == [4]
    # Every byte read back once, and one read at the end (answered with the end of the file).
    reads = fault_server.recorder.reads[".big.bin.part"]
    assert fault_server.recorder.bytes_read == SIZE
    assert (SIZE, 1) in reads


async def test_a_caller_given_hash_is_checked_against_the_segments_too(
    fault_endpoint: EndpointFactory,
    fault_server: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sessions = _spy_segments(monkeypatch)
    # One read of the local file per upload: the journal's segment hashes and the SHA-256 the
    # segments are checked against come from the same pass (none again at the verification).
    runs: list[Path] = []
    real_run = checksums.FileHasher.run

    def counted(self: checksums.FileHasher) -> tuple[int, str]:
        runs.append(self.path)
        return real_run(self)

    monkeypatch.setattr(checksums.FileHasher, "run", counted)
    local = tmp_path / "big.bin"
    sha = _file(local, SIZE)
    async with SftpRemoteFS(_segmented(fault_endpoint), state_dir=tmp_path / "s", retries=0) as fs:
        assert (await fs.upload(local, "big.bin", sha256=sha)).verified_by == "read_back"
        assert runs == [local]
        # a stale hash: the segments match the file, which is not the file hashed
        with pytest.raises(errors.IntegrityError, match="does not match"):
            await fs.upload(local, "big2.bin", sha256="0" * 64)
    assert sessions == [4, 4]
    assert not (fault_server.home("partner") / "big2.bin").exists()


@pytest.mark.parametrize("resume", [True, False])
async def test_a_byte_flipped_in_a_middle_segment_fails_the_upload(
    fault_endpoint: EndpointFactory,
    fault_server: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    resume: bool,
) -> None:
    home = fault_server.home("partner")
    at = 3 * MIB + 777  # segment 3 of 0..6

    def flip(name: str) -> None:
        with open(home / name, "r+b") as fh:
            fh.seek(at)
            byte = fh.read(1)
            fh.seek(at)
            fh.write(bytes([byte[0] ^ 0x01]))

    seen = _before_verification(monkeypatch, flip)
    sessions = _spy_segments(monkeypatch)
    local = tmp_path / "big.bin"
    _file(local, SIZE)
    async with SftpRemoteFS(
        _segmented(fault_endpoint, resume=resume), state_dir=tmp_path / "s", retries=0
    ) as fs:
        with pytest.raises(errors.IntegrityError, match="segment-3") as info:
            await fs.upload(local, "big.bin")
    assert info.value.retryable
    assert seen == [".big.bin.part"] and sessions == [4]
    assert list(home.iterdir()) == []  # no final name, the temporary file removed


async def test_one_byte_more_on_the_server_fails_the_upload(
    fault_endpoint: EndpointFactory,
    fault_server: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = fault_server.home("partner")

    def append(name: str) -> None:
        with open(home / name, "ab") as fh:
            fh.write(b"\0")

    _before_verification(monkeypatch, append)
    sessions = _spy_segments(monkeypatch)
    local = tmp_path / "big.bin"
    _file(local, SIZE)
    async with SftpRemoteFS(_segmented(fault_endpoint), state_dir=tmp_path / "s", retries=0) as fs:
        with pytest.raises(errors.IntegrityError, match="does not match"):
            await fs.upload(local, "big.bin")
    assert sessions == [4]
    assert list(home.iterdir()) == []


async def test_one_byte_less_on_the_server_fails_the_upload(
    fault_endpoint: EndpointFactory,
    fault_server: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = fault_server.home("partner")

    def cut(name: str) -> None:
        os.truncate(home / name, SIZE - 1)

    _before_verification(monkeypatch, cut)
    local = tmp_path / "big.bin"
    _file(local, SIZE)
    async with SftpRemoteFS(_segmented(fault_endpoint), state_dir=tmp_path / "s", retries=0) as fs:
        with pytest.raises(errors.IntegrityError, match="does not match"):
            await fs.upload(local, "big.bin")
    assert list(home.iterdir()) == []


async def test_below_the_segmented_threshold_the_file_is_read_back_in_one_stream(
    fault_endpoint: EndpointFactory,
    fault_server: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sessions = _spy_segments(monkeypatch)
    local = tmp_path / "mid.bin"
    sha = _file(local, 3 * MIB)
    endpoint = fault_endpoint(checksum="read_back", segment_size=MIB, segmented_threshold=4 * MIB)
    async with SftpRemoteFS(endpoint, state_dir=tmp_path / "s") as fs:
        result = await fs.upload(local, "mid.bin")
    assert result.verified_by == "read_back" and result.sha256 == sha
    assert sessions == []
