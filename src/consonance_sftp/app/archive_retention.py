"""Retention applied (issue 17): after each run of an archive flow, the archives its policy no
longer keeps are removed, here and on the flow's partners, each removal on the audit trail.

The rules are ``formats.archive_retention.plan_retention``'s (restic's ``forget`` semantics, the
last verified archive never removed, nothing removed while none is verified, the bases of a kept
incremental archive kept). This module gives it the flow's archives as the audit trail knows
them (``archive.written``, less those ``archive.deleted`` already; the creation time the run
recorded; the bases an incremental archive refers to), marks as verified the archive of the
latest passing ``archive.verified`` event, and removes what the plan says:

* the local archive file and its ``.sha256`` sidecar;
* the copy and sidecar on each of the flow's partners, in that partner's folder of the flow,
  through the partner's SFTP connection (``App.remote_fs``); a copy already gone is ``absent``;
* then ``archive.deleted`` (subject ``archive:<file name>``) with the reason, what was removed
  where, and ``complete``: false when a partner's copy could not be removed, in which case the
  archive stays listed and the next run tries again.

A flow with no ``keep_*`` setting keeps everything: nothing here runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consonance_sftp.app.archive_handler import deleted_archives
from consonance_sftp.config.flows import ArchiveFlow, span_of
from consonance_sftp.errors import RemotePathNotFound, TransportError
from consonance_sftp.formats.archive_retention import (
    NO_RULE,
    ArchiveRef,
    Decision,
    Policy,
    plan_retention,
)
from consonance_sftp.formats.packaging import join_remote
from consonance_sftp.logs import get_logger
from consonance_sftp.models import AuditAction
from consonance_sftp.ports.store import AuditEvent, Store

if TYPE_CHECKING:
    from consonance_sftp.app import App

log = get_logger(__name__)
ACTOR = "flow:archive"


@dataclass(frozen=True, slots=True)
class StoredArchive:
    """One archive of the flow that is not removed yet, as its ``archive.written`` says."""

    subject: str  # archive:<file name>
    bag: str
    path: Path
    created: datetime
    bases: tuple[str, ...]

    @property
    def file_name(self) -> str:
        return self.subject.removeprefix("archive:")


@dataclass(slots=True)
class RetentionOutcome:
    decision: Decision
    removed: list[str] = field(default_factory=list)  # file names
    incomplete: list[str] = field(default_factory=list)  # a partner's copy is still there


def policy_of(config: ArchiveFlow) -> Policy:
    return Policy(
        keep_last=config.keep_last,
        keep_daily=config.keep_daily,
        keep_weekly=config.keep_weekly,
        keep_monthly=config.keep_monthly,
        keep_yearly=config.keep_yearly,
        keep_within=span_of(config.keep_within) if config.keep_within else None,
    )


def _created(event: AuditEvent) -> datetime:
    text = event.details.get("created")
    if isinstance(text, str):
        with contextlib.suppress(ValueError):
            when = datetime.fromisoformat(text)
            return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return event.ts if event.ts.tzinfo is not None else event.ts.replace(tzinfo=UTC)


def stored_archives(store: Store, flow: str) -> list[StoredArchive]:
    """The flow's archives not removed yet, newest first."""
    removed = deleted_archives(store)
    out: list[StoredArchive] = []
    seen: set[str] = set()
    for event in store.list_audit(action=AuditAction.ARCHIVE_WRITTEN, limit=None):
        d = event.details
        if d.get("flow") != flow or event.subject in removed or event.subject in seen:
            continue
        seen.add(event.subject)
        name = event.subject.removeprefix("archive:")
        bag = d.get("bag")
        bases = d.get("bases")
        out.append(
            StoredArchive(
                subject=event.subject,
                bag=bag if isinstance(bag, str) and bag else name.split(".tar", 1)[0],
                path=Path(str(d.get("path", ""))),
                created=_created(event),
                bases=tuple(str(b) for b in bases) if isinstance(bases, list) else (),
            )
        )
    return out


def last_verified(store: Store, subjects: set[str]) -> str | None:
    """The subject of the latest passing ``archive.verified`` among ``subjects``."""
    for event in store.list_audit(action=AuditAction.ARCHIVE_VERIFIED, limit=None):
        if event.subject in subjects and event.details.get("ok") is True:
            return event.subject
    return None


def plan_for(
    store: Store, flow: str, config: ArchiveFlow, now: datetime
) -> tuple[Decision, dict[str, StoredArchive]]:
    """The retention plan of the flow's archives (ids are bag names)."""
    archives = stored_archives(store, flow)
    verified = last_verified(store, {a.subject for a in archives})
    refs = [
        ArchiveRef(id=a.bag, created=a.created, verified=a.subject == verified, bases=a.bases)
        for a in archives
    ]
    decision = plan_retention(refs, policy_of(config), tz=config.retention_timezone, now=now)
    return decision, {a.bag: a for a in archives}


def _remove_local(archive: StoredArchive) -> dict[str, bool]:
    done: dict[str, bool] = {}
    for path in (archive.path, archive.path.with_name(archive.path.name + ".sha256")):
        try:
            path.unlink()
            done[path.name] = True
        except FileNotFoundError:
            done[path.name] = False
    return done


async def _remove_remote(app: App, partner: str, folder: str, names: list[str]) -> dict[str, str]:
    """Each file removed from the partner's folder: ``removed``, ``absent`` or the error."""
    out: dict[str, str] = {}
    try:
        async with app.remote_fs(partner) as fs:
            for file_name in names:
                try:
                    await fs.remove(join_remote(folder, file_name))
                    out[file_name] = "removed"
                except RemotePathNotFound:
                    out[file_name] = "absent"
                except TransportError as exc:
                    out[file_name] = f"error: {exc}"
    except TransportError as exc:  # no connection: every file stays
        for file_name in names:
            out.setdefault(file_name, f"error: {exc}")
    return out


async def apply_retention(
    app: App,
    name: str,
    config: ArchiveFlow,
    *,
    folder: Callable[[str], str],
    now: datetime | None = None,
) -> RetentionOutcome | None:
    """Remove the flow's archives its retention policy no longer keeps (None: no policy).
    ``folder`` gives the remote path of the flow's folder on a partner."""
    if not config.retains:
        return None
    now = now or datetime.now(UTC)
    store = app.store
    decision, by_bag = await asyncio.to_thread(plan_for, store, name, config, now)
    outcome = RetentionOutcome(decision)
    if decision.note:
        log.warning("archive flow %s: %s", name, decision.note)
    if not decision.remove:
        return outcome
    doomed = [by_bag[ref.id] for ref in decision.remove]
    names = [n for a in doomed for n in (a.file_name, a.file_name + ".sha256")]
    remote: dict[str, dict[str, str]] = {}
    for partner in config.partners:
        remote[partner] = await _remove_remote(app, partner, folder(partner), names)
    for archive in doomed:
        local = await asyncio.to_thread(_remove_local, archive)
        partners: dict[str, Any] = {
            p: {n: r[n] for n in (archive.file_name, archive.file_name + ".sha256")}
            for p, r in remote.items()
        }
        complete = not any(
            state.startswith("error") for files in partners.values() for state in files.values()
        )
        await asyncio.to_thread(
            store.append_audit,
            ACTOR,
            AuditAction.ARCHIVE_DELETED,
            archive.subject,
            {
                "flow": name,
                "bag": archive.bag,
                "reason": f"retention: {NO_RULE}",
                "created": archive.created.isoformat(),
                "path": str(archive.path),
                "local": local,
                "partners": partners,
                "complete": complete,
            },
        )
        (outcome.removed if complete else outcome.incomplete).append(archive.file_name)
    log.info(
        "archive flow %s: retention removed %d archive(s), kept %d",
        name,
        len(outcome.removed),
        len(decision.keep),
    )
    return outcome
