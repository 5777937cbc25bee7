"""Publishing a staged upload (steps 5 and 6 of ``upload.py``'s protocol): the final name,
by the partner's upload strategy (``posix-rename`` when offered, rename, delete-then-rename,
or a direct write that needs none), the temporary file's mtime, and the done-marker last."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

import asyncssh

from consonance_sftp import errors
from consonance_sftp.adapters.sftp.base import FSBase
from consonance_sftp.adapters.sftp.connection import PooledConnection
from consonance_sftp.adapters.transfer_common import done_marker
from consonance_sftp.config.transfer import OverwritePolicy, UploadStrategy

log = logging.getLogger(__name__)


class PublishMixin(FSBase):
    """The final name and the done-marker of a staged file."""

    async def _publish_staged(
        self,
        pc: PooledConnection,
        temp: str,
        final: str,
        sha: str,
        *,
        again: bool = False,
        replace: bool = False,
    ) -> str:
        """Rename (unless ``direct``), done-marker, and forget the resume journal. ``again``:
        an earlier attempt may have renamed the file and lost the answer with the connection;
        renaming again would fail (or, with ``delete_rename``, remove the published file).
        ``replace``: an existing final name is replaced (see ``_finalize``)."""
        if temp == final:
            strategy = UploadStrategy.DIRECT.value
        elif (
            again
            and await self._stat(pc.sftp, temp) is None
            and await self._stat(pc.sftp, final) is not None
        ):
            strategy = self._strategy(pc.sftp).value
        else:
            strategy = await self._finalize(pc, temp, final, replace=replace)
        await self._check_after_refusal(pc.sftp, temp, final)
        if self.settings.done_marker:
            await self._write_marker(pc.sftp, final, sha)
        # One local unlink (no thread hop: small files never have a journal to remove).
        self._journal_path("up", final).unlink(missing_ok=True)
        return strategy

    async def _check_after_refusal(self, sftp: asyncssh.SFTPClient, temp: str, final: str) -> None:
        """A safety net, not the fix: when the upload of ``temp`` had a refused attempt, the
        final name is looked at once more after the rename. A server that acted on a refused
        handle after answering its close (rclone wrote an empty file over a renamed file that
        way, before the refused attempt's closes were awaited) fails the publish loudly: never
        a file recorded as sent with other bytes under its name."""
        expected = self._after_refusal.get(temp)
        if expected is None or temp == final:
            return
        attrs = await self._stat(sftp, final)
        if attrs is None or attrs.size != expected:
            raise errors.IntegrityError(
                f"the file has {None if attrs is None else attrs.size} bytes under its final "
                f"name right after the rename, expected {expected}: the server changed it "
                "after a refused upload attempt",
                partner=self.partner,
                path=final,
                hint=f"Run 'consonance-sftp partner probe {self.partner}' and apply its "
                "settings (segment_connections = 1 where the server refuses parallel "
                "segments), then send the file again.",
            )
        del self._after_refusal[temp]

    async def _set_mtime(self, sftp: asyncssh.SFTPClient, local_path: Path, temp: str) -> None:
        st = await asyncio.to_thread(os.stat, local_path)
        try:
            await self._guard(sftp.utime(temp, (st.st_atime, st.st_mtime)), temp)
        except (errors.RemotePermissionDenied, errors.UnsupportedOperation) as exc:
            raise errors.UnsupportedOperation(
                f"the server refused to set the modification time: {exc.message}",
                partner=self.partner,
                path=temp,
                hint="This server forbids setstat: set transfer.set_mtime = false.",
            ) from exc

    def _strategy(self, sftp: asyncssh.SFTPClient, *, replace: bool = False) -> UploadStrategy:
        """How to rename. ``replace``: the final name may be replaced whatever the overwrite
        policy (a resend's own old copy), so 'fail' does not pin the plain rename."""
        chosen = self.settings.upload_strategy
        if chosen is not UploadStrategy.AUTO:
            return chosen
        if self.settings.overwrite is OverwritePolicy.FAIL and not replace:
            # SFTPv3 rename refuses an existing target: the server itself enforces "fail",
            # with no window between our check and the rename (OpenSSH links, then unlinks).
            return UploadStrategy.RENAME
        offers_posix = bool(getattr(sftp._handler, "_supports_posix_rename", False))
        if offers_posix and "posix_rename" not in self._unsupported:
            return UploadStrategy.POSIX_RENAME
        return UploadStrategy.DELETE_RENAME

    async def _finalize(
        self, pc: PooledConnection, temp: str, final: str, *, replace: bool = False
    ) -> str:
        """Give the verified temporary file its final name; returns the strategy used.
        ``replace``: an existing final name (a resend's old copy) is replaced, by one
        ``posix-rename`` where offered (the partner never sees the name missing), else
        removed right before the rename."""
        sftp = pc.sftp
        strategy = self._strategy(sftp, replace=replace)
        if strategy is UploadStrategy.DIRECT:
            return strategy.value
        try:
            if strategy is UploadStrategy.POSIX_RENAME:
                try:
                    await self._guard(sftp.posix_rename(temp, final), final)
                    return strategy.value
                except errors.UnsupportedOperation:
                    if self.settings.upload_strategy is not UploadStrategy.AUTO:
                        raise
                    # Advertised but refused. 'auto' is the documented adaptive mode: note it
                    # and use the plain rename it would have chosen without the extension.
                    self._unsupported.add("posix_rename")
                    log.warning(
                        "server refused posix-rename; using rename (set upload_strategy to "
                        "pin this)",
                        extra={"partner": self.partner, "path": final},
                    )
                    strategy = self._strategy(sftp, replace=replace)
            if (
                strategy is UploadStrategy.DELETE_RENAME
                or (replace and strategy is UploadStrategy.RENAME)
            ) and await self._stat(sftp, final) is not None:
                await self._guard(sftp.remove(final), final)
            try:
                await self._guard(sftp.rename(temp, final), final)
            except (errors.RemoteFileExists, errors.TransportError) as exc:
                if type(exc) in (errors.RemoteFileExists, errors.TransportError) and (
                    await self._stat(sftp, final) is not None
                ):
                    if self.settings.overwrite is OverwritePolicy.FAIL and not replace:
                        # The server enforced 'fail' (``rename_keeps_existing``): the
                        # temporary file is ours to remove, as after the look before sending.
                        with contextlib.suppress(errors.TransportError):
                            await self._guard(sftp.remove(temp), temp)
                        raise self._exists_error(final) from exc
                    raise errors.RemoteFileExists(
                        "the server will not rename over the existing final name",
                        partner=self.partner,
                        path=final,
                        hint="Set transfer.upload_strategy = 'delete_rename', or overwrite "
                        "= 'fail' if replacing is not wanted.",
                    ) from exc
                raise
        except (errors.RemotePermissionDenied, errors.UnsupportedOperation) as exc:
            # Terminal: leave no orphaned temporary file behind (pitfall: ".part" leftovers).
            with contextlib.suppress(errors.TransportError):
                await self._guard(sftp.remove(temp), temp)
            raise type(exc)(
                f"the server refused to rename the uploaded file: {exc.message}",
                partner=self.partner,
                path=final,
                hint="This server forbids rename: set transfer.upload_strategy = 'direct' "
                "and a transfer.done_marker so the partner knows when a file is complete.",
            ) from exc
        return strategy.value

    def _exists_error(self, final: str) -> errors.RemoteFileExists:
        """The overwrite policy 'fail' met an existing final name."""
        return errors.RemoteFileExists(
            "the final name already exists and the overwrite policy is 'fail'",
            partner=self.partner,
            path=final,
            hint="Set transfer.overwrite to 'replace' or 'skip_if_identical'.",
        )

    async def _write_marker(self, sftp: asyncssh.SFTPClient, final: str, sha: str) -> None:
        assert self.settings.done_marker is not None
        path, body = done_marker(self.settings.done_marker, final, sha)

        async def write() -> None:
            async with sftp.open(path, "wb") as fh:
                await fh.write(body)

        await self._guard(write(), path)
