"""Resume checks: the upload journal is corrected from the server before a resume continues.

The journal records what was *sent*; what the server kept can differ. A server killed in the
middle of a write may come back with zeros where acknowledged bytes were (rclone's write cache),
or with the temporary file emptied (rclone without one), and only the hash of the bytes shows
it: sizes match. So before an upload continues, each segment the journal records is checked
against the server (the ``check-file`` extension for that byte range when offered, else the
range is read back), and only the segments whose SHA-256 matches stay recorded. Nothing needs a
person to delete a journal: a segment the server does not hold is simply sent again.
"""

from __future__ import annotations

import logging

import asyncssh

from consonance_sftp import errors
from consonance_sftp.adapters.sftp import checksums
from consonance_sftp.adapters.sftp.base import FSBase
from consonance_sftp.adapters.sftp.segmented import SegmentJournal, read_sizes

log = logging.getLogger(__name__)


async def reconcile_journal(
    fs: FSBase, sftp: asyncssh.SFTPClient, temp: str, journal: SegmentJournal
) -> tuple[set[int], str]:
    """Keep in ``journal`` only the segments the server's ``temp`` holds byte for byte (by
    SHA-256); returns their indexes and how they were checked (``check_file`` or
    ``read_back``). A missing file keeps none."""
    recorded = journal.hashes()
    if not recorded:
        return set(), "read_back"
    attrs = await fs._stat(sftp, temp)
    remote_size = -1 if attrs is None else (attrs.size or 0)
    size, seg = journal.file_size, journal.segment_size
    kept: set[int] = set()
    for index in sorted(recorded):
        offset = index * seg
        length = min(seg, size - offset)
        want = recorded[index]
        # A segment without a recorded hash (a journal from before hashes) cannot be checked.
        if want is None or offset + length > remote_size:
            continue
        if await _segment_sha256(fs, sftp, temp, offset, length) == want:
            kept.add(index)
    if kept != set(recorded):
        log.warning(
            "the server holds %d of the %d segments the resume journal recorded; the others "
            "are sent again",
            len(kept),
            len(recorded),
            extra={"partner": fs.partner, "path": temp},
        )
    journal.keep(kept)
    return kept, "read_back" if "check_file" in fs._unsupported else "check_file"


async def _segment_sha256(
    fs: FSBase, sftp: asyncssh.SFTPClient, path: str, offset: int, length: int
) -> str | None:
    if "check_file" not in fs._unsupported:
        try:
            return await fs._guard(checksums.check_file_sha256(sftp, path, offset, length), path)
        except errors.UnsupportedOperation:
            fs._unsupported.add("check_file")
    ts = fs.settings
    try:
        return await fs._guard(
            checksums.read_back_range_sha256(sftp, path, offset, length, **read_sizes(ts)),
            path,
        )
    except errors.TransportError as exc:
        if exc.retryable:
            raise  # the connection, not the file: the resume is tried again later
        # Listed but unreadable (rclone's write cache after a restart: "object not found"):
        # the server does not hold these bytes in any way we can use.
        return None


def contiguous_prefix(kept: set[int]) -> int:
    """How many segments from the first one are all held: where a sequential writer resumes."""
    count = 0
    while count in kept:
        count += 1
    return count


def refused_by_write_model(exc: errors.TransportError) -> bool:
    """Did the server refuse *how* we wrote (a second open of the file for writing, a write
    out of order), rather than lose the connection, run out of space or deny the folder?
    Only the plain failure classes qualify: a lost connection or a timeout never does."""
    return (
        type(exc)
        in (
            errors.RemotePermissionDenied,
            errors.TransportError,
            errors.UnsupportedOperation,
        )
        and not exc.retryable
    )
