"""Blocking FTP operations on one ``ftplib`` connection (run in threads by the adapter)."""

from __future__ import annotations

import calendar
import contextlib
import ftplib
import hashlib
import io
import os
import posixpath
import stat as statmod
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from consonance_sftp.adapters.ftp.client import Features
from consonance_sftp.ports.remote_fs import RemoteEntry

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # its path-encoding notice
    import ftputil.error
    import ftputil.stat

BLOCK = 256 * 1024


def parse_time(value: str) -> float:
    """UTC epoch seconds of an MDTM / MLSD ``modify`` value (``YYYYMMDDHHMMSS[.sss]``)."""
    whole, _, frac = value.strip().partition(".")
    secs = calendar.timegm(
        (
            int(whole[0:4]),
            int(whole[4:6]),
            int(whole[6:8]),
            int(whole[8:10]),
            int(whole[10:12]),
            int(whole[12:14]),
            0,
            0,
            0,
        )
    )
    return secs + (float(f"0.{frac}") if frac.isdigit() else 0.0)


def _kind_of_mlsd(facts: dict[str, str]) -> str:
    kind = facts.get("type", "").lower()
    if kind == "file":
        return "file"
    if kind in ("dir", "cdir", "pdir"):
        return "folder"
    if "symlink" in kind or kind == "os.unix=slink" or kind.startswith("os.unix=slink"):
        return "symbolic link"
    return "special file"


def _kind_of_mode(mode: int | None) -> str:
    if mode is None:
        return "file"
    if statmod.S_ISREG(mode):
        return "file"
    if statmod.S_ISDIR(mode):
        return "folder"
    if statmod.S_ISLNK(mode):
        return "symbolic link"
    return "special file"


def entry(path: str, name: str, size: int, mtime: float, kind: str) -> RemoteEntry:
    return RemoteEntry(
        path=path,
        name=name,
        size=size,
        mtime=mtime,
        is_dir=kind == "folder",
        is_file=kind == "file",
    )


def list_folder(ftp: ftplib.FTP, features: Features, folder: str) -> list[tuple[RemoteEntry, str]]:
    """Every entry of ``folder`` with its kind: MLSD where offered, else LIST parsed with
    ftputil's Unix and MS-DOS parsers."""
    out: list[tuple[RemoteEntry, str]] = []
    if features.has("MLST"):
        for name, facts in ftp.mlsd(folder, facts=["type", "size", "modify"]):
            kind = _kind_of_mlsd(facts)
            if name in (".", "..") or facts.get("type", "").lower() in ("cdir", "pdir"):
                continue
            size = int(facts.get("size", "0") or 0)
            mtime = parse_time(facts["modify"]) if "modify" in facts else 0.0
            out.append((entry(posixpath.join(folder, name), name, size, mtime, kind), kind))
        return out
    lines: list[str] = []
    ftp.retrlines(f"LIST {folder}" if folder else "LIST", lines.append)
    parsers: list[ftputil.stat.Parser] = [ftputil.stat.UnixParser(), ftputil.stat.MSParser()]
    for line in lines:
        for parser in parsers:
            if parser.ignores_line(line):
                break
            try:
                st = parser.parse_line(line)
            except ftputil.error.ParserError:
                continue
            name = st._st_name
            if name in (".", ".."):
                break
            kind = _kind_of_mode(st.st_mode)
            out.append(
                (
                    entry(
                        posixpath.join(folder, name),
                        name,
                        int(st.st_size or 0),
                        float(st.st_mtime or 0.0),
                        kind,
                    ),
                    kind,
                )
            )
            parsers = [parser]  # one server, one format
            break
    return out


def stat_path(ftp: ftplib.FTP, features: Features, path: str, home: str) -> RemoteEntry | None:
    """The entry at ``path`` (file or folder), or None: MLST where offered, else SIZE and
    MDTM (a folder: CWD succeeds)."""
    name = posixpath.basename(path.rstrip("/")) or path
    if features.has("MLST"):
        try:
            reply = ftp.sendcmd(f"MLST {path}")
        except ftplib.error_perm:
            return None
        for line in reply.splitlines()[1:]:
            line = line.strip()
            if not line or line[:3].isdigit():
                continue
            facts_text = line.split(" ", 1)[0]
            facts = {
                k.lower(): v for k, _, v in (f.partition("=") for f in facts_text.split(";") if f)
            }
            kind = _kind_of_mlsd(facts)
            size = int(facts.get("size", "0") or 0)
            mtime = parse_time(facts["modify"]) if "modify" in facts else 0.0
            return entry(path, name, size, mtime, kind)
        return None
    try:
        found = ftp.size(path)
    except ftplib.error_perm:
        found = None
    if found is None:
        return entry(path, name, 0, 0.0, "folder") if is_dir(ftp, path, home) else None
    mtime = 0.0
    if features.has("MDTM"):
        try:
            mtime = parse_time(ftp.sendcmd(f"MDTM {path}")[4:])
        except (ftplib.error_perm, ValueError, IndexError):
            mtime = 0.0
    return entry(path, name, found, mtime, "file")


def size_of(ftp: ftplib.FTP, features: Features, path: str) -> int | None:
    """The size of the file at ``path``, or None (no such file): one command (MLST where
    offered, else SIZE), for the upload's checks where the time is not needed."""
    if features.has("MLST"):
        found = stat_path(ftp, features, path, "/")
        return found.size if found is not None and found.is_file else None
    try:
        return ftp.size(path)
    except ftplib.error_perm:
        return None


def is_dir(ftp: ftplib.FTP, path: str, home: str) -> bool:
    try:
        ftp.cwd(path)
    except ftplib.error_perm:
        return False
    ftp.cwd(home)
    return True


def makedirs(ftp: ftplib.FTP, path: str, home: str) -> None:
    """``path`` and its missing parents (MKD refused where a folder exists already is fine)."""
    if is_dir(ftp, path, home):
        return
    current = "/" if path.startswith("/") else ""
    for part in [p for p in path.split("/") if p]:
        current = posixpath.join(current, part)
        try:
            ftp.mkd(current)
        except ftplib.error_perm:
            if not is_dir(ftp, current, home):
                raise


Throttle = Callable[[int], None]  # blocks until that many bytes may cross (bandwidth_limit)


class _ThrottledReader:
    """A file whose every ``read`` first waits for its bytes' worth of the partner's
    bandwidth (``storbinary`` sends each block as soon as it is read)."""

    def __init__(self, fh: Any, throttle: Throttle) -> None:
        self._fh = fh
        self._throttle = throttle

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._fh.read(size)
        if data:
            self._throttle(len(data))
        return data


def block_size(rate: int | None) -> int:
    """Bytes per read and send: ``BLOCK``, or a quarter second's worth of a bandwidth limit
    (at least 16 KiB), so a limited transfer moves steadily instead of in long pauses."""
    if not rate:
        return BLOCK
    return max(16 * 1024, min(BLOCK, rate // 4))


def put(
    ftp: ftplib.FTP,
    local_path: Path,
    remote: str,
    offset: int,
    report: Callable[[int], None],
    digest: Any = None,
    throttle: Throttle | None = None,
    block: int = BLOCK,
) -> None:
    """STOR ``local_path`` from ``offset`` (REST first when not 0); ``digest`` (a hashlib
    object) is fed every byte sent, so the file is read once; ``throttle`` is asked for
    every block before it is sent."""
    with open(local_path, "rb") as fh:
        fh.seek(offset)
        done = offset

        def sent(chunk: bytes) -> None:
            nonlocal done
            if digest is not None:
                digest.update(chunk)
            done += len(chunk)
            report(done)

        source = _ThrottledReader(fh, throttle) if throttle is not None else fh
        ftp.storbinary(f"STOR {remote}", source, block, sent, rest=offset or None)


def put_bytes(ftp: ftplib.FTP, data: bytes, remote: str) -> None:
    ftp.storbinary(f"STOR {remote}", io.BytesIO(data), BLOCK)


def read_range(ftp: ftplib.FTP, remote: str, offset: int, length: int) -> bytes:
    """``length`` bytes of ``remote`` from ``offset`` (REST + RETR, then the transfer cut
    short: ABOR, as servers expect)."""
    got = bytearray()
    conn = ftp.transfercmd(f"RETR {remote}", rest=offset or None)
    try:
        while len(got) < length:
            chunk = conn.recv(min(BLOCK, length - len(got)))
            if not chunk:
                break
            got += chunk
    finally:
        conn.close()
    _finish_cut_transfer(ftp, complete=len(got) >= length)
    return bytes(got)


def _finish_cut_transfer(ftp: ftplib.FTP, *, complete: bool) -> None:
    """After closing a data connection early: read the server's final reply (226, or 426/451
    for an aborted transfer). Either is fine here: we have what we wanted."""
    with contextlib.suppress(ftplib.error_temp, ftplib.error_perm):
        ftp.voidresp()
    del complete


def get(
    ftp: ftplib.FTP,
    remote: str,
    staging: Path,
    offset: int,
    report: Callable[[int], None],
    digest: Any = None,
    throttle: Throttle | None = None,
    block: int = BLOCK,
) -> None:
    """RETR ``remote`` into ``staging`` from ``offset`` (appending), then fsync; ``digest``
    (a hashlib object) is fed every byte received; ``throttle`` is asked for every block
    received (the socket buffers then fill and TCP slows the server down)."""
    with open(staging, "r+b" if offset else "wb") as fh:
        fh.seek(offset)
        fh.truncate()
        done = offset

        def write(chunk: bytes) -> None:
            nonlocal done
            if digest is not None:
                digest.update(chunk)
            fh.write(chunk)
            done += len(chunk)
            report(done)
            if throttle is not None:
                throttle(len(chunk))

        ftp.retrbinary(f"RETR {remote}", write, block, rest=offset or None)
        fh.flush()
        os.fsync(fh.fileno())


def read_back_sha256(
    ftp: ftplib.FTP, remote: str, throttle: Throttle | None = None, block: int = BLOCK
) -> tuple[int, str]:
    """Download ``remote`` again and hash it: (bytes, SHA-256); within the bandwidth limit
    (``throttle``), as any download."""
    digest = hashlib.sha256()
    size = 0

    def take(chunk: bytes) -> None:
        nonlocal size
        digest.update(chunk)
        size += len(chunk)
        if throttle is not None:
            throttle(len(chunk))

    ftp.retrbinary(f"RETR {remote}", take, block)
    return size, digest.hexdigest()


def server_sha256(ftp: ftplib.FTP, command: str, remote: str) -> str:
    """The server's SHA-256 of ``remote`` (``HASH``: ``213 SHA-256 0-N hex name``;
    ``XSHA256``: ``250 hex``)."""
    reply = ftp.sendcmd(f"{command} {remote}")
    for word in reply[4:].split():
        if len(word) == 64 and all(c in "0123456789abcdefABCDEF" for c in word):
            return word.lower()
    raise ftplib.error_proto(f"no SHA-256 in the server's answer: {reply}")


def rename(ftp: ftplib.FTP, source: str, target: str) -> None:
    ftp.rename(source, target)


def delete(ftp: ftplib.FTP, remote: str) -> None:
    ftp.delete(remote)
