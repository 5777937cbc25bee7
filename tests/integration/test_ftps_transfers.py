"""The FTP/FTPS adapter against pyftpdlib (explicit FTPS and plain FTP, with faults injected)
and vsftpd (explicit and implicit TLS, session reuse required): the same guarantees as SFTP."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import threading
import time
from pathlib import Path

import pytest

from consonance_sftp import errors
from consonance_sftp.adapters.ftp.fs import FtpRemoteFS
from consonance_sftp.config.transfer import PostAction
from consonance_sftp.models import Verification
from consonance_sftp.ports.remote_fs import UploadItem
from tests.fixtures.ftp_servers import FtpServer, start_vsftpd


def _random_file(path: Path, size: int, seed: int = 1) -> str:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(server: FtpServer, folder: str = "in") -> list[str]:
    return sorted(n for n in os.listdir(server.root / folder) if n.startswith("."))


async def test_round_trip_is_byte_identical(pyftpd_tls: FtpServer, tmp_path: Path) -> None:
    local = tmp_path / "book.pdf"
    sha = _random_file(local, 3 * 1024 * 1024 + 17)
    async with FtpRemoteFS(pyftpd_tls.endpoint(), state_dir=tmp_path / "state") as fs:
        result = await fs.upload(local, "/in/book.pdf")
        back = await fs.download("/in/book.pdf", tmp_path / "back.pdf", expected_size=result.size)
    assert result.sha256 == sha == back.sha256 == _sha(tmp_path / "back.pdf")
    assert _sha(pyftpd_tls.local("/in/book.pdf")) == sha
    # No server hash on pyftpdlib: the upload was proven by reading it back.
    assert result.verified_by is Verification.READ_BACK
    assert result.strategy == "rename"
    assert _leftovers(pyftpd_tls) == []
    assert not list(tmp_path.glob(".back.pdf*"))


async def test_server_hash_is_used_where_offered(pyftpd_tls: FtpServer, tmp_path: Path) -> None:
    pyftpd_tls.faults.xsha256 = True
    local = tmp_path / "feed.xml"
    sha = _random_file(local, 200_000)
    async with FtpRemoteFS(pyftpd_tls.endpoint(), state_dir=tmp_path / "state") as fs:
        result = await fs.upload(local, "/in/feed.xml")
    assert result.verified_by is Verification.SERVER_HASH
    assert "XSHA256" in pyftpd_tls.faults.commands
    assert "RETR" not in pyftpd_tls.faults.commands  # nothing read back
    assert _sha(pyftpd_tls.local("/in/feed.xml")) == sha


@pytest.mark.parametrize("seed", [3, 11])
async def test_drop_at_random_offset_resumes_and_hash_matches(
    pyftpd_tls: FtpServer, tmp_path: Path, seed: int
) -> None:
    size = 6 * 1024 * 1024
    local = tmp_path / "interior.pdf"
    sha = _random_file(local, size, seed)
    drop_at = random.Random(seed).randrange(512 * 1024, size - 512 * 1024)
    pyftpd_tls.faults.drop_after = drop_at
    final = pyftpd_tls.local("/in/interior.pdf")
    seen_partial: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        # A concurrent lister on the server's disk: the final name is either absent or whole.
        while not stop.is_set():
            try:
                n = final.stat().st_size
            except FileNotFoundError:
                continue
            if n != size:
                seen_partial.append(n)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        async with FtpRemoteFS(pyftpd_tls.endpoint(), state_dir=tmp_path / "state") as fs:
            result = await fs.upload(local, "/in/interior.pdf")
    finally:
        stop.set()
        watcher.join()
    assert pyftpd_tls.faults.drops == 1
    assert 0 < result.resumed_from <= drop_at + 256 * 1024
    assert result.resumed_from >= drop_at - 256 * 1024
    assert result.verified_by.by_hash  # after an interruption the hash is always checked
    assert _sha(final) == sha == result.sha256
    assert seen_partial == []
    assert _leftovers(pyftpd_tls) == []


async def test_frozen_server_times_out_and_the_upload_resumes(
    pyftpd_tls: FtpServer, tmp_path: Path
) -> None:
    size = 24 * 1024 * 1024
    local = tmp_path / "audio.wav"
    sha = _random_file(local, size, 4)
    pyftpd_tls.faults.freeze_after = 2 * 1024 * 1024
    endpoint = pyftpd_tls.endpoint(operation_timeout=2.0)
    async with FtpRemoteFS(endpoint, state_dir=tmp_path / "state") as fs:
        result = await fs.upload(local, "/in/audio.wav")
    assert pyftpd_tls.faults.freezes == 1
    assert result.resumed_from >= 2 * 1024 * 1024  # continued, not restarted
    assert result.verified_by.by_hash
    assert _sha(pyftpd_tls.local("/in/audio.wav")) == sha
    assert _leftovers(pyftpd_tls) == []


async def test_corrupted_partial_is_not_trusted(pyftpd_tls: FtpServer, tmp_path: Path) -> None:
    """Bytes left on the server that do not match the local file are never resumed from."""
    size = 2 * 1024 * 1024
    local = tmp_path / "cover.tif"
    sha = _random_file(local, size, 5)
    pyftpd_tls.faults.drop_after = size // 2
    endpoint = pyftpd_tls.endpoint()
    fs = FtpRemoteFS(endpoint, state_dir=tmp_path / "state", retries=0)
    with pytest.raises(errors.ConnectionLost):
        await fs.upload(local, "/in/cover.tif")
    await fs.close()
    temp = pyftpd_tls.local("/in/.cover.tif.part")
    there = temp.read_bytes()
    assert 0 < len(there) < size
    # Somebody (a server's bad disk, a second writer) changed the last bytes kept.
    temp.write_bytes(there[:-10] + b"\0" * 10)
    async with FtpRemoteFS(endpoint, state_dir=tmp_path / "state") as fs:
        result = await fs.upload(local, "/in/cover.tif")
    assert result.resumed_from == 0
    assert _sha(pyftpd_tls.local("/in/cover.tif")) == sha


async def test_changed_certificate_sends_nothing(pyftpd_tls: FtpServer, tmp_path: Path) -> None:
    local = tmp_path / "a.xml"
    _random_file(local, 1000)
    wrong = "SHA256:" + ":".join(["AB"] * 32)
    async with FtpRemoteFS(
        pyftpd_tls.endpoint(fingerprints=(wrong,)), state_dir=tmp_path / "state"
    ) as fs:
        with pytest.raises(errors.TlsCertificateMismatch) as caught:
            await fs.upload(local, "/in/a.xml")
    assert isinstance(caught.value, errors.HostKeyMismatch)  # alerts and pauses like SSH
    assert pyftpd_tls.certificate is not None
    assert pyftpd_tls.certificate.fingerprint in caught.value.message
    # The TLS handshake, then nothing: no user name, no password, no file.
    assert pyftpd_tls.faults.commands == ["AUTH"]
    assert not pyftpd_tls.local("/in/a.xml").exists()


async def test_rename_refused_is_said_and_direct_strategy_works(
    pyftpd_tls: FtpServer, tmp_path: Path
) -> None:
    pyftpd_tls.faults.deny_rename = True
    local = tmp_path / "b.xml"
    sha = _random_file(local, 5000)
    async with FtpRemoteFS(pyftpd_tls.endpoint(), state_dir=tmp_path / "state") as fs:
        with pytest.raises(errors.RemotePermissionDenied) as caught:
            await fs.upload(local, "/in/b.xml")
    assert "upload_strategy = 'direct'" in (caught.value.hint or "")
    assert not pyftpd_tls.local("/in/b.xml").exists()  # never a silent fallback
    endpoint = pyftpd_tls.endpoint(upload_strategy="direct", done_marker="{name}.done")
    async with FtpRemoteFS(endpoint, state_dir=tmp_path / "state2") as fs:
        result = await fs.upload(local, "/in/b.xml")
    assert result.strategy == "direct"
    assert _sha(pyftpd_tls.local("/in/b.xml")) == sha
    assert pyftpd_tls.local("/in/b.xml.done").read_text() == f"{sha}  b.xml\n"


async def test_rename_over_an_existing_file_refused_deletes_first_when_replacing(
    pyftpd_tls: FtpServer, tmp_path: Path
) -> None:
    pyftpd_tls.faults.deny_rename_over_existing = True
    local = tmp_path / "g.xml"
    _random_file(local, 3000)
    endpoint = pyftpd_tls.endpoint(overwrite="replace")
    async with FtpRemoteFS(endpoint, state_dir=tmp_path / "state") as fs:
        assert (await fs.upload(local, "/in/g.xml")).strategy == "rename"
        sha2 = _random_file(local, 3000, seed=2)
        assert (await fs.upload(local, "/in/g.xml")).strategy == "delete_rename"
    assert _sha(pyftpd_tls.local("/in/g.xml")) == sha2
    assert _leftovers(pyftpd_tls) == []


async def test_overwrite_policies(pyftpd_tls: FtpServer, tmp_path: Path) -> None:
    local = tmp_path / "c.xml"
    _random_file(local, 4000)
    async with FtpRemoteFS(pyftpd_tls.endpoint(), state_dir=tmp_path / "s1") as fs:
        await fs.upload(local, "/in/c.xml")
        with pytest.raises(errors.RemoteFileExists):
            await fs.upload(local, "/in/c.xml")
    async with FtpRemoteFS(
        pyftpd_tls.endpoint(overwrite="skip_if_identical"), state_dir=tmp_path / "s2"
    ) as fs:
        assert (await fs.upload(local, "/in/c.xml")).skipped
        assert await fs.held_by("/in/c.xml", 4000, _sha(local)) is Verification.READ_BACK
    sha2 = _random_file(local, 4000, seed=9)
    async with FtpRemoteFS(
        pyftpd_tls.endpoint(overwrite="replace"), state_dir=tmp_path / "s3"
    ) as fs:
        assert not (await fs.upload(local, "/in/c.xml")).skipped
    assert _sha(pyftpd_tls.local("/in/c.xml")) == sha2


async def test_intake_listing_stability_download_and_move(
    pyftpd_tls: FtpServer, tmp_path: Path
) -> None:
    out = pyftpd_tls.local("/out")
    (out / "done").mkdir()
    (out / "sales 2026-11.csv").write_bytes(b"isbn,qty\n9781900200011,3\n")
    endpoint = pyftpd_tls.endpoint(
        stable_interval=0.2, post_action="move", processed_folder="/out/done"
    )
    recorded: list[str] = []
    async with FtpRemoteFS(endpoint, state_dir=tmp_path / "state") as fs:
        entries = [e async for e in fs.list("/out", pattern="*.csv")]
        assert [e.name for e in entries] == ["sales 2026-11.csv"]
        kinds = {e.name: k async for e, k in fs.list_kinds("/out")}
        assert kinds == {"sales 2026-11.csv": "file", "done": "folder"}
        stable = await fs.wait_stable(entries[0])
        assert stable is not None

        async def record(result: object) -> None:
            recorded.append("recorded")
            assert (out / "sales 2026-11.csv").exists()  # not moved before the record

        got = await fs.download(
            stable.path,
            tmp_path / "sales.csv",
            expected_size=stable.size,
            post_action=PostAction.MOVE,
            before_post_action=record,
        )
    assert recorded == ["recorded"]
    assert got.post_action == "move:/out/done/sales 2026-11.csv"
    assert (tmp_path / "sales.csv").read_bytes() == b"isbn,qty\n9781900200011,3\n"
    assert (out / "done" / "sales 2026-11.csv").exists()


async def test_growing_file_is_not_stable(pyftpd_tls: FtpServer, tmp_path: Path) -> None:
    path = pyftpd_tls.local("/out/growing.csv")
    path.write_bytes(b"a" * 100)
    async with FtpRemoteFS(
        pyftpd_tls.endpoint(stable_interval=0.5), state_dir=tmp_path / "state"
    ) as fs:
        entry = await fs.stat("/out/growing.csv")
        assert entry is not None

        async def grow() -> None:
            await asyncio.sleep(0.2)
            with path.open("ab") as fh:
                fh.write(b"b" * 100)

        grower = asyncio.create_task(grow())
        assert await fs.wait_stable(entry) is None
        await grower


async def test_passive_mode_uses_the_control_address(pyftpd_tls: FtpServer, tmp_path: Path) -> None:
    """A server behind NAT announces an address the client cannot reach in its PASV reply:
    the data connection goes to the control connection's address instead."""
    assert pyftpd_tls.handler is not None
    pyftpd_tls.handler.masquerade_address = "10.255.255.1"  # a private, unreachable address
    local = tmp_path / "e.xml"
    sha = _random_file(local, 50_000)
    async with FtpRemoteFS(
        pyftpd_tls.endpoint(connect_timeout=5.0, operation_timeout=5.0),
        state_dir=tmp_path / "state",
    ) as fs:
        await fs.upload(local, "/in/e.xml")
        listed = [e.name async for e in fs.list("/in")]
    assert listed == ["e.xml"]
    assert _sha(pyftpd_tls.local("/in/e.xml")) == sha


async def test_partner_test_file(pyftpd_tls: FtpServer, tmp_path: Path) -> None:
    async with FtpRemoteFS(pyftpd_tls.endpoint(), state_dir=tmp_path / "state") as fs:
        sent = await fs.send_test_file()
        assert "UTF8" in await fs.features()
    assert sent.removed and sent.upload.remote_path.startswith("/in/")
    assert "STOR" in pyftpd_tls.faults.commands and "DELE" in pyftpd_tls.faults.commands
    assert os.listdir(pyftpd_tls.root / "in") == []


async def test_plain_ftp_round_trip(pyftpd_plain: FtpServer, tmp_path: Path) -> None:
    local = tmp_path / "d.xml"
    sha = _random_file(local, 70_000)
    async with FtpRemoteFS(pyftpd_plain.endpoint(), state_dir=tmp_path / "state") as fs:
        await fs.makedirs("/in/sub/deeper")
        result = await fs.upload(local, "/in/sub/deeper/d.xml")
        assert (await fs.stat("/in/sub/deeper/d.xml")) is not None
        names = [e.path async for e in fs.walk("/in")]
    assert result.sha256 == sha == _sha(pyftpd_plain.local("/in/sub/deeper/d.xml"))
    assert names == ["/in/sub/deeper/d.xml"]


async def test_connection_budget_caps_connections(pyftpd_tls: FtpServer, tmp_path: Path) -> None:
    from consonance_sftp.adapters.ftp.fs import UploadItem

    items = []
    for i in range(6):
        local = tmp_path / f"f{i}.xml"
        _random_file(local, 2000 + i, seed=i)
        items.append(UploadItem(local_path=local, remote_path=f"/in/f{i}.xml"))
    async with FtpRemoteFS(
        pyftpd_tls.endpoint(max_connections=2, file_connections=4), state_dir=tmp_path / "s"
    ) as fs:
        results = await fs.upload_many(items)
        assert fs.pool.opened <= 2
    assert all(not isinstance(r, Exception) for r in results)
    assert sorted(os.listdir(pyftpd_tls.root / "in")) == [f"f{i}.xml" for i in range(6)]


# --- vsftpd: the strict real server --------------------------------------------------------


async def test_vsftpd_round_trip_with_session_reuse(vsftpd: FtpServer, tmp_path: Path) -> None:
    local = tmp_path / "onix.xml"
    sha = _random_file(local, 1024 * 1024 + 3)
    async with FtpRemoteFS(vsftpd.endpoint(), state_dir=tmp_path / "state") as fs:
        result = await fs.upload(local, "/in/onix.xml")
        entries = [e async for e in fs.list("/in")]  # LIST: vsftpd has no MLSD
        back = await fs.download("/in/onix.xml", tmp_path / "back.xml")
    assert [(e.name, e.size) for e in entries] == [("onix.xml", local.stat().st_size)]
    assert result.sha256 == sha == back.sha256
    assert result.verified_by is Verification.READ_BACK  # vsftpd has no HASH nor XSHA256
    assert _sha(vsftpd.local("/in/onix.xml")) == sha
    assert _leftovers(vsftpd) == []


async def test_vsftpd_interrupted_upload_resumes(vsftpd: FtpServer, tmp_path: Path) -> None:
    """An upload cut off mid-file (the server's session processes killed) continues with REST
    from the bytes vsftpd kept, and the whole file is then verified by hash."""
    size = 24 * 1024 * 1024
    local = tmp_path / "big.pdf"
    sha = _random_file(local, size, 7)
    temp = vsftpd.local("/in/.big.pdf.part")
    endpoint = vsftpd.endpoint()
    fs = FtpRemoteFS(endpoint, state_dir=tmp_path / "state", retries=0)
    task = asyncio.create_task(fs.upload(local, "/in/big.pdf"))
    while not (temp.exists() and temp.stat().st_size > size // 4):
        await asyncio.sleep(0.005)
        assert not task.done(), "the upload finished before it could be interrupted"
    assert vsftpd.drop_sessions() > 0
    with pytest.raises(errors.TransportError):
        await task
    await fs.close()
    kept = temp.stat().st_size
    assert 0 < kept < size
    async with FtpRemoteFS(endpoint, state_dir=tmp_path / "state") as fs:
        result = await fs.upload(local, "/in/big.pdf")
    assert result.resumed_from > 0
    assert result.verified_by is Verification.READ_BACK
    assert _sha(vsftpd.local("/in/big.pdf")) == sha
    assert _leftovers(vsftpd) == []


async def test_vsftpd_changed_certificate_refused(vsftpd: FtpServer, tmp_path: Path) -> None:
    local = tmp_path / "x.xml"
    _random_file(local, 100)
    other = "SHA256:" + ":".join(["01"] * 32)
    async with FtpRemoteFS(
        vsftpd.endpoint(fingerprints=(other,)), state_dir=tmp_path / "state"
    ) as fs:
        with pytest.raises(errors.TlsCertificateMismatch):
            await fs.upload(local, "/in/x.xml")
    assert os.listdir(vsftpd.root / "in") == []


async def test_vsftpd_interrupted_download_resumes(vsftpd: FtpServer, tmp_path: Path) -> None:
    """A download cut off mid-file continues with REST from the staged bytes; the local copy
    appears under its name only once whole, and matches the server's file."""
    size = 24 * 1024 * 1024
    remote = vsftpd.local("/out/report.zip")
    sha = _random_file(remote, size, 8)
    target = tmp_path / "inbox" / "report.zip"
    target.parent.mkdir()
    staging = target.with_name(".report.zip.partial")
    endpoint = vsftpd.endpoint()
    fs = FtpRemoteFS(endpoint, state_dir=tmp_path / "state", retries=0)
    task = asyncio.create_task(fs.download("/out/report.zip", target, expected_size=size))
    while not (staging.exists() and staging.stat().st_size > size // 4):
        await asyncio.sleep(0.005)
        assert not task.done(), "the download finished before it could be interrupted"
    assert vsftpd.drop_sessions() > 0
    with pytest.raises(errors.TransportError):
        await task
    await fs.close()
    assert not target.exists()  # never a partial file under the final name
    assert 0 < staging.stat().st_size < size
    async with FtpRemoteFS(endpoint, state_dir=tmp_path / "state") as fs:
        result = await fs.download("/out/report.zip", target, expected_size=size)
    assert result.resumed_from > 0
    assert result.sha256 == sha == _sha(target)
    assert not staging.exists()


async def test_a_known_sha256_is_checked_while_sending(
    pyftpd_tls: FtpServer, tmp_path: Path
) -> None:
    """A planned file's SHA-256 is checked on the bytes as they are sent (one read of the
    file): a file that changed after it was hashed never gets its final name."""
    local = tmp_path / "planned.bin"
    sha = _random_file(local, 300_000)
    async with FtpRemoteFS(pyftpd_tls.endpoint(), state_dir=tmp_path / "state") as fs:
        result = await fs.upload(local, "/in/planned.bin", sha256=sha)
        assert result.sha256 == sha and _sha(pyftpd_tls.local("/in/planned.bin")) == sha
        local.write_bytes(os.urandom(300_000))  # changed since it was hashed
        with pytest.raises(errors.IntegrityError, match="changed since it was hashed"):
            await fs.upload(local, "/in/changed.bin", sha256=sha)
        downloaded = await fs.download("/in/planned.bin", tmp_path / "back.bin")
    assert downloaded.sha256 == sha  # taken as the bytes arrived
    assert sorted(os.listdir(pyftpd_tls.root / "in")) == ["planned.bin"]


# --- bandwidth_limit ---------------------------------------------------------------------------

_RATE = 1024 * 1024  # bytes per second


def _least_seconds(nbytes: int) -> float:
    """What ``nbytes`` at ``_RATE`` must take at least: the bucket's quarter-second burst is
    free, and 20 % is allowed for timer slack (a lower bound only: this machine is shared)."""
    return 0.8 * (nbytes - _RATE / 4) / _RATE


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pyftpdlib", "vsftpd"])
async def test_bandwidth_limit_holds_uploads_and_downloads(
    kind: str, pyftpd_tls: FtpServer, tmp_path: Path
) -> None:
    """3 MiB at 1 MiB/s takes about 3 s each way (about 0.05 s unlimited here), and two files
    at once share the partner's one limit; every byte arrives."""
    server = pyftpd_tls if kind == "pyftpdlib" else start_vsftpd(implicit=False)
    try:
        endpoint = server.endpoint(bandwidth_limit=_RATE, checksum="size")
        size = 3 * 1024 * 1024
        local = tmp_path / "interior.pdf"
        sha = _random_file(local, size, seed=5)
        async with FtpRemoteFS(endpoint, state_dir=tmp_path / "state") as fs:
            started = time.monotonic()
            result = await fs.upload(local, "/in/interior.pdf")
            up = time.monotonic() - started
            started = time.monotonic()
            back = await fs.download("/in/interior.pdf", tmp_path / "back.pdf")
            down = time.monotonic() - started
            halves = [tmp_path / "a.bin", tmp_path / "b.bin"]
            for n, half in enumerate(halves):
                _random_file(half, size // 2, seed=7 + n)
            started = time.monotonic()
            both = await fs.upload_many(
                [
                    UploadItem(local_path=h, remote_path=f"/in/{h.name}") for h in halves
                ]  # two connections at once
            )
            together = time.monotonic() - started
        assert result.sha256 == sha == _sha(server.local("/in/interior.pdf"))
        assert back.sha256 == sha == _sha(tmp_path / "back.pdf")
        for half, sent in zip(halves, both, strict=True):
            assert not isinstance(sent, errors.TransportError), sent
            assert _sha(server.local(f"/in/{half.name}")) == _sha(half)
        least = _least_seconds(size)
        print(f"{kind}: up {up:.2f} s, down {down:.2f} s, two at once {together:.2f} s")
        assert up >= least, f"upload of {size} bytes took {up:.2f} s at {_RATE} B/s"
        assert down >= least, f"download of {size} bytes took {down:.2f} s at {_RATE} B/s"
        assert together >= least, f"two uploads at once took {together:.2f} s: not shared"
    finally:
        if server is not pyftpd_tls:
            server.stop()


async def test_unlimited_transfer_is_fast_here(pyftpd_tls: FtpServer, tmp_path: Path) -> None:
    """The control for the test above: the same 3 MiB without a limit is far quicker than
    the limited lower bound, so that bound measures the limit, not this machine."""
    local = tmp_path / "interior.pdf"
    _random_file(local, 3 * 1024 * 1024, seed=5)
    async with FtpRemoteFS(
        pyftpd_tls.endpoint(checksum="size"), state_dir=tmp_path / "state"
    ) as fs:
        started = time.monotonic()
        await fs.upload(local, "/in/interior.pdf")
        took = time.monotonic() - started
    assert took < _least_seconds(3 * 1024 * 1024), f"unlimited upload took {took:.2f} s"
