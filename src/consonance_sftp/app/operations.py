"""Operations: everything an operator does, for the CLI and the web console alike.

Status (durable work by kind and ``WorkState``, the poller's health, held work, pauses,
schedules), history, retry, resend (the recorded, explicit act that bumps the generation),
pause and resume of partners and flows with what becomes of their held work, and trusting a
partner's host key. Each call returns plain data and writes its own audit event; the user
interfaces only parse, call and print. Reads go to our store and to the engine through its
client, so a command never becomes a second executor next to ``serve``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomlkit

from consonance_sftp.adapters.ftp.certificate import PresentedCertificate
from consonance_sftp.adapters.ftp.fs import FtpRemoteFS
from consonance_sftp.adapters.sftp.connection import PresentedKey
from consonance_sftp.app.dispatch import resend_request, workflow_owner
from consonance_sftp.app.poller_health import PollerHealth
from consonance_sftp.app.runner import (
    Controls,
    DeliveryRunner,
    Enqueued,
    HeldDelivery,
    Pause,
    executor_running,
    held_deliveries,
    mark_resend,
)
from consonance_sftp.app.serving import flow_schedules
from consonance_sftp.config.hostkeys import HostKeyFormatError, fingerprint_of
from consonance_sftp.config.settings import tls_fingerprint
from consonance_sftp.engine import EngineClient, delivery_workflow_id
from consonance_sftp.errors import ConfigError, ConfigProblem, ConsonanceSftpError
from consonance_sftp.formats.wording import counted
from consonance_sftp.models import AuditAction, WorkState
from consonance_sftp.ports.delivery import DeliveryRecord, DeliveryRequest
from consonance_sftp.ports.remote_fs import ListingLag, ProbeReport, SentTestFile
from consonance_sftp.ports.store import AuditReport, JsonValue, Store

if TYPE_CHECKING:
    from consonance_sftp.app import App

__all__ = [
    "WORK_KINDS",
    "AuditReport",
    "DeliveryRecord",
    "HostKeyCheck",
    "ListingLag",
    "Operations",
    "PauseChange",
    "ProbeReport",
    "Schedule",
    "Status",
    "Store",
    "WorkItem",
    "WorkTable",
    "apply_recommendations",
    "pin_host_key",
    "work_progress",
    "workflow_owner",
]

WORK_KINDS = (
    # (what, workflow ID prefix, what owns it)
    ("deliveries", "dlv-", "partner"),
    ("withdrawals", "wdr-", "partner"),
    ("intake", "ing-", "partner"),
    ("flow ticks", "sched-flow:", "flow"),
    ("flow events", "evt-", "flow"),
)


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One piece of durable work that is not done."""

    workflow_id: str
    owner: str  # its partner or flow
    state: WorkState
    reason: str  # why it failed ("" unless failed)


@dataclass(frozen=True, slots=True)
class WorkTable:
    """One kind of durable work: what is not done, and a count per state."""

    what: str
    owner: str  # "partner" or "flow"
    open: list[WorkItem]
    counts: dict[WorkState, int]


@dataclass(frozen=True, slots=True)
class Schedule:
    flow: str
    cron: str
    timezone: str
    next_tick: datetime


@dataclass(frozen=True, slots=True)
class Status:
    """What ``status`` shows."""

    executor_running: bool
    backend: str
    engine_started: bool  # False: the engine has not run on this config yet
    work: list[WorkTable]
    poller: PollerHealth | None
    held: list[HeldDelivery]
    paused: list[Pause]
    schedules: list[Schedule]


@dataclass(frozen=True, slots=True)
class PauseChange:
    """A pause or resume, and (after a resume) what becomes of the held work."""

    pause: Pause
    executor_running: bool
    released: int  # held deliveries now free to go
    still_held: int  # held for another reason (a closed window, another pause)
    failed_not_held: list[str]  # the partner's failed deliveries a resume does not resend


@dataclass(frozen=True, slots=True)
class HostKeyCheck:
    """A partner's host keys (every key type the server holds) against a confirmed
    fingerprint."""

    presented: list[PresentedKey]
    pinned_before: list[str]
    pinned: PresentedKey | None  # the key the confirmed fingerprint matched, now pinned
    executor_running: bool
    paused: bool  # the partner is still paused (its held work waits for a resume)


@dataclass(frozen=True, slots=True)
class CertificateCheck:
    """An FTPS partner's TLS certificate against a confirmed fingerprint (``partner trust``)."""

    presented: PresentedCertificate
    pinned_before: list[str]
    pinned: bool  # the confirmed fingerprint matched and is now pinned
    executor_running: bool
    paused: bool


class Operations:
    """The operator's acts on one config."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.controls = Controls(app)

    # --- reading ---------------------------------------------------------------------------

    def check_names(self, partner: str | None, flow: str | None) -> None:
        """Nothing on record for a name the config does not know either: most likely a typo,
        so say so with the closest name (a partner removed from the config keeps its history)."""
        settings = self.app.settings
        if partner is not None and partner not in settings.partners:
            raise settings.unknown("partner", partner, settings.partners)
        if flow is not None and flow not in settings.flows:
            raise settings.unknown("flow", flow, settings.flows)

    def history(
        self,
        *,
        isbn: str | None = None,
        partner: str | None = None,
        flow: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 200,
    ) -> list[DeliveryRecord]:
        """The ledger's files, newest first; a typo in a name with nothing on record raises."""
        rows = self.app.store.list_deliveries(
            isbn=isbn, partner=partner, flow=flow, since=since, until=until, limit=limit
        )
        if not rows:
            self.check_names(partner, flow)
        return rows

    def sent_before(self, enqueued: Enqueued, started: datetime) -> list[DeliveryRecord]:
        """The ledger rows of an enqueued delivery when every one was written before
        ``started`` (the engine answered a run with an earlier run's result: nothing went
        now); else nothing."""
        request = enqueued.request
        found = self.app.store.list_deliveries(partner=request.partner, package=request.package)
        rows = [r for r in found if r.workflow_id == enqueued.workflow_id]
        if rows and all(r.created_at is not None and r.created_at < started for r in rows):
            return rows
        return []

    def verify_audit(self) -> AuditReport:
        """The audit trail checked: its chains and every ledger row against its event."""
        return self.app.store.verify_audit()

    def engine_started(self) -> bool:
        settings = self.app.engine_settings()
        return settings.is_postgres or Path(settings.sqlite_path).exists()

    def work(self) -> list[WorkTable]:
        """Per kind of durable work: what is not done (with the reason of a failure), and a
        count per state."""
        client = EngineClient(self.app.engine_settings())
        try:
            tables = []
            for what, prefix, owner in WORK_KINDS:
                counts: dict[WorkState, int] = {}
                items = []
                for wid, state in sorted(client.states(prefix).items()):
                    counts[state] = counts.get(state, 0) + 1
                    if state is WorkState.DONE:
                        continue
                    reason = (client.error(wid) or "") if state is WorkState.FAILED else ""
                    items.append(WorkItem(wid, workflow_owner(wid), state, reason))
                order = list(WorkState)
                counts = dict(sorted(counts.items(), key=lambda kv: order.index(kv[0])))
                tables.append(WorkTable(what, owner, items, counts))
            return tables
        finally:
            client.close()

    def held(self) -> list[HeldDelivery]:
        """Deliveries held by a pause or a closed window, not released since."""
        return held_deliveries(self.app, self.controls)

    def schedules(self, now: datetime | None = None) -> list[Schedule]:
        moment = now or datetime.now(UTC)
        return [
            Schedule(name, tick.cron, tick.timezone, tick.next_after(moment))
            for name, tick in flow_schedules(self.app).items()
        ]

    def status(self) -> Status:
        started = self.engine_started()
        return Status(
            executor_running=executor_running(self.app),
            backend=self.app.engine_settings().backend,
            engine_started=started,
            work=self.work() if started else [],
            poller=PollerHealth.load(self.app.store),
            held=self.held(),
            paused=self.controls.paused(),
            schedules=self.schedules(),
        )

    def files_of(self, workflow_id: str) -> int:
        """How many files the ledger holds for a delivery workflow (0: none recorded)."""
        rows = self.app.store.list_deliveries(limit=5000)
        return sum(1 for r in rows if r.workflow_id == workflow_id)

    async def take_queues_of(self, runner: DeliveryRunner, workflow_id: str) -> None:
        """When ``runner`` runs this process's own engine, make it dequeue what ``workflow_id``
        needs: its partner's delivery queue; for a flow event, its flow's queue and every
        partner's delivery queue (the deliveries it enqueues)."""
        engine = runner.engine
        if engine is None:
            return  # a running service or worker does the work
        owner = workflow_owner(workflow_id)
        partners = self.app.settings.partners
        if owner in partners:
            cap = self.app.partner_config(owner).max_connections
            await asyncio.to_thread(engine.ensure_delivery_queue, cap)
        if workflow_id.startswith("evt-"):
            await asyncio.to_thread(engine.ensure_flow_queues, [owner])
            for cap in sorted({p.max_connections for p in partners.values()}):
                await asyncio.to_thread(engine.ensure_delivery_queue, cap)

    def failed_deliveries(self, partner: str) -> list[str]:
        """The partner's deliveries (and withdrawals) that ended failed (a release resends
        only held ones)."""
        if not self.engine_started():
            return []
        client = EngineClient(self.app.engine_settings())
        try:
            states = {**client.states("dlv-"), **client.states("wdr-")}
        finally:
            client.close()
        return sorted(
            w for w, st in states.items() if st.ended_failed and workflow_owner(w) == partner
        )

    # --- acting ----------------------------------------------------------------------------

    def retry(self, workflow_id: str, *, by: str) -> str:
        """Run failed work again from its first failed step (same ID); recorded. Returns
        what owns it (its partner or flow)."""
        if not self.engine_started():  # and opening the engine's database would create it
            raise ConsonanceSftpError(
                f"no workflow {workflow_id!r}: nothing has run on this config yet",
                hint="'consonance-sftp status' lists failed work once something has run.",
            )
        client = EngineClient(self.app.engine_settings())
        try:
            client.retry(workflow_id)
        finally:
            client.close()
        owner = workflow_owner(workflow_id)
        self.app.store.append_audit(
            actor=f"user:{by}",
            action=AuditAction.DELIVERY_RETRY,
            subject=workflow_id,
            details={"partner": owner},
        )
        return owner

    def latest_delivery(self, isbn: str, partner: str, flow: str | None = None) -> str:
        """The workflow of the title's latest delivery to the partner (``resend --isbn``)."""
        rows = self.history(isbn=isbn, partner=partner, flow=flow, limit=1)
        if not rows or rows[0].workflow_id is None:
            raise ConsonanceSftpError(f"nothing was delivered for {isbn} to {partner}")
        return rows[0].workflow_id

    def prepare_resend(self, workflow_id: str, *, by: str, reason: str) -> DeliveryRequest:
        """The request sending a recorded delivery again, one generation up; its files are
        marked so the transport sends them even where the partner holds identical bytes."""
        if not reason.strip():
            raise ConsonanceSftpError("a resend needs a reason", hint="Pass --reason '...'.")
        request = resend_request(self.app, workflow_id, by=by, reason=reason)
        mark_resend(self.app.store, request)
        return request

    async def submit_resend(
        self,
        runner: DeliveryRunner,
        request: DeliveryRequest,
        *,
        from_workflow: str,
        by: str,
        reason: str,
    ) -> str:
        """Hand a prepared resend to the engine and record who asked and why. Returns the
        new workflow's ID; a resend that would be held (a pause, a closed window) raises."""
        submitted = await runner.submit(request)
        if not isinstance(submitted, Enqueued):
            raise ConsonanceSftpError(f"resend held: {submitted.reason}")
        await asyncio.to_thread(
            self.app.store.append_audit,
            actor=f"user:{by}",
            action=AuditAction.DELIVERY_RESEND,
            subject=f"{request.partner}:{request.package}",
            details={
                "by": by,
                "reason": reason,
                "from_workflow": from_workflow,
                "workflow_id": submitted.workflow_id,
                "generation": request.generation,
            },
        )
        return submitted.workflow_id

    def set_paused(
        self, scope: str, name: str, *, paused: bool, by: str, reason: str = ""
    ) -> PauseChange:
        """Pause or resume a partner (``scope='partner'``) or a flow; recorded. A resume
        says what becomes of the held work."""
        pause = self.controls.set(scope, name, paused=paused, by=by, reason=reason)
        running = executor_running(self.app)
        if paused:
            return PauseChange(pause, running, 0, 0, [])
        mine = [
            h
            for h in self.held()
            if (h.request.partner if scope == "partner" else h.request.flow) == name
        ]
        free = [h for h in mine if h.reason is None]
        failed: list[str] = []
        if scope == "partner":
            held_ids = {delivery_workflow_id(h.request.keys(), h.request.generation) for h in mine}
            failed = [w for w in self.failed_deliveries(name) if w not in held_ids]
        return PauseChange(pause, running, len(free), len(mine) - len(free), failed)

    async def probe(self, partner: str) -> tuple[ProbeReport, Path]:
        """What the partner's server supports, also stored as JSON under
        ``<state_dir>/probes/<partner>.json`` (returned with the report)."""
        async with self.app.remote_fs(partner) as fs:
            report = await fs.probe()
        probes = self.app.state_dir / "probes"
        probes.mkdir(parents=True, exist_ok=True)
        stored = probes / f"{partner}.json"
        data = {
            **dataclasses.asdict(report),
            "probed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        stored.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return report, stored

    async def send_test(self, partner: str, folder: str | None) -> SentTestFile:
        """A small file through the full upload protocol, then removed where the server
        allows it (a drop box that refuses removes keeps it: delivered, not failed)."""
        async with self.app.remote_fs(partner) as fs:
            return await fs.send_test_file(folder)

    async def trust_host_key(
        self,
        config_path: Path,
        partner: str,
        fingerprint: str | None,
        *,
        replace: bool,
        by: str,
    ) -> HostKeyCheck:
        """Show every host key the partner's server holds (one key exchange per key type);
        pin the one ``fingerprint`` (confirmed with the partner by another channel) names, as
        ``TYPE SHA256:...`` so the client asks for that type first. Never trusts on first
        use; a pin is recorded. A running ``serve`` reloads the file by itself."""
        try:
            wanted = fingerprint_of(fingerprint) if fingerprint else None
        except HostKeyFormatError as exc:
            raise ConsonanceSftpError(f"--fingerprint {fingerprint!r}: {exc}") from None
        async with self.app.remote_fs(partner) as fs:
            presented = await fs.presented_host_keys()
        before = list(self.app.partner_config(partner).host_keys)
        match = next((k for k in presented if k.fingerprint == wanted), None)
        if match is not None:
            pin = f"{match.key_type} {match.fingerprint}"
            pin_host_key(config_path, partner, pin, replace=replace)
            await self._trusted(
                partner,
                by,
                {
                    "fingerprint": match.fingerprint,
                    "key_type": match.key_type,
                    "replaced": before if replace else [],
                },
            )
        return HostKeyCheck(
            presented=presented,
            pinned_before=before,
            pinned=match,
            executor_running=executor_running(self.app),
            paused=self.controls.is_paused("partner", partner),
        )

    async def _trusted(self, partner: str, by: str, details: dict[str, JsonValue]) -> None:
        """``partner.trust`` on the audit trail: who pinned what."""
        await asyncio.to_thread(
            self.app.store.append_audit,
            actor=f"user:{by}",
            action=AuditAction.PARTNER_TRUST,
            subject=f"partner:{partner}",
            details=details,
        )

    async def trust_certificate(
        self,
        config_path: Path,
        partner: str,
        fingerprint: str | None,
        *,
        replace: bool,
        by: str,
    ) -> CertificateCheck:
        """Show the TLS certificate an FTPS partner's server presents; pin its SHA-256
        fingerprint in ``tls_fingerprints`` when ``fingerprint`` (confirmed with the partner
        by another channel) is the same. Never trusts on first use; a pin is recorded."""
        try:
            wanted = tls_fingerprint(fingerprint) if fingerprint else None
        except ValueError as exc:
            raise ConsonanceSftpError(f"--fingerprint: {exc}") from None
        async with self.app.remote_fs(partner) as fs:
            if not isinstance(fs, FtpRemoteFS):
                raise ConsonanceSftpError(f"partner {partner} is not an FTPS partner")
            presented = await fs.presented_certificate()
        before = list(self.app.partner_config(partner).tls_fingerprints)
        matched = wanted is not None and wanted == presented.fingerprint
        if matched:
            pin_tls_fingerprint(config_path, partner, presented.fingerprint, replace=replace)
            await self._trusted(
                partner,
                by,
                {
                    "tls_fingerprint": presented.fingerprint,
                    "subject": presented.subject,
                    "not_after": presented.not_after,
                    "replaced": before if replace else [],
                },
            )
        return CertificateCheck(
            presented=presented,
            pinned_before=before,
            pinned=matched,
            executor_running=executor_running(self.app),
            paused=self.controls.is_paused("partner", partner),
        )


def pin_tls_fingerprint(config_path: Path, partner: str, pin: str, *, replace: bool) -> None:
    """Add (or with ``replace``, set as the only) pinned TLS certificate fingerprint of an
    FTPS partner, keeping the file's layout."""
    _pin(config_path, partner, "tls_fingerprints", pin, replace=replace, same=tls_fingerprint)


def pin_host_key(config_path: Path, partner: str, pin: str, *, replace: bool) -> None:
    """Add (or with ``replace``, set as the only) pinned host key, keeping the file's layout."""
    _pin(config_path, partner, "host_keys", pin, replace=replace, same=str)


def _pin(
    config_path: Path,
    partner: str,
    key: str,
    pin: str,
    *,
    replace: bool,
    same: Callable[[str], str],
) -> None:
    """Add ``pin`` to the partner's list ``key`` in the config file (unless a pin that is
    ``same`` once normalised is there), or make it the only one; comments and layout kept."""
    doc = tomlkit.parse(config_path.read_text())
    partners = doc.get("partners")
    if partners is None or partner not in partners:
        raise ConfigError(
            f"cannot pin: partner {partner!r} is not in {config_path}",
            [ConfigProblem(f"partners.{partner}", "not found in the file")],
        )
    entry = partners[partner]
    pins = entry.get(key)
    if replace or pins is None:
        entry[key] = [pin]
    elif pin not in [same(str(p)) for p in pins]:
        pins.append(pin)
    config_path.write_text(tomlkit.dumps(doc))


def work_progress(client: EngineClient, workflow_id: str, files: int | None) -> str:
    """The workflow's state and how far it has got, from the engine's records (for a command
    that follows work another process runs)."""
    state = client.state(workflow_id)
    text = "unknown" if state is None else state.value
    if state is WorkState.RUNNING:
        done = client.steps_done(workflow_id)
        uploads = sum(1 for s in done if s.startswith(("upload:", "deliver.upload")))
        if files:
            text += f": {uploads} of {counted(files, 'file')} uploaded"
        elif done:
            text += f": {counted(len(done), 'step')} done, last {done[-1]}"
    return text


def apply_recommendations(config_path: Path, partner: str, settings: dict[str, Any]) -> None:
    """Write ``settings`` into ``[partners.<partner>.transfer]``, keeping comments and layout."""
    doc = tomlkit.parse(config_path.read_text())
    partners = doc.get("partners")
    if partners is None or partner not in partners:
        raise ConfigError(
            f"cannot apply: partner {partner!r} is not in {config_path}",
            [ConfigProblem(f"partners.{partner}", "not found in the file")],
        )
    entry = partners[partner]
    if "transfer" not in entry:
        entry["transfer"] = tomlkit.table()
    transfer = entry["transfer"]
    for key, value in settings.items():
        if value is None:  # back to the default: TOML has no null
            transfer.pop(key, None)
        else:
            transfer[key] = value
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    transfer.comment(f"partner probe --apply, {stamp}")
    config_path.write_text(tomlkit.dumps(doc))
