"""``partner probe`` on an FTP/FTPS partner: what the server really supports.

The report has the SFTP probe's shape (``ProbeReport``: rename, rename over an existing file,
server-side hash, folders, clock skew, notes, recommended settings) plus the FTP facts
(``FtpProbeFacts``): FEAT (MLSD, SIZE, MDTM, REST STREAM, UTF8, HASH/XSHA256), PROT P and
the TLS version, whether the server *requires* TLS session reuse on data connections (one
listing is tried without it: vsftpd's default answers ``522``), whether DELE is allowed, and
the address its PASV reply announces (private? the control connection's? reachable?).

What it writes: two small files named ``.consonance-probe-<token>-*`` in the first writable
folder, removed at the end (what the server would not let it remove is listed as leftovers).
Every step runs on one control connection, in a thread; a refusal is a fact, not an error.
"""

from __future__ import annotations

import contextlib
import ftplib
import hashlib
import ipaddress
import posixpath
import secrets
import socket
import ssl
import time
from dataclasses import dataclass, field

from consonance_sftp.adapters.ftp import ops
from consonance_sftp.adapters.ftp.client import Features
from consonance_sftp.adapters.ftp.endpoint import FtpEndpoint, FtpMode
from consonance_sftp.config.transfer import ChecksumMethod, PostAction, UploadStrategy
from consonance_sftp.ports.remote_fs import FtpProbeFacts, ProbeReport

_PASV_CONNECT_TIMEOUT = 3.0
_PROBE_BYTES = b"consonance-sftp probe\n"


@dataclass
class _Found:
    """What the blocking steps found (filled step by step)."""

    rename: bool = False
    rename_over_existing: bool = False
    remove: bool | None = None
    server_hash_works: bool | None = None
    clock_skew: float | None = None
    folders: dict[str, dict[str, bool]] = field(default_factory=dict)
    leftovers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pasv: tuple[str, int] | None = None
    pasv_reachable: bool | None = None
    reuse_required: bool | None = None
    reuse_error: str | None = None
    control: str = ""  # the control connection's peer address
    tls_version: str | None = None
    tls_cipher: str | None = None


def _try(fn: object, *args: object) -> tuple[bool, str]:
    """(True, "") when the call succeeded, (False, the server's answer) when refused."""
    try:
        fn(*args)  # type: ignore[operator]
    except (ftplib.Error, OSError, EOFError) as exc:
        return False, str(exc).strip() or type(exc).__name__
    return True, ""


def _exists(ftp: ftplib.FTP, features: Features, path: str, home: str) -> bool:
    try:
        return ops.stat_path(ftp, features, path, home) is not None
    except (ftplib.Error, OSError, EOFError):
        return False


def check_folders(
    ftp: ftplib.FTP, features: Features, folders: tuple[str, ...], token: str, found: _Found
) -> str | None:
    """Can each folder be listed and written? Returns the first writable one."""
    writable: str | None = None
    for folder in folders:
        listed, _ = _try(ops.list_folder, ftp, features, folder)
        probe = posixpath.join(folder, f".consonance-probe-{token}-w")
        wrote, _ = _try(ops.put_bytes, ftp, _PROBE_BYTES, probe)
        if wrote:
            if not _try(ops.delete, ftp, probe)[0]:
                found.leftovers.append(probe)
            writable = writable or folder
        found.folders[folder] = {"list": listed, "write": wrote}
    return writable


def check_writes(
    ftp: ftplib.FTP, features: Features, home: str, folder: str, token: str, found: _Found
) -> None:
    """Rename, rename over an existing file, the server's hash, MDTM (clock skew), DELE."""
    a = posixpath.join(folder, f".consonance-probe-{token}-a")
    b = posixpath.join(folder, f".consonance-probe-{token}-b")
    c = posixpath.join(folder, f".consonance-probe-{token}-c")
    written_at = time.time()
    if not _try(ops.put_bytes, ftp, _PROBE_BYTES, a)[0]:
        return
    command = features.sha256_command
    if command is not None:
        try:
            digest = ops.server_sha256(ftp, command, a)
        except (ftplib.Error, OSError, EOFError) as exc:
            found.server_hash_works = False
            found.notes.append(f"FEAT offers {command}, but it failed: {str(exc).strip()}")
        else:
            found.server_hash_works = digest == hashlib.sha256(_PROBE_BYTES).hexdigest()
            if not found.server_hash_works:
                found.notes.append(f"{command} answered a wrong SHA-256 for a known file")
    if features.has("MDTM"):
        with contextlib.suppress(ftplib.Error, OSError, EOFError, ValueError):
            reply = ftp.sendcmd(f"MDTM {a}")
            found.clock_skew = ops.parse_time(reply[4:].strip()) - written_at
    found.rename, why = _try(ops.rename, ftp, a, c)
    if found.rename:
        _try(ops.put_bytes, ftp, _PROBE_BYTES, b)
        found.rename_over_existing, _ = _try(ops.rename, ftp, c, b)
    else:
        found.notes.append(f"rename refused: {why}")
    present = [p for p in (a, b, c) if _exists(ftp, features, p, home)]
    if present:
        found.remove, why = _try(ops.delete, ftp, present[0])
        if not found.remove:
            found.notes.append(f"DELE refused: {why}")
            found.leftovers.append(present[0])
        for path in present[1:]:
            if not _try(ops.delete, ftp, path)[0]:
                found.leftovers.append(path)


def check_pasv(ftp: ftplib.FTP, found: _Found) -> None:
    """The address the PASV reply announces, and whether it can be reached at all (the
    client never uses it: data goes to the control connection's address)."""
    try:
        host, port = ftplib.parse227(ftp.sendcmd("PASV"))
    except (ftplib.Error, OSError, EOFError) as exc:
        found.notes.append(f"PASV refused: {str(exc).strip()}")
        return
    found.pasv = (host, port)
    try:
        with socket.create_connection((host, port), timeout=_PASV_CONNECT_TIMEOUT):
            found.pasv_reachable = True
    except OSError:
        found.pasv_reachable = False


def check_session_reuse(ftp: ftplib.FTP, found: _Found) -> None:
    """One listing whose data connection does *not* resume the control connection's TLS
    session (what the stdlib's ``FTP_TLS`` does): refused means the server requires reuse.
    Leaves the connection in an unknown state: the caller discards it."""
    assert isinstance(ftp, ftplib.FTP_TLS)
    try:
        raw, _ = ftplib.FTP.ntransfercmd(ftp, "LIST")
        with ftp.context.wrap_socket(raw, server_hostname=ftp.host) as data:
            while data.recv(8192):
                pass
        ftp.voidresp()
    except (ftplib.Error, OSError, EOFError) as exc:
        found.reuse_required = True
        found.reuse_error = str(exc).strip() or type(exc).__name__
        with contextlib.suppress(ftplib.Error, OSError, EOFError):
            ftp.voidresp()  # the 522 after a handshake that failed on our side
        return
    found.reuse_required = False


def run_checks(ftp: ftplib.FTP, features: Features, endpoint: FtpEndpoint, home: str) -> _Found:
    """Every check, in order, on one connection (blocking: run in a thread)."""
    found = _Found()
    token = secrets.token_hex(4)
    if ftp.sock is not None:  # read first: the session-reuse check may break the connection
        with contextlib.suppress(OSError):
            found.control = str(ftp.sock.getpeername()[0])
        if isinstance(ftp.sock, ssl.SSLSocket):
            found.tls_version = ftp.sock.version()
            found.tls_cipher = (ftp.sock.cipher() or ("",))[0]
    writable = check_folders(ftp, features, endpoint.folders, token, found)
    if writable is None and not endpoint.folders:
        writable = home
    if writable is not None:
        check_writes(ftp, features, home, writable, token, found)
    else:
        found.notes.append("no writable folder: rename, DELE and the server's hash not tested")
    check_pasv(ftp, found)
    if isinstance(ftp, ftplib.FTP_TLS):
        check_session_reuse(ftp, found)
    return found


def _is_private(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def build_report(
    endpoint: FtpEndpoint, ftp: ftplib.FTP, features: Features, found: _Found
) -> ProbeReport:
    """The report and the recommended settings (only what differs from the current ones)."""
    control = found.control
    pasv_host, pasv_port = found.pasv or ("", 0)
    facts = FtpProbeFacts(
        mode=endpoint.mode.value,
        features=features.lines,
        mlsd=features.has("MLSD") or features.has("MLST"),
        size=features.has("SIZE"),
        mdtm=features.has("MDTM"),
        rest_stream="STREAM" in features.names.get("REST", "").upper(),
        utf8=features.has("UTF8"),
        server_hash=features.sha256_command,
        server_hash_works=found.server_hash_works,
        prot_p=None if endpoint.mode is FtpMode.PLAIN else True,  # open_ftp sent PROT P
        tls_version=found.tls_version,
        tls_cipher=found.tls_cipher,
        session_reuse_required=found.reuse_required,
        session_reuse_error=found.reuse_error,
        remove=found.remove,
        control_address=control,
        pasv_address=f"{pasv_host}:{pasv_port}" if found.pasv else "",
        pasv_private=_is_private(pasv_host) if found.pasv else False,
        pasv_matches_control=not found.pasv or pasv_host == control,
        pasv_reachable=found.pasv_reachable,
    )
    notes = list(found.notes)
    notes.extend(_notes(facts))
    recommended = _recommend(endpoint, facts, found, notes)
    return ProbeReport(
        partner=endpoint.partner,
        protocol=endpoint.mode.value,
        server_version=(ftp.welcome or "").strip(),
        sftp_version=0,
        extensions=features.lines,
        rename=found.rename,
        rename_over_existing=found.rename_over_existing,
        check_file=bool(found.server_hash_works),
        folders=found.folders,
        clock_skew_seconds=found.clock_skew,
        notes=tuple(notes),
        recommended=recommended,
        leftovers=tuple(found.leftovers),
        write_model={"remove": found.remove} if found.remove is not None else {},
        ftp=facts,
    )


def _notes(facts: FtpProbeFacts) -> list[str]:
    notes: list[str] = []
    if facts.session_reuse_required:
        notes.append(
            "the server requires TLS session reuse on data connections (this client reuses "
            "the session; clients that do not, such as Python's own ftplib, fail with 522)"
        )
    if facts.pasv_address and not facts.pasv_matches_control:
        where = "a private address" if facts.pasv_private else "another address"
        reach = {True: "reachable", False: "unreachable", None: "not tried"}
        notes.append(
            f"PASV announces {where}, {facts.pasv_address} "
            f"({reach[facts.pasv_reachable]} from here), not the control connection's "
            f"{facts.control_address}: data connections go to the control address (always)"
        )
    if not facts.mlsd:
        notes.append("no MLSD: listings are parsed from LIST (times to the minute at best)")
    if not facts.size:
        notes.append("no SIZE: sizes come from listings")
    if facts.mode == FtpMode.PLAIN.value:
        notes.append("plain FTP: the password and every file cross the network unencrypted")
    return notes


def _recommend(
    endpoint: FtpEndpoint, facts: FtpProbeFacts, found: _Found, notes: list[str]
) -> dict[str, object]:
    ts = endpoint.transfer
    want: dict[str, object] = {}
    tested = found.remove is not None  # the write tests ran
    if tested and not found.rename:
        want["upload_strategy"] = UploadStrategy.DIRECT.value
        if not ts.done_marker:
            want["done_marker"] = "{name}.done"
    elif ts.upload_strategy is UploadStrategy.DIRECT and found.rename:
        want["upload_strategy"] = None  # rename works: temporary name, then RNTO (auto)
    if ts.checksum in (ChecksumMethod.CHECK_FILE, ChecksumMethod.SHELL):
        # SFTP-only methods: 'auto' uses the server's HASH/XSHA256, else reads back.
        want["checksum"] = None
    if not facts.server_hash_works and ts.checksum is ChecksumMethod.AUTO:
        notes.append(
            "no working server-side SHA-256: each upload is verified by reading it back "
            "(a second transfer of its size); checksum = 'size' trades that for size only"
        )
    if not facts.rest_stream and ts.resume:
        want["resume"] = False
        notes.append("no REST STREAM: an interrupted transfer starts again from the start")
    if ts.set_mtime:
        want["set_mtime"] = False  # not done over FTP
    if found.remove is False and ts.post_action is PostAction.DELETE:
        want["post_action"] = PostAction.LEAVE.value
    return want
