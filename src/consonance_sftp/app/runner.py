"""Deliveries for the service and the CLI: operator pauses, explicit resends, and the runner
that enqueues on this process's engine or through the DBOS client.

``DeliveryRunner`` runs an in-process engine when nothing else executes on the SQLite engine
file, and otherwise enqueues through the DBOS client so ``serve`` (or the PostgreSQL workers) do
the work: one DBOS executor per SQLite file. When another one-shot command (``run``,
``retry``, ...) holds the file, it waits for it, saying so (pid and command), rather than hand
work to an engine about to stop. ``flow_lock`` keeps two runs of one flow (manual or scheduled)
from overlapping. Deliveries to a paused partner, or of a paused flow, are held (an open row of
the store's holds, with its audit event) and released when the pause is lifted; pauses too are
rows of their own, each change on the audit trail. An explicit resend (``mark_resend``) makes
``ResendTransport`` send the files again even when the partner still holds identical bytes.
``FlowLedger`` runs a flow's after-delivery hook (``flows.registry``: an ONIX recipient's
baseline advances) as the engine records its files delivered, whoever delivers them (a run, a
``retry``, a recovery, an event or tick nobody waits for).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from consonance_sftp.app.delivery import ProgressSink, SftpDeliveryTransport
from consonance_sftp.engine import (
    ONE_SHOT,
    SERVICE,
    EngineBusy,
    EngineClient,
    FlowLock,
    LockHolder,
    engine_holder,
)
from consonance_sftp.engine.ids import WITHDRAWAL_PREFIX
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.flows import registry
from consonance_sftp.flows.base import AfterDelivery
from consonance_sftp.logs import get_logger
from consonance_sftp.models import AuditAction, DeliveryKey, DeliveryOutcome, WorkState
from consonance_sftp.ports.delivery import (
    DeliveryLedger,
    DeliveryRecord,
    DeliveryRequest,
    Fence,
    FileToSend,
    RemoteFileState,
    StageResult,
)
from consonance_sftp.ports.intake import IntakeRequest
from consonance_sftp.ports.store import PauseRecord, Store

if TYPE_CHECKING:
    from consonance_sftp.app import App
    from consonance_sftp.engine import Engine

log = get_logger(__name__)

_DELIVERED = {DeliveryOutcome.SENT, DeliveryOutcome.SKIPPED}

# --- operator controls ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pause:
    scope: str
    name: str
    paused: bool
    by: str
    reason: str
    at: str


def _as_pause(found: PauseRecord) -> Pause:
    return Pause(
        found.scope, found.name, found.paused, found.by, found.reason, found.at.isoformat()
    )


class Controls:
    """Pause and resume of partners and flows, kept in our store, recorded in the audit trail."""

    def __init__(self, app: App) -> None:
        self.app = app

    def _check(self, scope: str, name: str) -> None:
        # A typo is answered with the closest configured name.
        if scope == "partner":
            self.app.settings.partner(name)
        else:
            self.app.settings.flow(name)

    def get(self, scope: str, name: str) -> Pause | None:
        found = self.app.store.get_pause(scope, name)
        return None if found is None else _as_pause(found)

    def is_paused(self, scope: str, name: str) -> bool:
        found = self.get(scope, name)
        return found is not None and found.paused

    def paused(self) -> list[Pause]:
        stored = {(p.scope, p.name): p for p in self.app.store.list_pauses() if p.paused}
        out = []
        for scope, names in (
            ("partner", self.app.settings.partners),
            ("flow", self.app.settings.flows),
        ):
            out += [_as_pause(stored[scope, name]) for name in names if (scope, name) in stored]
        return out

    def set(self, scope: str, name: str, *, paused: bool, by: str, reason: str) -> Pause:
        self._check(scope, name)
        # The pause and its audit event commit together.
        saved = self.app.store.set_pause(scope, name, paused=paused, by=by, reason=reason)
        return _as_pause(saved)

    def hold_reason(self, flow: str, partner: str, *, now: datetime | None = None) -> str | None:
        config = self.app.settings.partners.get(partner)
        if self.is_paused("partner", partner) or (config is not None and config.paused):
            return f"partner {partner!r} is paused"
        window = config.delivery_window if config is not None else None
        if window is not None and not window.is_open(now or datetime.now(UTC)):
            return f"outside partner {partner!r}'s delivery window ({window})"
        if self.is_paused("flow", flow):
            return f"flow {flow!r} is paused"
        return None


# --- explicit resends ---------------------------------------------------------------------


def mark_resend(store: Store, request: DeliveryRequest) -> None:
    """Mark every file of an explicit resend: until the ledger shows this generation sent,
    the transport sends it again even if the partner still holds identical bytes."""
    for f in request.files:
        store.set_resend_mark(f.key(request.partner), request.generation)


class ResendTransport:
    """The engine's transport, plus explicit resends: a file marked by ``mark_resend`` is not
    taken as "already there"; it is staged again beside the partner's identical copy, which
    stays at the final name until ``publish`` replaces it (one rename where the server allows,
    else removed right before the rename). So the partner sees a new arrival (what a resend
    asks for), and a resend that fails before every file is staged leaves the old copies in
    place (all-or-nothing, like any package). Everything else goes to the SFTP transport
    unchanged."""

    def __init__(self, inner: SftpDeliveryTransport, store: Store) -> None:
        self.inner = inner
        self.store = store

    def _forced(self, partner: str, file: FileToSend) -> bool:
        marker = self.store.get_resend_mark(file.key(partner))
        if marker is None:
            return False
        row = self.store.find_delivery(file.key(partner), marker)
        return row is None or row.outcome not in _DELIVERED

    async def remote_state(self, partner: str, file: FileToSend) -> RemoteFileState:
        if await asyncio.to_thread(self._forced, partner, file):
            return RemoteFileState(final_matches=False)
        return await self.inner.remote_state(partner, file)

    async def stage(self, partner: str, file: FileToSend, fence: Fence) -> StageResult:
        forced = await asyncio.to_thread(self._forced, partner, file)
        return await self.inner.stage(partner, file, fence, resend=forced)

    async def publish(self, partner: str, file: FileToSend, fence: Fence) -> None:
        forced = await asyncio.to_thread(self._forced, partner, file)
        await self.inner.publish(partner, file, fence, resend=forced)

    async def remove(self, partner: str, remote_path: str, fence: Fence) -> bool:
        return await self.inner.remove(partner, remote_path, fence)


def with_resends(engine: Engine, store: Store) -> Engine:
    """Install ``ResendTransport`` on an engine built by ``App.engine`` (before its launch)."""
    if isinstance(engine.transport, SftpDeliveryTransport):
        engine.transport = ResendTransport(engine.transport, store)
    return engine


# --- running deliveries --------------------------------------------------------------------


class FlowLedger:
    """The engine's ledger, plus each flow's after-delivery hook (the registry's
    ``after_delivery`` column): as it records a file delivered (sent, or found already
    there), the hook of the flow's kind runs with the record, in the process that ran the
    delivery. So work that failed and was retried later (``retry``, ``serve``, a recovery
    after a crash), or that nobody waited for (an event, a tick), is followed up like a run
    that went at once: an ONIX recipient's baseline and MessageNumber advance then, once."""

    def __init__(
        self,
        inner: DeliveryLedger,
        store: Store,
        hook_of: Callable[[str], AfterDelivery | None],
    ) -> None:
        self.inner = inner
        self.store = store
        self.hook_of = hook_of  # flow name -> its kind's hook (None: most kinds have none)

    def already_sent(self, key: DeliveryKey, generation: int) -> bool:
        return self.inner.already_sent(key, generation)

    def record(self, record: DeliveryRecord) -> None:
        self.inner.record(record)
        if record.outcome not in _DELIVERED:
            return
        hook = self.hook_of(record.flow)
        if hook is None:
            return
        try:
            hook(self.store, record)
        except Exception:
            # The delivery itself is done and recorded; a follow-up that failed (an ONIX
            # baseline not moved) only means the next delta carries these changes again.
            log.exception(
                "delivery %s: the after-delivery step of flow %s failed",
                record.workflow_id,
                record.flow,
            )


def with_flow_hooks(app: App, engine: Engine) -> Engine:
    """Install ``FlowLedger`` on an engine built by ``App.engine`` (before its launch). Which
    hook a flow has is read from the settings in force (they change on a reload)."""

    def hook_of(flow: str) -> AfterDelivery | None:
        return registry.after_delivery_of(app.settings.flows.get(flow))

    if not isinstance(engine.ledger, FlowLedger):
        engine.ledger = FlowLedger(engine.ledger, app.store, hook_of)
    return engine


# --- one engine per SQLite file, one run per flow ------------------------------------------


def executor_running(app: App) -> bool:
    """Is a process holding this SQLite engine file? (PostgreSQL: workers always run
    elsewhere, so the answer is yes.) Probed with the same ``flock`` the engine takes."""
    settings = app.engine_settings()
    return settings.is_postgres or engine_holder(settings) is not None


def _waiting(what: str, holder: LockHolder, then: str) -> None:
    log.warning("waiting: %s is in use by %s; %s", what, holder.describe(), then)


@contextlib.asynccontextmanager
async def flow_lock(app: App, flow: str, *, role: str = ONE_SHOT) -> AsyncIterator[None]:
    """Hold flow ``flow``'s run lock for the block (plan, send, record): a run started while
    another run of the same flow (manual or scheduled, any process) holds it waits, saying
    which process it waits for, and then plans from what that run left."""
    settings = app.engine_settings()
    lock = FlowLock(settings, flow, role)
    announced: LockHolder | None = None
    while (holder := await asyncio.to_thread(lock.try_acquire)) is not None:
        if holder != announced:
            _waiting(f"flow {flow!r}", holder, "this run starts when that one ends")
            announced = holder
        await asyncio.sleep(1.0 if settings.is_postgres else 0.3)
    try:
        yield
    finally:
        await asyncio.to_thread(lock.release)


@dataclass(frozen=True, slots=True)
class Enqueued:
    workflow_id: str
    request: DeliveryRequest


@dataclass(frozen=True, slots=True)
class Held:
    request: DeliveryRequest
    reason: str


class DeliveryRunner:
    """Enqueues deliveries on this process's engine, or through the DBOS client when another
    process (``serve``, ``worker``) is the executor."""

    def __init__(
        self,
        app: App,
        *,
        progress: ProgressSink | None = None,
        quiet: bool = False,
        executor: bool | None = None,
        executor_id: str | None = None,
    ) -> None:
        """``executor``: True to be this process's executor whatever else runs (``serve``),
        None to decide (in-process only when no executor holds the SQLite engine file).
        An executor runs flow ticks with the service's ``run_tick``, bound before the engine
        launches (launching resumes ticks a crash left pending, whatever command starts it)."""
        self.app = app
        self.executor_id = executor_id
        self.quiet = quiet
        self.executor = executor
        self.controls = Controls(app)
        self.progress = progress
        self.engine: Engine | None = None
        self.client: EngineClient | None = None
        self._reader: EngineClient | None = None  # reads and rewinds next to our own engine

    async def __aenter__(self) -> DeliveryRunner:
        settings = self.app.engine_settings(self.executor_id)
        if not self.executor and settings.is_postgres:
            self.client = EngineClient(settings)  # the workers execute
            return self
        engine: Engine | None = None
        announced: LockHolder | None = None
        unnamed_since: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            holder = None if self.executor else engine_holder(settings)
            if holder is not None and holder.pid is None:
                # Another command's passing probe, or a holder not yet named: look again
                # shortly; only a lasting unnamed holder is waited for as such.
                unnamed_since = unnamed_since or loop.time()
                if loop.time() - unnamed_since < 2.0:
                    await asyncio.sleep(0.1)
                    continue
            else:
                unnamed_since = None
            if holder is not None and holder.role == SERVICE:
                # 'serve' runs: hand it the work, and follow it from here.
                self.client = EngineClient(settings)
                return self
            if holder is None:
                if engine is None:
                    engine = self._build_engine()
                try:
                    # Never the lease's silent wait: who holds the file decides what to do.
                    wait = None if settings.is_postgres else 0.0
                    await asyncio.to_thread(engine.launch, lease_wait_s=wait)
                    break
                except EngineBusy as exc:
                    holder = exc.holder
            if self.executor and holder.role == SERVICE:
                raise ConsonanceSftpError(
                    f"another process already runs the engine on {settings.sqlite_path}: "
                    f"{holder.describe()}",
                    hint="Stop it first: one 'serve' per SQLite file (other commands hand "
                    "their work to it).",
                )
            # Another one-shot command uses the engine: it ends soon; go on after it.
            if holder != announced:
                _waiting("the engine", holder, "this command goes on when it ends")
                announced = holder
            await asyncio.sleep(0.3)
        self.engine = engine
        if self.quiet:
            # A one-shot command reports a failed delivery as one line with its reason (and
            # the ledger keeps it); DBOS would also print the workflow's traceback.
            logging.getLogger("dbos").setLevel(logging.CRITICAL)
        return self

    def _build_engine(self) -> Engine:
        engine = self.app.engine(executor_id=self.executor_id, progress=self.progress)
        engine.lease.role = SERVICE if self.executor else ONE_SHOT
        with_flow_hooks(self.app, with_resends(engine, self.app.store))
        self.app.bind_work(engine, self)  # flow ticks and events run the service's flows
        return engine

    async def __aexit__(self, *_exc: object) -> None:
        if self.engine is not None:
            await self.engine.aclose()
        if self.client is not None:
            self.client.close()
        if self._reader is not None:
            self._reader.close()

    @property
    def in_process(self) -> bool:
        return self.engine is not None

    def engine_or_fail(self) -> Engine:
        """This process's engine (``serve``, ``worker``: always an executor)."""
        if self.engine is None:
            raise ConsonanceSftpError("this process does not run the engine")
        return self.engine

    async def submit(self, request: DeliveryRequest) -> Enqueued | Held:
        reason = await asyncio.to_thread(self.controls.hold_reason, request.flow, request.partner)
        if reason is not None:
            await asyncio.to_thread(self._record_held, request, reason)
            return Held(request, reason)
        cap = self.app.partner_config(request.partner).max_connections
        if self.engine is not None:
            wid = await self.engine.enqueue_delivery(request, max_connections=cap)
        else:
            assert self.client is not None
            wid = await asyncio.to_thread(
                self.client.enqueue_delivery, request, max_connections=cap
            )
        return Enqueued(wid, request)

    async def submit_intake(self, request: IntakeRequest) -> str:
        """Enqueue taking one inbox file in (``app.intake.poll_inbox`` checks pauses and
        windows before it lists); return the workflow ID. The same file version again
        attaches to its workflow."""
        cap = self.app.partner_config(request.partner).max_connections
        if self.engine is not None:
            return await self.engine.enqueue_intake(request, max_connections=cap)
        assert self.client is not None
        return await asyncio.to_thread(self.client.enqueue_intake, request, max_connections=cap)

    def _record_held(self, request: DeliveryRequest, reason: str) -> None:
        # The hold and its ``delivery.held`` audit event commit together.
        self.app.store.hold_delivery(request.to_dict(), reason)

    async def wait(self, workflow_id: str, timeout_s: float = 600.0) -> dict[str, Any]:
        """Wait for a delivery's outcome: its result, or ``{"error": reason}``."""
        if self.engine is not None:
            try:
                result: dict[str, Any] = await self.engine.result(workflow_id, timeout_s)
                return result
            except ConsonanceSftpError as exc:
                return {"workflow_id": workflow_id, "error": str(exc)}
        assert self.client is not None
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            state = await asyncio.to_thread(self.client.state, workflow_id)
            if state is WorkState.DONE:
                return await asyncio.to_thread(self._from_ledger, workflow_id, state)
            if state is not None and state.finished:  # failed, gave up or cancelled
                err = await asyncio.to_thread(self.client.error, workflow_id)
                return {"workflow_id": workflow_id, "error": err or state.value}
            if asyncio.get_running_loop().time() > deadline:
                shown = state.value if state is not None else "unknown"
                return {"workflow_id": workflow_id, "status": shown}
            await asyncio.sleep(0.3)

    def _from_ledger(self, workflow_id: str, state: WorkState) -> dict[str, Any]:
        """The outcome of a delivery another process ran, as the ledger recorded it (a
        withdrawal: as its ``package.withdrawn`` event did)."""
        if workflow_id.startswith(WITHDRAWAL_PREFIX):
            return self._withdrawal_outcome(workflow_id, state)
        rows = [
            r for r in self.app.store.list_deliveries(limit=5000) if r.workflow_id == workflow_id
        ]
        return {
            "workflow_id": workflow_id,
            "status": state.value,
            "sent": [r.remote_path for r in rows if r.outcome is DeliveryOutcome.SENT],
            "already_present": [
                r.remote_path for r in rows if r.outcome is DeliveryOutcome.SKIPPED
            ],
            "already_recorded": [],
        }

    def _withdrawal_outcome(self, workflow_id: str, state: WorkState) -> dict[str, Any]:
        events = self.app.store.list_audit(action=AuditAction.PACKAGE_WITHDRAWN, limit=5000)
        for event in events:
            if event.details.get("workflow_id") == workflow_id:
                removed, gone = event.details.get("removed"), event.details.get("already_gone")
                return {
                    "workflow_id": workflow_id,
                    "status": state.value,
                    "removed": list(removed) if isinstance(removed, list) else [],
                    "already_gone": list(gone) if isinstance(gone, list) else [],
                }
        return {"workflow_id": workflow_id, "status": state.value}

    async def release_held(self) -> list[Enqueued]:
        """Enqueue the held deliveries whose partner and flow are no longer paused (and whose
        delivery window is open). Safe to repeat: the same files and generation give the same
        workflow ID, which attaches."""
        released: list[Enqueued] = []
        for item in await asyncio.to_thread(held_deliveries, self.app, self.controls):
            if item.reason is not None:
                continue  # still held (and not recorded as held again)
            outcome = await self.submit(item.request)
            if isinstance(outcome, Enqueued):
                resumed = await asyncio.to_thread(self.resume_failed, outcome.workflow_id)
                # The hold closes with its ``delivery.released`` audit event.
                await asyncio.to_thread(
                    functools.partial(
                        self.app.store.release_hold,
                        item.hold_id,
                        by="service",
                        workflow_id=outcome.workflow_id,
                        details={"resumed_failed": resumed},
                    )
                )
                log.info(
                    "released %s for %s: %s",
                    item.request.package,
                    item.request.partner,
                    f"the failed delivery {outcome.workflow_id} runs again"
                    if resumed
                    else f"queued as {outcome.workflow_id}",
                )
                released.append(outcome)
        return released

    def resume_failed(self, workflow_id: str) -> bool:
        """A delivery submitted again has the same workflow ID as the same files sent before;
        when that delivery ended failed (the changed host key that paused the partner, a
        partner that refused a write), enqueuing only attaches to the failure and nothing is
        sent. Work released from a hold, or sent again on purpose (``finance send --unsent``),
        must go: run the failed workflow again from its first failed step, as ``retry``
        does. True when it did. Blocking."""
        if self.client is None and self._reader is None:
            self._reader = EngineClient(self.app.engine_settings())
        client = self.client or self._reader
        assert client is not None
        state = client.state(workflow_id)
        if state is None or not state.ended_failed:
            return False
        client.retry(workflow_id)
        return True


@dataclass(frozen=True, slots=True)
class HeldDelivery:
    """A delivery held by a pause or a closed delivery window, not released since."""

    held_at: datetime
    request: DeliveryRequest
    reason: str | None  # why it is still held now; None: it may go
    hold_id: int  # the store's hold (``release_hold`` closes it)


def held_deliveries(app: App, controls: Controls) -> list[HeldDelivery]:
    """Every held delivery not released since (oldest first), with today's reason. Reads the
    store's open holds, never the audit trail: the cost does not grow with history."""
    out: list[HeldDelivery] = []
    for hold in app.store.open_holds():
        if hold.partner not in app.settings.partners:
            continue  # a partner no longer configured: nothing to send it to
        request = DeliveryRequest.from_dict(dict(hold.request))
        reason = controls.hold_reason(request.flow, request.partner)
        out.append(HeldDelivery(hold.held_at, request, reason, hold.id))
    return out
