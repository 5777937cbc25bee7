"""Translate asyncssh and OS errors into the service's error tree, naming partner and path.

SFTP v3 servers (OpenSSH among them) report most failures as a bare ``SSH_FX_FAILURE`` with a
reason text, so a full disk or a quota is recognised from that text as well as from the v5+
status codes.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import NoReturn

import asyncssh

from consonance_sftp import errors

_DISK_FULL_WORDS = ("no space", "disk full", "quota", "not enough space", "insufficient")
LOCAL_DISK_FULL = errors.LOCAL_DISK_FULL_ERRNOS


def local_disk_full(exc: OSError, local_path: Path | str | None) -> errors.LocalDiskFull:
    """A full local disk while downloading: the staging file and its journal stay, so the
    download resumes from the bytes already there once space is freed."""
    return errors.LocalDiskFull.writing(exc, local_path, kept=True)


def translate_connect(
    exc: BaseException, *, partner: str, address: str, timeout: float | None = None
) -> errors.TransportError:
    """The error for a connection to ``address`` (host:port) that could not be opened."""
    exc = first_cause(exc)
    if isinstance(exc, socket.gaierror):
        return errors.ConnectionLost(
            f"cannot resolve the host name of {address}: {_reason(exc)}", partner=partner
        )
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        waited = f" within {timeout:g} s" if timeout else ""
        return errors.TransferTimeout(
            f"cannot connect to {address}: no answer{waited}", partner=partner
        )
    if isinstance(exc, OSError) and not isinstance(exc, asyncssh.Error):
        return errors.ConnectionLost(
            f"cannot connect to {address}: {_reason(exc)}", partner=partner
        )
    found = translate(exc, partner=partner, path=address)
    return found


def translate(
    exc: BaseException, *, partner: str, path: str | None = None
) -> errors.TransportError:
    """The TransportError that describes ``exc`` (already one: returned unchanged)."""
    exc = first_cause(exc)
    if isinstance(exc, errors.TransportError):
        if exc.partner is None:
            # Raised below the adapter (segmented transfer) without a partner: add it.
            message = exc.message.removesuffix(f" ({exc.path})") if exc.path else exc.message
            return type(exc)(message, partner=partner, path=exc.path or path)
        return exc
    reason = _reason(exc)
    if isinstance(exc, asyncssh.SFTPError):
        if isinstance(exc, asyncssh.SFTPNoSuchFile | asyncssh.SFTPNoSuchPath):
            return errors.RemotePathNotFound(
                f"no such file or folder: {reason}", partner=partner, path=path
            )
        if isinstance(exc, asyncssh.SFTPPermissionDenied | asyncssh.SFTPWriteProtect):
            return errors.RemotePermissionDenied(
                f"permission denied: {reason}", partner=partner, path=path
            )
        if isinstance(exc, asyncssh.SFTPNoSpaceOnFilesystem | asyncssh.SFTPQuotaExceeded):
            return errors.RemoteDiskFull(
                f"the partner's disk is full: {reason}", partner=partner, path=path
            )
        if isinstance(exc, asyncssh.SFTPFileAlreadyExists):
            return errors.RemoteFileExists(
                f"the file already exists: {reason}", partner=partner, path=path
            )
        if isinstance(exc, asyncssh.SFTPOpUnsupported):
            return errors.UnsupportedOperation(
                f"the server refused: {reason}", partner=partner, path=path
            )
        if isinstance(exc, asyncssh.SFTPConnectionLost | asyncssh.SFTPNoConnection):
            return errors.ConnectionLost(f"connection lost: {reason}", partner=partner, path=path)
        if any(word in reason.lower() for word in _DISK_FULL_WORDS):
            return errors.RemoteDiskFull(
                f"the partner's disk is full: {reason}", partner=partner, path=path
            )
        return errors.TransportError(
            f"the server reported a failure: {reason}", partner=partner, path=path
        )
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return errors.HostKeyMismatch(
            f"the server's host key is not pinned: {reason}", partner=partner, path=path
        )
    if isinstance(exc, asyncssh.PermissionDenied):
        return errors.AuthenticationFailed(f"login refused: {reason}", partner=partner, path=path)
    if isinstance(exc, asyncssh.DisconnectError | asyncssh.ChannelOpenError):
        return errors.ConnectionLost(f"the connection closed: {reason}", partner=partner, path=path)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return errors.TransferTimeout(
            "the server did not answer in time", partner=partner, path=path
        )
    if isinstance(exc, socket.gaierror):
        return errors.ConnectionLost(
            f"cannot resolve the host name: {reason}", partner=partner, path=path
        )
    if isinstance(exc, ConnectionError | BrokenPipeError | EOFError):
        return errors.ConnectionLost(f"the connection failed: {reason}", partner=partner, path=path)
    if isinstance(exc, OSError) and exc.errno in LOCAL_DISK_FULL:
        return local_disk_full(exc, exc.filename)
    if isinstance(exc, OSError):
        return errors.ConnectionLost(f"network error: {reason}", partner=partner, path=path)
    return errors.TransportError(
        f"unexpected SFTP error: {type(exc).__name__}: {reason}", partner=partner, path=path
    )


def first_cause(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups from ``asyncio.TaskGroup``."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = (inner or list(exc.exceptions))[0]
    return exc


def raise_translated(exc: BaseException, *, partner: str, path: str | None = None) -> NoReturn:
    raise translate(exc, partner=partner, path=path) from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.SFTPError | asyncssh.DisconnectError):
        return str(exc.reason) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        if exc.errno and exc.strerror.startswith("Connect call failed"):
            # asyncio's "Connect call failed ('host', port)" hides the cause: name the errno's.
            return os.strerror(exc.errno).lower()
        return exc.strerror
    return str(exc) or type(exc).__name__
