"""The SFTP adapter as the engine's delivery transport (requests are built in ``dispatch``).

The engine checkpoints a delivery as plan, upload (stage and verify) and commit (publish all,
record) steps, and publishes nothing of a package before every file of it is staged. The SFTP
adapter's protocol comes in the same two halves: ``stage`` is the adapter's ``stage``
(temporary name, resume journal, size and hash check), ``publish`` its ``publish`` (the rename,
then the done-marker). What makes a re-run after a crash safe is ``remote_state``/``stage``
asking the server first whether the final name already holds exactly these bytes: then nothing
is sent again, whatever the partner's overwrite policy; and ``publish`` renames only what is
still under its staging name.

With ``upload_strategy = 'direct'`` (a server that forbids rename) ``stage`` writes under the
final name, so a partner sees each file as it arrives; all-or-nothing then rests on the
done-markers, which ``publish`` writes only once the whole package is staged and verified.

Round trips the adapter has already made are not made again, as they count per file on a slow
link: ``stage`` skips its "already there?" look when this process's own ``remote_state`` found
the file absent and nothing has tried to stage it since (the first try after a fresh plan:
only a re-run can find it there, and a re-run always looks); ``publish`` renames without a look
what this process staged (the adapter verified it), and does nothing for a file found in place;
a folder is created once per connection.

``remove`` (a withdrawal) looks first and removes only what is there, so a re-run, or a removal
whose answer was lost with the connection, finds the file gone and says so. Like ``stage`` and
``publish`` it goes through the host-key check: a changed key removes nothing, alerts and pauses
the partner.

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

from consonance_sftp.app.partner_fs import PartnerFS
from consonance_sftp.errors import HostKeyMismatch, IntegrityError, RemotePathNotFound
from consonance_sftp.models import Verification
from consonance_sftp.ports.delivery import Fence, FileToSend, RemoteFileState, StageResult

ProgressSink = Callable[[str, str, int, int], None]
"""(partner, remote path, bytes done, bytes total)."""
T = TypeVar("T")
V = TypeVar("V")

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
    """``ports.delivery.DeliveryTransport`` over one ``SftpRemoteFS`` per partner and event loop."""

    def __init__(
        self,
        make_fs: Callable[[str], PartnerFS],
        progress: ProgressSink | None = None,
        on_host_key_changed: SecuritySink | None = None,
    ) -> None:
        self._make_fs = make_fs
        self._fs: dict[tuple[str, int], PartnerFS] = {}
        self.progress = progress
        self.on_host_key_changed = on_host_key_changed
        # Found absent by remote_state and not tried since: the upload need not look again.
        self._planned_absent: OrderedDict[_FileKey, None] = OrderedDict()
        # Staged and verified by this process (True: publish renames it without a look), or
        # found at the final name already (False: nothing to publish).
        self._staged: OrderedDict[_FileKey, bool] = OrderedDict()
        self._folders: set[tuple[str, int, str]] = set()
        # Pools of partners whose config changed, to close on the loop that opened them.
        self._stale: dict[int, list[PartnerFS]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def forget(self, partner: str) -> None:
        """The partner's config changed (a new host-key pin, say): the next transfer opens new
        connections with it. The old pools are closed on their own event loop."""
        for key in [k for k in self._fs if k[0] == partner]:
            self._stale.setdefault(key[1], []).append(self._fs.pop(key))
        self._folders = {f for f in self._folders if f[0] != partner}

    @staticmethod
    def _remember(memo: OrderedDict[_FileKey, V], key: _FileKey, value: V) -> None:
        memo[key] = value
        memo.move_to_end(key)
        while len(memo) > _REMEMBERED:
            memo.popitem(last=False)

    @staticmethod
    def _key(partner: str, file: FileToSend) -> _FileKey:
        return (partner, file.remote_path, file.sha256)

    async def _reporting(self, partner: str, work: Awaitable[T]) -> T:
        return await reporting_host_key(self.on_host_key_changed, partner, work)

    def _for(self, partner: str) -> PartnerFS:
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
        held = await self._reporting(partner, fs.held_by(file.remote_path, file.size, file.sha256))
        key = self._key(partner, file)
        if held is not None:
            self._planned_absent.pop(key, None)
        else:
            self._remember(self._planned_absent, key, None)
        return RemoteFileState(final_matches=held is not None, verified_by=held)

    async def stage(
        self, partner: str, file: FileToSend, fence: Fence, *, resend: bool = False
    ) -> StageResult:
        """``resend``: an explicit resend, staged even where the partner holds these bytes
        (its old copy stays until ``publish(resend=True)`` replaces it)."""
        return await self._reporting(partner, self._stage(partner, file, fence, resend))

    async def _stage(
        self, partner: str, file: FileToSend, fence: Fence, resend: bool
    ) -> StageResult:
        fs = self._for(partner)
        key = self._key(partner, file)
        self._staged.pop(key, None)
        # Only the first try after this process found the file absent may skip the look: a
        # retry, a re-run after a crash or another workflow's upload of the same file all look.
        fresh = key in self._planned_absent
        self._planned_absent.pop(key, None)
        held: Verification | None = None
        if not (fresh or resend):
            held = await fs.held_by(file.remote_path, file.size, file.sha256)
        if held is not None:
            self._remember(self._staged, key, False)
            # a re-run after the publish: the partner already has these bytes
            return StageResult(sent=0, verified_by=held)
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
            staged = await fs.stage(
                Path(file.source),
                file.remote_path,
                progress=on_progress,
                sha256=file.sha256,
                temp_path=file.upload_path,
                replace_identical=resend,
            )
        except BaseException:
            self._folders.discard(made)  # the partner may have removed it: make it again
            raise
        # Given the planned SHA-256, the adapter refuses a local file that changed since it was
        # planned and checks the staged copy against it wherever the server allows.
        self._remember(self._staged, key, not staged.skipped)
        return StageResult(sent=staged.size - staged.resumed_from, verified_by=staged.verified_by)

    async def publish(
        self, partner: str, file: FileToSend, fence: Fence, *, resend: bool = False
    ) -> None:
        """``resend``: the partner's old copy at the final name is replaced."""
        await self._reporting(partner, self._publish(partner, file, fence, resend))

    async def _publish(self, partner: str, file: FileToSend, fence: Fence, resend: bool) -> None:
        fs = self._for(partner)
        key = self._key(partner, file)
        staged = self._staged.pop(key, None)
        if staged is False:
            return  # found at its final name: nothing was staged
        if staged is None:
            # Not staged by this process (a restart between the steps, or a re-run after a
            # publish): rename only what is still under its staging name, else check the
            # final name holds the file.
            entry = await fs.stat(fs.staging_path(file.remote_path, file.upload_path))
            if entry is None or entry.size != file.size:
                await self._stat_final(partner, file)
                return
        fence.check()
        await fs.publish(
            file.remote_path, sha256=file.sha256, temp_path=file.upload_path, replace=resend
        )

    async def remove(self, partner: str, remote_path: str, fence: Fence) -> bool:
        return await self._reporting(partner, self._remove(partner, remote_path, fence))

    async def _remove(self, partner: str, remote_path: str, fence: Fence) -> bool:
        fs = self._for(partner)
        if await fs.stat(remote_path) is None:
            return False
        fence.check()
        try:
            await fs.remove(remote_path)
        except RemotePathNotFound:
            return False  # removed meanwhile (by the partner, or an earlier, cut-off try)
        return True

    async def _stat_final(self, partner: str, file: FileToSend) -> None:
        entry = await self._for(partner).stat(file.remote_path)
        if entry is None or entry.size != file.size:
            raise IntegrityError(
                f"expected {file.size} bytes at the final name, found "
                f"{'nothing' if entry is None else entry.size}",
                partner=partner,
                path=file.remote_path,
            )

    async def close(self) -> None:
        for fs in self._fs.values():
            await fs.close()
        self._fs.clear()
        self._folders.clear()
        self._planned_absent.clear()
        self._staged.clear()
