"""Intake: inbox polling, and the SFTP adapter as the engine's intake transport.

``poll_inbox`` is what one tick of an intake flow (``intake``, ``sales_in``) does: for each
partner of the flow it lists the flow's folder, keeps (deciding with the flow's ``take`` in
``flows/`` and the shared ``flows.inbox``, this module doing the I/O) the files it takes that
the partner has finished writing (older than ``min_age``, and the listing's size and mtime
agree with a ``stat`` of the file ``stable_interval`` later; or, with
``intake_done_marker``, once the marker is there), skips those the intake ledger already
has, and enqueues one intake workflow per file (``engine.intake``).
Enqueuing a file again attaches to the workflow already taking it in, so overlapping polls
never fetch twice. A paused partner or flow, or a partner outside its delivery window, is not
polled at all.

``SftpIntakeTransport`` downloads durably into the local inbox store::

    <state_dir>/inbox/<flow>/<partner>/<mtime>-<digest>/<name>
    <state_dir>/quarantine/<flow>/<partner>/<mtime>-<digest>/<safe name>

(one folder per version of a remote file, so a partner re-sending a name never overwrites the
copy we kept), applies the partner's post-action only to the version it took in, and, for a
partner with ``intake_ack``, uploads the acknowledgement of each decided file
(``<name>.accepted`` / ``<name>.quarantined``, next to the upload or in the ack folder; the
text is first written under ``<state_dir>/acks/...``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import posixpath
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from consonance_sftp.adapters.sftp.checksums import sha256_file
from consonance_sftp.app.delivery import ProgressSink, SecuritySink, reporting_host_key
from consonance_sftp.app.partner_fs import PartnerFS
from consonance_sftp.config.flows import IntakeFlow, SalesInFlow
from consonance_sftp.config.settings import IntakeAck
from consonance_sftp.config.transfer import PostAction, TransferSettings
from consonance_sftp.engine.intake import printable_path, safe_local_name
from consonance_sftp.errors import (
    ConsonanceSftpError,
    HostKeyMismatch,
    IntegrityError,
    RemotePathNotFound,
    TransportError,
)
from consonance_sftp.flows import registry
from consonance_sftp.flows.inbox import (
    marker_name,
    old_enough,
    unchanged,
    with_done_markers,
)
from consonance_sftp.logs import get_logger
from consonance_sftp.models import AuditAction
from consonance_sftp.ports.delivery import Fence
from consonance_sftp.ports.intake import Acknowledgement, FetchedFile, IntakeRequest
from consonance_sftp.ports.remote_fs import RemoteEntry

if TYPE_CHECKING:
    from consonance_sftp.app import App
    from consonance_sftp.app.runner import DeliveryRunner

log = get_logger(__name__)
T = TypeVar("T")

LINGER_S = 1.0
"""Seconds an intake's connection to a partner stays open after the last intake on it ends,
for the next file of the batch (``SftpIntakeTransport._using``)."""


# --- the local inbox store -----------------------------------------------------------------


def version_folder(request: IntakeRequest) -> str:
    """``<mtime, UTC>-<digest>``: one local folder per version of a remote file."""
    key = f"{request.partner}\x1f{request.remote_path}\x1f{request.size}\x1f{request.mtime!r}"
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    stamp = datetime.fromtimestamp(request.mtime, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{digest}"


def local_path_for(root: Path, request: IntakeRequest, *, quarantine: bool) -> Path:
    """Where a taken file is kept: under the inbox (its own name) or the quarantine (a safe
    name), below the flow, the partner and the file's version folder."""
    name = posixpath.basename(request.remote_path)
    top = root / ("quarantine" if quarantine else "inbox") / request.flow / request.partner
    return top / version_folder(request) / (safe_local_name(name) if quarantine else name)


def ack_folder(upload_folder: str, ack: IntakeAck) -> str:
    """The remote folder a partner's acknowledgements go to, for an upload in
    ``upload_folder``: that folder itself, a folder below it, or an absolute folder."""
    if not ack.folder:
        return upload_folder
    if ack.folder.startswith("/"):
        return ack.folder.rstrip("/") or "/"
    return posixpath.join(upload_folder, ack.folder).rstrip("/")


class SftpIntakeTransport:
    """``engine.IntakeTransport`` over one ``SftpRemoteFS`` per partner and event loop."""

    def __init__(
        self,
        make_fs: Callable[[str], PartnerFS],
        root: Path,
        on_host_key_changed: SecuritySink | None = None,
        progress: ProgressSink | None = None,
        ack_of: Callable[[str], IntakeAck | None] | None = None,
        companions: Callable[[IntakeRequest], list[str]] | None = None,
    ) -> None:
        """``companions``: the names of the files that go with a taken file (an intake flow's
        per-file manifests); the post-action moves or deletes them with it."""
        self._make_fs = make_fs
        self.companions = companions
        self.root = root
        self.on_host_key_changed = on_host_key_changed
        self.progress = progress
        self._ack_of = ack_of or (lambda _partner: None)
        self._fs: dict[tuple[str, int], PartnerFS] = {}
        self._users: dict[PartnerFS, int] = {}
        self._closers: dict[PartnerFS, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.linger = LINGER_S

    @contextlib.asynccontextmanager
    async def _using(self, partner: str) -> AsyncIterator[PartnerFS]:
        """The partner's session pool on this loop for one operation. ``linger`` seconds after
        the last operation on it ends (unless another one starts meanwhile), the pool is
        closed: an idle pooled connection keeps its slot of the partner's connection cap for
        ``idle_timeout``, and the next poll (on the service's loop) or a transfer of another
        process would wait for it that long. The short linger keeps the connection for the
        next file of a batch (the engine starts the partner's next intake within a queue
        poll), which saves a handshake per file: most of what a small file costs."""
        loop = asyncio.get_running_loop()
        key = (partner, id(loop))
        fs = self._fs.get(key)
        if fs is None:
            fs = self._fs[key] = self._make_fs(partner)
        closer = self._closers.pop(fs, None)
        if closer is not None:
            closer.cancel()
        self._users[fs] = self._users.get(fs, 0) + 1
        try:
            yield fs
        finally:
            self._users[fs] -= 1
            if self._users[fs] == 0:
                if self.linger > 0 and self._fs.get(key) is fs:
                    self._closers[fs] = loop.call_later(self.linger, self._close_idle, key, fs)
                else:  # no linger, or the partner's config changed meanwhile (``forget``)
                    self._drop(key, fs)
                    await fs.close()

    def _drop(self, key: tuple[str, int], fs: PartnerFS) -> None:
        del self._users[fs]
        if self._fs.get(key) is fs:
            del self._fs[key]

    def _close_idle(self, key: tuple[str, int], fs: PartnerFS) -> None:
        """The linger ran out with nothing using the pool: close it (on its own loop)."""
        self._closers.pop(fs, None)
        if self._users.get(fs) == 0:
            self._drop(key, fs)
            task = asyncio.get_running_loop().create_task(fs.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def forget(self, partner: str) -> None:
        """The partner's config changed (``App.reload``): its pools take no new operation, so
        the next one connects with the new settings; each old pool is still closed on its own
        loop, when its running operations end or when its linger runs out."""
        for key in [k for k in self._fs if k[0] == partner]:
            self._fs.pop(key, None)

    async def _reporting(self, partner: str, work: Awaitable[T]) -> T:
        return await reporting_host_key(self.on_host_key_changed, partner, work)

    async def fetch(self, request: IntakeRequest, *, quarantine: bool, fence: Fence) -> FetchedFile:
        return await self._reporting(request.partner, self._fetch(request, quarantine, fence))

    async def _fetch(self, request: IntakeRequest, quarantine: bool, fence: Fence) -> FetchedFile:
        local = local_path_for(self.root, request, quarantine=quarantine)
        if local.exists():
            # A re-run after the download completed (its rename into place is atomic, so a
            # file under the final local name is whole): hash it again, fetch nothing.
            size, sha = await asyncio.to_thread(sha256_file, local)
            if size == request.size:
                return FetchedFile(local_path=str(local), size=size, sha256=sha)
            await asyncio.to_thread(local.unlink)
        await asyncio.to_thread(local.parent.mkdir, parents=True, exist_ok=True)
        async with self._using(request.partner) as fs:
            return await self._download(fs, request, local, fence)

    async def _download(
        self, fs: PartnerFS, request: IntakeRequest, local: Path, fence: Fence
    ) -> FetchedFile:
        entry = await fs.stat(request.remote_path)
        if entry is None:
            raise RemotePathNotFound(
                "the file is no longer on the server (removed after it was listed)",
                partner=request.partner,
                path=request.remote_path,
            )
        if (entry.size, entry.mtime) != (request.size, request.mtime):
            raise IntegrityError(
                f"the file changed after it was listed ({request.size} bytes at "
                f"{request.mtime:.0f}, now {entry.size} bytes at {entry.mtime:.0f}); the next "
                "poll takes the new version",
                partner=request.partner,
                path=request.remote_path,
                retryable=False,
            )

        def on_progress(done: int, total: int) -> None:
            fence.check()  # a fenced-off executor stops at the next chunk
            if self.progress is not None:
                self.progress(request.partner, request.remote_path, done, total)

        result = await fs.download(
            request.remote_path, local, expected_size=request.size, progress=on_progress
        )
        return FetchedFile(
            local_path=str(result.local_path),
            size=result.size,
            sha256=result.sha256,
            resumed_from=result.resumed_from,
        )

    async def post_action(self, request: IntakeRequest, fence: Fence) -> str:
        return await self._reporting(request.partner, self._post_action(request, fence))

    async def _post_action(self, request: IntakeRequest, fence: Fence) -> str:
        async with self._using(request.partner) as fs:
            return await self._apply(fs, request, fence)

    async def _apply(self, fs: PartnerFS, request: IntakeRequest, fence: Fence) -> str:
        action = fs.settings.post_action
        if action is PostAction.LEAVE:
            return action.value
        entry = await fs.stat(request.remote_path)
        if entry is None:
            # Done by an earlier run of this step (or the partner removed it).
            await self._marker_too(fs, request, action, fence)
            return "gone"
        if (entry.size, entry.mtime) != (request.size, request.mtime):
            # A newer upload under the same name: not ours to move or delete (nor its marker).
            return "changed"
        fence.check()
        moved_to = await fs.apply_post_action(request.remote_path, action)
        await self._marker_too(fs, request, action, fence)
        return f"{action.value}:{moved_to}" if moved_to else action.value

    async def _marker_too(
        self, fs: PartnerFS, request: IntakeRequest, action: PostAction, fence: Fence
    ) -> None:
        """The file's done-marker and its manifest follow it (moved or deleted too), so they
        do not pile up in the partner's folder."""
        template = fs.settings.intake_done_marker
        folder, name = posixpath.split(request.remote_path)
        names = [marker_name(template, name)] if template else []
        names += self.companions(request) if self.companions is not None else []
        for companion in names:
            path = posixpath.join(folder, companion)
            if await fs.stat(path) is not None:
                fence.check()
                await fs.apply_post_action(path, action)

    async def acknowledge(self, request: IntakeRequest, ack: Acknowledgement, fence: Fence) -> str:
        return await self._reporting(request.partner, self._acknowledge(request, ack, fence))

    async def _acknowledge(self, request: IntakeRequest, ack: Acknowledgement, fence: Fence) -> str:
        settings = self._ack_of(request.partner)
        if settings is None:
            return ""  # the partner no longer asks for acknowledgements
        upload_folder, name = posixpath.split(request.remote_path)
        folder = ack_folder(upload_folder, settings)
        remote = posixpath.join(folder, f"{name}.{ack.verdict}")
        # The text is uploaded from a file of its own, in the version's folder of the store.
        local = (
            self.root / "acks" / request.flow / request.partner / version_folder(request)
        ) / ack.verdict
        text = ack.text(printable_path(name))
        await asyncio.to_thread(_write_text, local, text)
        async with self._using(request.partner) as fs:
            if folder != upload_folder:
                await fs.makedirs(folder)
            if await fs.stat(remote) is not None:
                # An earlier version's acknowledgement under this name (the partner sent the
                # name again), or this one from an interrupted run: ours to replace.
                fence.check()
                with contextlib.suppress(RemotePathNotFound):
                    await fs.remove(remote)
            fence.check()
            await fs.upload(local, remote)
        return remote

    async def close(self) -> None:
        for closer in self._closers.values():
            closer.cancel()
        self._closers.clear()
        pools = set(self._fs.values()) | set(self._users)
        self._fs.clear()
        self._users.clear()
        for fs in pools:
            await fs.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", errors="surrogateescape")


# --- polling ---------------------------------------------------------------------------------

AnyIntakeFlow = IntakeFlow | SalesInFlow


@dataclass(frozen=True, slots=True)
class InboxFile:
    """One file seen in a partner's inbox, and what the poll made of it."""

    partner: str
    path: str
    size: int
    mtime: float
    workflow_id: str | None = None  # taken: the intake workflow taking it in
    reason: str | None = None  # not taken: why not (yet)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"partner": self.partner, "path": self.path, "size": self.size}
        if self.workflow_id:
            out["workflow_id"] = self.workflow_id
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(slots=True)
class InboxReport:
    """What one poll of an intake flow did, partner by partner."""

    flow: str
    trigger: str
    taken: list[InboxFile] = field(default_factory=list)  # an intake workflow is taking it in
    known: list[InboxFile] = field(default_factory=list)  # already in the intake ledger
    unstable: list[InboxFile] = field(default_factory=list)  # not finished yet: next poll
    ignored: list[InboxFile] = field(default_factory=list)  # not one of the flow's patterns
    held: dict[str, str] = field(default_factory=dict)  # partner -> why it was not polled
    errors: dict[str, str] = field(default_factory=dict)  # partner -> why its poll failed

    def summary(self) -> dict[str, Any]:
        """A JSON-able account (the flow tick's result, ``run`` output)."""
        return {
            "flow": self.flow,
            "trigger": self.trigger,
            "taken": [f.to_dict() for f in self.taken],
            "known": len(self.known),
            "unstable": [f.to_dict() for f in self.unstable],
            "ignored": [f.to_dict() for f in self.ignored],
            "held": dict(self.held),
            "errors": dict(self.errors),
        }


MAX_DEPTH = 4
"""How deep an intake flow with ``subfolders`` looks (1: the folder itself)."""


async def _list_kinds(
    fs: PartnerFS, folder: str, ts: TransferSettings, subfolders: bool
) -> list[tuple[RemoteEntry, str]]:
    """The folder's entries with their kinds; with ``subfolders``, the entries of its
    sub-folders too (breadth first, ``MAX_DEPTH`` levels), the folders entered left out. A
    hidden folder, the processed and temporary folders (and anything deeper) are listed as
    folders, so the poll says it left them alone: files moved to a processed folder inside
    the inbox must never be taken again."""
    if not subfolders:
        return [item async for item in fs.list_kinds(folder)]

    def resolved(path: str | None) -> str | None:
        return None if not path else posixpath.normpath(posixpath.join(folder, path))

    never = {p for p in (resolved(ts.processed_folder), resolved(ts.temp_folder)) if p}
    out: list[tuple[RemoteEntry, str]] = []
    queue = [(folder, 1)]
    while queue:
        current, depth = queue.pop(0)
        async for entry, kind in fs.list_kinds(current):
            enter = (
                kind == "folder"
                and depth < MAX_DEPTH
                and not entry.name.startswith(".")
                and posixpath.normpath(entry.path) not in never
            )
            if enter:
                queue.append((entry.path, depth + 1))
            else:
                out.append((entry, kind))
    return out


def _subfolders(flow: AnyIntakeFlow) -> bool:
    return isinstance(flow, IntakeFlow) and flow.subfolders


IGNORED_EVENT = AuditAction.INTAKE_IGNORED


def _say_once(app: App, flow: str, partner: str, ignored: list[InboxFile]) -> None:
    """An audit event and an INFO line the first time a poll leaves a hidden file, a link
    or a folder alone: once per version (path, size, mtime), not on every poll."""
    for item in ignored:
        subject = f"{partner}:{item.path}"
        seen = app.store.list_audit(subject=subject, action=IGNORED_EVENT, limit=20)
        if any(
            (e.details.get("size"), e.details.get("mtime")) == (item.size, item.mtime)
            and e.details.get("flow") == flow
            for e in seen
        ):
            continue
        app.store.append_audit(
            actor="service",
            action=IGNORED_EVENT,
            subject=subject,
            details={"flow": flow, "size": item.size, "mtime": item.mtime, "reason": item.reason},
        )
        log.info(
            "inbox of %s for flow %s: left %s alone: %s", partner, flow, item.path, item.reason
        )


async def poll_inbox(
    app: App, runner: DeliveryRunner, name: str, flow: AnyIntakeFlow, *, trigger: str
) -> InboxReport:
    """Look into each partner's inbox for this flow and take in every finished, new file
    (one intake workflow per file version). Partners are polled concurrently, each within
    its own connection cap; a partner that fails to answer does not stop the others."""
    report = InboxReport(flow=name, trigger=trigger)
    await asyncio.gather(
        *(_poll_partner(app, runner, name, flow, p, report) for p in flow.partners)
    )
    return report


async def poll_inbox_now(
    app: App, name: str, *, wait: bool = True, progress: ProgressSink | None = None
) -> tuple[InboxReport, dict[str, dict[str, Any]]]:
    """``run`` of an intake flow: look into its partners' inboxes now and take in the
    finished files (through ``serve`` when it holds the engine); with ``wait``, until each
    file is stored. Returns the poll's report and each intake's outcome."""
    from consonance_sftp.app.dispatch import manual_trigger
    from consonance_sftp.app.runner import DeliveryRunner

    config = app.settings.flow(name)  # a typo is answered with the closest name
    flow = registry.intake_flow(config)
    if flow is None:
        raise ConsonanceSftpError(f"flow {name!r} ({config.kind}) has no inbox to poll")
    if not flow.enabled:
        raise ConsonanceSftpError(
            f"flow {name!r} is disabled in the config",
            hint=f"Set enabled = true under [flows.{name}].",
        )
    results: dict[str, dict[str, Any]] = {}
    async with DeliveryRunner(app, progress=progress, quiet=True) as runner:
        report = await poll_inbox(app, runner, name, flow, trigger=manual_trigger())
        if wait:
            for taken in report.taken:
                if taken.workflow_id:
                    results[taken.workflow_id] = await runner.wait(taken.workflow_id)
    return report, results


async def _poll_partner(
    app: App,
    runner: DeliveryRunner,
    name: str,
    flow: AnyIntakeFlow,
    partner: str,
    report: InboxReport,
) -> None:
    held = await asyncio.to_thread(runner.controls.hold_reason, name, partner)
    if held is not None:
        report.held[partner] = held
        return
    config = app.partner_config(partner)
    folder = config.folders.get(flow.folder)
    if folder is None:
        report.errors[partner] = (
            f"partner {partner!r} has no folder {flow.folder!r} (flow {name!r} polls it); "
            f"add it under [partners.{partner}.folders]"
        )
        return
    ts = config.transfer
    try:
        async with app.remote_fs(partner) as fs:
            candidates = await _candidates(app, fs, flow, partner, folder, ts, report)
            stable = await _stable(fs, candidates, ts, partner, report)
    except HostKeyMismatch as exc:
        await asyncio.to_thread(app.host_key_changed, partner, exc)
        report.errors[partner] = str(exc)
        return
    except TransportError as exc:
        log.warning("inbox poll of %s for flow %s failed: %s", partner, name, exc)
        report.errors[partner] = str(exc)
        return
    for entry in stable:
        request = IntakeRequest(
            flow=name,
            kind=flow.kind,
            partner=partner,
            remote_path=entry.path,
            size=entry.size,
            mtime=entry.mtime,
            trigger=report.trigger,
            acknowledge=config.intake_ack is not None,
        )
        workflow_id = await runner.submit_intake(request)
        shown = printable_path(entry.path)
        report.taken.append(InboxFile(partner, shown, entry.size, entry.mtime, workflow_id))


async def _candidates(
    app: App,
    fs: PartnerFS,
    flow: AnyIntakeFlow,
    partner: str,
    folder: str,
    ts: TransferSettings,
    report: InboxReport,
) -> list[RemoteEntry]:
    """The folder's files this flow may take (``flows.inbox.take``) that the intake ledger
    does not have yet; with a done-marker convention, only those whose marker is there."""
    take = registry.entry_of(flow).take
    assert take is not None  # an intake kind
    taking = take(flow, await _list_kinds(fs, folder, ts, _subfolders(flow)), ts)
    ack = app.partner_config(partner).intake_ack
    acks = ack_folder(folder, ack).rstrip("/") if ack is not None else None
    left_alone: list[InboxFile] = []
    for ignored in taking.ignored:
        entry = ignored.entry
        shown = printable_path(entry.path)
        reason = ignored.reason
        noted = ignored.noted
        if acks is not None and entry.path.rstrip("/") == acks:
            # Our acknowledgements' folder: its mtime changes with each one we write, and a
            # "left alone" event for every change would only be noise.
            reason, noted = "the folder our acknowledgements are written to", False
        item = InboxFile(partner, shown, entry.size, entry.mtime, reason=reason)
        report.ignored.append(item)
        if noted:
            left_alone.append(item)

    def unknown() -> list[RemoteEntry]:
        _say_once(app, report.flow, partner, left_alone)
        fresh = []
        for entry in taking.candidates:
            shown = printable_path(entry.path)
            if app.store.find_intake(partner, shown, entry.size, entry.mtime) is None:
                fresh.append(entry)
            else:
                report.known.append(InboxFile(partner, shown, entry.size, entry.mtime))
        return fresh

    fresh = await asyncio.to_thread(unknown)
    if ts.intake_done_marker:
        ready, waiting = with_done_markers(fresh, taking.files, folder, ts.intake_done_marker)
        for entry in waiting:
            _not_yet(report, partner, entry, "no done marker yet")
        return ready
    return fresh


def _not_yet(report: InboxReport, partner: str, entry: RemoteEntry, reason: str) -> None:
    """A file left for a later poll, and why."""
    shown = printable_path(entry.path)
    report.unstable.append(InboxFile(partner, shown, entry.size, entry.mtime, reason=reason))


async def _stable(
    fs: PartnerFS,
    candidates: list[RemoteEntry],
    ts: TransferSettings,
    partner: str,
    report: InboxReport,
) -> list[RemoteEntry]:
    """The candidates the partner has finished writing: older than ``min_age`` and unchanged
    across ``stable_interval``. The second look is a ``stat`` of each file, not a second
    listing: a server that answers listings from a cache shows a growing file unchanged in
    both (the probe's ``listing_lag`` measures it). With a done-marker, the marker already
    said so."""
    if ts.intake_done_marker or not candidates:
        return candidates
    old, young = old_enough(candidates, ts.min_age, time.time())
    for entry in young:
        _not_yet(report, partner, entry, "younger than min_age")
    if not old or not ts.stable_interval:
        return old
    await asyncio.sleep(ts.stable_interval)
    again = await asyncio.gather(*(fs.stat(entry.path) for entry in old))
    stable, moving = unchanged(old, {e.path: e for e in again if e is not None})
    for entry in moving:
        _not_yet(report, partner, entry, "still being written")
    return stable
