"""The SFTP adapter as the engine's delivery transport, and packages as engine requests.

The engine checkpoints a delivery as plan, upload, verify and rename steps. The SFTP adapter's
upload already runs the whole safe protocol (temporary name, resume journal, size and hash
check, atomic rename), so here ``upload`` is that protocol, ``verify`` re-checks the final file,
and ``commit`` only confirms it is in place. What makes a re-run after a crash safe is
``remote_state``/``upload`` asking the server first whether the final name already holds exactly
these bytes: then nothing is sent again, whatever the partner's overwrite policy.

Connections are opened on the event loop that uses them (DBOS runs workflows on its own loop),
one ``SftpRemoteFS`` per partner and loop.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.engine import DeliveryRequest, Fence, FileToSend, RemoteFileState
from consonance_sftp.errors import HostKeyMismatch, IntegrityError
from consonance_sftp.flows.outbound import Outbound
from consonance_sftp.formats.packaging import join_remote

ProgressSink = Callable[[str, str, int, int], None]
"""(partner, remote path, bytes done, bytes total)."""
T = TypeVar("T")

SecuritySink = Callable[[str, HostKeyMismatch], None]
"""(partner, the mismatch): a changed host key stops that partner and alerts."""


class SftpDeliveryTransport:
    """``engine.DeliveryTransport`` over one ``SftpRemoteFS`` per partner and event loop."""

    def __init__(
        self,
        make_fs: Callable[[str], SftpRemoteFS],
        progress: ProgressSink | None = None,
        on_host_key_changed: SecuritySink | None = None,
    ) -> None:
        self._make_fs = make_fs
        self._fs: dict[tuple[str, int], SftpRemoteFS] = {}
        self.progress = progress
        self.on_host_key_changed = on_host_key_changed

    async def _reporting(self, partner: str, work: Awaitable[T]) -> T:
        try:
            return await work
        except HostKeyMismatch as exc:
            if self.on_host_key_changed is not None:
                await asyncio.to_thread(self.on_host_key_changed, partner, exc)
            raise

    def _for(self, partner: str) -> SftpRemoteFS:
        key = (partner, id(asyncio.get_running_loop()))
        if key not in self._fs:
            self._fs[key] = self._make_fs(partner)
        return self._fs[key]

    async def remote_state(self, partner: str, file: FileToSend) -> RemoteFileState:
        fs = self._for(partner)
        held = await self._reporting(partner, fs.holds(file.remote_path, file.size, file.sha256))
        return RemoteFileState(final_matches=held)

    async def upload(self, partner: str, file: FileToSend, fence: Fence) -> int:
        return await self._reporting(partner, self._upload(partner, file, fence))

    async def _upload(self, partner: str, file: FileToSend, fence: Fence) -> int:
        fs = self._for(partner)
        if await fs.holds(file.remote_path, file.size, file.sha256):
            return 0  # a re-run after the rename: the partner already has these bytes
        folder = posixpath.dirname(file.remote_path)
        if folder not in ("", "/"):
            await fs.makedirs(folder)  # profiles may file each title in its own folder

        def on_progress(done: int, total: int) -> None:
            fence.check()  # a fenced-off executor stops at the next chunk
            if self.progress is not None:
                self.progress(partner, file.remote_path, done, total)

        result = await fs.upload(
            Path(file.source),
            file.remote_path,
            progress=on_progress,
            sha256=file.sha256,
            temp_path=file.upload_path,
        )
        # Given the planned SHA-256, the adapter refuses a local file that changed since it was
        # planned and checks the remote copy against it wherever the server allows.
        return result.size - result.resumed_from

    async def verify(self, partner: str, file: FileToSend) -> None:
        entry = await self._for(partner).stat(file.remote_path)
        if entry is None or entry.size != file.size:
            raise IntegrityError(
                f"expected {file.size} bytes at the final name, found "
                f"{'nothing' if entry is None else entry.size}",
                partner=partner,
                path=file.remote_path,
            )

    async def commit(self, partner: str, file: FileToSend, fence: Fence) -> None:
        await self.verify(partner, file)  # the adapter's upload renamed it already

    async def close(self) -> None:
        for fs in self._fs.values():
            await fs.close()
        self._fs.clear()


def delivery_request(
    outbound: Outbound,
    *,
    flow: str,
    folder: str,
    trigger: str,
    generation: int | None = None,
) -> DeliveryRequest:
    """The engine's request for a planned package: every file, under the partner's folder
    (``folder`` is the remote path of the flow's folder on that partner, e.g. ``/in``).
    The generation is the outbound's own when it has one (a marketing package released again
    after a withdrawal), so it is a new workflow rather than the old one's result."""
    if generation is None:
        generation = int(getattr(outbound, "generation", 0))
    files = []
    for f in outbound.plan.files:
        if f.source is None:
            raise ValueError(f"{f.remote_path}: the plan must be materialized before delivery")
        files.append(
            FileToSend(
                source=str(f.source),
                remote_path=join_remote(folder, f.remote_path),
                sha256=f.sha256,
                size=f.size,
                upload_path=join_remote(folder, f.upload_path) if f.upload_path else None,
            )
        )
    return DeliveryRequest(
        flow=flow,
        partner=outbound.partner,
        package=outbound.label,
        files=tuple(files),
        generation=generation,
        trigger=trigger,
        isbn=outbound.isbn,
    )
