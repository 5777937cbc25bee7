"""The loops ``serve`` runs beside the engine: the Consonance poller (and its health), the
release of held deliveries, and putting a reloaded config in force.

The poller's health is kept in our store (a named value, like the operator controls), so
``status`` in another process can say when Consonance was last read and what went wrong last.
A poll that fails for good (Consonance refused the token: HTTP 401/403), or one that keeps
failing (``ALERT_AFTER`` polls in a row), raises **one** alert with the reason; the same
failure again raises nothing more; a different one, or the first poll that works again (a
recovery note), raises the next. Logs still carry every failed poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.flows.changes import ChangeDetector, PollReport
from consonance_sftp.formats.wording import counted
from consonance_sftp.logs import get_logger, setup_logging
from consonance_sftp.models import Alert, AlertSeverity
from consonance_sftp.ports.store import Store

if TYPE_CHECKING:
    from consonance_sftp.app.reload import ConfigChange
    from consonance_sftp.app.runner import DeliveryRunner
    from consonance_sftp.app.service import Service
    from consonance_sftp.config import Settings
    from consonance_sftp.ports.consonance import ConsonanceAPI

log = get_logger(__name__)

HEALTH_MARK = "service.consonance_poller"
ALERT_AFTER = 3
"""Failed polls in a row (of a retryable kind: Consonance down, a timeout) before an alert."""

CatalogueProgress = Callable[[str, int, int, bool], None]
"""(poll mode, works read so far, products read so far, done), during a poll."""
PROGRESS_LOG_S = 10.0
"""A poll still reading logs how far it has got this often (the first reads the catalogue)."""


def _logging_progress(show: CatalogueProgress | None) -> CatalogueProgress:
    """``show`` (a terminal's display), plus an INFO line every ``PROGRESS_LOG_S`` while a
    poll reads, so a log shows a long catalogue read is moving."""
    last = [time.monotonic()]

    def progress(mode: str, works: int, products: int, done: bool) -> None:
        now = time.monotonic()
        if done:
            last[0] = now
        elif now - last[0] >= PROGRESS_LOG_S:
            last[0] = now
            log.info(
                "Consonance %s poll: reading, %d works and %d products so far",
                mode,
                works,
                products,
            )
        if show is not None:
            show(mode, works, products, done)

    return progress


@dataclass(slots=True)
class PollerHealth:
    """When the poller last read Consonance, and its last failure."""

    last_success: str | None = None  # ISO time
    last_mode: str | None = None  # baseline / incremental / reconcile
    last_error: str | None = None
    last_error_at: str | None = None
    failing_since: str | None = None  # set while the latest poll failed
    failures: int = 0  # in a row
    alerted: str | None = None  # the failure an alert was raised for (its error class)

    @classmethod
    def load(cls, store: Store) -> PollerHealth | None:
        raw = store.get_watermark(HEALTH_MARK)
        if raw is None:
            return None
        data = json.loads(raw)
        return cls(**{k: data.get(k) for k in cls.__slots__ if k in data})

    def save(self, store: Store) -> None:
        store.set_watermark(HEALTH_MARK, json.dumps(asdict(self)))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def record_poll_success(store: Store, report: PollReport) -> None:
    """A poll worked: remember when; after an alerted failure, raise the recovery note."""
    health = PollerHealth.load(store) or PollerHealth()
    if health.alerted is not None:
        store.raise_alert(
            Alert(
                severity=AlertSeverity.INFO,
                kind="consonance_poll_recovered",
                message=f"Consonance polling works again (failing since "
                f"{health.failing_since}, {counted(health.failures, 'failed poll')}; last error: "
                f"{health.last_error})",
            )
        )
    health.last_success = _now()
    health.last_mode = report.mode
    health.failing_since = None
    health.failures = 0
    health.alerted = None
    health.save(store)


def record_poll_failure(store: Store, exc: ConsonanceSftpError) -> None:
    """A poll failed: remember why; alert once per kind of failure (see the module)."""
    health = PollerHealth.load(store) or PollerHealth()
    health.last_error = str(exc)
    health.last_error_at = _now()
    health.failing_since = health.failing_since or health.last_error_at
    health.failures += 1
    kind = type(exc).__name__
    due = not exc.retryable or health.failures >= ALERT_AFTER
    if due and health.alerted != kind:
        hint = f" ({exc.hint})" if exc.hint else ""
        store.raise_alert(
            Alert(
                severity=AlertSeverity.CRITICAL if not exc.retryable else AlertSeverity.WARNING,
                kind="consonance_poll_failed",
                message=f"Consonance polling fails: {exc}{hint}; no flow is triggered by "
                "Consonance changes until it works again",
                details={"error": kind, "failures": str(health.failures)},
            )
        )
        health.alerted = kind
    health.save(store)


async def poller(
    service: Service,
    stop: asyncio.Event,
    runner: DeliveryRunner,
    interval: float,
    reconcile_every: timedelta,
    progress: CatalogueProgress | None = None,
) -> None:
    """Poll Consonance every ``interval`` until ``stop``; record each poll's outcome."""
    app = service.app
    while not stop.is_set():
        # A reloaded config with another [consonance] section gets a new client.
        connection = app.settings.consonance
        async with app.consonance() as api:
            shown = _logging_progress(progress)
            detector = ChangeDetector(
                api, app.store, reconcile_every=reconcile_every, progress=shown
            )
            while not stop.is_set() and app.settings.consonance == connection:
                await _poll_and_record(service, detector, runner, api)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)


async def _poll_and_record(
    service: Service, detector: ChangeDetector, runner: DeliveryRunner, api: ConsonanceAPI
) -> None:
    """One poll, its outcome kept as the poller's health. Nothing escapes: a long-running
    loop, one bad poll (or a failed write of its health) must not stop the service's triggers."""
    store = service.app.store
    try:
        try:
            report = await service.poll_once(detector, runner, api)
        except ConsonanceSftpError as exc:
            log.warning("Consonance poll failed: %s", exc)
            await asyncio.to_thread(record_poll_failure, store, exc)
        except Exception as exc:
            log.exception("Consonance poll failed unexpectedly")
            unexpected = ConsonanceSftpError(f"unexpected error: {exc!r}", retryable=True)
            await asyncio.to_thread(record_poll_failure, store, unexpected)
        else:
            await asyncio.to_thread(record_poll_success, store, report)
    except Exception:
        log.exception("recording the Consonance poller's health failed")


async def releaser(stop: asyncio.Event, runner: DeliveryRunner) -> None:
    """Every second: enqueue the held deliveries that may go now (``release_held``)."""
    while not stop.is_set():
        try:
            await runner.release_held()
        except ConsonanceSftpError as exc:
            log.warning("releasing held deliveries failed: %s", exc)
        except Exception:
            log.exception("releasing held deliveries failed unexpectedly")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def switch_config(
    service: Service,
    runner: DeliveryRunner,
    settings: Settings,
    change: ConfigChange,
    schedule_overrides: dict[str, str] | None,
    *,
    triggers: bool,
) -> None:
    """Put a validated new config in force in this running service: the app reads it from
    now on (changed partners reconnect with it), the queues of new connection caps (and of the
    flows events fire) are registered, the schedules declared again; the poller reconnects by
    itself when ``[consonance]`` changed."""
    old_schedules = service.flow_schedules(schedule_overrides)
    service.app.reload(settings, change.partners)
    engine = runner.engine_or_fail()
    for cap in sorted({p.max_connections for p in settings.partners.values()}):
        await asyncio.to_thread(engine.ensure_delivery_queue, cap)
    await asyncio.to_thread(engine.ensure_flow_queues, service.event_flows())
    wanted = service.flow_schedules(schedule_overrides)
    if wanted != old_schedules:
        # Only 'serve' declares schedules; a worker registers the flows' tick queues.
        declare = engine.ensure_flow_schedules if triggers else engine.ensure_flow_queues
        await asyncio.to_thread(declare, wanted)
    if "logging" in change.sections:
        setup_logging(settings.logging.level, json_lines=settings.logging.json_lines)
