"""Engine settings: where DBOS keeps its state, who this process is, how often it polls and
heartbeats, when a silent executor is taken over, and how failed steps are retried.

Kept as a plain frozen dataclass so the config layer (TOML, Pydantic) can build it without the
engine importing config, and tests can build it directly.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from consonance_sftp.errors import EngineError

_EXECUTOR_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff for retryable errors: waits of ``initial * rate**n``, capped."""

    max_attempts: int = 5
    initial_interval_s: float = 2.0
    backoff_rate: float = 2.0
    # No retry that would end more than this long after the first attempt began (None: no cap),
    # so a host that never answers gives up within it rather than after every attempt's
    # connect timeout.
    max_total_s: float | None = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise EngineError(f"retry.max_attempts must be at least 1, got {self.max_attempts}")
        if self.max_total_s is not None and self.max_total_s <= 0:
            raise EngineError(f"retry.max_total_s must be positive, got {self.max_total_s}")
        if self.initial_interval_s < 0 or self.backoff_rate < 1:
            raise EngineError(
                "retry.initial_interval_s must be >= 0 and retry.backoff_rate >= 1 "
                f"(got {self.initial_interval_s}, {self.backoff_rate})"
            )

    def waits(self) -> list[float]:
        """The waits between attempts, for docs and tests."""
        return [
            self.initial_interval_s * self.backoff_rate**n for n in range(self.max_attempts - 1)
        ]


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSettings:
    """Everything the engine needs to start one executor process.

    ``system_database_url`` is DBOS's own database (``sqlite:///path`` by default,
    ``postgresql://...`` to scale out). It is deliberately separate from the store's database
    (ledger, audit trail): DBOS migrates its schema on its own schedule.
    """

    system_database_url: str
    application_version: str
    executor_id: str
    app_name: str = "consonance-sftp"
    queue_polling_interval_s: float = 0.05
    worker_concurrency: int = 32
    heartbeat_interval_s: float = 2.0
    takeover_after_s: float = 15.0
    lease_acquire_timeout_s: float = 30.0
    shutdown_grace_s: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_recovery_attempts: int = 50
    # Finished workflows are deleted from DBOS's history after this long (None: kept forever).
    history_retention_s: float | None = 30 * 86400.0

    def __post_init__(self) -> None:
        if not self.application_version.strip():
            # An empty version makes DBOS hash the workflow source: any code change then
            # strands queued and running work (reference/engine-dbos.md §3.10).
            raise EngineError("engine.application_version must be set explicitly")
        if not _EXECUTOR_ID.match(self.executor_id):
            raise EngineError(
                f"engine.executor_id {self.executor_id!r} must be 1-100 characters of "
                "letters, digits, '.', '_', ':' or '-'"
            )
        if self.backend not in {"sqlite", "postgresql"}:
            raise EngineError(
                f"engine.system_database_url must start with sqlite:/// or postgresql://, "
                f"got scheme {urlsplit(self.system_database_url).scheme!r}"
            )
        if self.heartbeat_interval_s <= 0:
            raise EngineError("engine.heartbeat_interval_s must be positive")
        if self.takeover_after_s < 3 * self.heartbeat_interval_s:
            raise EngineError(
                "engine.takeover_after_s must be at least 3 heartbeat intervals "
                f"({3 * self.heartbeat_interval_s:g} s), got {self.takeover_after_s:g} s"
            )

    @property
    def backend(self) -> str:
        scheme = urlsplit(self.system_database_url).scheme.split("+", 1)[0]
        return "postgresql" if scheme in {"postgresql", "postgres"} else scheme

    @property
    def is_postgres(self) -> bool:
        return self.backend == "postgresql"

    @property
    def sqlite_path(self) -> str:
        """The file behind a ``sqlite:///`` URL."""
        if self.is_postgres:
            raise EngineError("not a SQLite system database")
        return self.system_database_url.split(":///", 1)[1]

    @property
    def lease_ttl_s(self) -> float:
        """How long this process may keep writing without a successful heartbeat.

        Half the takeover threshold: a process that cannot renew its lease stops writing well
        before any rescuer is allowed to take its work over.
        """
        return self.takeover_after_s / 2


def default_executor_id(instance: str = "0") -> str:
    """A stable executor ID for this host and instance (``CONSONANCE_EXECUTOR_ID`` wins).

    Stable, because DBOS recovers a crashed executor's work only under the same ID; unique per
    process, which the executor lease enforces at start-up.
    """
    return os.environ.get("CONSONANCE_EXECUTOR_ID") or f"{socket.gethostname()}-{instance}"
