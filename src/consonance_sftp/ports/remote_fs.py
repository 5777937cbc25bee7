"""RemoteFS port: a partner's SFTP server as the flows see it, and the connection budget.

One ``RemoteFS`` talks to one partner. Paths are POSIX strings as the partner's server shows
them. Every method raises only ``errors.TransportError`` subclasses, with the partner and path
in the message: ``ConnectionLost`` and ``TransferTimeout`` are retryable, the rest are terminal.

``ConnectionBudget`` is the one cap on concurrent connections to a partner. Every connection
(transfers, segments, inbox polls, probes) takes a slot first; the in-process implementation
is an asyncio semaphore per partner, a cross-process one (PostgreSQL) comes with the engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from consonance_sftp.config.transfer import PostAction
from consonance_sftp.errors import TransportError
from consonance_sftp.models import Verification

# Called with (bytes done, bytes total) as a transfer advances.
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteEntry:
    """One directory entry on the partner's server."""

    path: str  # full remote path
    name: str
    size: int
    mtime: float  # UTC epoch seconds, as the server reports it (often 1 s precision)
    is_dir: bool = False
    is_file: bool = True

    @property
    def identity(self) -> tuple[str, int, float]:
        """(path, size, mtime): how a version of a file taken in is recognised."""
        return (self.path, self.size, self.mtime)


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadResult:
    remote_path: str
    size: int
    sha256: str
    skipped: bool = False  # an identical file was already at the final name
    verified_by: Verification = Verification.SIZE  # how the remote bytes were proven
    resumed_from: int = 0  # bytes that were already on the server from an earlier attempt
    seconds: float = 0.0
    strategy: str = ""  # how the temporary file became the final name


@dataclass(frozen=True, slots=True, kw_only=True)
class StagedFile:
    """A file ``stage`` wrote and verified under its staging name, not yet published."""

    remote_path: str  # the final name it is meant for
    staged_path: str  # where its bytes are: the temporary name (the final one with 'direct')
    size: int
    sha256: str
    skipped: bool = False  # an identical file was already at the final name: nothing to publish
    verified_by: Verification = Verification.SIZE  # how the remote bytes were proven
    resumed_from: int = 0  # bytes that were already on the server from an earlier attempt
    seconds: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadItem:
    local_path: Path
    remote_path: str
    sha256: str | None = None  # when the caller hashed the file already


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadResult:
    remote_path: str
    local_path: Path
    size: int
    sha256: str
    resumed_from: int = 0
    seconds: float = 0.0
    post_action: str = "leave"  # what was done to the remote file afterwards


@dataclass(frozen=True, slots=True, kw_only=True)
class ListingLag:
    """How late a second session's ``stat`` and listing show what the probe wrote, and what
    the server's software is known to cache (``partner probe``; issue 13, item 8)."""

    # Seconds after a write returned until the other session's view showed the bytes written
    # (the worst of the probe's writes; None: not within ``timeout`` while the file was open).
    stat_seconds: float | None = None
    listing_seconds: float | None = None
    # A view showed the file with a size it no longer had (a file merely not listed yet is
    # not stale: a half-written file is never taken from a view that does not show it).
    stale: bool = False
    timeout: float = 0.0
    # What the server's software is documented to cache (e.g. rclone's directory cache),
    # which the probe cannot see through SFTP: its own writes go through that cache.
    known_cache: str = ""
    known_cache_seconds: float = 0.0  # how long such a cache may keep an old view (default)
    lagging: bool = False  # measured or known: two stats may agree while a file still grows


@dataclass(frozen=True, slots=True, kw_only=True)
class FtpProbeFacts:
    """What ``partner probe`` measured on an FTP/FTPS server beyond the shared report fields
    (issue 20). ``None``: not measured (plain FTP has no TLS to measure)."""

    mode: str  # "ftps", "ftps-implicit" or "ftp"
    features: tuple[str, ...] = ()  # FEAT lines as the server sent them
    mlsd: bool = False
    size: bool = False
    mdtm: bool = False
    rest_stream: bool = False
    utf8: bool = False
    server_hash: str | None = None  # "HASH" (SHA-256) or "XSHA256"
    server_hash_works: bool | None = None  # its answer matched a file the probe wrote
    prot_p: bool | None = None  # the data channel is protected (PROT P accepted)
    tls_version: str | None = None
    tls_cipher: str | None = None
    session_reuse_required: bool | None = None  # a data connection without reuse refused
    session_reuse_error: str | None = None  # the server's answer to one without reuse
    remove: bool | None = None  # DELE allowed in a writable folder
    control_address: str = ""
    pasv_address: str = ""  # "host:port" from the PASV reply
    pasv_private: bool = False  # a private/loopback/link-local address
    pasv_matches_control: bool = True
    pasv_reachable: bool | None = None  # a TCP connect to it succeeded (None: not tried)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeReport:
    """What a partner's server really supports, and the settings that follow from it."""

    partner: str
    server_version: str = ""
    sftp_version: int = 3
    extensions: tuple[str, ...] = ()
    posix_rename: bool = False
    rename: bool = False
    rename_over_existing: bool = False
    setstat: bool = False
    check_file: bool = False
    shell_hash: bool = False
    statvfs: bool = False
    free_bytes: int | None = None
    limits: dict[str, int] = field(default_factory=dict)
    folders: dict[str, dict[str, bool]] = field(default_factory=dict)  # folder -> list/write
    clock_skew_seconds: float | None = None
    notes: tuple[str, ...] = ()
    recommended: dict[str, object] = field(default_factory=dict)  # TransferSettings fields
    leftovers: tuple[str, ...] = ()  # probe files the server would not let it remove
    # Largest single write request the server took, and largest read it answered in full
    # (measured up to 261,120 bytes; None: not measured, no writable folder).
    max_write_size: int | None = None
    max_read_size: int | None = None
    # How a file may be written: max_write, max_read (bytes), reopen_write, random_write, remove
    write_model: dict[str, object] = field(default_factory=dict)
    # Whether listings and stat lag behind what is written (None: not measured)
    listing_lag: ListingLag | None = None
    # The partner's protocol, and the FTP/FTPS facts (None for SFTP partners)
    protocol: str = "sftp"
    ftp: FtpProbeFacts | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SentTestFile:
    """``partner test``: the upload, and whether its file could be removed afterwards. A
    server that refuses removes (an upload-only drop box) still took the file: delivered."""

    upload: UploadResult
    removed: bool = True
    left_behind: tuple[str, ...] = ()  # what is still on the server (the file, its marker)
    cleanup_error: str | None = None  # why it could not be removed


class RemoteFS(Protocol):
    """A partner's SFTP server (implemented by ``adapters.sftp.fs.SftpRemoteFS``)."""

    @property
    def partner(self) -> str: ...

    def staging_path(self, final: str, temp_path: str | None = None) -> str:
        """Where ``stage`` writes the bytes for ``final`` (``temp_path`` when a delivery
        convention fixes it; ``final`` itself on a server that forbids rename)."""
        ...

    async def stage(
        self,
        local_path: Path,
        remote_path: str,
        *,
        progress: ProgressCallback | None = None,
        sha256: str | None = None,
        temp_path: str | None = None,
        replace_identical: bool = False,
    ) -> StagedFile:
        """Write under the staging name, resuming from the bytes already there, and verify
        size (and SHA-256 where possible); nothing gets the final name. Raises
        RemoteFileExists (overwrite policy 'fail'), IntegrityError, ...
        ``replace_identical``: a final name holding exactly these bytes is neither refused
        nor skipped (an explicit resend); ``publish(replace=True)`` replaces it."""
        ...

    async def publish(
        self,
        remote_path: str,
        *,
        sha256: str,
        temp_path: str | None = None,
        replace: bool = False,
    ) -> str:
        """Rename a staged file to its final name (then the done-marker, if configured);
        returns the strategy used. ``temp_path`` as given to ``stage``. ``replace``: the
        final name may exist (a resend's old copy) and is replaced, in one rename where the
        server allows, else removed right before the rename."""
        ...

    async def upload(
        self,
        local_path: Path,
        remote_path: str,
        *,
        progress: ProgressCallback | None = None,
        sha256: str | None = None,
        temp_path: str | None = None,
    ) -> UploadResult:
        """``stage`` then ``publish``, for a lone file; raises RemoteFileExists,
        IntegrityError, ..."""
        ...

    async def upload_many(
        self, items: Sequence[UploadItem], *, progress: ProgressCallback | None = None
    ) -> list[UploadResult | TransportError]:
        """One result or error per item, in order; ``progress`` counts files."""
        ...

    async def download(
        self,
        remote_path: str,
        local_path: Path,
        *,
        expected_size: int | None = None,
        progress: ProgressCallback | None = None,
        post_action: PostAction | None = None,
        before_post_action: Callable[[DownloadResult], Awaitable[None]] | None = None,
    ) -> DownloadResult:
        """Durable local copy first; then ``before_post_action``; then the remote action."""
        ...

    def list(
        self,
        folder: str,
        *,
        pattern: str | None = None,
        regex: str | None = None,
        include_dirs: bool = False,
    ) -> AsyncIterator[RemoteEntry]: ...

    def walk(
        self, folder: str, *, max_depth: int | None = None, pattern: str | None = None
    ) -> AsyncIterator[RemoteEntry]: ...

    async def stat(self, remote_path: str) -> RemoteEntry | None: ...

    async def wait_stable(
        self, entry: RemoteEntry, *, now: Callable[[], float] = ...
    ) -> RemoteEntry | None:
        """The entry once the partner has finished writing it, else None (look again)."""
        ...

    async def apply_post_action(
        self, remote_path: str, action: PostAction | None = None
    ) -> str: ...

    async def remove(self, remote_path: str) -> None: ...

    async def move(self, remote_path: str, new_path: str) -> None: ...

    async def makedirs(self, remote_path: str) -> None: ...

    async def probe(self) -> ProbeReport: ...

    async def send_test_file(self, folder: str | None = None) -> SentTestFile: ...

    async def close(self) -> None: ...


class ConnectionBudget(Protocol):
    """The cap on concurrent connections to each partner, across everything that connects."""

    def slot(self, partner: str, limit: int) -> AbstractAsyncContextManager[None]:
        """Hold one of ``limit`` slots for ``partner`` for the duration of the block."""
        ...

    async def acquire(self, partner: str, limit: int, *, wait: bool = True) -> bool:
        """Take a slot; with ``wait=False`` return False at once when none is free."""
        ...

    async def release(self, partner: str) -> None: ...

    def in_use(self, partner: str) -> int: ...
