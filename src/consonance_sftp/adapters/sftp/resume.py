"""Resume checks: the upload journal is corrected from the server before a resume continues.

The journal records what was *sent*; what the server kept can differ. A server killed in the
middle of a write may come back with zeros where acknowledged bytes were (rclone's write cache),
or with the temporary file emptied (rclone without one), and only the hash of the bytes shows
it: sizes match. So before an upload continues, each segment the journal records is checked
against the server (the ``check-file`` extension for that byte range when offered, else the
range is read back: no server we know hashes a range over exec), and only the segments whose
SHA-256 matches stay recorded. Nothing needs a person to delete a journal: a segment the
server does not hold is simply sent again.
"""

from __future__ import annotations

import logging

import asyncssh

from consonance_sftp import errors
from consonance_sftp.adapters.sftp import checksums
from consonance_sftp.adapters.sftp.base import FSBase
from consonance_sftp.adapters.sftp.segmented import SegmentJournal, read_sizes
from consonance_sftp.models import Verification

log = logging.getLogger(__name__)


async def reconcile_journal(
    fs: FSBase, sftp: asyncssh.SFTPClient, temp: str, journal: SegmentJournal
) -> tuple[set[int], Verification]:
    """Keep in ``journal`` only the segments the server's ``temp`` holds byte for byte (by
    SHA-256); returns their indexes and how they were checked (``check_file`` when the
    server's ranged check-file answered for every one, else ``read_back``). A missing file
    keeps none."""
    recorded = journal.hashes()
    if not recorded:
        return set(), Verification.READ_BACK
    attrs = await fs._stat(sftp, temp)
    remote_size = -1 if attrs is None else (attrs.size or 0)
    size, seg = journal.file_size, journal.segment_size
    check = _SegmentCheck(fs, sftp, temp)
    kept: set[int] = set()
    for index in sorted(recorded):
        offset = index * seg
        length = min(seg, size - offset)
        want = recorded[index]
        # A segment without a recorded hash (a journal from before hashes) cannot be checked.
        if want is None or offset + length > remote_size:
            continue
        if await check.holds(offset, length, want):
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
    read_back = Verification.READ_BACK in check.used or not check.used
    return kept, Verification.READ_BACK if read_back else Verification.CHECK_FILE


class _SegmentCheck:
    """Does the server hold these bytes at this range? By the ``check-file`` extension with an
    offset and a length where the server offers it, else by reading the range back (OpenSSH,
    rclone, paramiko: no ranged hash; a hash command over exec hashes whole files only).

    A check-file match keeps a segment; a check-file answer that differs is never trusted on
    its own: the range is read back. ProFTPD 1.3.8's mod_sftp hashes from any offset but 0 to
    the end of the file, whatever length is asked (right for the first and the last segment
    only), and a server may ignore the range altogether: where the read-back
    shows the bytes are there, ranged check-file is dropped for this client and every other
    segment is read back, instead of being thrown away and sent again."""

    def __init__(self, fs: FSBase, sftp: asyncssh.SFTPClient, path: str) -> None:
        self.fs, self.sftp, self.path = fs, sftp, path
        self.used: set[Verification] = set()

    async def holds(self, offset: int, length: int, want: str) -> bool:
        fs = self.fs
        if not fs._unsupported & {"check_file", "check_file_range"}:
            try:
                digest = await fs._guard(
                    checksums.check_file_sha256(self.sftp, self.path, offset, length), self.path
                )
            except errors.UnsupportedOperation:
                fs._unsupported.add("check_file_range")
            else:
                if digest == want:
                    self.used.add(Verification.CHECK_FILE)
                    return True
                if await self._read_back(offset, length) != want:
                    return False  # the server really lost these bytes
                log.info(
                    "the server's check-file does not hash the byte range asked: resume "
                    "checks read the segments back",
                    extra={"partner": fs.partner, "path": self.path},
                )
                fs._unsupported.add("check_file_range")
                return True
        return await self._read_back(offset, length) == want

    async def _read_back(self, offset: int, length: int) -> str | None:
        self.used.add(Verification.READ_BACK)
        ts = self.fs.settings
        try:
            return await self.fs._guard(
                checksums.read_back_range_sha256(
                    self.sftp, self.path, offset, length, **read_sizes(ts)
                ),
                self.path,
            )
        except errors.TransportError as exc:
            if exc.retryable:
                raise  # the connection, not the file: the resume is tried again later
            # Listed but unreadable (rclone's write cache after a restart: "object not
            # found"): the server does not hold these bytes in any way we can use.
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
