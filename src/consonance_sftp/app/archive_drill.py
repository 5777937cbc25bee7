"""Restore drills (issue 17): the restore nobody tried is the weakness of every backup, so an
archive flow's archives are read back on a schedule, not assumed.

A drill (``run_drill``) picks a random sample of the flow's archives (``drill.sample_archives``)
and reads each back from every partner the delivery ledger says holds a copy (else the local
copy): downloaded through the partner's pinned SFTP connection into a folder under the state
folder (``archive_handler.fetch``), decrypted with ``drill.identity_file``, unpacked and
re-hashed against the bag's manifest (``drill.sample_percent`` of the files), its sidecar
checked and its SHA-256 and size compared with what the ledger recorded when it was written.
Without an identity an encrypted archive is checked as a whole file only, and the drill says
so. Each copy read is an ``archive.verified`` event by ``drill:<flow>`` (``archive list``
shows it); the drill itself is an ``archive.drill`` event (subject ``flow:<flow>``: duration,
archives, bytes verified, outcome, problems). A failed drill raises an
``archive_drill_failed`` alert; no successful drill within ``drill.overdue`` (twice
``every`` by default) raises ``archive_drill_overdue`` (``overdue_alert``).

``run_due`` is the hook of the archive flow's run (``app.dispatch.run_flow``): a drill when
one is due, then the overdue check. ``drill_loop`` (``serve``, every ``CHECK_INTERVAL_S``)
does the same without a run, so drills happen and overdue ones alert even when the flow's
schedule has stopped; it takes the flow's run lock for a drill, never overlapping a run.
``consonance-sftp archive drill`` runs one on demand, then the overdue check.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from consonance_sftp.app.archive_handler import (
    ArchiveCheck,
    ArchiveEntry,
    fetch,
    list_archives,
    problems_of,
    record_verification,
    staged,
    verify,
)
from consonance_sftp.app.runner import Controls
from consonance_sftp.config.flows import ArchiveFlow
from consonance_sftp.engine import SERVICE, FlowLock
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.logs import get_logger
from consonance_sftp.models import Alert, AlertSeverity, AuditAction
from consonance_sftp.ports.store import AuditEvent, Store

if TYPE_CHECKING:
    from consonance_sftp.app import App

log = get_logger(__name__)

ALERT_FAILED = "archive_drill_failed"
ALERT_OVERDUE = "archive_drill_overdue"
SIDECAR_ONLY = "checked by its sidecar and the ledger only: no drill.identity_file to decrypt it"


def actor(flow: str) -> str:
    """Who a drill of the flow is on the audit trail."""
    return f"drill:{flow}"


@dataclass(slots=True)
class CopyRead:
    """One copy of one archive, read back by a drill."""

    archive: str
    source: str  # "local" or "partner:<name>"
    ok: bool
    mode: str  # "full", "sample", "sidecar only", or "not read"
    files_verified: int = 0
    bytes_verified: int = 0  # payload bytes re-hashed (the archive file's when sidecar only)
    archive_bytes: int = 0  # the archive file read (downloaded, for a partner's copy)
    problems: list[str] = field(default_factory=list)
    note: str = ""


@dataclass(slots=True)
class DrillReport:
    """What one drill read and found."""

    flow: str
    started_at: datetime
    seconds: float = 0.0
    copies: list[CopyRead] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    trigger: str = "schedule"

    @property
    def archives(self) -> list[str]:
        return sorted({c.archive for c in self.copies})

    @property
    def bytes_verified(self) -> int:
        return sum(c.bytes_verified for c in self.copies)

    @property
    def archive_bytes(self) -> int:
        return sum(c.archive_bytes for c in self.copies)

    @property
    def problems(self) -> list[str]:
        return [f"{c.archive} ({c.source}): {p}" for c in self.copies for p in c.problems]

    @property
    def ok(self) -> bool:
        return bool(self.copies) and all(c.ok for c in self.copies)

    @property
    def outcome(self) -> str:
        if not self.copies:
            return "nothing to drill"
        return "ok" if self.ok else "failed"

    def as_json(self) -> dict[str, object]:
        return {
            "flow": self.flow,
            "trigger": self.trigger,
            "started_at": self.started_at.isoformat(),
            "seconds": round(self.seconds, 3),
            "outcome": self.outcome,
            "archives": self.archives,
            "bytes_verified": self.bytes_verified,
            "archive_bytes": self.archive_bytes,
            "copies": [
                {
                    "archive": c.archive,
                    "source": c.source,
                    "ok": c.ok,
                    "mode": c.mode,
                    "files_verified": c.files_verified,
                    "bytes_verified": c.bytes_verified,
                    "archive_bytes": c.archive_bytes,
                    "problems": c.problems,
                    "note": c.note,
                }
                for c in self.copies
            ],
            "problems": self.problems,
            "notes": self.notes,
        }


def drills(store: Store, flow: str) -> list[AuditEvent]:
    """The flow's drills on the audit trail, newest first."""
    return store.list_audit(subject=f"flow:{flow}", action=AuditAction.ARCHIVE_DRILL, limit=None)


def first_archive_at(store: Store, flow: str) -> datetime | None:
    """When the flow wrote its first archive (one retention removed since included), or None
    when it wrote none."""
    archives = list_archives(store, flow=flow, include_deleted=True)
    return min((a.written_at for a in archives), default=None)


def is_due(store: Store, flow: str, config: ArchiveFlow, now: datetime) -> bool:
    """Is a drill of the flow due: drills are on and none ran within ``every``, counted from
    the last drill, or from the flow's first archive when none ran yet (a flow that wrote
    nothing has nothing to drill)?"""
    interval = config.drill.interval
    if interval is None:
        return False
    last = drills(store, flow)
    if last:
        return now - last[0].ts >= interval
    first = first_archive_at(store, flow)
    return first is not None and now - first >= interval


def _copy_of(check: ArchiveCheck, name: str, source: str) -> CopyRead:
    r = check.report
    sidecar_only = check.mode == "sidecar only"
    return CopyRead(
        archive=name,
        source=source,
        ok=check.ok,
        mode=check.mode,
        files_verified=r.files_verified,
        bytes_verified=check.path.stat().st_size if sidecar_only else r.bytes_verified,
        archive_bytes=check.path.stat().st_size,
        problems=problems_of(check),
        note=SIDECAR_ONLY if sidecar_only else "",
    )


def _read(
    app: App, entry: ArchiveEntry, path: Path, source: str, config: ArchiveFlow, flow: str
) -> CopyRead:
    """Read one copy on disk (the local one, or one just fetched) and record it."""
    sample = config.drill.sample_percent / 100
    expected = (entry.sha256, entry.size) if entry.sha256 else None
    try:
        check = verify(
            path,
            identity=config.drill.identity_file,
            sample=sample,
            expected=expected,
            sidecar_only_if_encrypted=True,
        )
    except ConsonanceSftpError as exc:
        return CopyRead(entry.name, source, ok=False, mode="not read", problems=[str(exc)])
    record_verification(app.store, check, by=flow, sample=sample, source=source, actor=actor(flow))
    return _copy_of(check, entry.name, source)


async def _read_copies(
    app: App, entry: ArchiveEntry, config: ArchiveFlow, flow: str
) -> list[CopyRead]:
    """Every copy of one archive: one per configured partner holding it, else the local."""
    partners = [p for p in entry.partners if p in app.settings.partners]
    if not partners:
        local = Path(entry.path)
        if not entry.local:
            return [
                CopyRead(
                    entry.name,
                    "local",
                    ok=False,
                    mode="not read",
                    problems=[
                        f"no copy anywhere: the local file {local} is gone and no "
                        "configured partner holds one"
                    ],
                )
            ]
        return [await asyncio.to_thread(_read, app, entry, local, "local", config, flow)]
    out: list[CopyRead] = []
    for partner in partners:
        source = f"partner:{partner}"
        with staged(app.state_dir) as folder:
            try:
                path = await fetch(app, entry.name, partner, folder)
            except ConsonanceSftpError as exc:
                out.append(
                    CopyRead(entry.name, source, ok=False, mode="not read", problems=[str(exc)])
                )
                continue
            out.append(await asyncio.to_thread(_read, app, entry, path, source, config, flow))
    return out


async def run_drill(
    app: App,
    flow: str,
    *,
    trigger: str = "schedule",
    rng: random.Random | None = None,
) -> DrillReport:
    """One drill of the archive flow: a random sample of its archives read back from where
    they live, recorded on the audit trail (``archive.drill``); a failed one alerts."""
    config = app.settings.flow(flow)
    if not isinstance(config, ArchiveFlow):
        raise ConsonanceSftpError(f"flow {flow!r} is not an archive flow")
    report = DrillReport(flow, datetime.now(UTC), trigger=trigger)
    began = time.monotonic()
    entries = list_archives(app.store, flow=flow)
    picked = (rng or random.SystemRandom()).sample(
        entries, min(config.drill.sample_archives, len(entries))
    )
    if not entries:
        report.notes.append("the flow has written no archive yet")
    for entry in picked:
        report.copies.extend(await _read_copies(app, entry, config, flow))
    if any(c.mode == "sidecar only" for c in report.copies):
        report.notes.append(
            "encrypted archives were checked by their sidecar and the ledger only (no "
            "drill.identity_file): their contents were not read"
        )
    report.seconds = time.monotonic() - began
    record(app.store, report)
    return report


def record(store: Store, report: DrillReport) -> None:
    """The drill on the audit trail, and its alert when it failed."""
    store.append_audit(
        actor(report.flow),
        AuditAction.ARCHIVE_DRILL,
        f"flow:{report.flow}",
        {
            "trigger": report.trigger,
            "seconds": round(report.seconds, 3),
            "archives": report.archives,
            "sources": sorted({c.source for c in report.copies}),
            "bytes_verified": report.bytes_verified,
            "archive_bytes": report.archive_bytes,
            "outcome": report.outcome,
            "ok": report.ok,
            "problems": report.problems,
            "notes": report.notes,
        },
    )
    log.info(
        "restore drill of flow %s: %s, %d archive(s), %d bytes verified in %.1fs",
        report.flow,
        report.outcome,
        len(report.archives),
        report.bytes_verified,
        report.seconds,
    )
    if report.copies and not report.ok:
        problems = report.problems
        store.raise_alert(
            Alert(
                severity=AlertSeverity.CRITICAL,
                kind=ALERT_FAILED,
                flow=report.flow,
                message=f"restore drill of archive flow {report.flow} failed: "
                + "; ".join(problems[:3])
                + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""),
                details={
                    "archives": ", ".join(report.archives),
                    "problems": str(len(problems)),
                },
            )
        )


def overdue_alert(store: Store, flow: str, config: ArchiveFlow, now: datetime) -> Alert | None:
    """Raise (and return) the overdue alert when no drill of the flow succeeded within
    ``drill.overdue`` (counted from the flow's first archive when none ever did); once per
    overdue spell (not again while an unacknowledged one stands since the last success)."""
    limit = config.drill.overdue
    if limit is None:
        return None
    good = [e for e in drills(store, flow) if e.details.get("ok")]
    if good:
        since = good[0].ts
    else:
        first = first_archive_at(store, flow)
        if first is None:
            return None  # nothing to drill yet
        since = first
    if now - since < limit:
        return None
    standing = [
        a
        for a in store.list_alerts(kind=ALERT_OVERDUE, unacknowledged=True)
        if a.flow == flow and a.ts >= since
    ]
    if standing:
        return None
    what = (
        f"the last successful one was at {since:%Y-%m-%d %H:%M} UTC"
        if good
        else (f"none has succeeded since its first archive ({since:%Y-%m-%d %H:%M} UTC)")
    )
    alert = Alert(
        severity=AlertSeverity.WARNING,
        kind=ALERT_OVERDUE,
        flow=flow,
        message=f"restore drill of archive flow {flow} is overdue: {what}; drills are due "
        f"every {config.drill.every}, overdue after {limit}",
        details={"since": since.isoformat(), "overdue_after": str(limit)},
    )
    store.raise_alert(alert)
    return alert


async def _drill_now(app: App, flow: str, now: datetime, trigger: str) -> DrillReport:
    """A drill that cannot run at all is recorded as failed (with its alert), never raised."""
    try:
        return await run_drill(app, flow, trigger=trigger)
    except Exception as exc:
        log.exception("restore drill of flow %s could not run", flow)
        report = DrillReport(flow, now, notes=[f"the drill could not run: {exc}"], trigger=trigger)
        report.copies.append(
            CopyRead("(drill)", "-", ok=False, mode="not read", problems=[str(exc)])
        )
        record(app.store, report)
        return report


async def run_due(
    app: App, flow: str, config: ArchiveFlow, *, now: datetime | None = None
) -> DrillReport | None:
    """The archive flow's run hook (the run holds the flow's lock): a drill when one is due,
    then the overdue check. A drill that cannot run is recorded as failed (with its alert);
    it never fails the run."""
    now = now or datetime.now(UTC)
    report: DrillReport | None = None
    if is_due(app.store, flow, config, now):
        report = await _drill_now(app, flow, now, "schedule")
    overdue_alert(app.store, flow, config, now)
    return report


# --- the periodic check: drills and their alerts without a run of the flow -------------------

CHECK_INTERVAL_S = 600.0
"""How often ``serve`` looks for drills that are due or overdue (``drill_loop``)."""


@dataclass(slots=True)
class Checked:
    """What one periodic check did for one archive flow."""

    flow: str
    report: DrillReport | None = None  # the drill it ran (None: none was due, or it waited)
    busy: str = ""  # who held the flow's lock when a drill was due (a run: it drills itself)
    overdue: Alert | None = None  # the overdue alert it raised


async def check_flow(
    app: App,
    flow: str,
    config: ArchiveFlow,
    *,
    now: datetime | None = None,
    drill: bool = True,
) -> Checked:
    """One archive flow's periodic check, whether or not its schedule still runs: a drill
    when one is due (``drill``, and the flow enabled and not paused), taken only with the
    flow's run lock (the lock its runs hold, ``engine.FlowLock``), so it never overlaps a run
    of the flow (a run that holds it drills at its end when due); then the overdue check (one
    alert while it stands unacknowledged). Cheap when nothing is due: the audit trail read."""
    now = now or datetime.now(UTC)
    done = Checked(flow)
    if (
        drill
        and config.enabled
        and await asyncio.to_thread(is_due, app.store, flow, config, now)
        and not await asyncio.to_thread(Controls(app).is_paused, "flow", flow)
    ):
        lock = FlowLock(app.engine_settings(), flow, SERVICE)
        holder = await asyncio.to_thread(lock.try_acquire)
        if holder is not None:
            done.busy = holder.describe()
            log.info(
                "restore drill of flow %s is due; the flow's lock is held by %s: left to it",
                flow,
                done.busy,
            )
        else:
            try:
                done.report = await _drill_now(app, flow, now, "schedule")
            finally:
                await asyncio.to_thread(lock.release)
    done.overdue = await asyncio.to_thread(overdue_alert, app.store, flow, config, now)
    return done


async def check_all(app: App, *, now: datetime | None = None, drill: bool = True) -> list[Checked]:
    """``check_flow`` for every archive flow of the config in force."""
    return [
        await check_flow(app, name, flow, now=now, drill=drill)
        for name, flow in list(app.settings.flows.items())
        if isinstance(flow, ArchiveFlow)
    ]


async def drill_loop(stop: asyncio.Event, app: App, interval_s: float = CHECK_INTERVAL_S) -> None:
    """``serve``'s drill check: every ``interval_s`` (the first at once), ``check_all`` with
    the config in force; a failure is logged and never stops the service."""
    while not stop.is_set():
        try:
            await check_all(app)
        except Exception:  # the store or a bug: logged, tried again next round
            log.exception("checking the restore drills failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
