"""The SFTP adapter as the engine's delivery transport, and packages as engine requests.

The engine checkpoints a delivery as plan, upload (with verify) and commit (rename, record)
steps. The SFTP adapter's upload already runs the whole safe protocol (temporary name, resume
journal, size and hash check, atomic rename), so here ``upload`` is that protocol, ``verify``
re-checks the final file, and ``commit`` only confirms it is in place. What makes a re-run after a
crash safe is ``remote_state``/``upload`` asking the server first whether the final name already
holds exactly these bytes: then nothing is sent again, whatever the partner's overwrite policy.

Round trips the adapter has already made are not made again, as they count per file on a slow
link: ``upload`` skips its "already there?" look when this process's own ``remote_state`` found
the file absent and nothing has tried to upload it since (the first try after a fresh plan:
only a re-run can find it there, and a re-run always looks); ``verify`` and ``commit`` skip
their stat after this process's own upload of the file succeeded, as the adapter checked size
(and hash where the server allows) before it renamed; a folder is created once per connection.

Connections are opened on the event loop that uses them (DBOS runs workflows on its own loop),
one ``SftpRemoteFS`` per partner and loop.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections import OrderedDict
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


async def reporting_host_key(sink: SecuritySink | None, partner: str, work: Awaitable[T]) -> T:
    """Await ``work``; a changed host key on the way is also handed to ``sink``."""
    try:
        return await work
    except HostKeyMismatch as exc:
        if sink is not None:
            await asyncio.to_thread(sink, partner, exc)
        raise


_FileKey = tuple[str, str, str]  # (partner, remote path, SHA-256)
_REMEMBERED = 10_000  # files remembered per kind; forgetting one only costs a round trip


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
        # Found absent by remote_state and not tried since: the upload need not look again.
        self._planned_absent: OrderedDict[_FileKey, None] = OrderedDict()
        # Uploaded (or found in place) and verified by this process: verify/commit need not stat.
        self._verified: OrderedDict[_FileKey, None] = OrderedDict()
        self._folders: set[tuple[str, int, str]] = set()
        # Pools of partners whose config changed, to close on the loop that opened them.
        self._stale: dict[int, list[SftpRemoteFS]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def forget(self, partner: str) -> None:
        """The partner's config changed (a new host-key pin, say): the next transfer opens new
        connections with it. The old pools are closed on their own event loop."""
        for key in [k for k in self._fs if k[0] == partner]:
            self._stale.setdefault(key[1], []).append(self._fs.pop(key))
        self._folders = {f for f in self._folders if f[0] != partner}

    @staticmethod
    def _remember(memo: OrderedDict[_FileKey, None], key: _FileKey) -> None:
        memo[key] = None
        memo.move_to_end(key)
        while len(memo) > _REMEMBERED:
            memo.popitem(last=False)

    @staticmethod
    def _key(partner: str, file: FileToSend) -> _FileKey:
        return (partner, file.remote_path, file.sha256)

    async def _reporting(self, partner: str, work: Awaitable[T]) -> T:
        return await reporting_host_key(self.on_host_key_changed, partner, work)

    def _for(self, partner: str) -> SftpRemoteFS:
        loop = asyncio.get_running_loop()
        for old in self._stale.pop(id(loop), []):
            task = loop.create_task(old.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        key = (partner, id(loop))
        # One lookup: ``forget`` may drop the entry from the service's loop meanwhile.
        fs = self._fs.get(key)
        if fs is None:
            fs = self._fs[key] = self._make_fs(partner)
        return fs

    async def remote_state(self, partner: str, file: FileToSend) -> RemoteFileState:
        fs = self._for(partner)
        held = await self._reporting(partner, fs.holds(file.remote_path, file.size, file.sha256))
        key = self._key(partner, file)
        if held:
            self._planned_absent.pop(key, None)
        else:
            self._remember(self._planned_absent, key)
        return RemoteFileState(final_matches=held)

    async def upload(self, partner: str, file: FileToSend, fence: Fence) -> int:
        return await self._reporting(partner, self._upload(partner, file, fence))

    async def _upload(self, partner: str, file: FileToSend, fence: Fence) -> int:
        fs = self._for(partner)
        key = self._key(partner, file)
        self._verified.pop(key, None)
        # Only the first try after this process found the file absent may skip the look: a
        # retry, a re-run after a crash or another workflow's upload of the same file all look.
        fresh = key in self._planned_absent
        self._planned_absent.pop(key, None)
        if not fresh and await fs.holds(file.remote_path, file.size, file.sha256):
            self._remember(self._verified, key)
            return 0  # a re-run after the rename: the partner already has these bytes
        folder = posixpath.dirname(file.remote_path)
        made = (partner, id(asyncio.get_running_loop()), folder)
        if folder not in ("", "/") and made not in self._folders:
            await fs.makedirs(folder)  # profiles may file each title in its own folder
            self._folders.add(made)

        def on_progress(done: int, total: int) -> None:
            fence.check()  # a fenced-off executor stops at the next chunk
            if self.progress is not None:
                self.progress(partner, file.remote_path, done, total)

        try:
            result = await fs.upload(
                Path(file.source),
                file.remote_path,
                progress=on_progress,
                sha256=file.sha256,
                temp_path=file.upload_path,
            )
        except BaseException:
            self._folders.discard(made)  # the partner may have removed it: make it again
            raise
        # Given the planned SHA-256, the adapter refuses a local file that changed since it was
        # planned and checks the remote copy against it wherever the server allows, before the
        # rename: the file at the final name is verified.
        self._remember(self._verified, key)
        return result.size - result.resumed_from

    async def verify(self, partner: str, file: FileToSend) -> None:
        if self._key(partner, file) in self._verified:
            return  # this process's upload checked it before renaming
        await self._stat_final(partner, file)

    async def _stat_final(self, partner: str, file: FileToSend) -> None:
        entry = await self._for(partner).stat(file.remote_path)
        if entry is None or entry.size != file.size:
            raise IntegrityError(
                f"expected {file.size} bytes at the final name, found "
                f"{'nothing' if entry is None else entry.size}",
                partner=partner,
                path=file.remote_path,
            )

    async def commit(self, partner: str, file: FileToSend, fence: Fence) -> None:
        # The adapter's upload renamed it already; after a restart, look once.
        key = self._key(partner, file)
        if key in self._verified:
            del self._verified[key]
            return
        await self._stat_final(partner, file)

    async def close(self) -> None:
        for fs in self._fs.values():
            await fs.close()
        self._fs.clear()
        self._folders.clear()
        self._planned_absent.clear()
        self._verified.clear()


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
                asset_version_id=f.version_id,
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
