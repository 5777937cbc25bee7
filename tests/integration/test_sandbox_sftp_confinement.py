"""The sandbox SFTP server keeps each partner inside its own folder, symlinks included.

A real asyncssh client logs in to the real sandbox server. Links placed in the partner's
folder (a file outside, a folder outside, a link in an intermediate folder leading to another
partner's files) must be refused with "permission denied" for every operation that would
follow them; ``..`` never climbs out; a link that stays inside the folder keeps working.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from consonance_sftp.sandbox.sftp_server import SandboxSftpServer, start_sandbox_sftp
from tests.fixtures.sftp_servers import ClientKeys

SECRET = b"root:$6$not-for-partners\n"
OTHER = b"the other partner's statement\n"


@dataclass
class Layout:
    home: Path
    outside_file: Path
    outside_dir: Path
    other_file: Path


@pytest.fixture
async def server(tmp_path: Path, client_keys: ClientKeys) -> AsyncIterator[SandboxSftpServer]:
    running = await start_sandbox_sftp(
        "127.0.0.1",
        0,
        tmp_path / "sftp",
        tmp_path / "host_key",
        client_keys.authorized_keys,
        ["printer", "agent"],
        folders=["in", "out"],
    )
    try:
        yield running
    finally:
        running.close()
        await running.wait_closed()


@pytest.fixture
def layout(tmp_path: Path, server: SandboxSftpServer) -> Layout:
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    outside_file = outside_dir / "shadow"
    outside_file.write_bytes(SECRET)
    (outside_dir / "inner.txt").write_bytes(SECRET)
    other_file = server.home("agent") / "out" / "statement.csv"
    other_file.write_bytes(OTHER)
    home = server.home("printer")
    (home / "in" / "ok.txt").write_bytes(b"inside\n")
    os.symlink(outside_file, home / "leak")  # a link to a file outside
    os.symlink(outside_dir, home / "leakdir")  # a link to a folder outside
    os.symlink("../..", home / "in" / "up")  # an intermediate link: in/up/agent/... escapes
    os.symlink("in/ok.txt", home / "inner-link")  # stays inside: allowed
    os.symlink("in", home / "inner-dir")  # a folder link that stays inside: allowed
    return Layout(home, outside_file, outside_dir, other_file)


@pytest.fixture
async def sftp(
    server: SandboxSftpServer, client_keys: ClientKeys
) -> AsyncIterator[asyncssh.SFTPClient]:
    conn = await asyncssh.connect(
        "127.0.0.1",
        server.port,
        username="printer",
        client_keys=[str(client_keys.paths["ed25519"])],
        known_hosts=asyncssh.import_known_hosts(server.known_hosts_line + "\n"),
        config=[],
        agent_path=None,
    )
    try:
        async with conn.start_sftp_client() as client:
            yield client
    finally:
        conn.close()
        await conn.wait_closed()


async def _read(sftp: asyncssh.SFTPClient, path: str) -> bytes:
    async with sftp.open(path, "rb") as f:
        data: bytes = await f.read()
        return data


async def test_a_link_to_a_file_outside_is_refused(
    sftp: asyncssh.SFTPClient, layout: Layout
) -> None:
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await _read(sftp, "/leak")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.stat("/leak")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.lstat("/leak")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.readlink("/leak")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.open("/leak", "wb")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.rename("/leak", "/in/moved")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.remove("/leak")
    assert layout.outside_file.read_bytes() == SECRET
    assert (layout.home / "leak").is_symlink()


async def test_a_link_to_a_folder_outside_is_refused(
    sftp: asyncssh.SFTPClient, layout: Layout
) -> None:
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.listdir("/leakdir")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await _read(sftp, "/leakdir/inner.txt")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.stat("/leakdir/inner.txt")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.remove("/leakdir/inner.txt")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.rename("/in/ok.txt", "/leakdir/planted.txt")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        async with sftp.open("/leakdir/planted.txt", "wb") as f:
            await f.write(b"x")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.mkdir("/leakdir/newdir")
    assert (layout.outside_dir / "inner.txt").read_bytes() == SECRET
    assert sorted(p.name for p in layout.outside_dir.iterdir()) == ["inner.txt", "shadow"]
    assert (layout.home / "in" / "ok.txt").exists()


async def test_a_link_in_an_intermediate_folder_cannot_reach_another_partner(
    sftp: asyncssh.SFTPClient, layout: Layout
) -> None:
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await _read(sftp, "/in/up/agent/out/statement.csv")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.listdir("/in/up")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.lstat("/in/up/agent/out/statement.csv")
    assert layout.other_file.read_bytes() == OTHER


async def test_dot_dot_never_leaves_the_partner_folder(
    sftp: asyncssh.SFTPClient, layout: Layout
) -> None:
    # ``..`` above the root stays at the root: the other partner's file is not found there.
    with pytest.raises(asyncssh.SFTPNoSuchFile):
        await _read(sftp, "/../agent/out/statement.csv")
    with pytest.raises(asyncssh.SFTPNoSuchFile):
        await _read(sftp, "in/../../../outside/shadow")
    assert await sftp.realpath("/../..") == "/"
    assert sorted(await sftp.listdir("/..")) == sorted(await sftp.listdir("/"))


async def test_creating_a_link_that_points_outside_is_refused(
    sftp: asyncssh.SFTPClient, layout: Layout, tmp_path: Path
) -> None:
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.symlink("../../outside/shadow", "/in/planted")
    with pytest.raises(asyncssh.SFTPPermissionDenied):
        await sftp.symlink("/leakdir/shadow", "/planted")
    assert not (layout.home / "in" / "planted").is_symlink()
    assert not (layout.home / "planted").is_symlink()
    # An absolute target is the partner's own path: it lands inside the folder.
    await sftp.symlink("/in/ok.txt", "/abs-link")
    assert await _read(sftp, "/abs-link") == b"inside\n"


async def test_links_that_stay_inside_work(sftp: asyncssh.SFTPClient, layout: Layout) -> None:
    assert await _read(sftp, "/inner-link") == b"inside\n"
    assert await _read(sftp, "/inner-dir/ok.txt") == b"inside\n"
    assert "ok.txt" in await sftp.listdir("/inner-dir")
    assert (await sftp.stat("/inner-link")).size == len(b"inside\n")
    assert await sftp.readlink("/inner-link") == "/in/ok.txt"
    await sftp.symlink("ok.txt", "/in/again")
    assert await _read(sftp, "/in/again") == b"inside\n"
    await sftp.rename("/in/again", "/in/renamed-link")
    assert await _read(sftp, "/in/renamed-link") == b"inside\n"
    await sftp.remove("/in/renamed-link")
    assert (layout.home / "in" / "ok.txt").exists()
    # The folder with links in it still lists: the links show as links, nothing is followed.
    names = await sftp.listdir("/")
    assert {"leak", "leakdir", "in", "inner-dir"} <= set(names)
