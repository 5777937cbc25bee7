"""The transport against a real OpenSSH sshd: a shell account and a chroot SFTP-only account."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
from pathlib import Path

import asyncssh
import pytest

from consonance_sftp import errors
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.config.transfer import PostAction
from consonance_sftp.ports.remote_fs import UploadItem
from consonance_sftp.sandbox.openssh import OpenSshServer

pytestmark = pytest.mark.sshd

MIB = 1024 * 1024


def _file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("account", ["shell", "chroot"])
async def test_round_trip_segmented(
    openssh_endpoint, openssh_dir, tmp_path: Path, account: str
) -> None:
    local_dir, remote_dir = openssh_dir(account)
    local = tmp_path / "interior.pdf"
    sha = _file(local, 24 * MIB)
    ep = openssh_endpoint(
        account,
        segment_size=4 * MIB,
        segmented_threshold=8 * MIB,
        segment_connections=3,
        allow_shell=account == "shell",
    )
    async with SftpRemoteFS(ep, state_dir=tmp_path / "state") as fs:
        up = await fs.upload(local, f"{remote_dir}/interior.pdf")
        assert fs.pool.opened >= 2  # the segments really went over several connections
        down = await fs.download(f"{remote_dir}/interior.pdf", tmp_path / "back.pdf")
    assert up.strategy == "rename"  # overwrite 'fail' (the default): no-clobber rename
    # The shell account hashes with sha256sum; the chroot SFTP-only account offers no hash, so
    # 'auto' reads the file back: never a size check unless one is configured (issue 13).
    assert up.verified_by == ("shell" if account == "shell" else "read_back")
    assert up.sha256 == down.sha256 == sha
    assert hashlib.sha256((local_dir / "interior.pdf").read_bytes()).hexdigest() == sha
    assert sorted(p.name for p in local_dir.iterdir()) == ["interior.pdf"]


@pytest.mark.parametrize("spelling", ["size", "none"])
async def test_a_size_only_check_is_used_only_when_configured(
    openssh_endpoint, openssh_dir, tmp_path: Path, spelling: str
) -> None:
    """``checksum = "size"`` (``"none"``, its older name) is the only way to a size-only check,
    and the result says so; after an interrupted upload even it is verified by hash (the
    resume tests). The default on the same account reads the file back."""
    local_dir, remote_dir = openssh_dir("chroot")
    local = tmp_path / "statement.pdf"
    sha = _file(local, 2 * MIB)
    async with SftpRemoteFS(
        openssh_endpoint("chroot", checksum=spelling), state_dir=tmp_path / "state"
    ) as fs:
        sized = await fs.upload(local, f"{remote_dir}/sized.pdf")
    async with SftpRemoteFS(openssh_endpoint("chroot"), state_dir=tmp_path / "state") as fs:
        default = await fs.upload(local, f"{remote_dir}/default.pdf")
    assert (sized.verified_by, default.verified_by) == ("size", "read_back")
    assert sized.sha256 == default.sha256 == sha
    assert hashlib.sha256((local_dir / "sized.pdf").read_bytes()).hexdigest() == sha


async def test_concurrent_lister_never_sees_a_partial_final_name(
    openssh_endpoint, openssh_dir, tmp_path: Path
) -> None:
    _local_dir, remote_dir = openssh_dir("chroot")
    size = 16 * MIB
    files = []
    for i in range(3):
        path = tmp_path / f"f{i}.bin"
        _file(path, size)
        files.append(path)
    seen: list[tuple[str, int]] = []
    stop = asyncio.Event()
    async with (
        SftpRemoteFS(
            openssh_endpoint("chroot", segment_size=MIB, block_size=32 * 1024, max_requests=4),
            state_dir=tmp_path / "s",
        ) as fs,
        SftpRemoteFS(openssh_endpoint("chroot"), state_dir=tmp_path / "s2") as lister,
    ):

        async def watch() -> None:
            # the partner's view, over SFTP: any final name it lists must be complete
            while not stop.is_set():
                async for entry in lister.list(remote_dir, pattern="f*.bin"):
                    seen.append((entry.name, entry.size))

        task = asyncio.create_task(watch())
        for path in files:
            await fs.upload(path, f"{remote_dir}/{path.name}")
        await asyncio.sleep(0.05)
        stop.set()
        await task
    assert seen, "the lister never saw a final name"
    assert {s for _, s in seen} == {size}
    assert {n for n, _ in seen} == {"f0.bin", "f1.bin", "f2.bin"}


async def test_resume_after_killed_connection(
    openssh_endpoint, openssh_dir, tmp_path: Path
) -> None:
    local_dir, remote_dir = openssh_dir("shell")
    size = 20 * MIB
    local = tmp_path / "big.bin"
    sha = _file(local, size)
    ep = openssh_endpoint("shell", segment_size=MIB, max_requests=4, block_size=64 * 1024)
    fs = SftpRemoteFS(ep, state_dir=tmp_path / "state", retries=0)
    progressed = asyncio.Event()

    def progress(done: int, total: int) -> None:
        if done > 5 * MIB:
            progressed.set()

    upload = asyncio.create_task(fs.upload(local, f"{remote_dir}/big.bin", progress=progress))
    await progressed.wait()
    for pooled in list(fs.pool._conns):  # the network drops: abort the client's connections
        pooled.conn.abort()
    with pytest.raises(errors.ConnectionLost):
        await upload
    assert not (local_dir / "big.bin").exists()
    result = await fs.upload(local, f"{remote_dir}/big.bin")
    await fs.close()
    assert result.resumed_from >= MIB  # (marks of the last segments may not have landed)
    assert hashlib.sha256((local_dir / "big.bin").read_bytes()).hexdigest() == sha


async def test_many_small_files_and_listing(openssh_endpoint, openssh_dir, tmp_path: Path) -> None:
    local_dir, remote_dir = openssh_dir("chroot")
    items = []
    for i in range(300):
        path = tmp_path / f"c{i:03d}.jpg"
        _file(path, 50 * 1024)
        items.append(UploadItem(local_path=path, remote_path=f"{remote_dir}/c{i:03d}.jpg"))
    async with SftpRemoteFS(openssh_endpoint("chroot"), state_dir=tmp_path / "s") as fs:
        results = await fs.upload_many(items)
        assert not [r for r in results if isinstance(r, Exception)]
        listed = [e async for e in fs.list(remote_dir, pattern="c*.jpg")]
    assert len(listed) == 300 and all(e.size == 50 * 1024 for e in listed)
    assert len(list(local_dir.iterdir())) == 300


async def test_download_post_action_move_on_real_server(
    openssh_endpoint, openssh_dir, tmp_path: Path
) -> None:
    local_dir, remote_dir = openssh_dir("chroot")
    (local_dir / "report.csv").write_bytes(b"isbn,units\n9780000000001,3\n")
    processed = local_dir / "processed"
    processed.mkdir()
    os.chown(processed, local_dir.stat().st_uid, local_dir.stat().st_gid)
    ep = openssh_endpoint("chroot", processed_folder=f"{remote_dir}/processed")
    async with SftpRemoteFS(ep, state_dir=tmp_path / "s") as fs:
        entry = await fs.stat(f"{remote_dir}/report.csv")
        assert entry is not None
        result = await fs.download(
            entry.path,
            tmp_path / "report.csv",
            expected_size=entry.size,
            post_action=PostAction.MOVE,
        )
    assert (tmp_path / "report.csv").read_bytes().startswith(b"isbn")
    assert (processed / "report.csv").exists() and not (local_dir / "report.csv").exists()
    assert result.post_action.startswith("move:")


async def test_chroot_account_permissions_are_translated(
    openssh_endpoint, openssh: OpenSshServer, tmp_path: Path
) -> None:
    local = tmp_path / "x.txt"
    local.write_bytes(b"x")
    async with SftpRemoteFS(openssh_endpoint("chroot"), state_dir=tmp_path / "s") as fs:
        # the chroot root is owned by root: the SFTP-only user may not write there
        with pytest.raises(errors.RemotePermissionDenied) as info:
            await fs.upload(local, "/x.txt")
    assert "openssh-chroot" in str(info.value)


async def test_host_key_mismatch_against_sshd(openssh_endpoint, tmp_path: Path) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256")
    ep = dataclasses.replace(openssh_endpoint("shell"), host_keys=(other,))
    async with SftpRemoteFS(ep, state_dir=tmp_path / "s") as fs:
        with pytest.raises(errors.HostKeyMismatch):
            await fs.stat("/")


async def test_rename_keeps_existing_lets_openssh_refuse_a_taken_name(
    openssh_endpoint, openssh_dir, tmp_path: Path
) -> None:
    # OpenSSH's plain rename links, then unlinks: it refuses an existing name. With
    # rename_keeps_existing the small files send no look at their final names; the rename's
    # refusal is the 'fail' policy's, the partner's file keeps its bytes, no temporary stays.
    local, remote = openssh_dir("shell")
    (local / "f2.dat").write_bytes(b"the partner's own file")
    items = []
    for i in range(5):
        path = tmp_path / f"f{i}.dat"
        path.write_bytes(os.urandom(20_000 + i))
        items.append(UploadItem(local_path=path, remote_path=f"{remote}/f{i}.dat"))
    endpoint = openssh_endpoint("shell", overwrite="fail", rename_keeps_existing=True)
    async with SftpRemoteFS(endpoint, state_dir=tmp_path / "s") as fs:
        results = await fs.upload_many(items)
        failed = [r for r in results if isinstance(r, errors.TransportError)]
        assert [type(r) for r in failed] == [errors.RemoteFileExists]
        assert "overwrite policy is 'fail'" in str(failed[0]) and failed[0].path.endswith("f2.dat")
        assert (local / "f2.dat").read_bytes() == b"the partner's own file"
        for i in (0, 1, 3, 4):
            assert (local / f"f{i}.dat").read_bytes() == items[i].local_path.read_bytes()
        assert sorted(p.name for p in local.iterdir()) == [f"f{i}.dat" for i in range(5)]
        # A package's file is still looked at before it is sent: refused, nothing written.
        with pytest.raises(errors.RemoteFileExists):
            await fs.stage(items[2].local_path, f"{remote}/f2.dat")
    assert sorted(p.name for p in local.iterdir()) == [f"f{i}.dat" for i in range(5)]


@pytest.mark.parametrize("honest", [True, False])
async def test_a_small_file_checked_by_sha1sum_passes_only_on_its_own_digest(
    openssh_endpoint, openssh_dir, tmp_path: Path, honest: bool
) -> None:
    # Where the server answers only sha1sum (rclone), a small file's bytes, already in memory,
    # give the local SHA-1 it is compared with; a digest that is not theirs fails the upload
    # and leaves nothing under the final name.
    local_dir, remote_dir = openssh_dir("shell")
    tools, _ = openssh_dir("shell")
    command = tools / "sha1sum"
    answer = 'exec sha1sum "$@"' if honest else f'echo {"0" * 40} "$1"'
    command.write_text(f"#!/bin/sh\n{answer}\n")
    command.chmod(0o755)
    source = tmp_path / "statement.csv"
    data = os.urandom(30_000)
    source.write_bytes(data)
    ep = openssh_endpoint(
        "shell", checksum="shell", allow_shell=True, shell_hash_command=str(command)
    )
    async with SftpRemoteFS(ep, state_dir=tmp_path / "s", retries=0) as fs:
        if honest:
            up = await fs.upload(source, f"{remote_dir}/statement.csv")
            assert up.verified_by == "shell-sha1"
            assert up.sha256 == hashlib.sha256(data).hexdigest()
            assert (local_dir / "statement.csv").read_bytes() == data
        else:
            with pytest.raises(errors.IntegrityError, match="does not match"):
                await fs.upload(source, f"{remote_dir}/statement.csv")
            assert list(local_dir.iterdir()) == []
