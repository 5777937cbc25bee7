"""``read_pipeline.read_blocks`` against a real OpenSSH server: the order and the batching of
its requests, and the bytes it writes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from consonance_sftp.adapters.sftp import checksums, read_pipeline
from consonance_sftp.adapters.sftp.endpoint import SftpEndpoint
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS

KiB = 1024
BLOCK = 64 * KiB
COUNT = 64


@dataclass
class Seg:
    outstanding: int = 0


async def test_requests_go_out_in_file_order_topped_up_by_the_quarter(
    openssh_endpoint: Callable[..., SftpEndpoint],
    openssh_dir: Callable[[str], tuple[Path, str]],
    tmp_path: Path,
) -> None:
    local_dir, remote_dir = openssh_dir("shell")
    data = os.urandom(BLOCK * COUNT)
    (local_dir / "f.bin").write_bytes(data)
    seg = Seg()
    events: list[str] = []  # "R" a read sent, "A" an answer written
    offsets: list[int] = []

    def blocks() -> Iterator[tuple[Seg, int, int]]:
        for i in range(COUNT):
            yield seg, i * BLOCK, BLOCK

    def done(s: Seg, nbytes: int) -> None:
        assert nbytes == BLOCK
        s.outstanding -= 1
        events.append("A")

    writes: list[int] = []  # requests per write to the channel
    fs = SftpRemoteFS(openssh_endpoint("shell"), state_dir=tmp_path / "state")
    async with fs, fs.pool.lease() as pc:
        handler: Any = pc.sftp._handler
        request, send = read_pipeline._read_request, read_pipeline._send

        def recording(h: Any, handle: bytes, offset: int, length: int, waiter: Any) -> bytes:
            events.append("R")
            offsets.append(offset)
            wire = request(h, handle, offset, length, waiter)
            # What goes out is an SFTP read of that range, as asyncssh would frame it.
            assert wire[4] == asyncssh.constants.FXP_READ
            assert wire[-12:] == offset.to_bytes(8, "big") + length.to_bytes(4, "big")
            assert int.from_bytes(wire[:4], "big") == len(wire) - 4
            return wire

        def batched(h: Any, wire: list[bytes]) -> None:
            writes.append(len(wire))
            send(h, wire)

        read_pipeline._read_request = recording  # type: ignore[assignment]
        read_pipeline._send = batched  # type: ignore[assignment]
        fd = os.open(tmp_path / "out.bin", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            async with await pc.sftp.open(
                f"{remote_dir}/f.bin", "rb", encoding=None, block_size=0
            ) as fh:
                assert read_pipeline.fits(pc.sftp, fh)
                await read_pipeline.read_blocks(
                    pc.sftp, fh, fd, blocks(), 16, done, remote_path="f.bin", size=len(data)
                )
        finally:
            read_pipeline._read_request = request  # type: ignore[assignment]
            read_pipeline._send = send  # type: ignore[assignment]
            os.close(fd)
        assert not handler._requests  # every request answered, none left registered
    assert (tmp_path / "out.bin").read_bytes() == data
    assert seg.outstanding == 0
    assert offsets == [i * BLOCK for i in range(COUNT)]  # strictly in file order
    # 16 requests first, then 4 more each time 4 answers are in (not one per answer).
    runs = "".join(events).split("A")
    sent = [len(r) for r in runs if r]
    assert sent[0] == 16
    assert set(sent[1:]) == {4}, sent
    assert len(sent) == 1 + (COUNT - 16) // 4
    # Each top-up's requests leave in one write to the channel (one SSH packet).
    assert writes == sent


async def test_a_download_over_three_sessions_hashes_what_it_wrote(
    openssh_endpoint: Callable[..., SftpEndpoint],
    openssh_dir: Callable[[str], tuple[Path, str]],
    tmp_path: Path,
) -> None:
    # Segments arrive from three sessions at once: the in-order hash takes the first session's
    # bytes from memory and reads the others' back from the staging file once they are next.
    local_dir, remote_dir = openssh_dir("shell")
    data = os.urandom(5 * 1024 * KiB + 777)
    (local_dir / "f.bin").write_bytes(data)
    ep = openssh_endpoint(
        "shell",
        segment_connections=3,
        segment_size=1024 * KiB,
        segmented_threshold=0,
        block_size=64 * KiB,
        max_requests=8,
    )
    async with SftpRemoteFS(ep, state_dir=tmp_path / "state") as fs:
        result = await fs.download(f"{remote_dir}/f.bin", tmp_path / "got.bin")
    assert (tmp_path / "got.bin").read_bytes() == data
    assert result.sha256 == hashlib.sha256(data).hexdigest()


async def test_downloads_finish_when_every_default_executor_thread_is_taken(
    openssh_endpoint: Callable[..., SftpEndpoint],
    openssh_dir: Callable[[str], tuple[Path, str]],
    tmp_path: Path,
) -> None:
    # The in-order hash waits for its download for as long as it lasts: in the loop's default
    # executor, a few downloads at once would take every thread their own fsyncs need.
    local_dir, remote_dir = openssh_dir("shell")
    data = os.urandom(2 * 1024 * KiB + 99)
    (local_dir / "f.bin").write_bytes(data)
    loop = asyncio.get_running_loop()
    narrow = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    loop.set_default_executor(narrow)
    try:
        async with SftpRemoteFS(
            openssh_endpoint("shell", max_requests=8), state_dir=tmp_path / "state"
        ) as fs:
            names = [tmp_path / f"got{i}.bin" for i in range(3)]
            downloads = (fs.download(f"{remote_dir}/f.bin", name) for name in names)
            results = await asyncio.wait_for(asyncio.gather(*downloads), 20)
    finally:
        narrow.shutdown(wait=False)
    for i, result in enumerate(results):
        assert (tmp_path / f"got{i}.bin").read_bytes() == data
        assert result.sha256 == hashlib.sha256(data).hexdigest()


async def test_a_read_back_hashes_through_the_pipeline_whatever_the_size(
    openssh_endpoint: Callable[..., SftpEndpoint],
    openssh_dir: Callable[[str], tuple[Path, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local_dir, remote_dir = openssh_dir("shell")
    calls: list[int] = []
    lean = read_pipeline.read_blocks

    async def counted(*args: Any, **kwargs: Any) -> None:
        calls.append(kwargs["size"])
        await lean(*args, **kwargs)

    monkeypatch.setattr(read_pipeline, "read_blocks", counted)
    sizes = [0, 1, BLOCK - 1, BLOCK, 7 * BLOCK + 5]
    fs = SftpRemoteFS(openssh_endpoint("shell"), state_dir=tmp_path / "state")
    async with fs, fs.pool.lease() as pc:
        for size in sizes:
            data = os.urandom(size)
            (local_dir / f"r{size}.bin").write_bytes(data)
            got = await checksums.read_back_sha256(
                pc.sftp, f"{remote_dir}/r{size}.bin", block_size=BLOCK, max_requests=4
            )
            assert got == (size, hashlib.sha256(data).hexdigest())
    assert calls == sizes  # every one read through read_pipeline, to the size it had
