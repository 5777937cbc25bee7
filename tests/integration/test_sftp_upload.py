"""The upload protocol against the fault-injecting server: atomic names, resume, fallbacks."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from pathlib import Path

import pytest

from consonance_sftp import errors
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.sftp_servers import EndpointFactory

MIB = 1024 * 1024


def _file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_upload_lands_under_final_name_only_when_complete(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    local = tmp_path / "interior.pdf"
    sha = _file(local, 3 * MIB)
    fault_server.faults.write_delay = 0.01  # slow enough for the lister to look many times
    home = fault_server.home("partner")
    final = home / "interior.pdf"
    seen_sizes: list[int] = []
    stop = asyncio.Event()

    async def lister() -> None:
        # A partner polling its inbox: whenever the final name is there, it must be complete.
        while not stop.is_set():
            if final.exists():
                seen_sizes.append(final.stat().st_size)
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(lister())
    async with SftpRemoteFS(
        fault_endpoint(block_size=64 * 1024, max_requests=4), state_dir=tmp_path / "state"
    ) as fs:
        progress: list[tuple[int, int]] = []
        result = await fs.upload(
            local, "interior.pdf", progress=lambda d, t: progress.append((d, t))
        )
    await asyncio.sleep(0.02)
    stop.set()
    await watcher
    assert result.sha256 == sha == _sha(final)
    assert result.strategy == "rename"  # overwrite 'fail': the server refuses to replace
    assert seen_sizes, "the lister never saw the final file"
    assert set(seen_sizes) == {3 * MIB}
    # the bytes went to the temporary name, then one rename
    writes = fault_server.recorder.writes
    assert list(writes) == [".interior.pdf.part"]
    assert fault_server.recorder.ops("rename") == [(".interior.pdf.part", "interior.pdf")]
    assert progress[-1] == (3 * MIB, 3 * MIB)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)


async def test_disconnect_at_random_offset_resumes_and_matches(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    size = 12 * MIB
    local = tmp_path / "audio-master.wav"
    sha = _file(local, size)
    offset = random.randrange(2 * MIB, size - 2 * MIB)
    fault_server.faults.drop_after_bytes = offset
    ep = fault_endpoint(segment_size=MIB, max_requests=8)
    fs = SftpRemoteFS(ep, state_dir=tmp_path / "state", retries=0)
    with pytest.raises(errors.ConnectionLost) as info:
        await fs.upload(local, "audio-master.wav")
    assert info.value.retryable
    assert "fault-partner" in str(info.value)
    assert not (fault_server.home("partner") / "audio-master.wav").exists()
    first_attempt = fault_server.recorder.bytes_written
    # (a few requests already in the server's buffer are still written after the drop)
    assert 0 < first_attempt < size

    result = await fs.upload(local, "audio-master.wav")
    await fs.close()
    assert result.resumed_from > 0
    assert result.resumed_from <= first_attempt
    assert _sha(fault_server.home("partner") / "audio-master.wav") == sha == result.sha256
    # Only what was missing was sent again.
    assert fault_server.recorder.bytes_written == first_attempt + (size - result.resumed_from)


async def test_a_resume_reads_segments_back_where_check_file_ignores_the_range(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    """Before a resume continues, each segment the journal records is checked on the server by
    hash: the ranged check-file where its answers hold, else the range read back. This
    server's check-file hashes the whole file whatever range is asked: the first answer that
    differs is read back, which shows the bytes are there, and the rest are read back too;
    the segments are kept (not sent again) and the finished file is verified by check-file."""
    size = 12 * MIB
    local = tmp_path / "audio-master.wav"
    sha = _file(local, size)
    fault_server.faults.check_file = True
    fault_server.faults.drop_after_bytes = random.randrange(3 * MIB, size - 3 * MIB)
    fs = SftpRemoteFS(
        fault_endpoint(segment_size=MIB, max_requests=8), state_dir=tmp_path / "state", retries=0
    )
    with pytest.raises(errors.ConnectionLost):
        await fs.upload(local, "audio-master.wav")
    first_attempt = fault_server.recorder.bytes_written

    result = await fs.upload(local, "audio-master.wav")
    await fs.close()
    assert result.resumed_from >= MIB  # the verified prefix was kept, not sent again
    assert fault_server.recorder.bytes_written == first_attempt + (size - result.resumed_from)
    assert _sha(fault_server.home("partner") / "audio-master.wav") == sha == result.sha256
    # One ranged check-file (its answer disproved by a read-back), then the whole file's.
    assert len(fault_server.recorder.ops("check_file")) == 2
    assert result.verified_by == "check_file"


async def test_disconnect_is_retried_transparently(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    local = tmp_path / "cover.pdf"
    sha = _file(local, 10 * MIB)
    fault_server.faults.drop_after_bytes = 5 * MIB
    async with SftpRemoteFS(
        fault_endpoint(segment_size=MIB), state_dir=tmp_path / "state", retries=2
    ) as fs:
        result = await fs.upload(local, "cover.pdf")
    assert result.resumed_from > 0
    assert fault_server.recorder.drops == 1
    assert _sha(fault_server.home("partner") / "cover.pdf") == sha


async def test_overwrite_policies(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    local = tmp_path / "feed.xml"
    _file(local, 4000)
    target = fault_server.home("partner") / "feed.xml"
    target.write_bytes(b"old")
    state = tmp_path / "state"

    async with SftpRemoteFS(fault_endpoint(overwrite="fail"), state_dir=state) as fs:
        with pytest.raises(errors.RemoteFileExists, match=r"feed\.xml"):
            await fs.upload(local, "feed.xml")
    assert target.read_bytes() == b"old"

    async with SftpRemoteFS(fault_endpoint(overwrite="replace"), state_dir=state) as fs:
        await fs.upload(local, "feed.xml")
    assert target.read_bytes() == local.read_bytes()

    written = fault_server.recorder.bytes_written
    async with SftpRemoteFS(fault_endpoint(overwrite="skip_if_identical"), state_dir=state) as fs:
        result = await fs.upload(local, "feed.xml")
    assert result.skipped
    assert fault_server.recorder.bytes_written == written  # nothing sent

    local.write_bytes(b"new content")
    async with SftpRemoteFS(fault_endpoint(overwrite="skip_if_identical"), state_dir=state) as fs:
        result = await fs.upload(local, "feed.xml")
    assert not result.skipped
    assert target.read_bytes() == b"new content"


async def test_deny_rename_fails_clearly_then_direct_with_marker_works(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    fault_server.faults.deny_rename = True
    local = tmp_path / "statement.pdf"
    sha = _file(local, 50_000)
    home = fault_server.home("partner")
    async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "state") as fs:
        with pytest.raises(errors.RemotePermissionDenied) as info:
            await fs.upload(local, "statement.pdf")
    assert "upload_strategy = 'direct'" in (info.value.hint or "")
    assert not info.value.retryable
    assert sorted(p.name for p in home.iterdir()) == []  # no final name, no orphaned temp

    async with SftpRemoteFS(
        fault_endpoint(upload_strategy="direct", done_marker="{name}.done"),
        state_dir=tmp_path / "state",
    ) as fs:
        result = await fs.upload(local, "statement.pdf")
    assert result.strategy == "direct"
    assert _sha(home / "statement.pdf") == sha
    assert (home / "statement.pdf.done").read_text() == f"{sha}  statement.pdf\n"
    # the marker is written only after the file is complete and closed
    events = [(op, a) for _, op, a, _ in fault_server.recorder.events if op != "open_write"]
    assert events.index(("close", "statement.pdf")) < events.index(("close", "statement.pdf.done"))


async def test_no_posix_rename_falls_back_in_auto_and_fails_when_pinned(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    fault_server.faults.no_posix_rename = True
    local = tmp_path / "a.txt"
    _file(local, 1000)
    home = fault_server.home("partner")
    async with SftpRemoteFS(
        fault_endpoint(upload_strategy="posix_rename"), state_dir=tmp_path / "s"
    ) as fs:
        with pytest.raises(errors.UnsupportedOperation, match=r"a\.txt"):
            await fs.upload(local, "a.txt")
    assert not (home / "a.txt").exists()

    async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s") as fs:
        first = await fs.upload(local, "a.txt")
    assert first.strategy == "rename"

    # replacing an existing file without posix-rename: delete then rename, explicitly
    local.write_bytes(b"second version")
    async with SftpRemoteFS(fault_endpoint(overwrite="replace"), state_dir=tmp_path / "s") as fs:
        second = await fs.upload(local, "a.txt")
    assert second.strategy == "delete_rename"
    assert (home / "a.txt").read_bytes() == b"second version"

    # plain rename will not replace: a clear error with the fix in the hint
    local.write_bytes(b"third version")
    async with SftpRemoteFS(
        fault_endpoint(overwrite="replace", upload_strategy="rename"), state_dir=tmp_path / "s"
    ) as fs:
        with pytest.raises(errors.RemoteFileExists) as info:
            await fs.upload(local, "a.txt")
    assert "delete_rename" in (info.value.hint or "")
    assert (home / "a.txt").read_bytes() == b"second version"


async def test_deny_setstat(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    fault_server.faults.deny_setstat = True
    local = tmp_path / "b.txt"
    _file(local, 1000)
    async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s") as fs:
        await fs.upload(local, "b.txt")  # the default never calls setstat
    assert fault_server.recorder.ops("setstat") == []
    async with SftpRemoteFS(fault_endpoint(set_mtime=True), state_dir=tmp_path / "s") as fs:
        with pytest.raises(errors.UnsupportedOperation) as info:
            await fs.upload(local, "c.txt")
    assert "set_mtime = false" in (info.value.hint or "")
    assert not (fault_server.home("partner") / "c.txt").exists()


async def test_set_mtime_when_allowed(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    local = tmp_path / "d.txt"
    _file(local, 1000)
    os.utime(local, (1_600_000_000, 1_600_000_000))
    async with SftpRemoteFS(fault_endpoint(set_mtime=True), state_dir=tmp_path / "s") as fs:
        await fs.upload(local, "d.txt")
    assert (fault_server.home("partner") / "d.txt").stat().st_mtime == 1_600_000_000


async def test_disk_full_is_terminal_and_names_partner_and_path(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    fault_server.faults.disk_full_after = 100_000
    local = tmp_path / "big.epub"
    _file(local, 2 * MIB)
    async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s") as fs:
        with pytest.raises(errors.RemoteDiskFull) as info:
            await fs.upload(local, "big.epub")
    assert not info.value.retryable
    assert "fault-partner" in str(info.value)
    assert "big.epub" in str(info.value)
    assert not (fault_server.home("partner") / "big.epub").exists()


async def test_temp_folder(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    (fault_server.home("partner") / "tmp").mkdir()
    (fault_server.home("partner") / "in").mkdir()
    local = tmp_path / "e.txt"
    _file(local, 1000)
    async with SftpRemoteFS(
        fault_endpoint(temp_folder="/tmp", temp_prefix="", temp_suffix=""),
        state_dir=tmp_path / "s",
    ) as fs:
        await fs.upload(local, "/in/e.txt")
    assert list(fault_server.recorder.writes) == ["/tmp/e.txt"]
    assert fault_server.recorder.ops("rename") == [("/tmp/e.txt", "/in/e.txt")]
    assert (fault_server.home("partner") / "in" / "e.txt").exists()


async def test_bandwidth_limit(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    local = tmp_path / "f.bin"
    _file(local, 3 * MIB)
    async with SftpRemoteFS(
        fault_endpoint(bandwidth_limit=4 * MIB, block_size=64 * 1024), state_dir=tmp_path / "s"
    ) as fs:
        started = time.monotonic()
        await fs.upload(local, "f.bin")
        elapsed = time.monotonic() - started
    # a quarter second's worth (1 MiB) may go at once; the other 2 MiB take 0.5 s at 4 MiB/s
    assert elapsed >= 0.45


async def test_bandwidth_limit_on_a_segmented_upload(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    """Large files go in parallel segments, each file handle opened, written and closed
    through the throttle (a limit once made every segmented upload fail on close)."""
    local = tmp_path / "big.bin"
    _file(local, 4 * MIB)
    endpoint = fault_endpoint(
        bandwidth_limit=8 * MIB, segment_size=MIB, segmented_threshold=2 * MIB
    )
    async with SftpRemoteFS(endpoint, state_dir=tmp_path / "s") as fs:
        started = time.monotonic()
        await fs.upload(local, "big.bin")
        elapsed = time.monotonic() - started
    assert (fault_server.home("partner") / "big.bin").read_bytes() == local.read_bytes()
    # 2 MiB may go at once (the burst); the other 2 MiB take 0.25 s at 8 MiB/s
    assert elapsed >= 0.2


async def test_checksum_read_back(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    local = tmp_path / "g.bin"
    _file(local, MIB)
    async with SftpRemoteFS(fault_endpoint(checksum="read_back"), state_dir=tmp_path / "s") as fs:
        result = await fs.upload(local, "g.bin")
    assert result.verified_by == "read_back"
    assert fault_server.recorder.bytes_read == MIB


async def test_upload_many_small_files(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    from consonance_sftp.ports.remote_fs import UploadItem

    items = []
    for i in range(200):
        path = tmp_path / f"s{i}.jpg"
        _file(path, 5000)
        items.append(UploadItem(local_path=path, remote_path=f"s{i}.jpg"))
    (fault_server.home("partner") / "s7.jpg").write_bytes(b"taken")
    done: list[int] = []
    async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s") as fs:
        results = await fs.upload_many(items, progress=lambda d, t: done.append(d))
    failures = [r for r in results if isinstance(r, errors.TransportError)]
    assert len(failures) == 1 and isinstance(failures[0], errors.RemoteFileExists)
    assert "s7.jpg" in str(failures[0])
    assert done[-1] == 200
    assert fault_server.recorder.connections == 2  # file_connections, reused for all 200
    assert len(list(fault_server.home("partner").glob("s*.jpg"))) == 200


async def test_checksum_by_check_file_extension(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    fault_server.faults.check_file = True
    local = tmp_path / "h.bin"
    sha = _file(local, 300_000)
    async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s") as fs:
        result = await fs.upload(local, "h.bin")
    assert result.verified_by == "check_file" and result.sha256 == sha
    assert fault_server.recorder.ops("check_file") == [(".h.bin.part", "")]


async def test_checksum_mismatch_never_reaches_the_final_name(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    fault_server.faults.check_file = True
    fault_server.faults.check_file_lies = True
    local = tmp_path / "i.bin"
    _file(local, 300_000)
    async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s", retries=1) as fs:
        with pytest.raises(errors.IntegrityError, match="does not match") as info:
            await fs.upload(local, "i.bin")
    assert info.value.retryable
    assert len(fault_server.recorder.ops("check_file")) == 2  # retried once, then raised
    assert list(fault_server.home("partner").iterdir()) == []  # no final name, temp removed


async def test_checksum_check_file_required_but_missing(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    local = tmp_path / "j.bin"
    _file(local, 1000)
    async with SftpRemoteFS(fault_endpoint(checksum="check_file"), state_dir=tmp_path / "s") as fs:
        with pytest.raises(errors.UnsupportedOperation):
            await fs.upload(local, "j.bin")
    assert not (fault_server.home("partner") / "j.bin").exists()


async def test_stale_longer_temp_file_is_replaced(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    home = fault_server.home("partner")
    (home / ".k.bin.part").write_bytes(b"\xff" * (12 * MIB))  # left by an abandoned attempt
    local = tmp_path / "k.bin"
    sha = _file(local, 9 * MIB)
    async with SftpRemoteFS(fault_endpoint(segment_size=MIB), state_dir=tmp_path / "s") as fs:
        result = await fs.upload(local, "k.bin")
    assert result.resumed_from == 0
    assert _sha(home / "k.bin") == sha
    assert sorted(p.name for p in home.iterdir()) == ["k.bin"]


@pytest.mark.parametrize("size", [0, 1, 8 * MIB, 8 * MIB + 1])
async def test_edge_sizes_round_trip(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path, size: int
) -> None:
    local = tmp_path / "e.bin"
    sha = _file(local, size)
    async with SftpRemoteFS(fault_endpoint(segment_size=MIB), state_dir=tmp_path / "s") as fs:
        up = await fs.upload(local, "e.bin")
        down = await fs.download("e.bin", tmp_path / "back.bin")
    assert up.size == down.size == size
    assert up.sha256 == down.sha256 == sha == _sha(tmp_path / "back.bin")


async def test_caller_supplied_hash(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    small, big = tmp_path / "small.bin", tmp_path / "big.bin"
    small_sha, big_sha = _file(small, 1000), _file(big, 9 * MIB)
    async with SftpRemoteFS(
        fault_endpoint(checksum="read_back", segment_size=MIB), state_dir=tmp_path / "s", retries=0
    ) as fs:
        assert (await fs.upload(big, "big.bin", sha256=big_sha)).sha256 == big_sha
        assert (await fs.upload(small, "small.bin", sha256=small_sha)).sha256 == small_sha
        with pytest.raises(errors.IntegrityError, match="changed since it was hashed"):
            await fs.upload(small, "small2.bin", sha256="0" * 64)
        # a stale hash for a large file is caught by the remote checksum, before the rename
        with pytest.raises(errors.IntegrityError, match="does not match"):
            await fs.upload(big, "big2.bin", sha256="0" * 64)
    assert not (fault_server.home("partner") / "big2.bin").exists()


async def test_stage_leaves_a_verified_temporary_file_that_publish_renames(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    # Staged, a file waits under its temporary name: a second stage (a retry after another
    # file of the package failed) finds every segment there and sends nothing; publish renames
    # it and forgets the resume journal.
    local = tmp_path / "audio.wav"
    sha = _file(local, 3 * MIB)
    home = fault_server.home("partner")
    journals = tmp_path / "s" / "journals"
    async with SftpRemoteFS(fault_endpoint(segment_size=MIB), state_dir=tmp_path / "s") as fs:
        staged = await fs.stage(local, "audio.wav", sha256=sha)
        assert staged.staged_path == fs.staging_path("audio.wav") != "audio.wav"
        assert not (home / "audio.wav").exists()
        assert _sha(home / staged.staged_path) == sha
        written = fault_server.recorder.bytes_written
        again = await fs.stage(local, "audio.wav", sha256=sha)
        assert again.resumed_from == 3 * MIB
        assert fault_server.recorder.bytes_written == written
        assert fault_server.recorder.ops("rename") + fault_server.recorder.ops("posix_rename") == []
        assert list(journals.iterdir())
        strategy = await fs.publish("audio.wav", sha256=sha)
    assert strategy in {"posix_rename", "rename"}
    assert sorted(p.name for p in home.iterdir()) == ["audio.wav"]
    assert _sha(home / "audio.wav") == sha
    assert list(journals.iterdir()) == []


async def test_direct_stage_writes_the_final_name_and_publish_only_the_marker(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    # A server that forbids rename: the bytes go to the final name as they are staged; the
    # done-marker, written by publish, is what says the file (and its package) is complete.
    local = tmp_path / "statement.pdf"
    sha = _file(local, 5000)
    home = fault_server.home("partner")
    async with SftpRemoteFS(
        fault_endpoint(upload_strategy="direct", done_marker="{name}.done"),
        state_dir=tmp_path / "s",
    ) as fs:
        await fs.stage(local, "statement.pdf", sha256=sha)
        assert sorted(p.name for p in home.iterdir()) == ["statement.pdf"]
        assert await fs.publish("statement.pdf", sha256=sha) == "direct"
    assert sorted(p.name for p in home.iterdir()) == ["statement.pdf", "statement.pdf.done"]
    assert (home / "statement.pdf.done").read_text() == f"{sha}  statement.pdf\n"
    assert fault_server.recorder.ops("rename") + fault_server.recorder.ops("posix_rename") == []


async def test_a_publish_whose_answer_was_lost_is_not_renamed_again(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    # The rename happens, the connection drops before its answer: the retry finds the file
    # published. Renaming again with 'delete_rename' would first remove the published file.
    fault_server.faults.no_posix_rename = True
    home = fault_server.home("partner")
    (home / "feed.xml").write_bytes(b"the old version")
    local = tmp_path / "feed.xml"
    sha = _file(local, 20_000)
    async with SftpRemoteFS(fault_endpoint(overwrite="replace"), state_dir=tmp_path / "s") as fs:
        staged = await fs.stage(local, "feed.xml", sha256=sha)
        fault_server.faults.drop_after_rename = True
        assert await fs.publish("feed.xml", sha256=sha) == "delete_rename"
    assert fault_server.recorder.drops == 1
    assert fault_server.recorder.ops("rename") == [(staged.staged_path, "feed.xml")]
    assert sorted(p.name for p in home.iterdir()) == ["feed.xml"]
    assert _sha(home / "feed.xml") == sha
