"""Composition root: builds the adapters named by the config and hands them to the engine.

This is the only package that imports adapters. User interfaces (cli, web) ask an ``App`` for
what they need; flows and the engine receive ports, never adapters. Adapters are built lazily,
so a command that only reads the ledger never opens an SSH connection. Beside it: ``delivery``
(the SFTP adapter as the engine's transport), ``dispatch`` (a flow's plan as engine requests),
``runner`` (deliveries in-process or through the DBOS client, pauses, windows, resends),
``serving`` (the serve/worker loop: polls, ticks, held work, config reloads; ``poller_health``
beside it) and ``operations`` (what the CLI and the web console do). Inside ``app`` no module
imports one above it (import-linter checks for cycles).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from consonance_sftp.adapters.consonance import ConsonanceClient
from consonance_sftp.adapters.sftp.connection import InProcessConnectionBudget
from consonance_sftp.adapters.store import SqlStore, open_store
from consonance_sftp.app.delivery import ProgressSink, SftpDeliveryTransport
from consonance_sftp.app.intake import SftpIntakeTransport
from consonance_sftp.app.intake_handler import intake_processor, manifest_companions
from consonance_sftp.app.partner_fs import PartnerFS, partner_fs
from consonance_sftp.app.sales_handler import sales_processor
from consonance_sftp.app.screening import intake_screen
from consonance_sftp.config import PartnerConfig, Settings, load_settings
from consonance_sftp.engine import (
    Engine,
    EngineSettings,
    RetryPolicy,
    default_executor_id,
)
from consonance_sftp.engine.intake import StoreIntakeLedger
from consonance_sftp.engine.ledger import StoreLedger
from consonance_sftp.errors import HostKeyMismatch
from consonance_sftp.logs import get_logger
from consonance_sftp.models import Alert, AlertSeverity, DeliveryKey
from consonance_sftp.ports.delivery import DeliveryLedger, DeliveryRecord
from consonance_sftp.ports.remote_fs import ConnectionBudget

if TYPE_CHECKING:
    from consonance_sftp.app.runner import DeliveryRunner

log = get_logger("consonance_sftp.activity")


class App:
    """Everything a command needs, built from one config file."""

    def __init__(self, settings: Settings, config_path: Path | None = None) -> None:
        self.settings = settings
        self.config_path = config_path  # the file it came from: ``serve`` follows its changes
        self._budget: ConnectionBudget = InProcessConnectionBudget()
        self._transport: SftpDeliveryTransport | None = None
        self._intake_transport: SftpIntakeTransport | None = None

    @classmethod
    def from_config(cls, path: Path | str) -> App:
        return cls(load_settings(path), Path(path))

    def reload(self, settings: Settings, changed_partners: Iterable[str] = ()) -> None:
        """Switch to a new, validated config while the service runs (``app.reload``). Every
        part reads ``self.settings`` when it acts; the delivery and intake transports' open
        connections of the changed partners are dropped, so the next transfer uses the new
        settings (a new host-key pin, new credentials, new transfer settings)."""
        self.settings = settings
        for name in changed_partners:
            if self._transport is not None:
                self._transport.forget(name)
            if self._intake_transport is not None:
                self._intake_transport.forget(name)

    @property
    def state_dir(self) -> Path:
        return Path(self.settings.state_dir)

    @cached_property
    def store(self) -> SqlStore:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return open_store(self.settings.database.url, audit_key=audit_key(self.settings))

    def consonance(self) -> ConsonanceClient:
        """A new Consonance client; use it as an async context manager."""
        c = self.settings.consonance
        return ConsonanceClient(c.base_url, c.token.get_secret_value(), timeout=c.timeout)

    def partner_config(self, name: str) -> PartnerConfig:
        return self.settings.partner(name)  # a typo is answered with the closest name

    def remote_fs(self, name: str) -> PartnerFS:
        """A connection pool for one partner, SFTP or FTP/FTPS as its ``protocol`` says; use
        it as an async context manager."""
        return partner_fs(
            name,
            self.partner_config(name),
            state_dir=self.state_dir / "transfers",
            budget=self._budget,
        )

    def engine_settings(self, executor_id: str | None = None) -> EngineSettings:
        e = self.settings.engine
        return EngineSettings(
            system_database_url=self.settings.database.dbos_system_url,
            application_version=e.application_version,
            executor_id=executor_id or e.executor_id or default_executor_id(),
            queue_polling_interval_s=e.queue_polling_interval_s,
            worker_concurrency=e.worker_concurrency,
            heartbeat_interval_s=e.heartbeat_interval_s,
            takeover_after_s=e.takeover_after_s,
            shutdown_grace_s=e.shutdown_grace_s,
            history_retention_s=e.history_retention_days * 86400.0 or None,
            retry=RetryPolicy(
                max_attempts=e.retry_max_attempts,
                initial_interval_s=e.retry_initial_interval_s,
                backoff_rate=e.retry_backoff_rate,
                max_total_s=e.retry_max_total_s,
            ),
        )

    def engine(
        self, *, executor_id: str | None = None, progress: ProgressSink | None = None
    ) -> Engine:
        """The executor of this process: deliveries (and withdrawals) go through the SFTP
        adapter, outcomes into the store's ledger, alerts into the store; inbox files are
        taken in through the SFTP adapter into ``state_dir/inbox`` (or ``quarantine``) and the
        intake ledger, then handed to the intake flow's processor (match, version, attach) or
        the sales_in flow's (validate, load into the sales ledger, write the import file).
        On PostgreSQL the partners' connection caps hold across every process through the
        engine's budget."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        transport = SftpDeliveryTransport(self.remote_fs, progress, self.host_key_changed)
        self._transport = transport
        intake_transport = SftpIntakeTransport(
            self.remote_fs,
            self.state_dir,
            self.host_key_changed,
            progress,
            ack_of=lambda partner: self.partner_config(partner).intake_ack,
            companions=functools.partial(manifest_companions, self),
        )
        self._intake_transport = intake_transport
        engine = Engine(
            self.engine_settings(executor_id),
            transport=transport,
            ledger=LoggedLedger(StoreLedger(self.store)),
            alerts=self.store,
            intake_transport=intake_transport,
            intake_ledger=StoreIntakeLedger(self.store),
            intake_screen=intake_screen(self),
            intake_handlers={"intake": intake_processor(self), "sales_in": sales_processor(self)},
            withdrawals=StoreLedger(self.store),
        )
        shared = engine.connection_budget()
        if shared is not None:
            self._budget = shared
        return engine

    def bind_work(self, engine: Engine, runner: DeliveryRunner) -> None:
        """Wire the engine's flow-tick workflows to ``app.serving.run_tick`` and its
        flow-event workflows to ``app.dispatch.run_event`` (the composition root knows them
        all; the runner below them need not)."""
        from consonance_sftp.app.dispatch import run_event
        from consonance_sftp.app.serving import run_tick

        engine.bind_flow_runner(functools.partial(run_tick, self, runner=runner))
        engine.bind_event_runner(functools.partial(run_event, self, runner=runner))

    def host_key_changed(self, partner: str, exc: HostKeyMismatch) -> None:
        """A changed host key is a security event: alert, and stop that partner until an
        operator confirms the new key (``partner trust``) and resumes it."""
        from consonance_sftp.app.runner import Controls  # runner builds on this module

        self.store.raise_alert(
            Alert(
                severity=AlertSeverity.CRITICAL,
                kind="host_key_mismatch",
                message=exc.message,
                partner=partner,
            )
        )
        Controls(self).set(
            "partner",
            partner,
            paused=True,
            by="consonance-sftp",
            reason=f"host key changed: {exc.message}",
        )


def audit_key(settings: Settings) -> bytes | None:
    """The key of a keyed audit chain (``[audit] key``), or None."""
    key = settings.audit.key
    return None if key is None else key.get_secret_value().encode()


class LoggedLedger:
    """The delivery ledger, plus one INFO line per file outcome it records: a service's log
    says what went where (the engine logs failures; this logs every outcome)."""

    def __init__(self, inner: DeliveryLedger) -> None:
        self.inner = inner

    def already_sent(self, key: DeliveryKey, generation: int) -> bool:
        return self.inner.already_sent(key, generation)

    def record(self, record: DeliveryRecord) -> None:
        self.inner.record(record)
        why = f": {record.error}" if record.error else ""
        log.info(
            "delivery %s: %s %s to %s (%s bytes, %s)%s",
            record.workflow_id,
            record.outcome.value,
            record.remote_path,
            record.partner,
            f"{record.size:,}",
            record.package or record.flow,
            why,
        )


def open_existing_store(url: str, *, key: bytes | None = None) -> SqlStore:
    """A store for reading and verifying records: never migrates, never creates a database."""
    return open_store(url, migrate=False, must_exist=True, audit_key=key)
