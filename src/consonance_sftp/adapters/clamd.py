"""``ports.intake.MalwareScanner`` over clamd's UNIX socket (the ClamAV daemon; Debian package
``clamav-daemon``, socket ``/var/run/clamav/clamd.ctl``).

The file's bytes are streamed with clamd's documented ``INSTREAM`` command (clamd(8)): the
command ``zINSTREAM\\0``, then chunks each prefixed by its length as a 4-byte big-endian
integer, then a zero length; clamd answers one NUL-terminated line, ``stream: OK`` or
``stream: <signature> FOUND`` or ``... ERROR``. Streaming (rather than ``SCAN <path>``) works
whoever clamd runs as and wherever it runs: it needs no read access to our state folder.
The protocol is a dozen lines; the Python clients on PyPI are either unmaintained (``clamd``,
last released 2014) or young, so it is written here against the manual.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from pathlib import Path

from consonance_sftp.errors import ConsonanceSftpError

CHUNK = 256 * 1024
"""Bytes per INSTREAM chunk (clamd's default ``StreamMaxLength`` is 25 MB in total)."""


class MalwareScanFailed(ConsonanceSftpError):
    """clamd could not scan a file (unreachable, timed out, or refused it)."""


class ClamdScanner:
    """Scans files by streaming them to clamd over its UNIX socket; one connection a scan."""

    def __init__(self, socket_path: Path, *, timeout: float = 300.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    async def scan(self, path: str) -> str | None:
        try:
            reply = await asyncio.wait_for(self._instream(Path(path)), self.timeout)
        except TimeoutError:
            raise MalwareScanFailed(
                f"clamd at {self.socket_path} did not answer within {self.timeout:g} s",
                retryable=True,
            ) from None
        except OSError as exc:
            raise MalwareScanFailed(
                f"cannot reach clamd at {self.socket_path}: {exc.strerror or exc}",
                retryable=True,
                hint="Start clamd (Debian: 'service clamav-daemon start'), or check "
                "screening.clamd_socket.",
            ) from None
        return parse_reply(reply, self.socket_path)

    async def _instream(self, path: Path) -> str:
        reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
        try:
            writer.write(b"zINSTREAM\0")
            with path.open("rb") as fh:
                while chunk := await asyncio.to_thread(fh.read, CHUNK):
                    writer.write(struct.pack(">I", len(chunk)) + chunk)
                    await writer.drain()
            writer.write(struct.pack(">I", 0))
            await writer.drain()
            reply = await reader.readuntil(b"\0")
        except asyncio.IncompleteReadError as exc:
            # clamd closes the connection on a stream over StreamMaxLength, after its reply.
            reply = exc.partial
        except ConnectionResetError:
            reply = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return reply.rstrip(b"\0").decode("utf-8", "replace").strip()

    async def ping(self) -> bool:
        """Whether clamd answers ``PONG`` (for a health check)."""
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
        except OSError:
            return False
        try:
            writer.write(b"zPING\0")
            await writer.drain()
            return (await reader.readuntil(b"\0")).rstrip(b"\0") == b"PONG"
        except (OSError, asyncio.IncompleteReadError):
            return False
        finally:
            writer.close()


def parse_reply(reply: str, socket_path: Path) -> str | None:
    """The signature of a ``FOUND`` reply, None for ``OK``; an error otherwise."""
    body = reply.partition(": ")[2] if reply.startswith("stream:") else reply
    if body == "OK":
        return None
    if body.endswith(" FOUND"):
        return body.removesuffix(" FOUND")
    retryable = "size limit" not in body  # a file over StreamMaxLength stays over it
    raise MalwareScanFailed(
        f"clamd at {socket_path} could not scan the file: {body or 'no answer'}",
        retryable=retryable,
        hint="Raise clamd's StreamMaxLength to at least the flow's screening.max_file_size."
        if not retryable
        else None,
    )
