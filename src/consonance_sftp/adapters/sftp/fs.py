"""``SftpRemoteFS``: one partner's SFTP server behind the RemoteFS port.

The protocols live in ``upload`` (temp name, verify, rename, resume) and ``inbound``
(durable downloads, post-actions, listings, stability); ``base`` holds the plumbing both use.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, TypeVar

from consonance_sftp.adapters.sftp.connection import (
    fetch_host_key,
)
from consonance_sftp.adapters.sftp.inbound import InboundMixin
from consonance_sftp.adapters.sftp.upload import UploadMixin
from consonance_sftp.ports.remote_fs import (
    ProbeReport,
    RemoteFS,
    UploadResult,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class SftpRemoteFS(UploadMixin, InboundMixin):
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
        async with self.pool.lease() as pc:
            await self._guard(pc.sftp.makedirs(remote_path, exist_ok=True), remote_path)


if TYPE_CHECKING:
    # mypy checks that the adapter implements the port.
    _implements: type[RemoteFS] = SftpRemoteFS
