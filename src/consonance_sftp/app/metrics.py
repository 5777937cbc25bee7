"""The numbers behind ``/metrics``, read from the shared database and the engine at scrape time.

Every business number comes from the store (the delivery and intake ledgers, the alerts, the
audit trail), never from counters kept in one process: with ``serve`` and several ``worker``
processes (on one machine or several) each process's counters would hold only its own share,
and a restart would lose them. Any process that can open the database answers with the same
numbers. The engine's durable work (queue depth, the oldest pending work) comes from its own
records through ``EngineClient``, the way ``status`` reads them.

Counters must never go down, so they count what the store never rewrites:

* deliveries and bytes out count the ``delivery.<outcome>`` events of the append-only audit
  trail (a file's ledger row moves from ``failed`` to ``sent`` when a retry delivers it; its
  events stay). They are read incrementally: per audit chain, only the events after the last
  one counted.
* files and bytes in count intake ledger rows (one per file taken in, never removed).

What the ledgers hold now (files by outcome, the quarantine) are gauges. No ISBN, file name,
path or payee is ever a label: only flow, partner, outcome, kind, state and severity names,
which the config and the code bound.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from consonance_sftp.adapters.store.base import from_db_time
from consonance_sftp.adapters.store.schema import (
    alerts,
    audit_chains,
    audit_events,
    delivery_ledger,
    intake_ledger,
)
from consonance_sftp.app.operations import WORK_KINDS, Operations
from consonance_sftp.config import ArchiveFlow, SalesInFlow
from consonance_sftp.engine import EngineClient
from consonance_sftp.flows import sales_calendar as calendar
from consonance_sftp.models import AuditAction, DeliveryOutcome, IntakeOutcome, WorkState

if TYPE_CHECKING:
    from consonance_sftp.app import App

__all__ = [
    "DURATION_BUCKETS",
    "WORK_KIND_LABELS",
    "DeliveryTotals",
    "MetricsSnapshot",
    "MetricsSource",
]

# Seconds; a print PDF over a slow link takes minutes, a spec sheet well under a second.
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

# The engine's kinds of durable work (``operations.WORK_KINDS``) as label values.
WORK_KIND_LABELS = {
    "deliveries": "delivery",
    "withdrawals": "withdrawal",
    "intake": "intake",
    "flow ticks": "flow_tick",
    "flow events": "flow_event",
}

# Outcome events counted as deliveries (``delivery.planned``/``running`` are not outcomes).
_COUNTED = {
    f"delivery.{o.value}": o.value
    for o in (
        DeliveryOutcome.SENT,
        DeliveryOutcome.SKIPPED,
        DeliveryOutcome.FAILED,
        DeliveryOutcome.WITHDRAWN,
    )
}
_SENT = (DeliveryOutcome.SENT.value, DeliveryOutcome.WITHDRAWN.value)  # withdrawn was sent first
_INTAKE_OK = (IntakeOutcome.STORED.value, IntakeOutcome.ATTACHED.value)
_PENDING = (WorkState.QUEUED, WorkState.DELAYED, WorkState.RUNNING)

Key3 = tuple[str, str, str]


@dataclass
class DeliveryTotals:
    """Files and bytes of one (flow, partner, outcome)."""

    files: int = 0
    bytes: int = 0


@dataclass
class Histogram:
    """Cumulative bucket counts (``DURATION_BUCKETS`` then +Inf), the sum of the values."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(DURATION_BUCKETS):
            if value <= bound:
                self.buckets[i] += 1
        self.buckets[-1] += 1
        self.total += value

    @property
    def count(self) -> int:
        return self.buckets[-1]


@dataclass(frozen=True)
class MetricsSnapshot:
    """Everything ``/metrics`` shows, as read at ``taken_at`` (Unix seconds)."""

    taken_at: float
    deliveries: dict[Key3, DeliveryTotals]  # outcome events (audit), by flow/partner/outcome
    ledger: dict[Key3, DeliveryTotals]  # delivery ledger rows now
    intake_total: dict[tuple[str, str], DeliveryTotals]  # intake rows, by flow/partner
    intake_ledger: dict[Key3, DeliveryTotals]  # intake rows now, by flow/partner/outcome
    durations: dict[tuple[str, str], Histogram]  # by flow/partner, files sent
    last_success: dict[str, float]  # flow -> Unix seconds
    quarantine: dict[str, DeliveryTotals]  # partner -> files and bytes held
    missing_reports: dict[tuple[str, str], int]  # (flow, partner) -> expected, not received
    last_verified_restore: dict[str, float | None]  # archive flow -> Unix seconds
    alerts_open: dict[tuple[str, str], int]  # (severity, kind) -> not acknowledged
    work: dict[tuple[str, str], int]  # (kind, state) -> engine workflows not done
    oldest_pending: dict[str, float]  # kind -> age in seconds of the oldest pending
    engine_read: bool  # False: the engine's records could not be read (work is empty)


def _unix(ts: Any) -> float | None:
    moment = from_db_time(ts) if isinstance(ts, datetime) else None
    if moment is None and isinstance(ts, str):  # SQLite aggregates may come back as text
        moment = datetime.fromisoformat(ts)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None if moment is None else moment.timestamp()


class AuditTally:
    """Deliveries counted from the ``delivery.<outcome>`` audit events, read incrementally:
    per chain, the events after the last one counted (a chain is written by one writer, in
    order of its ``seq``)."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}  # chain -> last seq counted
        self.totals: dict[Key3, DeliveryTotals] = defaultdict(DeliveryTotals)

    def update(self, conn: sa.Connection) -> None:
        heads = conn.execute(sa.select(audit_chains.c.chain_id, audit_chains.c.seq)).all()
        ev = audit_events.c
        for chain_id, head in heads:
            after = self.seen.get(chain_id, 0)
            if head <= after:
                continue
            rows = conn.execute(
                sa.select(ev.seq, ev.action, ev.subject, ev.details)
                .where(ev.chain_id == chain_id, ev.seq > after, ev.seq <= head)
                .where(ev.action.in_(list(_COUNTED)))
            )
            for _seq, action, subject, details in rows:
                self._count(action, subject, details)
            self.seen[chain_id] = head

    def _count(self, action: str, subject: str, details: str) -> None:
        try:
            data = json.loads(details)
        except ValueError:
            return  # not ours to judge here: ``audit verify`` reports a damaged event
        partner = subject.split(":", 1)[0]
        flow = str(data.get("flow") or "")
        totals = self.totals[(flow, partner, _COUNTED[action])]
        totals.files += 1
        size = data.get("size")
        totals.bytes += size if isinstance(size, int) else 0


class MetricsSource:
    """Reads a ``MetricsSnapshot`` at most once per ``ttl`` seconds (scrapes from several
    Prometheus servers, or a dashboard refreshing, cost one set of queries)."""

    def __init__(
        self,
        app: App,
        *,
        ttl: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._tally = AuditTally()
        self._last: MetricsSnapshot | None = None

    def snapshot(self) -> MetricsSnapshot:
        with self._lock:
            now = self.clock()
            if self._last is not None and now - self._last.taken_at < self.ttl:
                return self._last
            self._last = self._read(now)
            return self._last

    # --- reading ---------------------------------------------------------------------------

    def _read(self, now: float) -> MetricsSnapshot:
        store = self.app.store
        with store.read(snapshot=True) as conn:
            self._tally.update(conn)
            ledger, durations, last_success = _delivery_ledger(conn)
            intake_total, intake_now, intake_last = _intake_ledger(conn)
            alerts_open = _open_alerts(conn)
        for flow, ts in intake_last.items():
            last_success[flow] = max(ts, last_success.get(flow, 0.0))
        quarantine: dict[str, DeliveryTotals] = defaultdict(DeliveryTotals)
        for (_flow, partner, outcome), t in intake_now.items():
            if outcome == IntakeOutcome.QUARANTINED.value:
                quarantine[partner].files += t.files
                quarantine[partner].bytes += t.bytes
        work, oldest, engine_read = self._work(now)
        moment = datetime.fromtimestamp(now, UTC)
        return MetricsSnapshot(
            taken_at=now,
            deliveries={k: DeliveryTotals(v.files, v.bytes) for k, v in self._tally.totals.items()},
            ledger=ledger,
            intake_total=intake_total,
            intake_ledger=intake_now,
            durations=durations,
            last_success=last_success,
            quarantine=dict(quarantine),
            missing_reports=self._missing_reports(moment),
            last_verified_restore=self._verified_restores(),
            alerts_open=alerts_open,
            work=work,
            oldest_pending=oldest,
            engine_read=engine_read,
        )

    def _work(self, now: float) -> tuple[dict[tuple[str, str], int], dict[str, float], bool]:
        """The engine's durable work not done, by kind and state, and the age of the oldest
        pending (queued, delayed or running) per kind; as ``status`` reads it."""
        work: dict[tuple[str, str], int] = {}
        oldest: dict[str, float] = {}
        if not Operations(self.app).engine_started():
            return work, oldest, True  # nothing has run yet: no work
        try:
            client = EngineClient(self.app.engine_settings())
        except Exception:
            return work, oldest, False
        try:
            for what, prefix, _owner in WORK_KINDS:
                kind = WORK_KIND_LABELS[what]
                for _wid, state, created in client.not_done(prefix):
                    key = (kind, state.value)
                    work[key] = work.get(key, 0) + 1
                    if state in _PENDING and created is not None:
                        oldest[kind] = max(oldest.get(kind, 0.0), now - created)
            return work, oldest, True
        except Exception:
            return {}, {}, False
        finally:
            client.close()

    def _missing_reports(self, now: datetime) -> dict[tuple[str, str], int]:
        """Per sales_in flow and partner of its calendar: the expected reports overdue now
        (0 for each calendar partner that is up to date)."""
        store = self.app.store
        missing: dict[tuple[str, str], int] = {}
        for name, flow in self.app.settings.flows.items():
            if not isinstance(flow, SalesInFlow) or not flow.calendar:
                continue
            for entry in flow.calendar:
                missing.setdefault((name, entry.partner), 0)
            overdue = calendar.missing_alerts(
                name,
                flow.calendar,
                now.date(),
                lambda partner, month: store.list_sales_reports(
                    partner=partner, period=month, limit=1000
                ),
                lambda _details: False,  # every overdue report, alerted or not
            )
            for alert in overdue:
                missing[(name, alert.partner or "")] += 1
        return missing

    def _verified_restores(self) -> dict[str, float | None]:
        """Per archive flow: when its last restore drill that succeeded ran (None: never)."""
        flows = [n for n, f in self.app.settings.flows.items() if isinstance(f, ArchiveFlow)]
        found: dict[str, float | None] = dict.fromkeys(flows)
        if not flows:
            return found
        for event in self.app.store.list_audit(action=AuditAction.ARCHIVE_DRILL, limit=None):
            flow = event.subject.removeprefix("flow:")
            if flow not in found or found[flow] is not None:
                continue  # newest first: the first good drill of a flow is its last
            if event.details.get("ok") is True:
                found[flow] = event.ts.timestamp()
        return found


def _delivery_ledger(
    conn: sa.Connection,
) -> tuple[dict[Key3, DeliveryTotals], dict[tuple[str, str], Histogram], dict[str, float]]:
    c = delivery_ledger.c
    ledger: dict[Key3, DeliveryTotals] = {}
    for flow, partner, outcome, files, size in conn.execute(
        sa.select(c.flow, c.partner, c.outcome, sa.func.count(), sa.func.sum(c.size)).group_by(
            c.flow, c.partner, c.outcome
        )
    ):
        ledger[(flow, partner, outcome)] = DeliveryTotals(files, int(size or 0))
    durations: dict[tuple[str, str], Histogram] = defaultdict(Histogram)
    last: dict[str, float] = {}
    rows = conn.execute(
        sa.select(c.flow, c.partner, c.started_at, c.finished_at, c.created_at).where(
            c.outcome.in_(_SENT)
        )
    )
    for flow, partner, started, finished, created in rows:
        end = _unix(finished) or _unix(created)
        if end is not None:
            last[flow] = max(end, last.get(flow, 0.0))
        begin = _unix(started)
        if begin is not None and end is not None:
            durations[(flow, partner)].observe(max(0.0, end - begin))
    return ledger, dict(durations), last


def _intake_ledger(
    conn: sa.Connection,
) -> tuple[dict[tuple[str, str], DeliveryTotals], dict[Key3, DeliveryTotals], dict[str, float]]:
    c = intake_ledger.c
    flow_col = sa.func.coalesce(c.flow, "")
    total: dict[tuple[str, str], DeliveryTotals] = defaultdict(DeliveryTotals)
    now: dict[Key3, DeliveryTotals] = {}
    for flow, partner, outcome, files, size in conn.execute(
        sa.select(flow_col, c.partner, c.outcome, sa.func.count(), sa.func.sum(c.size)).group_by(
            flow_col, c.partner, c.outcome
        )
    ):
        now[(flow, partner, outcome)] = DeliveryTotals(files, int(size or 0))
        total[(flow, partner)].files += files
        total[(flow, partner)].bytes += int(size or 0)
    last: dict[str, float] = {}
    for flow, newest in conn.execute(
        sa.select(flow_col, sa.func.max(c.received_at))
        .where(c.outcome.in_(_INTAKE_OK))
        .group_by(flow_col)
    ):
        ts = _unix(newest)
        if ts is not None and flow:
            last[flow] = ts
    return dict(total), now, last


def _open_alerts(conn: sa.Connection) -> dict[tuple[str, str], int]:
    c = alerts.c
    return {
        (severity, kind): n
        for severity, kind, n in conn.execute(
            sa.select(c.severity, c.kind, sa.func.count())
            .where(c.acknowledged_at.is_(None))
            .group_by(c.severity, c.kind)
        )
    }
