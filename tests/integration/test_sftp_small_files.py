"""Small files: the requests each costs, and the read-back on the handle it was written on.

The requests are counted where our client sends them (asyncssh's request plumbing), so the
test fails when a change adds a round trip per file; the server's own record says what it
did with them.
"""

from __future__ import annotations

import collections
import hashlib
import math
import os
from pathlib import Path

import pytest
from asyncssh import sftp as asyncssh_sftp

from consonance_sftp import errors
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.ports.remote_fs import UploadItem
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.sftp_servers import EndpointFactory

MIB = 1024 * 1024
_NAMES = {
    value: name
    for name, value in vars(asyncssh_sftp).items()
    if name.startswith("FXP_") and isinstance(value, int)
}


@pytest.fixture
def requests_sent(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """Every SFTP request our client sends, by type (extensions by name)."""
    sent: collections.Counter[str] = collections.Counter()
    send = asyncssh_sftp.SFTPClientHandler._send_request

    def counting(self: object, pkttype: int | bytes, args: object, waiter: object) -> None:
        sent[pkttype.decode() if isinstance(pkttype, bytes) else _NAMES[pkttype]] += 1
        send(self, pkttype, args, waiter)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncssh_sftp.SFTPClientHandler, "_send_request", counting)
    return sent


def _reads(server: FaultServer, name: str) -> list[tuple[int, int]]:
    """The reads the server answered on ``name`` (on every handle of it)."""
    return [
        r
        for path, rs in server.recorder.reads.items()
        if path.rsplit("/", 1)[-1] == name
        for r in rs
    ]


def _files(folder: Path, n: int, size: int) -> list[UploadItem]:
    items = []
    for i in range(n):
        path = folder / f"f{i:03d}.dat"
        path.write_bytes(os.urandom(size))
        items.append(UploadItem(local_path=path, remote_path=f"f{i:03d}.dat"))
    return items


@pytest.mark.parametrize(
    ("overwrite", "per_file"),
    [
        # one posix-rename replaces: no look at the final name first
        ("replace", {"FXP_OPEN", "FXP_WRITE", "FXP_READ", "FXP_CLOSE", "posix-rename@openssh.com"}),
        # a stat of the final name first (a server whose rename replaces would not refuse)
        ("fail", {"FXP_STAT", "FXP_OPEN", "FXP_WRITE", "FXP_READ", "FXP_CLOSE", "FXP_RENAME"}),
        # the probe found the plain rename refusing an existing name: it is the look
        ("fail-rename-keeps", {"FXP_OPEN", "FXP_WRITE", "FXP_READ", "FXP_CLOSE", "FXP_RENAME"}),
    ],
)
async def test_the_requests_a_small_file_costs(
    fault_endpoint: EndpointFactory,
    fault_server: FaultServer,
    requests_sent: collections.Counter[str],
    tmp_path: Path,
    overwrite: str,
    per_file: set[str],
) -> None:
    n = 40
    items = _files(tmp_path, n, 50_000)
    keeps = overwrite == "fail-rename-keeps"
    endpoint = fault_endpoint(overwrite="fail" if keeps else overwrite, rename_keeps_existing=keeps)
    async with SftpRemoteFS(endpoint, state_dir=tmp_path / "s") as fs:
        await fs.makedirs(".")  # connected: what follows is the batch's own
        requests_sent.clear()
        results = await fs.upload_many(items)
    assert all(not isinstance(r, errors.TransportError) for r in results), results
    # Verified by hash: the server offers no check-file, so each file was read back.
    assert {r.verified_by for r in results if not isinstance(r, errors.TransportError)} == {
        "read_back"
    }
    assert {k: v for k, v in requests_sent.items() if v >= n} == dict.fromkeys(per_file, n)
    # Once for the batch: whether the server answers check-file; asyncssh asks the second
    # connection's limits as it opens.
    once = {k: v for k, v in requests_sent.items() if k not in per_file}
    assert once == {"check-file-name": 1, "limits@openssh.com": 1}
    home = fault_server.home("partner")
    for item in items:
        assert (home / item.remote_path).read_bytes() == item.local_path.read_bytes()
        # read back on the handle it was written on: the whole file, nothing past its end
        assert _reads(fault_server, f".{item.remote_path}.part") == [(0, 50_000)]
    assert not list(home.glob(".*.part"))


async def test_a_small_file_whose_bytes_the_server_lost_never_gets_its_final_name(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    fault_server.faults.zero_writes = True  # every write acknowledged, zeros kept
    items = _files(tmp_path, 3, 10_000)
    async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s", retries=0) as fs:
        results = await fs.upload_many(items)
    assert all(isinstance(r, errors.IntegrityError) for r in results), results
    assert all("does not match" in str(r) for r in results)
    assert list(fault_server.home("partner").iterdir()) == []  # no final name, temps removed


@pytest.mark.parametrize(
    ("fault", "event"),
    [
        ("deny_read_write_open", "read_write_open_refused"),
        ("deny_reads_on_write_handles", "read_refused"),
    ],
)
async def test_a_server_refusing_a_read_write_handle_gets_the_separate_read_back(
    fault_endpoint: EndpointFactory,
    fault_server: FaultServer,
    tmp_path: Path,
    fault: str,
    event: str,
) -> None:
    setattr(fault_server.faults, fault, True)
    items = _files(tmp_path, 4, 20_000)
    async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s") as fs:
        for item in items:  # one after another: the first refusal is noted for the others
            result = await fs.upload(item.local_path, item.remote_path)
            assert result.verified_by == "read_back"
    assert len(fault_server.recorder.ops(event)) == 1  # noted: asked of the first file only
    home = fault_server.home("partner")
    for item in items:
        assert (home / item.remote_path).read_bytes() == item.local_path.read_bytes()
        # read back on a handle of its own, in full
        assert sum(n for _, n in _reads(fault_server, f".{item.remote_path}.part")) >= 20_000


async def test_a_read_back_of_known_size_asks_for_no_more_than_one_read_past_the_end(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    local = tmp_path / "big.bin"
    data = os.urandom(9 * MIB + 123)  # above the small-file limit: a read-back of its own
    local.write_bytes(data)
    async with SftpRemoteFS(fault_endpoint(checksum="read_back"), state_dir=tmp_path / "s") as fs:
        result = await fs.upload(local, "big.bin")
        block = fs.settings.read_block
    assert result.verified_by == "read_back"
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    reads = _reads(fault_server, ".big.bin.part")
    past_end = [r for r in reads if r[0] >= len(data)]
    assert len(past_end) <= 1
    assert len(reads) <= math.ceil(len(data) / block) + 2


async def test_with_fail_a_taken_final_name_keeps_its_bytes_and_leaves_no_temporary_file(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    # The look at the final name goes out with the write of the temporary name: a name found
    # taken must cost that temporary file, and nothing else.
    items = _files(tmp_path, 6, 30_000)
    home = fault_server.home("partner")
    (home / "f003.dat").write_bytes(b"the partner's own file")
    async with SftpRemoteFS(fault_endpoint(overwrite="fail"), state_dir=tmp_path / "s") as fs:
        results = await fs.upload_many(items)
    failed = [r for r in results if isinstance(r, errors.TransportError)]
    assert len(failed) == 1 and isinstance(failed[0], errors.RemoteFileExists)
    assert (home / "f003.dat").read_bytes() == b"the partner's own file"
    assert fault_server.recorder.ops("remove") == [(".f003.dat.part", "")]
    assert sorted(p.name for p in home.iterdir()) == [f"f{i:03d}.dat" for i in range(6)]
    assert sorted(fault_server.recorder.ops("rename")) == [
        (f".f{i:03d}.dat.part", f"f{i:03d}.dat") for i in range(6) if i != 3
    ]


async def test_files_read_ahead_or_not_each_arrive_whole_or_fail_alone(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    # upload_many reads small files ahead in runs; a larger file, an empty one, and one that
    # is gone are each read by their own upload, whose result is theirs alone.
    sizes = [50_000] * 40 + [300 * 1024, 0, 70_000, 2 * MIB]
    items = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"g{i:03d}.dat"
        path.write_bytes(os.urandom(size))
        items.append(UploadItem(local_path=path, remote_path=f"g{i:03d}.dat"))
    items[5].local_path.unlink()
    async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s", retries=0) as fs:
        results = await fs.upload_many(items)
    failed = [i for i, r in enumerate(results) if isinstance(r, errors.TransportError)]
    assert failed == [5]
    assert "cannot read the local file" in str(results[5])
    home = fault_server.home("partner")
    for i, item in enumerate(items):
        if i != 5:
            data = item.local_path.read_bytes()
            assert (home / item.remote_path).read_bytes() == data
            assert results[i].sha256 == hashlib.sha256(data).hexdigest()  # type: ignore[union-attr]
    assert not (home / "g005.dat").exists()
