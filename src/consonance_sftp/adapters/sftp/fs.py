"""``SftpRemoteFS``: one partner's SFTP server behind the RemoteFS port.

The protocols live in ``upload`` (temp name, verify, rename, resume) and ``intake``
(durable downloads, post-actions, listings, stability); ``base`` holds the plumbing both use.
"""

from __future__ import annotations

import logging
import posixpath
import stat as statmod
from typing import TYPE_CHECKING, TypeVar

import asyncssh

from consonance_sftp import errors
from consonance_sftp.adapters.sftp.connection import (
    fetch_host_key,
)
from consonance_sftp.adapters.sftp.intake import IntakeMixin
from consonance_sftp.adapters.sftp.upload import UploadMixin
from consonance_sftp.ports.remote_fs import (
    ProbeReport,
    RemoteFS,
    UploadResult,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class SftpRemoteFS(UploadMixin, IntakeMixin):
    """One partner's server: upload, download, list, walk, stat, move, remove, probe."""

    # --- partner doctor -----------------------------------------------------------------

    async def probe(self) -> ProbeReport:
        """What this partner's server supports, and recommended settings (``partner probe``)."""
        from consonance_sftp.adapters.sftp.probe import probe_partner

        return await probe_partner(self)

    async def send_test_file(self, folder: str | None = None) -> UploadResult:
        """One small file through the full upload protocol, then removed (``partner test``)."""
        from consonance_sftp.adapters.sftp.probe import send_test_file

        return await send_test_file(self, folder)

    async def presented_host_key(self) -> tuple[str, str]:
        """(fingerprint, known_hosts line) the server presents now (``partner trust``)."""
        return await fetch_host_key(self.endpoint)

    # --- simple operations --------------------------------------------------------------

    async def remove(self, remote_path: str) -> None:
        async with self.pool.lease() as pc:
            await self._guard(pc.sftp.remove(remote_path), remote_path)

    async def move(self, remote_path: str, new_path: str) -> None:
        async with self.pool.lease() as pc:
            await self._guard(pc.sftp.rename(remote_path, new_path), remote_path)

    async def makedirs(self, remote_path: str) -> None:
        """Make ``remote_path`` and its missing parents (one stat when it exists already).

        Not asyncssh's ``makedirs``: on SFTP v3 a refused mkdir is often a bare failure, which
        it reports as "X is not a directory"; here a refusal says what was refused, and where.
        """
        async with self.pool.lease() as pc:
            sftp = pc.sftp
            if self._is_dir(await self._stat(sftp, remote_path)):
                return
            current = "/" if remote_path.startswith("/") else ""
            parts = [p for p in remote_path.split("/") if p]
            for n, part in enumerate(parts, 1):
                current = posixpath.join(current, part)
                try:
                    found = await self._stat(sftp, current)
                except errors.RemotePermissionDenied:
                    if n < len(parts):
                        continue  # a parent we may not look at (outside a chroot): go on
                    raise
                if found is not None:
                    if not self._is_dir(found):
                        raise errors.TransportError(
                            f"cannot create folder {remote_path}: {current} exists on the "
                            "partner's server and is not a folder",
                            partner=self.partner,
                        )
                    continue
                await self._mkdir(sftp, current)

    async def _mkdir(self, sftp: asyncssh.SFTPClient, folder: str) -> None:
        try:
            await self._guard(sftp.mkdir(folder), folder)
        except (errors.RemotePermissionDenied, errors.RemoteFileExists) as exc:
            if self._is_dir(await self._stat(sftp, folder)):
                return  # made meanwhile by another upload
            raise errors.RemotePermissionDenied(
                f"permission denied creating folder {folder}", partner=self.partner
            ) from exc
        except errors.TransportError as exc:
            if type(exc) is not errors.TransportError:
                raise  # a lost connection, a full disk: said as such
            if self._is_dir(await self._stat(sftp, folder)):
                return
            # SFTP v3 has no "already exists" and many servers answer a refused mkdir with a
            # bare failure: the folder is not there, so the server refused to make it.
            raise errors.RemotePermissionDenied(
                f"permission denied creating folder {folder} (the server refused: "
                f"{exc.detail.removeprefix('the server reported a failure: ')})",
                partner=self.partner,
            ) from exc

    @staticmethod
    def _is_dir(attrs: asyncssh.SFTPAttrs | None) -> bool:
        return (
            attrs is not None
            and attrs.permissions is not None
            and statmod.S_ISDIR(attrs.permissions)
        ) or (attrs is not None and attrs.type == asyncssh.FILEXFER_TYPE_DIRECTORY)


if TYPE_CHECKING:
    # mypy checks that the adapter implements the port.
    _implements: type[RemoteFS] = SftpRemoteFS
