"""How an upload proves the server holds our bytes: the best hash the server allows.

Never trust bytes you cannot see. In order: the ``check-file`` extension (the server hashes
the file), the configured hash command over an exec channel (``sha256sum``; rclone answers only
``sha1sum`` and ``md5sum``, compared with the same digest of the local file), else the file is
read back and hashed here, which costs a download of its size. Only ``checksum = "size"``,
configured explicitly, settles for the size; even then a file whose upload was interrupted is
verified by hash. What was used is a ``models.Verification``, the ledger's ``verified_by``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import asyncssh

from consonance_sftp import errors
from consonance_sftp.adapters.sftp import checksums
from consonance_sftp.adapters.sftp.base import FSBase
from consonance_sftp.adapters.sftp.connection import PooledConnection
from consonance_sftp.adapters.sftp.segmented import (
    read_back_segments,
    read_sizes,
    segment_count,
)
from consonance_sftp.config.transfer import ChecksumMethod
from consonance_sftp.models import Verification

log = logging.getLogger(__name__)

# With checksum 'auto', a hashing command runs for files from this size: an exec costs a new
# SSH channel (tens of ms), more than reading a small file back.
SHELL_HASH_MIN_SIZE = 1024 * 1024
# Bytes asked for in one read call of a read-back (asyncssh splits it into pipelined requests).
_READ_CALL = 8 * 1024 * 1024
# What a hash command's digest is called in the ledger, by its algorithm.
_BY_COMMAND = {
    "sha256": Verification.SHELL,
    "sha1": Verification.SHELL_SHA1,
    "md5": Verification.SHELL_MD5,
}


def reads_back(fs: FSBase, size: int) -> bool:
    """Would ``remote_sha256`` read a file of ``size`` bytes back (no check-file known to
    work, no hash command for it)? A small file is then read back on the handle it was
    written through, before that is closed: no second open and close per file."""
    ts = fs.settings
    if "read_write_open" in fs._unsupported:
        return False
    if ts.checksum is ChecksumMethod.READ_BACK:
        return True
    return (
        ts.checksum is ChecksumMethod.AUTO
        and "check_file" in fs._unsupported
        and not (ts.allow_shell and size >= SHELL_HASH_MIN_SIZE)
    )


async def remote_sha256(
    fs: FSBase,
    pc: PooledConnection,
    path: str,
    *,
    size: int = 0,
    force: bool = False,
    local: tuple[Path, str] | None = None,
    data: bytes | None = None,
    by_segments: Callable[[], Awaitable[str]] | None = None,
) -> tuple[str | None, Verification]:
    """(SHA-256 or None, how it was checked). None only with ``checksum = "size"`` and
    without ``force`` (an interrupted upload, a look at a final name: always by hash).
    ``local`` (the local file and its SHA-256) lets a server's sha1sum or md5sum stand in for
    sha256sum: on a match the local SHA-256 is returned, else the server's digest prefixed by
    its algorithm (which matches no SHA-256); ``data``, a small file's bytes already read, gives
    that digest without reading the file again. ``by_segments``: how this file is read back
    instead of in one stream (a segmented upload: ``read_back_by_segments``), when it is."""
    ts = fs.settings
    method = ts.checksum
    auto = method is ChecksumMethod.AUTO
    if method is ChecksumMethod.CHECK_FILE or (auto and "check_file" not in fs._unsupported):
        try:
            digest = await fs._guard(checksums.check_file_sha256(pc.sftp, path), path)
            return digest, Verification.CHECK_FILE
        except errors.UnsupportedOperation:
            fs._unsupported.add("check_file")
            if method is ChecksumMethod.CHECK_FILE:
                raise
    if method is ChecksumMethod.SHELL or (
        auto and ts.allow_shell and (force or size >= SHELL_HASH_MIN_SIZE)
    ):
        algorithm = checksums.command_algorithm(ts.shell_hash_command)
        if algorithm == "sha256":
            digest = await fs._guard(
                checksums.shell_sha256(
                    pc.conn, ts.shell_hash_command, path, limit=ts.operation_timeout
                ),
                path,
            )
            return digest, Verification.SHELL
        if local is not None:
            # sha1sum/md5sum (rclone): compared with the same digest of the local file (taken
            # while the server hashes); a match stands for the SHA-256 the ledger records.
            local_path, local_sha = local
            local_hex: asyncio.Future[str] = asyncio.ensure_future(
                asyncio.to_thread(checksums.file_digest, local_path, algorithm)
                if data is None
                else _digest_of(data, algorithm)
            )
            try:
                remote_hex = await fs._guard(
                    checksums.shell_digest(
                        pc.conn, ts.shell_hash_command, path, limit=ts.operation_timeout
                    ),
                    path,
                )
            except errors.UnsupportedOperation as exc:
                # rclone's write cache cannot hash a file it has not written back yet: the
                # bytes are read back instead.
                log.info(
                    "%s failed, reading the file back: %s",
                    ts.shell_hash_command,
                    exc.detail,
                    extra={"partner": fs.partner, "path": path},
                )
            else:
                same = remote_hex == await local_hex
                digest = local_sha if same else f"{algorithm}:{remote_hex}"
                return digest, _BY_COMMAND[algorithm]
            finally:
                local_hex.cancel()  # a no-op once it has answered
    if method is ChecksumMethod.SIZE and not force:
        return None, Verification.SIZE
    # Nothing else proves the content ('auto' on a server without check-file or a shell, an
    # interrupted upload, or read_back configured): the file is downloaded again and hashed.
    # A segmented upload: read back in its segments over as many connections. A small file
    # of known size: its bytes and one more, in one call (no fstat); anything larger through
    # the pipelined read-back (``checksums.read_back_sha256``).
    if by_segments is not None:
        return await by_segments(), Verification.READ_BACK
    reading = (
        read_back_sized(pc.sftp, path, size, **read_sizes(ts))
        if 0 < size < _READ_CALL
        else checksums.read_back_sha256(pc.sftp, path, **read_sizes(ts))
    )
    _size, digest = await fs._guard(reading, path)
    return digest, Verification.READ_BACK


async def _digest_of(data: bytes, algorithm: str) -> str:
    return hashlib.new(algorithm, data, usedforsecurity=False).hexdigest()


async def read_back_sized(
    sftp: asyncssh.SFTPClient, path: str, size: int, *, block_size: int, max_requests: int
) -> tuple[int, str]:
    """(bytes read, SHA-256) of a file expected to hold ``size`` bytes, read back pipelined:
    reads cover ``[0, size)`` and one more byte, which must find the end of the file (a longer
    file gives the digest of more than ``size`` bytes: no match). Reading in 8 MiB calls until
    an empty answer, as ``checksums.read_back_sha256`` does without a size, sends a whole
    call's worth of reads past the end: 65 requests to read a 50 KiB file back."""
    digest = hashlib.sha256()
    got = 0
    async with sftp.open(
        path, "rb", block_size=block_size, max_requests=max_requests, encoding=None
    ) as fh:
        while got <= size:
            want = min(_READ_CALL, size + 1 - got)
            chunk = await fh.read(want, got)
            if not chunk:
                break
            assert isinstance(chunk, bytes)
            digest.update(chunk)
            got += len(chunk)
            if len(chunk) < want:
                break  # asyncssh asked again for a short answer's rest: this is the end
            await asyncio.sleep(0)
    return got, digest.hexdigest()


async def read_back_by_segments(
    fs: FSBase,
    sftps: Sequence[asyncssh.SFTPClient],
    path: str,
    *,
    size: int,
    segment_size: int,
    local_path: Path,
    sha: str,
    hasher: checksums.FileHasher | None,
) -> str:
    """Verify a segmented upload by reading it back segment by segment over ``sftps`` (the
    connections the upload used), as many at once: one stream through a long link is capped
    by its window, and the read-back then took longer than the upload itself (256 MiB through
    a 100 ms link: 12.4 s for the upload and its read-back in one stream, 6.7 s by segments).

    Each segment's SHA-256 read back is compared with the same segment's of the local file,
    and the file must end at ``size``. All equal: the server holds the bytes of the local file
    and ``sha`` (its SHA-256) is returned. Else a digest that matches no SHA-256: the first
    differing segment's, or the local file's own when it is no longer the file ``sha`` was
    taken of. ``hasher``: the upload's read of the local file (its SHA-256 and its segments'
    in one pass, ``checksums.FileHasher``), whose SHA-256 must be ``sha`` (a SHA-256 the
    caller gave is checked so); without it (no resume journal) or when it failed, the local
    file is read so again, while the server's bytes travel.
    """
    count = segment_count(size, segment_size)
    spans = [
        (i, i * segment_size, min(segment_size, size - i * segment_size)) for i in range(count)
    ]

    def local_hashes() -> tuple[str, list[str]]:
        local = hasher
        done = None if local is None or local.segment_size != segment_size else local.wait()
        if local is None or done is None:
            local = checksums.FileHasher(local_path, segment_size)
            done = local.run()
        hashed_size, whole = done
        if hashed_size != size:
            return f"size:{hashed_size}", []
        return whole, [local.segment(*span) for span in spans]

    local = asyncio.ensure_future(asyncio.to_thread(local_hashes))
    try:
        remote = await fs._guard(
            read_back_segments(
                sftps, path, size=size, segment_size=segment_size, **read_sizes(fs.settings)
            ),
            path,
        )
        local_sha, local_segments = await local
    finally:
        local.cancel()  # a no-op once it has answered
    if local_sha != sha:
        return local_sha  # the local file changed since ``sha`` was taken of it
    if remote is None:
        log.info(
            "the read-back found the file is not %d bytes",
            size,
            extra={"partner": fs.partner, "path": path},
        )
        return "size:not-" + str(size)
    for index, (theirs, ours) in enumerate(zip(remote, local_segments, strict=True)):
        if theirs != ours:
            log.info(
                "segment %d of %d differs on the server",
                index,
                count,
                extra={"partner": fs.partner, "path": path},
            )
            return f"segment-{index}:{theirs}"
    return sha
