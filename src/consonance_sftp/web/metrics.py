"""``/metrics`` in the Prometheus text format (prometheus-client).

``StoreCollector`` is a custom collector: at each scrape it asks ``app.metrics.MetricsSource``
for the numbers, which reads them from the shared database and the engine's records (cached
for a few seconds). Nothing here counts in the process, so every process serving ``/metrics``
(the console, ``consonance-sftp metrics``) answers the same, however many workers deliver.
``router(source)`` is the FastAPI route (the console includes it behind a login or an API
token; ``consonance-sftp metrics`` serves it on its own); ``render(source)`` the text.

Labels are flow, partner, outcome, direction, kind, state and severity names only: never an
ISBN, a file name, a path or a payee (unbounded, and not for a monitoring system to hold).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from fastapi import APIRouter, Request, Response, params
from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from consonance_sftp.app.metrics import (
    DURATION_BUCKETS,
    WORK_KIND_LABELS,
    MetricsSnapshot,
    MetricsSource,
)

__all__ = ["PREFIX", "StoreCollector", "registry", "render", "router"]

PREFIX = "consonance_sftp"


def _name(suffix: str) -> str:
    return f"{PREFIX}_{suffix}"


class StoreCollector(Collector):
    """The business metrics, read from the store at scrape time."""

    def __init__(self, source: MetricsSource) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only: registering must not query the database

    def collect(self) -> Iterator[Metric]:
        yield from families(self.source.snapshot())


def families(s: MetricsSnapshot) -> Iterator[Metric]:
    """The metric families of one snapshot."""
    deliveries = CounterMetricFamily(
        _name("deliveries"),
        "Files delivered to partners, by outcome (each outcome recorded on the audit trail).",
        labels=["flow", "partner", "outcome"],
    )
    for (flow, partner, outcome), t in sorted(s.deliveries.items()):
        deliveries.add_metric([flow, partner, outcome], t.files)
    yield deliveries

    transferred = CounterMetricFamily(
        _name("transfer_bytes"),
        "Bytes sent to partners (out) and taken in from them (in).",
        labels=["direction", "flow", "partner"],
    )
    for (flow, partner, outcome), t in sorted(s.deliveries.items()):
        if outcome == "sent":
            transferred.add_metric(["out", flow, partner], t.bytes)
    for (flow, partner), t in sorted(s.intake_total.items()):
        transferred.add_metric(["in", flow, partner], t.bytes)
    yield transferred

    intake = CounterMetricFamily(
        _name("intake_files"),
        "Files taken in from partners' inboxes (one intake ledger row each).",
        labels=["flow", "partner"],
    )
    for (flow, partner), t in sorted(s.intake_total.items()):
        intake.add_metric([flow, partner], t.files)
    yield intake

    ledger = GaugeMetricFamily(
        _name("delivery_ledger_files"),
        "Files in the delivery ledger now, by their current outcome.",
        labels=["flow", "partner", "outcome"],
    )
    for key, t in sorted(s.ledger.items()):
        ledger.add_metric(list(key), t.files)
    yield ledger

    intake_now = GaugeMetricFamily(
        _name("intake_ledger_files"),
        "Files in the intake ledger now, by their current outcome.",
        labels=["flow", "partner", "outcome"],
    )
    for key, t in sorted(s.intake_ledger.items()):
        intake_now.add_metric(list(key), t.files)
    yield intake_now

    durations = HistogramMetricFamily(
        _name("delivery_duration_seconds"),
        "Seconds from a delivery's start to each of its files being sent.",
        labels=["flow", "partner"],
    )
    for (flow, partner), h in sorted(s.durations.items()):
        bounds = [*(_bound(b) for b in DURATION_BUCKETS), "+Inf"]
        durations.add_metric([flow, partner], list(zip(bounds, h.buckets, strict=True)), h.total)
    yield durations

    last = GaugeMetricFamily(
        _name("last_success_timestamp_seconds"),
        "When the flow last delivered a file or took one in (Unix time).",
        labels=["flow"],
    )
    for flow, ts in sorted(s.last_success.items()):
        last.add_metric([flow], ts)
    yield last

    quarantine_files = GaugeMetricFamily(
        _name("quarantine_files"),
        "Files taken in and held in quarantine (waiting for a person).",
        labels=["partner"],
    )
    quarantine_bytes = GaugeMetricFamily(
        _name("quarantine_bytes"), "Bytes held in quarantine.", labels=["partner"]
    )
    for partner, t in sorted(s.quarantine.items()):
        quarantine_files.add_metric([partner], t.files)
        quarantine_bytes.add_metric([partner], t.bytes)
    yield quarantine_files
    yield quarantine_bytes

    missing = GaugeMetricFamily(
        _name("expected_reports_missing"),
        "Sales reports the flow's calendar expects that are overdue now.",
        labels=["flow", "partner"],
    )
    for (flow, partner), n in sorted(s.missing_reports.items()):
        missing.add_metric([flow, partner], n)
    yield missing

    restored = GaugeMetricFamily(
        _name("archive_last_verified_restore_timestamp_seconds"),
        "When the archive flow's last successful restore drill ran (Unix time).",
        labels=["flow"],
    )
    restored_age = GaugeMetricFamily(
        _name("archive_verified_restore_age_seconds"),
        "Seconds since the archive flow's last successful restore drill.",
        labels=["flow"],
    )
    for flow, when in sorted(s.last_verified_restore.items()):
        if when is not None:
            restored.add_metric([flow], when)
            restored_age.add_metric([flow], max(0.0, s.taken_at - when))
    yield restored
    yield restored_age

    open_alerts = GaugeMetricFamily(
        _name("alerts_unacknowledged"),
        "Alerts raised and not yet acknowledged.",
        labels=["severity", "kind"],
    )
    for (severity, kind), n in sorted(s.alerts_open.items()):
        open_alerts.add_metric([severity, kind], n)
    yield open_alerts

    work = GaugeMetricFamily(
        _name("work_items"),
        "The engine's durable work not done, by kind and state.",
        labels=["kind", "state"],
    )
    depth = GaugeMetricFamily(
        _name("queue_depth"),
        "The engine's work waiting to run (queued or delayed), by kind.",
        labels=["kind"],
    )
    # Every kind, 0 when nothing waits (an alert on the depth needs the series to exist).
    kinds = sorted(WORK_KIND_LABELS.values()) if s.engine_read else []
    waiting: dict[str, int] = dict.fromkeys(kinds, 0)
    for (kind, state), n in sorted(s.work.items()):
        work.add_metric([kind, state], n)
        if state in ("queued", "delayed"):
            waiting[kind] = waiting.get(kind, 0) + n
    for kind, n in sorted(waiting.items()):
        depth.add_metric([kind], n)
    yield work
    yield depth

    oldest = GaugeMetricFamily(
        _name("oldest_pending_work_age_seconds"),
        "Age of the oldest queued, delayed or running engine work, by kind (0: none).",
        labels=["kind"],
    )
    for kind in kinds:
        oldest.add_metric([kind], s.oldest_pending.get(kind, 0.0))
    yield oldest

    yield GaugeMetricFamily(
        _name("engine_readable"),
        "1 when the engine's records could be read for this scrape, else 0.",
        value=1 if s.engine_read else 0,
    )


def _bound(value: float) -> str:
    """A bucket's ``le`` as the Prometheus client writes it (``1.0``, ``2.5``)."""
    return repr(float(value))


def registry(source: MetricsSource) -> CollectorRegistry:
    """A registry holding only the store's metrics (no per-process default collectors: the
    process serving ``/metrics`` is not the one doing the work)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StoreCollector(source))
    return reg


def render(source: MetricsSource) -> bytes:
    """The Prometheus text exposition of the store's metrics now."""
    return generate_latest(registry(source))


def router(source: MetricsSource, dependencies: Sequence[params.Depends] = ()) -> APIRouter:
    """``GET /metrics``: ``consonance-sftp metrics`` serves it as it is (on 127.0.0.1), the
    console with ``dependencies`` that refuse an anonymous scrape."""
    reg = registry(source)
    routes = APIRouter(dependencies=list(dependencies))

    @routes.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        # A plain (sync) route: FastAPI runs it in a worker thread, so the database queries
        # never block the event loop. The format follows the scraper's Accept header
        # (OpenMetrics for a Prometheus server that asks for it, else text format 0.0.4).
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(reg), headers={"Content-Type": content_type})

    return routes
