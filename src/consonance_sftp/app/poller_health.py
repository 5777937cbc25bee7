"""The Consonance poller's health: when ``serve`` last read Consonance, and what went wrong last.

It is kept in our store (a named value, like the operator controls), so ``status`` in another
process can say it. A poll that fails for good (Consonance refused the token: HTTP 401/403), or
one that keeps failing (``ALERT_AFTER`` polls in a row), raises **one** alert with the reason;
the same failure again raises nothing more; a different one, or the first poll that works again
(a recovery note), raises the next. Logs still carry every failed poll.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.flows.changes import PollReport
from consonance_sftp.formats.wording import counted
from consonance_sftp.models import Alert, AlertSeverity
from consonance_sftp.ports.store import Store

HEALTH_MARK = "service.consonance_poller"
ALERT_AFTER = 3
"""Failed polls in a row (of a retryable kind: Consonance down, a timeout) before an alert."""


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
