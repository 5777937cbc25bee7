"""The engine of one process: DBOS configuration, launch, delivery queues, enqueue, shutdown.

``Engine`` is what ``serve`` and ``worker`` run; ``EngineClient`` is what other processes (CLI,
dashboard) use to enqueue and read without becoming an executor (SQLite allows only one
executor process per file).

Start-up order matters: the executor lease is taken before DBOS launches, because DBOS's launch
recovers this executor ID's pending workflows and that must never happen in two processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from dbos import DBOS, DBOSClient, DBOSConfig, EnqueueOptions
from dbos._error import DBOSException, DBOSMaxStepRetriesExceeded

from consonance_sftp.errors import EngineError
from consonance_sftp.logs import get_logger
from consonance_sftp.models import WorkState
from consonance_sftp.ports.delivery import (
    AlertSink,
    DeliveryLedger,
    DeliveryRequest,
    DeliveryTransport,
    LogAlertSink,
    WithdrawalLedger,
)
from consonance_sftp.ports.intake import (
    IntakeHandler,
    IntakeLedger,
    IntakeRequest,
    IntakeScreen,
    IntakeTransport,
)

from . import delivery, events, intake, schedules, withdrawal
from .budget import PostgresConnectionBudget
from .ids import (
    delivery_queue_name,
    delivery_workflow_id,
    intake_workflow_id,
    withdrawal_workflow_id,
)
from .lease import ONE_SHOT, ExecutorLease, make_lease
from .retention import HistoryPruner
from .settings import EngineSettings
from .takeover import TakeoverScanner

log = get_logger(__name__)


def dbos_config(settings: EngineSettings) -> DBOSConfig:
    """The DBOS configuration for these settings. ``application_version`` and ``executor_id``
    are always explicit (see reference/engine-dbos.md §3.10 and §3.5)."""
    config: DBOSConfig = {
        "name": settings.app_name,
        "system_database_url": settings.system_database_url,
        "application_version": settings.application_version,
        "executor_id": settings.executor_id,
        "log_level": "WARNING",
        "notification_listener_polling_interval_sec": 0.1,
        "scheduler_polling_interval_sec": 5.0,
    }
    if settings.is_postgres:
        # Room for the queue threads of each delivery queue plus the workflow steps.
        config["sys_db_pool_size"] = 20
    return config


def prepare_sqlite(path: str) -> None:
    """Put DBOS's SQLite file in WAL mode before DBOS opens it.

    DBOS 3.4.0 leaves SQLite in its default rollback-journal mode and runs every transaction
    as ``BEGIN IMMEDIATE``; WAL (a persistent property of the file) lets readers proceed during
    a write and makes each commit one append plus fsync. Measured: see docs/reference/engine.md.
    """
    import sqlite3
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()
    if not mode or str(mode[0]).lower() != "wal":
        raise EngineError(f"could not put {path} in WAL mode (got {mode})")


def _queue_kwargs(settings: EngineSettings, max_connections: int) -> dict[str, Any]:
    return {
        "partition_concurrency": max_connections,
        "worker_concurrency": settings.worker_concurrency,
        "polling_interval_sec": settings.queue_polling_interval_s,
    }


def _delivery_options(
    settings: EngineSettings, request: DeliveryRequest, queue: str
) -> EnqueueOptions:
    """A delivery, or a withdrawal (``action = withdraw``): the same queue and partition (the
    partner's connection cap), its own workflow and ID."""
    if request.withdraws:
        name = withdrawal.WITHDRAW_WORKFLOW
        workflow_id = withdrawal_workflow_id(request.keys(), request.generation)
    else:
        name = delivery.DELIVER_WORKFLOW
        workflow_id = delivery_workflow_id(request.keys(), request.generation)
    return {
        "workflow_name": name,
        "queue_name": queue,
        "workflow_id": workflow_id,
        "queue_partition_key": request.partner,
        "app_version": settings.application_version,
    }


def _intake_options(settings: EngineSettings, request: IntakeRequest, queue: str) -> EnqueueOptions:
    return {
        "workflow_name": intake.INTAKE_WORKFLOW,
        "queue_name": queue,
        "workflow_id": intake_workflow_id(
            request.flow, request.partner, request.remote_path, request.size, request.mtime
        ),
        "queue_partition_key": request.partner,
        "app_version": settings.application_version,
    }


def _event_options(settings: EngineSettings, flow: str, event: dict[str, Any]) -> EnqueueOptions:
    return {
        "workflow_name": events.FLOW_EVENT_WORKFLOW,
        "queue_name": events.event_queue_name(flow),
        "workflow_id": events.flow_event_workflow_id(flow, event),
        "app_version": settings.application_version,
    }


class Engine:
    """One executor process. Not re-entrant: one ``Engine`` per process (DBOS is a singleton)."""

    def __init__(
        self,
        settings: EngineSettings,
        *,
        transport: DeliveryTransport,
        ledger: DeliveryLedger,
        alerts: AlertSink | None = None,
        on_fenced: Callable[[str], None] | None = None,
        intake_transport: IntakeTransport | None = None,
        intake_ledger: IntakeLedger | None = None,
        intake_handlers: dict[str, IntakeHandler] | None = None,
        intake_screen: IntakeScreen | None = None,
        withdrawals: WithdrawalLedger | None = None,
        role: str = ONE_SHOT,
    ) -> None:
        """``role``: ``SERVICE`` (``serve``, ``worker``: other commands hand their work to it)
        or ``ONE_SHOT`` (a command that runs the engine only while it works, the default: the
        safe guess, as others wait for it rather than hand it work it may never run); written
        into the SQLite lease, so a second process can say who holds the file and what to do."""
        self.settings = settings
        self.transport = transport
        self.ledger = ledger
        self.intake_transport = intake_transport
        self.intake_ledger = intake_ledger
        self.intake_handlers = dict(intake_handlers or {})
        self.intake_screen = intake_screen
        self.withdrawals = withdrawals
        self.alerts = alerts or LogAlertSink()
        self.lease: ExecutorLease = make_lease(settings, on_fenced)
        self.lease.role = role
        self.scanner: TakeoverScanner | None = None
        self.pruner: HistoryPruner | None = None
        self._flow_runner: tuple[schedules.FlowRunner, asyncio.AbstractEventLoop] | None = None
        self._event_runner: tuple[events.EventRunner, asyncio.AbstractEventLoop] | None = None
        self._queues: set[str] = set()
        self._budget: PostgresConnectionBudget | None = None
        self._queue_lock = threading.Lock()
        self._launched = False

    # --- lifecycle --------------------------------------------------------------------------

    def launch(self, *, lease_wait_s: float | None = None) -> None:
        """Take the lease, start DBOS (which recovers this executor's own pending work), start
        the heartbeat and, on PostgreSQL, the takeover scan. Blocking: from async code call it
        with ``asyncio.to_thread``. On SQLite, ``EngineBusy`` (naming the holder's pid and
        command) when another process keeps the file past ``lease_acquire_timeout_s``; nothing
        has started then, so ``launch`` may be called again."""
        if self._launched:
            return
        self.lease.acquire(lease_wait_s)
        # Heartbeat from now on: DBOS's launch can take seconds on a loaded machine, and the
        # recovered workflows start writing (checking the fence) as soon as it returns.
        self.lease.start()
        try:
            delivery.bind_dependencies(
                delivery.Dependencies(
                    transport=self.transport,
                    ledger=self.ledger,
                    alerts=self.alerts,
                    fence=self.lease.fence,
                    retry=self.settings.retry,
                    executor_id=self.settings.executor_id,
                    withdrawals=self.withdrawals,
                )
            )
            if self._flow_runner is not None:
                schedules.bind_flow_runner(*self._flow_runner, self.settings.retry)
            if self._event_runner is not None:
                events.bind_event_runner(*self._event_runner, self.settings.retry, self.alerts)
            if self.intake_transport is not None and self.intake_ledger is not None:
                intake.bind_dependencies(
                    intake.Dependencies(
                        transport=self.intake_transport,
                        ledger=self.intake_ledger,
                        fence=self.lease.fence,
                        retry=self.settings.retry,
                        executor_id=self.settings.executor_id,
                        handlers=self.intake_handlers,
                        screen=self.intake_screen,
                    )
                )
            if not self.settings.is_postgres:
                prepare_sqlite(self.settings.sqlite_path)
            DBOS(config=dbos_config(self.settings))
            DBOS.launch()
        except Exception:
            self.lease.stop()
            raise
        if self.settings.is_postgres:
            self.scanner = TakeoverScanner(self.settings, self.alerts)
            self.scanner.start()
        if self.settings.history_retention_s is not None:
            self.pruner = HistoryPruner(timedelta(seconds=self.settings.history_retention_s))
            self.pruner.start()
        self._launched = True
        log.info(
            "engine started",
            extra={
                "executor_id": self.settings.executor_id,
                "application_version": self.settings.application_version,
                "backend": self.settings.backend,
            },
        )

    def shutdown(self, grace_s: float | None = None) -> None:
        """Stop dequeuing, give running workflows ``grace_s`` to finish, then stop.

        Workflows still running are cancelled at an ``await`` (a chunk boundary of the
        transfer): they stay PENDING under this executor ID and resume, from the bytes already
        sent, when a process with the same ID starts again (or another takes them over).
        """
        if not self._launched:
            return
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        if self.scanner is not None:
            self.scanner.stop()
        if self.pruner is not None:
            self.pruner.stop()
        DBOS.destroy(workflow_completion_timeout_sec=int(grace))
        # Only then give the lease up: from here another executor may take over what is left.
        self.lease.fence.close()
        if self._budget is not None:
            self._budget.close_blocking()
        self.lease.stop()
        delivery.bind_dependencies(None)
        intake.bind_dependencies(None)
        schedules.bind_flow_runner(None)
        events.bind_event_runner(None)
        self._launched = False

    async def aclose(self, grace_s: float | None = None) -> None:
        """``shutdown`` from async code, leaving the calling event loop usable: DBOS's async
        API makes DBOS's thread pool the loop's default executor, and destroy shuts that pool
        down, after which ``asyncio.to_thread`` on the loop would fail."""
        await asyncio.to_thread(self.shutdown, grace_s)
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor())

    async def run_until_signal(self, stop: asyncio.Event | None = None) -> None:
        """Launch, then serve until SIGTERM/SIGINT (or ``stop``), then shut down gracefully."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await asyncio.to_thread(self.launch)
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
            await self.aclose()

    def connection_budget(self) -> PostgresConnectionBudget | None:
        """The cross-process per-partner connection cap for the transport on PostgreSQL
        (advisory locks in the system database every executor shares); ``None`` on SQLite,
        where the transport's in-process budget is enough."""
        if not self.settings.is_postgres:
            return None
        if self._budget is None:
            self._budget = PostgresConnectionBudget(self.settings.system_database_url)
        return self._budget

    # --- flow schedules ------------------------------------------------------------------------

    def bind_flow_runner(self, runner: schedules.FlowRunner) -> None:
        """What this process runs when a flow ticks: ``runner(flow, tick)`` on the calling
        event loop. Every executor binds one, since any of them may dequeue a tick or recover
        one from a dead executor; bind it before ``launch``, which resumes pending ticks."""
        self._flow_runner = (runner, asyncio.get_running_loop())
        if self._launched:
            schedules.bind_flow_runner(runner, self._flow_runner[1], self.settings.retry)

    def bind_event_runner(self, runner: events.EventRunner) -> None:
        """What this process runs when a Consonance event fires a flow: ``runner(flow,
        event)`` on the calling event loop (plan, enqueue the deliveries). Like the flow
        runner, bound by every executor before ``launch``, which resumes pending events."""
        self._event_runner = (runner, asyncio.get_running_loop())
        if self._launched:
            events.bind_event_runner(
                runner, self._event_runner[1], self.settings.retry, self.alerts
            )

    async def enqueue_flow_event(self, flow: str, event: dict[str, Any]) -> str:
        """Enqueue the durable plan of ``flow`` for one Consonance event (on the flow's queue);
        return its workflow ID. The same event for the same flow again attaches to it."""
        queue = events.event_queue_name(flow)
        await asyncio.to_thread(
            self._register_queue, queue, global_concurrency=1, polling_interval_sec=1.0
        )
        options = _event_options(self.settings, flow, event)
        await DBOS.enqueue_workflow_with_options_async(options, flow, event)
        return options["workflow_id"]

    def ensure_flow_schedules(self, wanted: dict[str, schedules.FlowSchedule]) -> list[str]:
        """Declare each flow's schedule in DBOS (idempotent, once per tick across processes)
        and remove the schedules of flows no longer scheduled. Blocking."""
        self.ensure_flow_queues(wanted)
        return schedules.ensure_flow_schedules(wanted)

    def ensure_flow_queues(self, flows: Iterable[str]) -> None:
        """Register (once per process) each flow's tick queue, so this executor runs its ticks:
        one at a time across all processes, because a tick that overlapped the one before would
        plan from the same baseline (an ONIX delta not yet marked sent) and send it again."""
        for flow in flows:
            self._register_queue(
                schedules.flow_queue_name(flow), global_concurrency=1, polling_interval_sec=1.0
            )

    def backfill_flow(self, flow: str, start: datetime, end: datetime) -> list[str]:
        """Enqueue the flow's ticks between ``start`` and ``end`` (both exclusive) that have
        not run, under the same workflow IDs the scheduler uses (a tick that ran is skipped);
        return every tick's workflow ID. For the ticks missed while no process was running."""
        handles = DBOS.backfill_schedule(schedules.flow_schedule_name(flow), start, end)
        return [h.workflow_id for h in handles]

    # --- queues and deliveries --------------------------------------------------------------

    def ensure_delivery_queue(self, max_connections: int) -> str:
        """Register (once per process) the partitioned queue for this connection cap."""
        name = delivery_queue_name(max_connections)
        self._register_queue(name, **_queue_kwargs(self.settings, max_connections))
        return name

    def _register_queue(self, name: str, **options: Any) -> None:
        with self._queue_lock:
            if name not in self._queues:
                DBOS.register_queue(name, **options)
                self._queues.add(name)

    async def enqueue_delivery(self, request: DeliveryRequest, *, max_connections: int) -> str:
        """Enqueue a delivery (or a withdrawal); return its workflow ID. Enqueuing the same
        files again (same generation) attaches to the existing workflow instead of sending
        again."""
        queue = await asyncio.to_thread(self.ensure_delivery_queue, max_connections)
        options = _delivery_options(self.settings, request, queue)
        await DBOS.enqueue_workflow_with_options_async(options, request.to_dict())
        return options["workflow_id"]

    async def enqueue_intake(self, request: IntakeRequest, *, max_connections: int) -> str:
        """Enqueue taking one inbox file in, on the partner's delivery queue (downloads share
        its connection cap); return the workflow ID. The same file version again attaches."""
        queue = await asyncio.to_thread(self.ensure_delivery_queue, max_connections)
        options = _intake_options(self.settings, request, queue)
        await DBOS.enqueue_workflow_with_options_async(options, request.to_dict())
        return options["workflow_id"]

    async def result(self, workflow_id: str, timeout_s: float = 60.0) -> Any:
        handle: Any = await DBOS.retrieve_workflow_async(workflow_id)
        try:
            return await asyncio.wait_for(handle.get_result(), timeout_s)
        except DBOSMaxStepRetriesExceeded as exc:
            # A workflow that let a step's exhausted retries escape: name the last cause, not
            # "Step X has exceeded its maximum of 5 retries".
            raise EngineError(delivery.failure_reason(exc)) from delivery.last_error(exc)
        except DBOSException as exc:
            # A cancelled or otherwise ended workflow: one line, not DBOS's traceback.
            raise EngineError(f"workflow {workflow_id}: {exc}") from exc


_WORK_STATES = {
    "PENDING": WorkState.RUNNING,
    "ENQUEUED": WorkState.QUEUED,
    "DELAYED": WorkState.DELAYED,
    "SUCCESS": WorkState.DONE,
    "ERROR": WorkState.FAILED,
    "CANCELLED": WorkState.CANCELLED,
    "MAX_RECOVERY_ATTEMPTS_EXCEEDED": WorkState.GAVE_UP,
}


def work_state(status: str) -> WorkState:
    """The ``WorkState`` of a DBOS workflow status (an unknown one reads as running: it has
    not ended, as far as anyone above the engine can tell)."""
    return _WORK_STATES.get(status, WorkState.RUNNING)


class EngineClient:
    """Enqueue and read without being an executor (the CLI next to ``serve``, the dashboard)."""

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self._client = DBOSClient(
            system_database_url=settings.system_database_url, application_name=settings.app_name
        )

    def close(self) -> None:
        self._client.destroy()

    def enqueue_delivery(self, request: DeliveryRequest, *, max_connections: int) -> str:
        queue = delivery_queue_name(max_connections)
        if self._client.retrieve_queue(queue) is None:
            self._client.register_queue(
                queue, on_conflict="never_update", **_queue_kwargs(self.settings, max_connections)
            )
        options = _delivery_options(self.settings, request, queue)
        self._client.enqueue(options, request.to_dict())
        return options["workflow_id"]

    def enqueue_intake(self, request: IntakeRequest, *, max_connections: int) -> str:
        queue = delivery_queue_name(max_connections)
        if self._client.retrieve_queue(queue) is None:
            self._client.register_queue(
                queue, on_conflict="never_update", **_queue_kwargs(self.settings, max_connections)
            )
        options = _intake_options(self.settings, request, queue)
        self._client.enqueue(options, request.to_dict())
        return options["workflow_id"]

    def enqueue_flow_event(self, flow: str, event: dict[str, Any]) -> str:
        """``Engine.enqueue_flow_event`` from a process that is not the executor."""
        queue = events.event_queue_name(flow)
        if self._client.retrieve_queue(queue) is None:
            self._client.register_queue(
                queue, on_conflict="never_update", global_concurrency=1, polling_interval_sec=1.0
            )
        options = _event_options(self.settings, flow, event)
        self._client.enqueue(options, flow, event)
        return options["workflow_id"]

    def status(self, workflow_id: str) -> str | None:
        found = self._client.list_workflows(
            workflow_ids=[workflow_id], load_input=False, load_output=False
        )
        return str(found[0].status) if found else None

    def statuses(self, prefix: str = "dlv-") -> dict[str, str]:
        return {
            w.workflow_id: str(w.status)
            for w in self._client.list_workflows(
                workflow_id_prefix=prefix, load_input=False, load_output=False
            )
        }

    def state(self, workflow_id: str) -> WorkState | None:
        """The workflow's ``WorkState``; ``None``: the engine has no such workflow."""
        status = self.status(workflow_id)
        return None if status is None else work_state(status)

    def states(self, prefix: str = "dlv-") -> dict[str, WorkState]:
        """Every workflow whose ID starts with ``prefix``, with its ``WorkState``."""
        return {wid: work_state(status) for wid, status in self.statuses(prefix).items()}

    def not_done(self, prefix: str) -> list[tuple[str, WorkState, float | None]]:
        """Every workflow whose ID starts with ``prefix`` that has not succeeded (queued,
        delayed, running, failed...), with its ``WorkState`` and when it was created (Unix
        seconds; None when the engine did not say): the metrics' queue depth and oldest
        pending work, without loading the finished history."""
        found = self._client.list_workflows(
            workflow_id_prefix=prefix,
            status=[s for s, state in _WORK_STATES.items() if state is not WorkState.DONE],
            load_input=False,
            load_output=False,
        )
        return [
            (
                w.workflow_id,
                work_state(str(w.status)),
                None if w.created_at is None else w.created_at / 1000.0,
            )
            for w in found
        ]

    def error(self, workflow_id: str) -> str | None:
        found = self._client.list_workflows(workflow_ids=[workflow_id])
        if not found or found[0].error is None:
            return None
        return str(found[0].error)

    def steps_done(self, workflow_id: str) -> list[str]:
        """Names of the workflow's steps that have completed (``plan``, ``upload:/path``,
        ``fetch``...), oldest first: how far it has got, for a command that follows it."""
        steps = self._client.list_workflow_steps(workflow_id, load_output=False)
        return [str(s["function_name"]) for s in steps if s.get("error") is None]

    def retry(self, workflow_id: str) -> None:
        """``consonance-sftp retry ID``: re-run a failed delivery from its first failed step,
        under the same workflow ID (completed uploads are not repeated)."""
        found = self._client.list_workflows(workflow_ids=[workflow_id])
        if not found:
            raise EngineError(f"no workflow {workflow_id!r}")
        if str(found[0].status) not in {"ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"}:
            raise EngineError(
                f"workflow {workflow_id!r} is {found[0].status}; only failed work can be retried"
            )
        steps = self._client.list_workflow_steps(workflow_id)
        failed = [s["function_id"] for s in steps if s.get("error") is not None]
        start = min(failed) if failed else 1
        # Without the queue and partition, DBOS would re-enqueue on its internal queue and
        # the partner's connection cap would not apply to the retry.
        self._client.rewind_workflow(
            workflow_id,
            start_step=start,
            queue_name=found[0].queue_name,
            queue_partition_key=found[0].queue_partition_key,
        )
