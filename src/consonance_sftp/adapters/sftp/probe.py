"""Partner probe: what a partner's server really supports, and the settings that follow.

It logs in with the configured credentials and tries, on small files of its own under one
name per run (``.consonance-probe-<token>``; a second file ``<name>.over`` only to try a rename
over an existing file), removed afterwards where the server allows it and reported as
``leftovers`` where it does not (an upload-only drop box): list and write in each configured
folder,
posix-rename, plain rename, rename over an existing file, setstat (utime), the ``check-file``
extension, a hashing command over SSH, statvfs and the ``limits`` extension; the mtime of a
file it wrote gives the clock skew; a second connection's ``stat`` and listing of a file it
keeps writing give the listing lag (``listing_lag``: where listings lag, a ``min_age`` longer
than the lag is recommended for inboxes). Nothing is changed on our side: the recommendations are
returned, and only ``partner probe --apply`` writes them into the config.

``send_test_file`` is ``partner test``: one small file through the full upload protocol, then
removed; a server that refuses the remove has still taken the file ("delivered, could not
clean up"), which is not a failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import posixpath
import secrets
import shlex
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import asyncssh

from consonance_sftp import errors
from consonance_sftp.adapters.sftp import checksums
from consonance_sftp.adapters.sftp.connection import PooledConnection
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.adapters.sftp.listing_lag import measure_listing_lag
from consonance_sftp.adapters.sftp.translate import translate
from consonance_sftp.adapters.sftp.write_model import probe_write_model
from consonance_sftp.config.transfer import (
    MAX_OPENSSH_BLOCK,
    ChecksumMethod,
    OverwritePolicy,
    TransferSettings,
    UploadStrategy,
)
from consonance_sftp.ports.remote_fs import ListingLag, ProbeReport, SentTestFile

log = logging.getLogger(__name__)

# The SFTP drafts require servers to accept at least 32 KiB per read/write request.
_SAFE_BLOCK = 32_768
_SHELL_PROBE_TIMEOUT = 10.0


async def _attempt(aw: object) -> bool:
    """True when the remote operation succeeded, False when the server refused it."""
    try:
        await aw  # type: ignore[misc]
        return True
    except (asyncssh.SFTPError, errors.TransportError) as exc:
        if isinstance(exc, errors.ConnectionLost | asyncssh.SFTPConnectionLost):
            raise
        return False


async def _write(sftp: asyncssh.SFTPClient, path: str, data: bytes) -> None:
    async with sftp.open(path, "wb") as fh:
        await fh.write(data)


def _probe_name(folder: str, token: str, tag: str = "") -> str:
    """The run's one probe file name in ``folder`` (``tag``: a second file beside it)."""
    return posixpath.join(folder, f".consonance-probe-{token}" + (f".{tag}" if tag else ""))


async def _remove_probe_files(sftp: asyncssh.SFTPClient, paths: list[str]) -> list[str]:
    """Remove what the probe made; returns the files still there (the server refused)."""
    left: list[str] = []
    for path in dict.fromkeys(paths):
        try:
            await sftp.remove(path)
        except asyncssh.SFTPNoSuchFile:
            continue  # renamed away during the probe
        except (asyncssh.SFTPError, asyncssh.Error, OSError):
            try:
                await sftp.stat(path)
            except asyncssh.SFTPNoSuchFile:
                continue
            except (asyncssh.SFTPError, asyncssh.Error, OSError):
                pass  # cannot tell: report it rather than claim it is gone
            left.append(path)
    return left


_LEFTOVER_NOTE = "could not remove "


def _with_leftovers(report: ProbeReport, leftovers: list[str]) -> ProbeReport:
    """``report`` with ``leftovers`` added to those it has, and one note naming them all."""
    every = tuple(dict.fromkeys((*report.leftovers, *leftovers)))
    if not every:
        return report
    note = (
        f"{_LEFTOVER_NOTE}{len(every)} probe file(s), the server refuses removes "
        f"(an upload-only drop box?): {', '.join(every)}"
    )
    notes = tuple(n for n in report.notes if not n.startswith(_LEFTOVER_NOTE))
    return replace(report, leftovers=every, notes=(*notes, note))


async def probe_partner(fs: SftpRemoteFS) -> ProbeReport:
    """Probe ``fs``'s partner; raises the usual TransportError when it cannot log in."""
    token = secrets.token_hex(4)
    try:
        report = await _probe(fs, token)
        report = await block_size_advice(fs, report, token)
        return await listing_lag_advice(fs, report, token)
    except (asyncssh.Error, OSError, TimeoutError) as exc:
        raise translate(exc, partner=fs.partner) from exc


async def _probe(fs: SftpRemoteFS, token: str) -> ProbeReport:
    ep = fs.endpoint
    notes: list[str] = []
    folders_report: dict[str, dict[str, bool]] = {}
    created: list[str] = []
    async with fs.pool.lease() as pc:
        sftp = pc.sftp
        handler = sftp._handler
        flags = {
            name: bool(getattr(handler, f"_supports_{name}", False))
            for name in ("posix_rename", "statvfs", "fsync", "limits", "hardlink", "copy_data")
        }
        extensions = tuple(name for name, on in flags.items() if on)
        limits: dict[str, int] = {}
        if flags["limits"]:
            lim = sftp.limits
            limits = {
                "max_packet_len": lim.max_packet_len,
                "max_read_len": lim.max_read_len,
                "max_write_len": lim.max_write_len,
                "max_open_handles": lim.max_open_handles,
            }
        folders = list(ep.folders) or ["."]
        writable: str | None = None
        for folder in folders:
            can_list = await _attempt(_first_entry(sftp, folder))
            probe_file = _probe_name(folder, token)
            can_write = await _attempt(_write(sftp, probe_file, b"probe"))
            if can_write:
                created.append(probe_file)
                writable = writable or folder
            folders_report[folder] = {"list": can_list, "write": can_write}
            if not can_list:
                notes.append(f"cannot list {folder!r}")
            if not can_write:
                notes.append(f"cannot write in {folder!r}")

        report = ProbeReport(
            partner=ep.partner,
            server_version=str(pc.conn.get_extra_info("server_version") or ""),
            sftp_version=int(sftp.version),
            extensions=extensions,
            posix_rename=False,
            limits=limits,
            folders=folders_report,
        )
        if writable is None:
            notes.append("no configured folder is writable: upload capabilities not probed")
            return _finish(report, notes, {}, fs)

        leftovers: list[str] = []
        try:
            found = await _probe_writes(fs, pc, writable, token, created, flags)
        finally:
            leftovers = await _remove_probe_files(sftp, created)
    return _with_leftovers(_finish(report, notes, found, fs), leftovers)


async def _first_entry(sftp: asyncssh.SFTPClient, folder: str) -> None:
    async for _ in sftp.scandir(folder):
        break


async def _probe_writes(
    fs: SftpRemoteFS,
    pc: PooledConnection,
    folder: str,
    token: str,
    created: list[str],
    flags: dict[str, bool],
) -> dict[str, object]:
    sftp = pc.sftp

    def name(tag: str = "") -> str:
        path = _probe_name(folder, token, tag)
        created.append(path)
        return path

    found: dict[str, object] = {}
    body = b"consonance-sftp probe\n"
    digest = hashlib.sha256(body).hexdigest()

    a = name()  # the run's one name, written by the folder check already
    # Made afresh: a server may refuse to open an existing file for writing (ProFTPD's
    # AllowOverwrite off); a drop box refuses the remove but takes the write over.
    await _attempt(sftp.remove(a))
    before = time.time()
    if not await _attempt(_write(sftp, a, body)):
        a = name("fresh")  # neither remove nor write over: a second name
        before = time.time()
        await _write(sftp, a, body)
    after = time.time()
    attrs = await sftp.stat(a)
    if attrs.mtime is not None:
        # mtime has 1 s precision on SFTP v3: the skew is only meaningful beyond a second
        found["clock_skew"] = round(float(attrs.mtime) - (before + after) / 2, 1)

    found["setstat"] = await _attempt(sftp.utime(a, (1_600_000_000, 1_600_000_000)))
    try:
        found["check_file"] = await checksums.check_file_sha256(sftp, a) == digest
    except (asyncssh.SFTPError, asyncssh.Error):
        found["check_file"] = False
    try:
        async with asyncio.timeout(_SHELL_PROBE_TIMEOUT):
            sha = await checksums.shell_sha256(
                pc.conn, fs.settings.shell_hash_command, a, limit=_SHELL_PROBE_TIMEOUT
            )
        found["shell_hash"] = sha == digest
    except (asyncssh.Error, OSError, TimeoutError):
        found["shell_hash"] = False
    if not found["shell_hash"]:
        command = await _other_hash_command(pc, a, body, fs.settings.shell_hash_command)
        if command is not None:
            found["shell_hash"] = True
            found["shell_hash_command"] = command

    b = name("moved")
    found["posix_rename"] = flags["posix_rename"] and await _attempt(sftp.posix_rename(a, b))
    # the plain rename moves the file back to the run's name where posix-rename moved it away
    source, c = (b, a) if found["posix_rename"] else (a, b)
    found["rename"] = await _attempt(sftp.rename(source, c))
    if found["rename"]:
        d = name("over")
        await _write(sftp, d, body)
        found["rename_over_existing"] = await _attempt(sftp.rename(d, c))
    else:
        found["rename_over_existing"] = False
    found["write_model"] = await probe_write_model(sftp, name())  # the run's one name
    if (
        found["shell_hash"]
        and "shell_hash_command" not in found
        and fs.settings.shell_hash_command == checksums.SHA256_COMMANDS[0]
    ):
        # Written over the run's one name: an upload-only drop box keeps no more files.
        faster = await _faster_sha256_command(pc, name(), fs.settings.shell_hash_command)
        if faster is not None:
            found["shell_hash_command"] = faster
    if found["shell_hash"]:
        found["shell_beats_read_back"] = await _shell_beats_read_back(
            pc, name(), str(found.get("shell_hash_command", fs.settings.shell_hash_command))
        )
    if flags["statvfs"]:
        try:
            vfs = await sftp.statvfs(folder)
            found["free_bytes"] = int(vfs.bavail * vfs.frsize)
        except asyncssh.SFTPError:
            found["free_bytes"] = None
    return found


async def _shell_beats_read_back(pc: PooledConnection, path: str, command: str) -> bool:
    """Does ``command`` check a file just written faster than reading it back? Each is timed
    on a fresh 50 KB file, best of three. A small file is checked one way or the other after
    every upload: OpenSSH starts a process per command (2,000 files of 50 KB: 124 s that way,
    3 s read back); rclone answers its hash commands itself, but reads a file it has just
    written back only after about 10 ms (2,000 files: 4.9 s by sha1sum, 20 s read back)."""
    body = secrets.token_bytes(50_000)
    shell, read = [], []
    try:
        for _ in range(3):
            await _write(pc.sftp, path, body)
            started = time.monotonic()
            async with asyncio.timeout(_SHELL_PROBE_TIMEOUT):
                await checksums.shell_digest(pc.conn, command, path, limit=_SHELL_PROBE_TIMEOUT)
            shell.append(time.monotonic() - started)
            await _write(pc.sftp, path, body)
            started = time.monotonic()
            async with asyncio.timeout(_SHELL_PROBE_TIMEOUT):
                async with pc.sftp.open(path, "rb", encoding=None) as fh:
                    await fh.read(len(body) + 1, 0)
            read.append(time.monotonic() - started)
    except (asyncssh.Error, OSError, TimeoutError):
        return False
    return min(shell) < min(read)


# The hash commands' speed is compared on one small file named this many times in one command
# line (64 MiB hashed from the server's page cache, so that hashing, not starting a command
# over SSH, decides: coreutils' sha256sum without SHA-NI takes about 200 ms, openssl 50), less
# the same command's time for the file named once.
_SPEED_PROBE_SIZE = 1024 * 1024
_SPEED_PROBE_COPIES = 64
# Another SHA-256 command is kept only when its hashing took at most this share of the
# configured one's, so that noise never swaps them.
_FASTER = 0.7


async def _faster_sha256_command(pc: PooledConnection, path: str, current: str) -> str | None:
    """A SHA-256 command the server runs faster than ``current`` (``openssl dgst -sha256 -r``
    where coreutils' ``sha256sum`` has no SHA-NI: 1.58 s against 0.39 s for 512 MiB on our
    bench machine; the hash runs after every upload, on its critical path), if it answers
    correctly; None when ``current`` is as fast, or nothing else answers."""
    data = secrets.token_bytes(_SPEED_PROBE_SIZE)
    want = hashlib.sha256(data).hexdigest()
    try:
        await _write(pc.sftp, path, data)
    except (asyncssh.SFTPError, asyncssh.Error, OSError):
        return None
    plain = posixpath.normpath(path)
    again = " ".join([shlex.quote(plain)] * (_SPEED_PROBE_COPIES - 1))
    hashing: dict[str, float] = {}
    for command in (current, *(c for c in checksums.SHA256_COMMANDS if c != current)):
        took = []
        for line in (command, f"{command} {again}"):
            started = time.monotonic()
            try:
                async with asyncio.timeout(_SHELL_PROBE_TIMEOUT):
                    got = await checksums.shell_digest(
                        pc.conn, line, path, limit=_SHELL_PROBE_TIMEOUT
                    )
            except (asyncssh.Error, OSError, TimeoutError):
                break
            if got != want:
                break
            took.append(time.monotonic() - started)
        else:
            hashing[command] = max(1e-3, took[1] - took[0])
    if current not in hashing:
        return None
    fastest = min(hashing, key=hashing.__getitem__)
    if fastest != current and hashing[fastest] <= _FASTER * hashing[current]:
        log.info(
            "the server hashes faster with %r (%.0f ms for %d MiB) than with %r (%.0f ms)",
            fastest,
            hashing[fastest] * 1000,
            (_SPEED_PROBE_COPIES - 1) * _SPEED_PROBE_SIZE >> 20,
            current,
            hashing[current] * 1000,
        )
        return fastest
    return None


async def _other_hash_command(
    pc: PooledConnection, path: str, body: bytes, tried: str
) -> str | None:
    """The first of sha256sum, openssl's SHA-256, sha1sum, md5sum the server answers
    correctly over exec (rclone answers the last two only), other than ``tried``."""
    candidates = [(c, "sha256") for c in checksums.SHA256_COMMANDS] + [
        (c, a) for c, a in checksums.COMMAND_ALGORITHMS.items() if a != "sha256"
    ]
    for command, algorithm in candidates:
        if command == tried:
            continue
        try:
            async with asyncio.timeout(_SHELL_PROBE_TIMEOUT):
                got = await checksums.shell_digest(
                    pc.conn, command, path, limit=_SHELL_PROBE_TIMEOUT
                )
        except (asyncssh.Error, OSError, TimeoutError):
            continue
        if got == hashlib.new(algorithm, body, usedforsecurity=False).hexdigest():
            return command
    return None


def _finish(
    report: ProbeReport, notes: list[str], found: dict[str, object], fs: SftpRemoteFS
) -> ProbeReport:
    ts = fs.settings
    posix = bool(found.get("posix_rename"))
    rename = bool(found.get("rename"))
    over = bool(found.get("rename_over_existing"))
    setstat = bool(found.get("setstat"))
    check_file = bool(found.get("check_file"))
    shell_hash = bool(found.get("shell_hash"))
    skew = found.get("clock_skew")
    free = found.get("free_bytes")
    model = found.get("write_model")
    write_model: dict[str, object] = dict(model) if isinstance(model, dict) else {}

    wanted: dict[str, object] = {}
    if found:
        if posix:
            # 'auto' uses posix-rename to replace and plain rename to refuse a replace
            wanted["upload_strategy"] = UploadStrategy.AUTO.value
        elif rename and over:
            wanted["upload_strategy"] = UploadStrategy.RENAME.value
            notes.append("plain rename replaces an existing file on this server")
        elif rename:
            wanted["upload_strategy"] = (
                UploadStrategy.RENAME.value
                if ts.overwrite is OverwritePolicy.FAIL
                else UploadStrategy.DELETE_RENAME.value
            )
        else:
            wanted["upload_strategy"] = UploadStrategy.DIRECT.value
            if not ts.done_marker:
                wanted["done_marker"] = "{name}.done"
            notes.append("rename is refused: files are written under their final name")
        if rename:
            # A plain rename that refuses an existing name enforces overwrite = 'fail' itself.
            wanted["rename_keeps_existing"] = not over
        if not setstat:
            wanted["set_mtime"] = False
        if check_file:
            wanted["checksum"] = ChecksumMethod.CHECK_FILE.value
        elif shell_hash:
            # 'auto' with the shell allowed: the command checks files from 1 MiB, smaller ones
            # are read back (an exec per file costs OpenSSH a process: 2,000 files of 50 KiB
            # took 124 s by 'shell', 3 s so); 'shell' for every file where the command is the
            # quicker check even of a small file (rclone).
            wanted["checksum"] = (
                ChecksumMethod.SHELL if found.get("shell_beats_read_back") else ChecksumMethod.AUTO
            ).value
            wanted["allow_shell"] = True
            if isinstance(found.get("shell_hash_command"), str):
                wanted["shell_hash_command"] = found["shell_hash_command"]
        else:
            # Never a size-only check by recommendation: 'auto' reads each upload back. Only
            # a 'size' the partner's config already says explicitly is left as it is.
            if ts.checksum is not ChecksumMethod.SIZE:
                wanted["checksum"] = ChecksumMethod.AUTO.value
            notes.append(
                "no remote hash (no check-file, no hash command): each upload is verified by "
                "reading it back, a second transfer of its size; checksum = 'size' checks the "
                "size only (the ledger then says 'size')"
            )
        parallel_ok = write_model.get("reopen_write") and write_model.get("random_write")
        if write_model and not parallel_ok:
            # Parallel segments open the temporary file again and write out of order: on this
            # server large files go in one open with writes in order.
            wanted["segment_connections"] = 1
            refused = [
                what
                for key, what in (
                    ("reopen_write", "opening an existing file again for writing"),
                    ("random_write", "writes out of order"),
                )
                if not write_model.get(key)
            ]
            notes.append(
                f"the server refuses {' and '.join(refused)}: large files are sent over one "
                "connection, in order"
            )
        if isinstance(skew, float) and abs(skew) > 120:
            notes.append(f"server clock is {skew:+.0f}s off: min_age compares against it")
    recommended = {k: v for k, v in wanted.items() if _current(ts, k) != v}
    return ProbeReport(
        partner=report.partner,
        server_version=report.server_version,
        sftp_version=report.sftp_version,
        extensions=report.extensions,
        posix_rename=posix,
        rename=rename,
        rename_over_existing=over,
        setstat=setstat,
        check_file=check_file,
        shell_hash=shell_hash,
        statvfs="statvfs" in report.extensions,
        free_bytes=free if isinstance(free, int) else None,
        limits=report.limits,
        folders=report.folders,
        clock_skew_seconds=skew if isinstance(skew, float) else None,
        notes=tuple(notes),
        recommended=recommended,
        write_model=write_model,
    )


# --- block sizes ---------------------------------------------------------------------------

# Sizes tried, largest first. The SFTP drafts oblige a server to take 32 KiB; many take 256
# KiB (OpenSSH's own cap is MAX_OPENSSH_BLOCK, and a larger write makes it drop the session).
_BLOCK_SIZES = (MAX_OPENSSH_BLOCK, 131_072, 65_536, _SAFE_BLOCK)


async def measure_block_sizes(
    fs: SftpRemoteFS, path: str, limits: dict[str, int]
) -> tuple[int | None, int | None]:
    """(largest write request the server takes, largest read it answers in full), measured on
    ``path``, each up to 261,120 bytes and no more than the ``limits`` extension announces.

    A write is one request of that many bytes, then a stat of the size; a read is one request
    for 261,120 bytes of a file at least that long, whose answer (a server may answer with
    less than asked: rclone caps reads at 32 KiB) is compared with what was written. Each
    size is tried on a connection of its own after a failure, since a server may drop the
    session over a request it finds too large.
    """
    write_cap = limits.get("max_write_len") or MAX_OPENSSH_BLOCK
    read_cap = limits.get("max_read_len") or MAX_OPENSSH_BLOCK
    sizes = sorted({min(n, write_cap) for n in _BLOCK_SIZES}, reverse=True)
    payload = secrets.token_bytes(MAX_OPENSSH_BLOCK)
    written: int | None = None
    for size in sizes:
        if await _attempt_sizes(_write_blocks(fs, path, payload, size)):
            written = size
            break
    if written is None:
        return None, None
    read: int | None = None
    for size in sorted({min(n, read_cap) for n in _BLOCK_SIZES}, reverse=True):
        got = await _attempt_read(fs, path, payload, size)
        if got:
            read = got
            break
    return written, read


async def _attempt_sizes(aw: object) -> bool:
    try:
        await aw  # type: ignore[misc]
        return True
    except (asyncssh.Error, errors.TransportError, OSError):
        return False


async def _write_blocks(fs: SftpRemoteFS, path: str, payload: bytes, size: int) -> None:
    """Write ``payload`` to ``path`` in requests of ``size`` bytes; fails unless it all landed."""
    async with fs.pool.lease() as pc:
        # afresh, as above: an earlier size may have left the file, and some servers will not
        # open an existing file for writing
        await _attempt(pc.sftp.remove(path))
        async with await pc.sftp.open(path, "wb", encoding=None, block_size=0) as fh:
            for offset in range(0, len(payload), size):
                await fh.write(payload[offset : offset + size], offset)
        attrs = await pc.sftp.stat(path)
    if attrs.size != len(payload):
        raise errors.TransportError(f"{size}-byte writes left {attrs.size} bytes", path=path)


async def _attempt_read(fs: SftpRemoteFS, path: str, payload: bytes, size: int) -> int | None:
    """Bytes one read request of ``size`` bytes returned, when they match what was written."""
    try:
        async with (
            fs.pool.lease() as pc,
            await pc.sftp.open(path, "rb", encoding=None, block_size=0) as fh,
        ):
            data = await fh.read(size, 0)
    except (asyncssh.Error, errors.TransportError, OSError):
        return None
    assert isinstance(data, bytes)
    return len(data) if data and data == payload[: len(data)] else None


async def block_size_advice(fs: SftpRemoteFS, report: ProbeReport, token: str) -> ProbeReport:
    """``report`` with the measured write and read sizes and the block sizes they recommend
    (``block_size`` for writes, ``read_block_size`` where reads are answered with less).
    Without a writable folder nothing can be measured: the ``limits`` extension decides, else
    32 KiB, the size every server must take."""
    ts = fs.settings
    notes = list(report.notes)
    folder = next((f for f, rights in report.folders.items() if rights.get("write")), None)
    write = read = None
    leftovers: list[str] = []
    if folder is not None:
        path = _probe_name(folder, token)
        try:
            write, read = await measure_block_sizes(fs, path, report.limits)
        finally:
            async with fs.pool.lease() as pc:
                leftovers = await _remove_probe_files(pc.sftp, [path])
    wanted: dict[str, object] = {}
    if write is not None:
        wanted["block_size"] = write
        # one size for both unless reads come back shorter than writes may be
        wanted["read_block_size"] = read if read is not None and read < write else None
        if read is not None and read < write:
            notes.append(
                f"the server takes {write}-byte writes but answers reads with at most {read} "
                "bytes: read_block_size is set apart"
            )
    elif report.limits:
        caps = [v for k, v in report.limits.items() if k in ("max_read_len", "max_write_len") and v]
        wanted["block_size"] = min([MAX_OPENSSH_BLOCK, *caps])
    else:
        wanted["block_size"] = _SAFE_BLOCK
        notes.append("block sizes not measured and no limits extension: 32 KiB is the safe size")
    recommended = dict(report.recommended)
    for key, value in wanted.items():
        recommended.pop(key, None)
        if _current(ts, key) != value:
            recommended[key] = value
    advised = replace(
        report,
        max_write_size=write,
        max_read_size=read,
        notes=tuple(notes),
        recommended=recommended,
    )
    return _with_leftovers(advised, leftovers)


# --- listing lag ---------------------------------------------------------------------------

# Added to a lag for min_age: the server's mtime has 1 s precision, and a file written in
# bursts keeps an old mtime between them.
_MIN_AGE_MARGIN = 60


async def listing_lag_advice(fs: SftpRemoteFS, report: ProbeReport, token: str) -> ProbeReport:
    """``report`` with the listing lag (``listing_lag.measure_listing_lag``) measured on the
    run's probe name in the first writable folder, and, where a lag is measured or known, a
    ``min_age`` longer than it (the two-look stability rule cannot see a growing file through
    a cache; a recent mtime still can), unless the inbox waits for done-markers already."""
    folder = next((f for f, rights in report.folders.items() if rights.get("write")), None)
    if folder is None:
        return report
    path = _probe_name(folder, token)
    notes = list(report.notes)
    leftovers: list[str] = []
    try:
        lag = await _measure_lag(fs, path, report.server_version)
    except (asyncssh.SFTPError, errors.TransportError) as exc:
        if isinstance(exc, asyncssh.SFTPConnectionLost | errors.ConnectionLost):
            raise
        notes.append(f"listing lag not measured: the server refused the probe file ({exc})")
        return replace(report, notes=tuple(notes))
    finally:
        async with fs.pool.lease() as pc:
            leftovers = await _remove_probe_files(pc.sftp, [path])
    wanted, lag_notes = _lag_advice(lag, fs.settings, report.clock_skew_seconds)
    recommended = dict(report.recommended)
    recommended.update(wanted)
    advised = replace(report, listing_lag=lag, notes=(*notes, *lag_notes), recommended=recommended)
    return _with_leftovers(advised, leftovers)


async def _measure_lag(fs: SftpRemoteFS, path: str, server_version: str) -> ListingLag:
    """Write through one connection, look through a second one (or, where the connection
    budget has no room, a second SFTP session on the same connection)."""
    async with fs.pool.lease_many(2) as conns:
        if len(conns) > 1:
            return await measure_listing_lag(
                conns[0].sftp, conns[1].sftp, path, server_version=server_version
            )
        extra = await conns[0].conn.start_sftp_client(path_errors="surrogateescape")
        try:
            return await measure_listing_lag(
                conns[0].sftp, extra, path, server_version=server_version
            )
        finally:
            extra.exit()


def _seconds(value: float | None, timeout: float) -> str:
    return f"after {value:.1f} s" if value is not None else f"not within {timeout:.0f} s"


def _lag_advice(
    lag: ListingLag, ts: TransferSettings, skew: float | None
) -> tuple[dict[str, object], list[str]]:
    """(settings, notes) for a server whose views lag: ``min_age`` longer than the lag (the
    known cache time where the lag is known, not measured) plus a margin and the clock skew."""
    if not lag.lagging:
        return {}, []
    notes: list[str] = []
    measured = (
        f"a second session saw the probe's writes in stat "
        f"{_seconds(lag.stat_seconds, lag.timeout)}, in the listing "
        f"{_seconds(lag.listing_seconds, lag.timeout)}"
    )
    if lag.known_cache:
        notes.append(
            f"{lag.known_cache} (known from its version string: SFTP cannot show it, {measured})"
        )
    else:
        notes.append(f"listings lag: {measured}, showing an older size meanwhile")
    if ts.intake_done_marker:
        notes.append("the inbox waits for done-markers (intake_done_marker): the lag is harmless")
        return {}, notes
    worst = (
        None
        if lag.stale and (lag.stat_seconds is None or lag.listing_seconds is None)
        else max(lag.stat_seconds or 0.0, lag.listing_seconds or 0.0, lag.known_cache_seconds)
    )
    if worst is None:
        notes.append(
            f"the views had not caught up after {lag.timeout:.0f} s, so no min_age can be "
            "derived: a done-marker (intake_done_marker = '{name}.done', if the partner can "
            "write one) or a min_age longer than the server's cache time keeps growing files out"
        )
        return {}, notes
    min_age = math.ceil(worst + abs(skew or 0.0)) + _MIN_AGE_MARGIN
    notes.append(
        f"inbox: two looks at a growing file may agree here: min_age = {min_age} (longer than "
        "the lag) keeps a file still being written from being taken; intake_done_marker, "
        "where the partner writes markers, is surer"
    )
    if ts.min_age >= min_age:
        return {}, notes
    return {"min_age": min_age}, notes


def _current(ts: object, key: str) -> object:
    value = getattr(ts, key, None)
    return getattr(value, "value", value)


def save_report(report: ProbeReport, folder: Path) -> Path:
    """Store a probe result as JSON (``<folder>/<partner>.json``); returns the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{report.partner}.json"
    data = {**asdict(report), "probed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


async def send_test_file(fs: SftpRemoteFS, folder: str | None = None) -> SentTestFile:
    """``partner test``: one small file through the full upload protocol, then removed.

    A failed upload raises. A file delivered that the server will not let us remove again
    (an upload-only drop box) is a success, with what was left behind and why."""
    folder = folder or (fs.endpoint.folders[0] if fs.endpoint.folders else ".")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    remote = posixpath.join(folder, f"consonance-sftp-test-{stamp}-{secrets.token_hex(3)}.txt")
    with tempfile.TemporaryDirectory(prefix="consonance-sftp-test-") as tmp:
        local = Path(tmp) / "test.txt"
        local.write_bytes(f"consonance-sftp connection test {stamp}\n".encode() * 64)
        result = await fs.upload(local, remote)
    written = [remote]
    marker = fs.settings.done_marker
    if marker:
        stem, _dot, suffix = posixpath.basename(remote).rpartition(".")
        name = marker.format(name=posixpath.basename(remote), stem=stem, suffix=suffix)
        written.append(posixpath.join(folder, name))
    left: list[str] = []
    cleanup_error: str | None = None
    for path in written:
        try:
            await fs.remove(path)
        except errors.RemotePathNotFound:
            continue
        except errors.TransportError as exc:
            left.append(path)
            cleanup_error = cleanup_error or exc.message
    return SentTestFile(
        upload=result, removed=not left, left_behind=tuple(left), cleanup_error=cleanup_error
    )
