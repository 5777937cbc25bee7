"""Segmented parallel transfer: one large file moved as byte ranges over several SFTP sessions.

A single SFTP stream is capped by the SSH channel window divided by the round-trip time (2 MiB
per 100 ms is 20 MiB/s, whatever the bandwidth). Splitting the file into segments and sending
them over several connections at once multiplies that cap; on loopback it keeps both the
client and the server busy. Each session keeps ``max_requests`` block writes (or reads) in
flight, and the pipeline runs across segment boundaries, so a session never drains between
segments.

Resume: a segmented upload leaves holes, so the remote size says nothing about what arrived.
``SegmentJournal`` is a small local file that records each finished segment with the SHA-256
of its bytes (fsynced per mark); a new call with the same journal sends only the missing
segments. The journal only says what was sent, not what the server kept (a server killed
mid-write may keep zeros, or empty the file): the caller checks the recorded hashes against
the server first and keeps only the segments that match (``SegmentJournal.keep``). The journal
is keyed by the source's identity (size, mtime, checksum...) and the segment size, and starts
empty when either changed.

Servers differ in how a file may be written (the *write model*): ``put_segmented`` needs a
temporary file that can be opened again for writing and written at any offset; ``put_stream``
opens it once and writes strictly in order, for servers that allow nothing else (ProFTPD with
``AllowOverwrite off``, rclone without a write cache).

The remote file is opened without ``O_TRUNC`` (``FXF_WRITE | FXF_CREAT``) by every session, so
no session ever wipes what another wrote; only the single creating open of a fresh start
(nothing in the journal) truncates, so a stale, longer temp file cannot leave its tail. The
caller owns the temporary name, verification and the final rename; asyncssh errors propagate
unchanged (the first one, not an ExceptionGroup) for the caller to translate.

The connection-level speed-ups (one socket write per event-loop turn, no empty ignore
packets, larger receive packets) are in ``packets.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import asyncssh

from consonance_sftp.adapters.sftp import read_pipeline, write_pipeline
from consonance_sftp.adapters.sftp.checksums import fd_range_sha256
from consonance_sftp.adapters.sftp.translate import LOCAL_DISK_FULL, local_disk_full
from consonance_sftp.config.transfer import TransferSettings
from consonance_sftp.errors import IntegrityError

# OpenSSH's sftp-server caps one message at 256 KiB; 261,120 bytes of data is the largest write
# that fits with its header, and a larger one makes the server drop the connection.
MAX_OPENSSH_BLOCK = 261_120

_JOURNAL_VERSION = 1  # segment lines "INDEX" (old) or "INDEX SHA256" both read

Progress = Callable[[int], None]
Written = Callable[[int, bytes | memoryview], None]  # (offset, bytes) just written to the file
# (index, offset, length) -> SHA-256 of that segment of the local file (checksums.FileHasher)
SegmentHash = Callable[[int, int, int], str]


class SegmentJournal:
    """Durable local record of the finished segments of one transfer.

    The file holds a JSON header line (version, file size, segment size, source id) and one line
    per finished segment: its index and, for uploads, the SHA-256 of its bytes. A header that
    does not match the arguments (the source changed, or another segment size is used) or a
    corrupt file starts a fresh, empty journal. A torn last line (a crash in the middle of a
    mark) is ignored: that segment is simply sent again.
    """

    def __init__(self, path: Path, *, file_size: int, segment_size: int, source_id: str) -> None:
        if segment_size <= 0:
            raise ValueError(f"segment_size must be positive, got {segment_size}")
        self.path = path
        self.file_size = file_size
        self.segment_size = segment_size
        self.source_id = source_id
        self._header = {
            "version": _JOURNAL_VERSION,
            "file_size": file_size,
            "segment_size": segment_size,
            "source_id": source_id,
        }
        self._done: dict[int, str | None] = {}
        if not self._load():
            self._reset()

    @property
    def segment_count(self) -> int:
        return segment_count(self.file_size, self.segment_size)

    def done(self) -> set[int]:
        """Indexes of the segments recorded as finished (a copy)."""
        return set(self._done)

    def hashes(self) -> dict[int, str | None]:
        """Finished segment -> SHA-256 of its bytes (None when not recorded: a download, or a
        journal written before hashes were)."""
        return dict(self._done)

    def mark(self, index: int) -> None:
        """Record segment ``index`` as finished; returns once the record is on disk."""
        self._append(index, None)

    def mark_hashed(self, index: int, sha256: str) -> None:
        """Record segment ``index`` as finished with the SHA-256 of its bytes (uploads: what a
        resume checks the server's copy against)."""
        self._append(index, sha256)

    def _append(self, index: int, sha256: str | None) -> None:
        if not 0 <= index < self.segment_count:
            raise ValueError(f"segment {index} out of range 0..{self.segment_count - 1}")
        if index in self._done:
            return
        line = f"{index} {sha256}\n" if sha256 else f"{index}\n"
        with open(self.path, "ab") as fh:
            fh.write(line.encode())
            fh.flush()
            os.fsync(fh.fileno())
        self._done[index] = sha256

    def keep(self, indexes: set[int]) -> None:
        """Forget every finished segment not in ``indexes``: what the server showed it does not
        hold. The journal is corrected from the server, never the other way round."""
        kept = {i: h for i, h in self._done.items() if i in indexes}
        if kept == self._done:
            return
        self._reset()
        for index, sha in sorted(kept.items()):
            self._append(index, sha)

    def remove(self) -> None:
        """Delete the journal (the transfer is complete, or abandoned)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._done = {}

    def _load(self) -> bool:
        try:
            lines = self.path.read_bytes().split(b"\n")
        except FileNotFoundError:
            return False
        try:
            header = json.loads(lines[0])
        except ValueError:
            return False
        if header != self._header:
            return False
        # Only newline-terminated lines count: the last element after split is the unterminated
        # remainder (empty when the file ends cleanly, a torn write otherwise).
        for raw in lines[1:-1]:
            parts = raw.split()
            try:
                index = int(parts[0])
            except (ValueError, IndexError):
                return False
            sha = parts[1].decode() if len(parts) > 1 else None
            if 0 <= index < self.segment_count:
                self._done[index] = sha
        return True

    def _reset(self) -> None:
        self._done = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(json.dumps(self._header, sort_keys=True).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)


def _fsync_dir(path: Path) -> None:
    # Makes the rename that created the journal durable, not only its contents.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_source_id(path: Path, sha256: str | None = None) -> str:
    """Identity of a local file for a journal: size and mtime, plus its SHA-256 when known."""
    st = path.stat()
    return f"size={st.st_size};mtime_ns={st.st_mtime_ns};sha256={sha256 or '-'}"


def read_requests(max_requests: int, block_size: int, read_block: int) -> int:
    """Reads in flight per session: as many bytes as ``max_requests`` writes of ``block_size``
    keep in flight. A server that answers smaller reads than it takes writes (rclone: 32 KiB
    against 255 KiB) otherwise gets an eighth of the pipeline, which a long link feels."""
    if read_block >= block_size:
        return max_requests
    return min(1024, -(-max_requests * block_size // read_block))


def read_sizes(ts: TransferSettings) -> dict[str, int]:
    """``block_size`` and ``max_requests`` for reading a remote file back (a verify, a resume's
    prefix check): the probe's read size, with the writes' bytes in flight. rclone answers
    255 KiB reads with 32 KiB, and asyncssh's reader then asks for the rest out of order: a
    256 MiB read-back took 19-21 s there against 4.5 s in 32 KiB reads."""
    return {
        "block_size": ts.read_block,
        "max_requests": read_requests(ts.max_requests, ts.block_size, ts.read_block),
    }


def segment_count(file_size: int, segment_size: int) -> int:
    """Number of segments of ``segment_size`` bytes covering ``file_size`` (at least one)."""
    return max(1, -(-file_size // segment_size))


@dataclass(slots=True)
class _Segment:
    index: int
    offset: int
    length: int
    outstanding: int = 0  # block requests issued and not yet answered
    issued_all: bool = False


def _segments(file_size: int, segment_size: int, skip: set[int]) -> list[_Segment]:
    return [
        _Segment(i, i * segment_size, min(segment_size, file_size - i * segment_size))
        for i in range(segment_count(file_size, segment_size))
        if i not in skip
    ]


class _Tracker:
    """Shared bookkeeping of one transfer: segment queue, progress, journal marks."""

    def __init__(
        self,
        segments: list[_Segment],
        done_bytes: int,
        journal: SegmentJournal | None,
        progress: Progress | None,
        before_mark: Callable[[], None] | None = None,
        segment_hash: Callable[[_Segment], str] | None = None,
    ) -> None:
        self._queue: Iterator[_Segment] = iter(segments)
        self.done_bytes = done_bytes
        self._journal = journal
        self._progress = progress
        self._before_mark = before_mark
        self._segment_hash = segment_hash
        self.group: asyncio.TaskGroup | None = None
        self._marker: concurrent.futures.ThreadPoolExecutor | None = None
        self._jobs: list[concurrent.futures.Future[None]] = []
        if progress is not None:
            progress(done_bytes)

    def next_segment(self) -> _Segment | None:
        # All sessions run on one event loop, so plain next() hands each segment out once.
        return next(self._queue, None)

    def block_done(self, seg: _Segment, nbytes: int) -> None:
        seg.outstanding -= 1
        self.done_bytes += nbytes
        if self._progress is not None:
            self._progress(self.done_bytes)
        self.maybe_finish(seg)

    def maybe_finish(self, seg: _Segment) -> None:
        if not (seg.issued_all and seg.outstanding == 0 and self._journal is not None):
            return
        if self.group is None:
            self._durable_mark(seg)
            return
        # fsync of the data (downloads) and of the journal take milliseconds to tens of them:
        # in a worker thread, so the event loop keeps every session's pipeline full.
        if self._marker is None:
            self._marker = concurrent.futures.ThreadPoolExecutor(1, "segment-journal")
        job = self._marker.submit(self._durable_mark, seg)
        self._jobs.append(job)
        waiter = _await_job(job)
        try:
            self.group.create_task(waiter)
        except RuntimeError:
            # The transfer is being torn down (an error or a cancel): the segment is simply
            # sent again by the next attempt.
            waiter.close()
            job.cancel()

    async def settle(self) -> None:
        """Wait for marks already running in the worker thread (none may land after we return)."""
        pending = [asyncio.wrap_future(j) for j in self._jobs if not j.done()]
        if pending:
            await asyncio.wait(pending)
        if self._marker is not None:
            self._marker.shutdown(wait=False)

    def _durable_mark(self, seg: _Segment) -> None:
        assert self._journal is not None
        if self._before_mark is not None:
            self._before_mark()
        # The segment's hash is what a resume checks the server's bytes against. Taken here,
        # in the journal's worker thread, from the local file (page cache): no cost on the
        # event loop that keeps the sessions' pipelines full.
        if self._segment_hash is None:
            self._journal.mark(seg.index)
        else:
            self._journal.mark_hashed(seg.index, self._segment_hash(seg))


async def _await_job(job: concurrent.futures.Future[None]) -> None:
    await asyncio.wrap_future(job)


@contextlib.asynccontextmanager
async def _first_error() -> AsyncIterator[None]:
    """Raise the first real error of the task groups inside, not an ExceptionGroup.

    When one block fails, the sibling blocks are cancelled and the other sessions usually fail
    the same way; the caller translates one asyncssh/OS error, so give it the first one.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        raise _leaf(group) from None


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        real = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = (real or list(exc.exceptions))[0]
    return exc


def _check_sizes(block_size: int, max_requests: int, segment_size: int) -> None:
    if not 0 < block_size <= MAX_OPENSSH_BLOCK:
        raise ValueError(f"block_size must be 1..{MAX_OPENSSH_BLOCK}, got {block_size}")
    if max_requests <= 0:
        raise ValueError(f"max_requests must be positive, got {max_requests}")
    if segment_size <= 0:
        raise ValueError(f"segment_size must be positive, got {segment_size}")


def _check_journal(journal: SegmentJournal | None, size: int, segment_size: int) -> set[int]:
    if journal is None:
        return set()
    if journal.file_size != size or journal.segment_size != segment_size:
        raise ValueError(
            f"journal {journal.path} is for {journal.file_size} bytes in segments of "
            f"{journal.segment_size}, not {size} in segments of {segment_size}"
        )
    return journal.done()


async def put_segmented(
    sftps: Sequence[asyncssh.SFTPClient],
    local_path: Path,
    remote_path: str,
    *,
    segment_size: int,
    block_size: int,
    max_requests: int,
    journal: SegmentJournal | None = None,
    progress: Progress | None = None,
    segment_hash: SegmentHash | None = None,
) -> None:
    """Upload ``local_path`` into ``remote_path`` as segments spread over ``sftps``.

    ``remote_path`` is the caller's temporary name: it is created if missing, truncated only
    when nothing is recorded yet (a fresh start), and otherwise never: segments already
    recorded in ``journal`` stay as they are and are skipped.
    ``max_requests`` block writes are in flight per session. ``progress`` receives the running
    total of bytes in place (first call: the bytes already done by an earlier attempt).
    Raises ``IntegrityError`` if the local file changes size while it is read.
    """
    _check_sizes(block_size, max_requests, segment_size)
    if not sftps:
        raise ValueError("put_segmented needs at least one SFTP session")
    size = os.stat(local_path).st_size
    done = _check_journal(journal, size, segment_size)
    segments = _segments(size, segment_size, done)
    already = sum(
        min(segment_size, size - i * segment_size)
        for i in done
        if i < segment_count(size, segment_size)
    )
    fd = os.open(local_path, os.O_RDONLY)
    tracker = _Tracker(
        segments, already, journal, progress, segment_hash=_segment_hasher(fd, segment_hash)
    )
    flags = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT
    try:
        # Create the file once before the sessions race to open it. A fresh start (nothing
        # recorded) truncates: a stale, longer temp file from an earlier, different source
        # must not leave its tail behind. Afterwards nothing truncates again.
        first_flags = flags if done else flags | asyncssh.FXF_TRUNC
        async with await sftps[0].open(remote_path, first_flags, encoding=None, block_size=0):
            pass
        if not segments:
            return
        if size == 0:
            tracker.maybe_finish(_Segment(0, 0, 0, issued_all=True))
            return
        sessions = sftps[: len(segments)]
        stop = _PutStop()
        async with _first_error(), asyncio.TaskGroup() as tg:
            tracker.group = tg
            for sftp in sessions:
                tg.create_task(
                    _put_worker(
                        sftp, fd, remote_path, flags, size, block_size, max_requests, tracker, stop
                    )
                )
        stop.raise_first()
    finally:
        await tracker.settle()
        os.close(fd)


def _segment_hasher(fd: int, given: SegmentHash | None) -> Callable[[_Segment], str]:
    """The journal's hash of a finished segment: ``given`` (the caller's read of the whole
    file, which hashes each segment on its way), else the segment read from ``fd`` again."""
    if given is not None:
        return lambda seg: given(seg.index, seg.offset, seg.length)

    def segment_sha256(seg: _Segment) -> str:
        return fd_range_sha256(fd, seg.offset, seg.length)

    return segment_sha256


async def put_stream(
    sftp: asyncssh.SFTPClient,
    local_path: Path,
    remote_path: str,
    *,
    segment_size: int,
    block_size: int,
    max_requests: int,
    start_segment: int = 0,
    journal: SegmentJournal | None = None,
    progress: Progress | None = None,
    segment_hash: SegmentHash | None = None,
) -> None:
    """Upload ``local_path`` into ``remote_path`` with one open and writes strictly in order.

    For servers that refuse a second open of the file for writing, or writes out of order.
    ``start_segment`` 0 creates (truncates) the file; a later one continues after the
    segments before it, which the caller has checked are on the server, in an open without
    truncation (some servers refuse that too: the caller then starts over). Segments are
    recorded in ``journal`` with their hashes as they complete, as ``put_segmented`` does.
    """
    _check_sizes(block_size, max_requests, segment_size)
    size = os.stat(local_path).st_size
    if journal is not None:
        _check_journal(journal, size, segment_size)
    count = segment_count(size, segment_size)
    if not 0 <= start_segment <= count:
        raise ValueError(f"start segment {start_segment} out of range 0..{count}")
    segments = [
        _Segment(i, i * segment_size, min(segment_size, size - i * segment_size))
        for i in range(start_segment, count)
    ]
    already = min(size, start_segment * segment_size)
    flags = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT
    if start_segment == 0:
        flags |= asyncssh.FXF_TRUNC
    fd = os.open(local_path, os.O_RDONLY)
    tracker = _Tracker(
        segments, already, journal, progress, segment_hash=_segment_hasher(fd, segment_hash)
    )
    try:
        if size == 0 or not segments:
            async with await sftp.open(remote_path, flags, encoding=None, block_size=0):
                pass
            return
        stop = _PutStop()
        async with _first_error(), asyncio.TaskGroup() as tg:
            tracker.group = tg
            tg.create_task(
                _put_worker(
                    sftp, fd, remote_path, flags, size, block_size, max_requests, tracker, stop
                )
            )
        stop.raise_first()
    finally:
        await tracker.settle()
        os.close(fd)


class _PutStop:
    """The first error of an upload's sessions; once set, every session stops writing.

    The sessions of an upload never cancel each other: each one, on its own error or a
    sibling's, stops issuing writes, waits for the answers to the writes in flight and closes
    its handle, waiting for that answer too. A server may still act on a handle until it
    answers its close: rclone without a write cache refuses out-of-order writes, then writes
    what the refused handle got (nothing) over the file when that handle closes, seconds
    later. A close left unanswered would land on whatever is under the name by then (the
    restarted upload's file, or the final name after a rename rclone deferred for it).
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None

    def fail(self, exc: BaseException) -> None:
        if self.error is None or isinstance(self.error, asyncio.CancelledError):
            self.error = exc

    def raise_first(self) -> None:
        if self.error is not None:
            raise self.error


# How long a cancelled upload session still waits for the answers to its writes and close
# (a stalled server: the caller aborts the connection, which ends the wait at once).
_CLOSE_GRACE_S = 10.0


async def _put_worker(
    sftp: asyncssh.SFTPClient,
    fd: int,
    remote_path: str,
    flags: int,
    size: int,
    block_size: int,
    max_requests: int,
    tracker: _Tracker,
    stop: _PutStop,
) -> None:
    try:
        fh = await sftp.open(remote_path, flags, encoding=None, block_size=0)
    except Exception as exc:
        stop.fail(exc)
        return
    slots = asyncio.Semaphore(max_requests)
    in_flight: set[asyncio.Task[None]] = set()
    lean = write_pipeline.fits(sftp, fh)

    async def write_block(seg: _Segment, data: bytes, offset: int) -> None:
        try:
            await fh.write(data, offset)
        except Exception as exc:
            stop.fail(exc)
            return
        finally:
            slots.release()
        tracker.block_done(seg, len(data))

    async def wait_write(seg: _Segment, answer: asyncio.Future[tuple[int, Any]], n: int) -> None:
        try:
            write_pipeline.check(sftp, await answer)
        except Exception as exc:
            stop.fail(exc)
            return
        finally:
            slots.release()
        tracker.block_done(seg, n)

    try:
        while stop.error is None and (seg := tracker.next_segment()) is not None:
            end = seg.offset + seg.length
            for offset in range(seg.offset, end, block_size):
                await slots.acquire()
                if stop.error is not None:
                    slots.release()
                    break
                want = min(block_size, end - offset)
                # A page-cache read of 255 KiB takes tens of microseconds: cheaper inline
                # than a hop to a thread.
                if lean:
                    try:
                        answer = write_pipeline.send_write(sftp, fh, fd, offset, want)
                    except write_pipeline.ShortRead:
                        slots.release()
                        raise _shrank(size, remote_path) from None
                    except BaseException:
                        slots.release()
                        raise
                    seg.outstanding += 1
                    task = asyncio.create_task(wait_write(seg, answer, want))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                    continue
                data = os.pread(fd, want, offset)
                if len(data) != want:
                    slots.release()
                    raise _shrank(size, remote_path)
                seg.outstanding += 1
                task = asyncio.create_task(write_block(seg, data, offset))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            else:
                seg.issued_all = True
                tracker.maybe_finish(seg)
    except Exception as exc:
        stop.fail(exc)
    finally:
        await _drain_and_close(fh, in_flight, stop)


def _shrank(size: int, remote_path: str) -> IntegrityError:
    return IntegrityError(
        f"local file shrank while uploading (expected {size} bytes)", path=remote_path
    )


async def _drain_and_close(
    fh: asyncssh.SFTPClientFile, in_flight: set[asyncio.Task[None]], stop: _PutStop
) -> None:
    """Wait for the answers to the writes in flight, then close ``fh`` and wait for that
    answer: nothing of this handle is left for the server to do afterwards. Runs to its end
    even when the session is cancelled (within ``_CLOSE_GRACE_S``)."""

    async def finish() -> None:
        if in_flight:
            await asyncio.wait(set(in_flight))
        try:
            await fh.close()
        except Exception as exc:
            # rclone reports a refused attempt's failure at close ("corrupted on transfer").
            stop.fail(exc)

    job = asyncio.ensure_future(finish())
    try:
        await asyncio.shield(job)
    except asyncio.CancelledError:
        await asyncio.wait({job}, timeout=_CLOSE_GRACE_S)
        if not job.done():
            job.cancel()
        for task in list(in_flight):
            task.cancel()
        raise


async def get_segmented(
    sftps: Sequence[asyncssh.SFTPClient],
    remote_path: str,
    local_path: Path,
    *,
    size: int,
    segment_size: int,
    block_size: int,
    max_requests: int,
    journal: SegmentJournal | None = None,
    progress: Progress | None = None,
    written: Written | None = None,
) -> None:
    """Download ``size`` bytes of ``remote_path`` into ``local_path`` as segments over ``sftps``.

    ``local_path`` is the caller's staging name: it is created if missing, never truncated below
    data a journal records, and set to exactly ``size`` bytes. Before a segment is marked in
    ``journal`` the local file is fsynced, so a mark always means the bytes are on disk.
    ``written(offset, data)`` (when given) is called with every piece of bytes right after it
    was written (``checksums.InOrderSha256.written``).
    Raises ``IntegrityError`` if the remote file is shorter than ``size``.
    """
    _check_sizes(block_size, max_requests, segment_size)
    if not sftps:
        raise ValueError("get_segmented needs at least one SFTP session")
    done = _check_journal(journal, size, segment_size)
    segments = _segments(size, segment_size, done)
    already = sum(
        min(segment_size, size - i * segment_size)
        for i in done
        if i < segment_count(size, segment_size)
    )
    try:
        await _get_into(
            sftps,
            remote_path,
            local_path,
            size,
            segments,
            already,
            journal,
            progress,
            block_size,
            max_requests,
            written,
        )
    except OSError as exc:
        # Our own disk, not the network: not retried as a network fault. The staging file and
        # journal stay, so the download resumes from the bytes already here once space is freed.
        if exc.errno in LOCAL_DISK_FULL:
            raise local_disk_full(exc, local_path) from exc
        raise


async def _get_into(
    sftps: Sequence[asyncssh.SFTPClient],
    remote_path: str,
    local_path: Path,
    size: int,
    segments: list[_Segment],
    already: int,
    journal: SegmentJournal | None,
    progress: Progress | None,
    block_size: int,
    max_requests: int,
    written: Written | None,
) -> None:
    local_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(local_path, os.O_WRONLY | os.O_CREAT, 0o600)
    tracker = _Tracker(segments, already, journal, progress, before_mark=lambda: os.fdatasync(fd))
    try:
        # Sets the final length without touching data below it; holes read as zeros until filled.
        os.ftruncate(fd, size)
        if segments and size == 0:
            tracker.maybe_finish(_Segment(0, 0, 0, issued_all=True))
        elif segments:
            async with _first_error(), asyncio.TaskGroup() as tg:
                tracker.group = tg
                for sftp in sftps[: len(segments)]:
                    tg.create_task(
                        _get_worker(
                            sftp, fd, remote_path, size, block_size, max_requests, tracker, written
                        )
                    )
        await asyncio.to_thread(os.fsync, fd)
    finally:
        await tracker.settle()
        os.close(fd)


async def _get_worker(
    sftp: asyncssh.SFTPClient,
    fd: int | None,
    remote_path: str,
    size: int,
    block_size: int,
    max_requests: int,
    tracker: _Tracker,
    written: Written | None,
) -> None:
    async with await sftp.open(remote_path, asyncssh.FXF_READ, encoding=None, block_size=0) as fh:
        if read_pipeline.fits(sftp, fh):
            # Requests in file order from callbacks, no task per block (read_pipeline).
            await read_pipeline.read_blocks(
                sftp,
                fh,
                fd,
                _blocks(tracker, block_size),
                max_requests,
                tracker.block_done,
                remote_path=remote_path,
                size=size,
                written=written,
            )
            return
        await _get_blocks(fh, fd, remote_path, size, block_size, max_requests, tracker, written)


def _blocks(tracker: _Tracker, block_size: int) -> Iterator[tuple[_Segment, int, int]]:
    """The blocks of the segments this session takes, in order, as (segment, offset, length).
    A segment counts as fully issued once its last block was handed out."""
    while (seg := tracker.next_segment()) is not None:
        end = seg.offset + seg.length
        for offset in range(seg.offset, end, block_size):
            yield seg, offset, min(block_size, end - offset)
        seg.issued_all = True
        tracker.maybe_finish(seg)


async def _get_blocks(
    fh: asyncssh.SFTPClientFile,
    fd: int | None,
    remote_path: str,
    size: int,
    block_size: int,
    max_requests: int,
    tracker: _Tracker,
    written: Written | None,
) -> None:
    """The generic reader (any file object with ``read(size, offset)``: the bandwidth
    limiter's wrapper): one task per block, ``max_requests`` of them at a time. ``fd`` None:
    the bytes go to ``written`` only (a read-back that hashes)."""
    slots = asyncio.Semaphore(max_requests)

    async def read_block(seg: _Segment, offset: int, length: int) -> None:
        try:
            got = 0
            # A server may answer with fewer bytes than asked (its own read cap): ask again
            # for the rest rather than leave a hole.
            while got < length:
                data: bytes
                try:
                    # Opened with encoding=None, so read() returns bytes.
                    data = cast(bytes, await fh.read(length - got, offset + got))
                except asyncssh.SFTPEOFError:
                    data = b""
                if not data:
                    raise IntegrityError(
                        f"remote file ended at {offset + got} bytes, expected {size}",
                        path=remote_path,
                    )
                if fd is not None:
                    os.pwrite(fd, data, offset + got)
                if written is not None:
                    written(offset + got, data)
                got += len(data)
        finally:
            slots.release()
        tracker.block_done(seg, length)

    async with asyncio.TaskGroup() as tg:
        for seg, offset, length in _blocks(tracker, block_size):
            await slots.acquire()
            seg.outstanding += 1
            tg.create_task(read_block(seg, offset, length))


class _SegmentDigests:
    """The SHA-256 of each segment of a file read back, from the answers as they come (each
    segment hashed in order: an answer ahead of its segment's next offset waits here)."""

    def __init__(self, segments: list[_Segment], segment_size: int) -> None:
        self._segment_size = segment_size
        self.digests = [hashlib.sha256() for _ in segments]
        self._next = [seg.offset for seg in segments]
        self._early: dict[int, bytes | memoryview] = {}

    def written(self, offset: int, data: bytes | memoryview) -> None:
        index = offset // self._segment_size
        if offset != self._next[index]:
            self._early[offset] = data
            return
        digest = self.digests[index]
        while True:
            digest.update(data)
            self._next[index] += len(data)
            more = self._early.pop(self._next[index], None)
            if more is None:
                return
            data = more


async def read_back_segments(
    sftps: Sequence[asyncssh.SFTPClient],
    remote_path: str,
    *,
    size: int,
    segment_size: int,
    block_size: int,
    max_requests: int,
) -> list[str] | None:
    """The SHA-256 of each segment of ``remote_path`` (``segment_size`` bytes each, as
    ``segment_count`` cuts ``size``), read back over ``sftps`` in parallel as
    ``get_segmented`` reads a download, hashed as the answers arrive, stored nowhere.

    None when the file does not hold exactly ``size`` bytes: it ends before (a read finds the
    end), or one byte read at ``size`` is answered (a longer file).
    """
    _check_sizes(block_size, max_requests, segment_size)
    if not sftps:
        raise ValueError("read_back_segments needs at least one SFTP session")
    segments = _segments(size, segment_size, set())
    digests = _SegmentDigests(segments, segment_size)
    tracker = _Tracker(segments, 0, None, None)

    async def past_the_end() -> bool:
        # The one byte after ``size``: the end of the file, or the file is longer.
        async with await sftps[-1].open(
            remote_path, asyncssh.FXF_READ, encoding=None, block_size=0
        ) as fh:
            extra: bytes | str
            try:
                extra = await fh.read(1, size)
            except asyncssh.SFTPEOFError:
                extra = b""
        return not extra

    try:
        async with _first_error(), asyncio.TaskGroup() as tg:
            ends = tg.create_task(past_the_end())
            for sftp in sftps[: len(segments)]:
                tg.create_task(
                    _get_worker(
                        sftp,
                        None,
                        remote_path,
                        size,
                        block_size,
                        max_requests,
                        tracker,
                        digests.written,
                    )
                )
    except IntegrityError:
        return None  # ended before ``size``
    if not ends.result():
        return None
    return [d.hexdigest() for d in digests.digests]
