"""Remote SHA-256 of a file: the ``check-file`` extension, a hashing command, or a read-back.

SFTP itself has no checksum. A few servers answer the ``check-file-name`` extension; shell
accounts can run ``sha256sum``; anything else can only be verified by reading the file back.
A chroot SFTP-only account (most managed partners) offers neither of the first two.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import posixpath
import queue
import re
import shlex
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import asyncssh
from asyncssh.constants import FXP_EXTENDED_REPLY, FXP_STATUS
from asyncssh.packet import SSHPacket, String, UInt32, UInt64

from consonance_sftp.adapters.sftp import read_pipeline
from consonance_sftp.errors import IntegrityError

_HEX64 = re.compile(r"\b([0-9a-fA-F]{64})\b")
# Hash commands a server may answer over exec, and their digests. rclone's SFTP server answers
# md5sum and sha1sum but not sha256sum: those still prove content, with a local digest of the
# same kind to compare against.
COMMAND_ALGORITHMS = {"sha256sum": "sha256", "sha1sum": "sha1", "md5sum": "md5"}
# Commands that print a file's SHA-256 in hex first (``openssl dgst -r``: "HEX *PATH"), in the
# probe's order of preference; the probe keeps openssl's where it is faster (SHA-NI).
SHA256_COMMANDS = ("sha256sum", "openssl dgst -sha256 -r")
_HEX = {"sha256": 64, "sha1": 40, "md5": 32}
_READ_CHUNK = 8 * 1024 * 1024


# Bytes per read of a local file being hashed: into one reused buffer (a fresh 4-8 MiB
# ``bytes`` per read is a fresh mapping for the kernel to fault in, page by page: profiled, a
# third of the hashing thread's CPU), small enough to stay in cache for a second digest.
_HASH_CHUNK = 1024 * 1024


def sha256_file(path: Path, chunk: int = _HASH_CHUNK) -> tuple[int, str]:
    """(size, hex SHA-256) of a local file; run it in a thread."""
    digest = hashlib.sha256()
    size = 0
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
            size += n
    return size, digest.hexdigest()


class FileHasher:
    """One sequential read of a local file for its SHA-256 and the SHA-256 of each segment.

    An upload that keeps a resume journal needs both: the file's hash (the ledger's, and what
    the server's copy is verified against) and each segment's (what a resume checks the
    server's bytes against). Hashing them in two reads cost 2.2 CPU-s/GiB on top of the
    transfer, in one read from one buffer 1.3 (bench/download_profile.py --direction up).
    ``run`` (in a thread) reads the file once; ``segment`` (from any other thread) returns a
    segment's hash once the read has passed it, and hashes the range itself when the read
    cannot give it (another segment size, a range past where the file ended, a failed read).
    """

    def __init__(self, path: Path, segment_size: int | None = None) -> None:
        if segment_size is not None and segment_size <= 0:
            raise ValueError(f"segment_size must be positive, got {segment_size}")
        self.path = path
        self.segment_size = segment_size
        self._segments: dict[int, tuple[int, str]] = {}  # index -> (bytes hashed, SHA-256)
        self._ended = False
        self._result: tuple[int, str] | None = None
        self._cond = threading.Condition()

    def run(self) -> tuple[int, str]:
        """(size, hex SHA-256) of the file, noting each segment's hash on the way."""
        try:
            result = self._run()
            self._result = result
            return result
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _run(self) -> tuple[int, str]:
        whole = hashlib.sha256()
        seg_size = self.segment_size
        part = hashlib.sha256() if seg_size else None
        index = part_len = size = 0
        buf = bytearray(_HASH_CHUNK)
        view = memoryview(buf)
        with open(self.path, "rb", buffering=0) as fh:
            while True:
                want = _HASH_CHUNK if seg_size is None else min(_HASH_CHUNK, seg_size - part_len)
                n = fh.readinto(view[:want])
                if not n:
                    break
                block = view[:n]
                whole.update(block)
                size += n
                if part is not None and seg_size is not None:
                    part.update(block)
                    part_len += n
                    if part_len == seg_size:
                        self._note(index, part_len, part.hexdigest())
                        index, part_len, part = index + 1, 0, hashlib.sha256()
        if part is not None and (part_len or index == 0):
            self._note(index, part_len, part.hexdigest())
        return size, whole.hexdigest()

    def wait(self) -> tuple[int, str] | None:
        """What ``run`` returned, once it has; None when it failed (blocks until it ended)."""
        with self._cond:
            self._cond.wait_for(lambda: self._ended)
        return self._result

    def _note(self, index: int, length: int, sha: str) -> None:
        with self._cond:
            self._segments[index] = (length, sha)
            self._cond.notify_all()

    def segment(self, index: int, offset: int, length: int) -> str:
        """SHA-256 of ``length`` bytes at ``offset`` (segment ``index``); blocks until known."""
        seg_size = self.segment_size
        if seg_size is not None and offset == index * seg_size:
            with self._cond:
                self._cond.wait_for(lambda: index in self._segments or self._ended)
                known = self._segments.get(index)
            # The read's segment is the caller's only when it has the caller's length (a file
            # that changed size is hashed again from the file; its whole-file check fails).
            if known is not None and known[0] == length:
                return known[1]
        return range_sha256(self.path, offset, length)


def range_sha256(path: Path, offset: int, length: int) -> str:
    """Hex SHA-256 of ``length`` bytes of a local file from ``offset`` (fewer where it ends)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return fd_range_sha256(fd, offset, length)
    finally:
        os.close(fd)


def fd_range_sha256(fd: int, offset: int, length: int) -> str:
    """``range_sha256`` of an open file: read into one reused buffer (a fresh multi-MiB
    ``bytes`` per read is a fresh mapping for the kernel to fault in)."""
    digest = hashlib.sha256()
    buf = bytearray(min(_HASH_CHUNK, max(1, length)))
    view = memoryview(buf)
    end = offset + length
    while offset < end:
        n = os.preadv(fd, [view[: min(len(buf), end - offset)]], offset)
        if not n:
            break
        digest.update(view[:n])
        offset += n
    return digest.hexdigest()


async def check_file_sha256(
    sftp: asyncssh.SFTPClient, path: str, offset: int = 0, length: int = 0
) -> str:
    """SHA-256 by the ``check-file-name`` extension (draft-ietf-secsh-filexfer-extensions),
    of the whole file or of ``length`` bytes from ``offset`` (0: to the end).

    Raises ``asyncssh.SFTPOpUnsupported`` when the server does not offer it. asyncssh has no
    call for this extension (nor a reply type registered for it), so the request is sent and
    its reply parsed here, through the session's request plumbing.
    """
    handler = sftp._handler  # no public API for extended requests
    waiter: asyncio.Future[tuple[int, SSHPacket]] = handler._loop.create_future()
    handler._send_request(
        b"check-file-name",
        [String(path.encode()), String(b"sha256"), UInt64(offset), UInt64(length), UInt32(0)],
        waiter,
    )
    resptype, reply = await waiter
    if resptype == FXP_STATUS:
        handler._process_status(reply)  # raises the server's error
        raise asyncssh.SFTPBadMessage("check-file answered OK without a hash")
    if resptype != FXP_EXTENDED_REPLY:
        raise asyncssh.SFTPBadMessage(f"unexpected check-file reply type {resptype}")
    algorithm = reply.get_string()
    if algorithm != b"sha256":
        raise asyncssh.SFTPOpUnsupported(f"check-file answered with {algorithm.decode()!r}")
    return reply.get_remaining_payload().hex()


async def shell_sha256(
    conn: asyncssh.SSHClientConnection, command: str, path: str, *, limit: float
) -> str:
    """SHA-256 from running ``command PATH`` on the server (``sha256sum`` prints hex first)."""
    result = await conn.run(f"{command} {shlex.quote(path)}", check=False, timeout=limit)
    stdout = result.stdout if isinstance(result.stdout, str) else (result.stdout or b"").decode()
    match = _HEX64.search(stdout or "")
    if result.exit_status != 0 or match is None:
        stderr = result.stderr if isinstance(result.stderr, str) else ""
        raise asyncssh.SFTPOpUnsupported(
            f"{command!r} failed (exit {result.exit_status}): {stderr.strip()[:200]}"
        )
    return match.group(1).lower()


def command_algorithm(command: str) -> str:
    """The digest a hashing command prints (sha256 for a command we do not know)."""
    program = command.strip().split()[0].rsplit("/", 1)[-1] if command.strip() else ""
    return COMMAND_ALGORITHMS.get(program, "sha256")


async def shell_digest(
    conn: asyncssh.SSHClientConnection, command: str, path: str, *, limit: float
) -> str:
    """The hex digest ``command PATH`` prints, of the length its algorithm gives."""
    width = _HEX[command_algorithm(command)]
    # rclone finds "x" and "/x" but not "./x": the path as plain as it can be.
    path = posixpath.normpath(path)
    result = await conn.run(f"{command} {shlex.quote(path)}", check=False, timeout=limit)
    stdout = result.stdout if isinstance(result.stdout, str) else (result.stdout or b"").decode()
    match = re.search(rf"\b([0-9a-fA-F]{{{width}}})\b", stdout or "")
    if result.exit_status not in (0, None) or match is None:
        stderr = result.stderr if isinstance(result.stderr, str) else ""
        raise asyncssh.SFTPOpUnsupported(
            f"{command!r} failed (exit {result.exit_status}): {stderr.strip()[:200]}"
        )
    return match.group(1).lower()


def file_digest(path: Path, algorithm: str, chunk: int = _HASH_CHUNK) -> str:
    """Hex digest of a local file by ``algorithm``; run it in a thread."""
    digest = hashlib.new(algorithm, usedforsecurity=algorithm == "sha256")
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


async def read_back_sha256(
    sftp: asyncssh.SFTPClient, path: str, *, block_size: int, max_requests: int
) -> tuple[int, str]:
    """(size, SHA-256) by downloading the file again, pipelined, without storing it.

    A plain asyncssh session reads through ``read_pipeline`` (requests in file order from
    callbacks, answers hashed as they come, in order) up to the size the open handle reports,
    then once more to see the end; anything else (the bandwidth limiter's wrapper) reads
    through asyncssh's file API (a task per block). Reading back 256 MiB from OpenSSH on
    loopback (what ``auto`` does after every upload to a server without check-file or a
    shell): 2.56-2.85 -> 1.65-1.95 CPU-s/GiB, 0.98-1.21 -> 0.66-0.85 s.
    """
    async with sftp.open(
        path, "rb", block_size=block_size, max_requests=max_requests, encoding=None
    ) as fh:
        digest = hashlib.sha256()
        size = 0
        step = _READ_CHUNK
        if read_pipeline.fits(sftp, fh):
            size = await _read_back_lean(sftp, fh, path, digest, block_size, max_requests)
            # What is left is the end of the file (one request), unless it grew meanwhile:
            # an 8 MiB call would send a call's worth of requests past the end.
            step = block_size
        while True:  # the rest (all of it on the generic path): until the server says EOF
            chunk = await fh.read(step, size)
            if not chunk:
                break
            assert isinstance(chunk, bytes)
            digest.update(chunk)
            size += len(chunk)
            await asyncio.sleep(0)
    return size, digest.hexdigest()


class _Whole:
    outstanding = 0


async def _read_back_lean(
    sftp: asyncssh.SFTPClient,
    fh: asyncssh.SFTPClientFile,
    path: str,
    digest: hashlib._Hash,
    block_size: int,
    max_requests: int,
) -> int:
    """Hash the bytes ``fh`` holds up to its size now, in order; the count hashed."""
    size = (await fh.stat()).size or 0
    whole = _Whole()
    state = {"next": 0}
    early: dict[int, bytes | memoryview] = {}  # answers ahead of the next offset to hash

    def blocks() -> Iterator[tuple[_Whole, int, int]]:
        for offset in range(0, size, block_size):
            yield whole, offset, min(block_size, size - offset)

    def written(offset: int, data: bytes | memoryview) -> None:
        if offset != state["next"]:
            early[offset] = data
            return
        digest.update(data)
        state["next"] += len(data)
        while (more := early.pop(state["next"], None)) is not None:
            digest.update(more)
            state["next"] += len(more)

    def block_done(seg: _Whole, nbytes: int) -> None:
        seg.outstanding -= 1

    try:
        await read_pipeline.read_blocks(
            sftp,
            fh,
            None,
            blocks(),
            max_requests,
            block_done,
            remote_path=path,
            size=size,
            written=written,
        )
    except IntegrityError:
        # Shorter than it said (still being cut?): hash from where the bytes stopped in order.
        early.clear()
    return state["next"]


async def read_back_range_sha256(
    sftp: asyncssh.SFTPClient,
    path: str,
    offset: int,
    length: int,
    *,
    block_size: int,
    max_requests: int,
) -> str | None:
    """SHA-256 of ``length`` bytes from ``offset`` read back, pipelined; None when the file
    ends before them."""
    digest = hashlib.sha256()
    got = 0
    async with sftp.open(
        path, "rb", block_size=block_size, max_requests=max_requests, encoding=None
    ) as fh:
        while got < length:
            chunk = await fh.read(min(_READ_CHUNK, length - got), offset + got)
            if not chunk:
                return None
            assert isinstance(chunk, bytes)
            digest.update(chunk)
            got += len(chunk)
    return digest.hexdigest()


def read_and_sha256(path: Path, limit: int | None = None) -> tuple[bytes, str]:
    """A small local file's bytes and their SHA-256, in one read; run it in a thread. With
    ``limit``, at most ``limit + 1`` bytes are read (more than ``limit``: the file grew)."""
    with open(path, "rb") as fh:
        data = fh.read() if limit is None else fh.read(limit + 1)
    return data, hashlib.sha256(data).hexdigest()


def read_small_files(paths: Sequence[Path], largest: int) -> list[tuple[bytes, str] | None]:
    """``read_and_sha256`` of each file of at most ``largest`` bytes, in one trip to a thread;
    None for a larger file or one that cannot be read (its upload reads it again, and reports
    the error in its own words)."""
    out: list[tuple[bytes, str] | None] = []
    for path in paths:
        try:
            got = None if os.stat(path).st_size > largest else read_and_sha256(path, largest)
        except OSError:
            got = None
        out.append(None if got is None or len(got[0]) > largest else got)  # it may have grown
    return out


_STOP = object()
_DONE = object()


class InOrderSha256:
    """SHA-256 of a file being downloaded, taken from the bytes as they are written.

    The event loop calls ``written(offset, data)`` after each ``pwrite`` of a download; a
    worker thread (``run``) hashes the file in order. Bytes that arrive in order (one session
    reading in file order: the usual case) are hashed from memory, as they were written, with
    no second read of the file; bytes written beyond a gap (the segments of other sessions, an
    earlier attempt's segments named by ``on_disk``) are remembered as ranges and read back
    from the file once the gap is filled. Never more than ``memory`` bytes wait for the thread
    in memory: past that, ranges are read back from the file instead (page cache).

    ``result`` is the digest once ``finish`` was called after every byte was written, else
    None (stopped, a byte written twice, a hole): the caller then hashes the file itself.
    Profiled on a loopback download: the file read-back cost 0.13-0.19 CPU-s per GiB on top of
    the 0.54 of the hash itself (bench/download_profile.py).
    """

    def __init__(self, path: Path, size: int, *, memory: int = 32 * 1024 * 1024) -> None:
        self._path = path
        self._size = size
        self._memory = memory
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        # Event loop only: the next offset to hand over, ranges written past it (start -> end
        # and end -> start), bytes handed over in memory.
        self._frontier = 0
        self._starts: dict[int, int] = {}
        self._ends: dict[int, int] = {}
        self._sent = 0
        self._broken = False
        # Thread only: bytes of memory hashed, bytes hashed in all.
        self._taken = 0
        self._hashed = 0

    def on_disk(self, start: int, end: int) -> None:
        """Bytes ``start..end`` are in the file already (a resumed download's segments)."""
        self._range(start, end)

    def written(self, offset: int, data: bytes | memoryview) -> None:
        """``data`` was just written at ``offset`` (event-loop thread)."""
        n = len(data)
        if offset != self._frontier or self._sent - self._taken >= self._memory:
            self._range(offset, offset + n)
            return
        self._queue.put(data)
        self._sent += n
        self._frontier += n
        self._advance()

    def finish(self) -> None:
        """Every byte was written: the thread hashes what is left and ends."""
        self._queue.put(_DONE if self._frontier == self._size and not self._broken else _STOP)

    def stop(self) -> None:
        """End the thread without a digest (the download failed or was cancelled)."""
        self._queue.put(_STOP)

    def start(self) -> asyncio.Future[str | None]:
        """Run ``run`` in a thread of its own; its result as a future of the running loop.

        Not in the loop's default executor: a hash waits for its download for as long as the
        download lasts, and several at once must not take the threads that the downloads'
        own fsyncs need.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str | None] = loop.create_future()

        def settle(result: str | None, exc: BaseException | None) -> None:
            if future.done():
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)

        def body() -> None:
            result, error = None, None
            try:
                result = self.run()
            except BaseException as exc:  # handed to the awaiting download
                error = exc
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=body, name="download-sha256", daemon=True).start()
        return future

    def run(self) -> str | None:
        """The hashing thread: hex SHA-256 of the file, or None (see the class)."""
        digest = hashlib.sha256()
        buf = bytearray(1024 * 1024)
        view = memoryview(buf)
        fh = None
        try:
            while True:
                item = self._queue.get()
                if item is _DONE:
                    return digest.hexdigest() if self._hashed == self._size else None
                if item is _STOP:
                    return None
                if isinstance(item, tuple):
                    if fh is None:
                        fh = open(self._path, "rb", buffering=0)  # noqa: SIM115 (finally)
                    pos, end = item
                    fh.seek(pos)
                    while pos < end:
                        got = fh.readinto(view[: min(len(buf), end - pos)])
                        if not got:
                            return None  # the file is shorter than what was written: no digest
                        digest.update(view[:got])
                        pos += got
                        self._hashed += got
                else:
                    data: bytes | memoryview = item  # type: ignore[assignment]
                    digest.update(data)
                    self._hashed += len(data)
                    self._taken += len(data)
        finally:
            if fh is not None:
                fh.close()

    def _range(self, start: int, end: int) -> None:
        if start < self._frontier or start in self._starts or end in self._ends:
            self._broken = True  # bytes written twice: no digest, the caller reads the file
            return
        if start == self._frontier:
            self._queue.put((start, end))
            self._frontier = end
            self._advance()
            return
        before = self._ends.pop(start, None)
        if before is not None:  # joins the range that ends where this one starts
            del self._starts[before]
            start = before
        after = self._starts.pop(end, None)
        if after is not None:  # and the one that starts where it ends
            del self._ends[after]
            end = after
        self._starts[start] = end
        self._ends[end] = start

    def _advance(self) -> None:
        while (end := self._starts.pop(self._frontier, None)) is not None:
            del self._ends[end]
            self._queue.put((self._frontier, end))
            self._frontier = end
