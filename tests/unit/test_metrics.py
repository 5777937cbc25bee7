"""``/metrics``: the numbers read from the store (SQLite here), counters that never go down
when a failed file is retried, no ISBN or file name in any label, the cache, the route."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from consonance_sftp.app import App
from consonance_sftp.app.metrics import MetricsSource
from consonance_sftp.engine import StoreLedger
from consonance_sftp.models import DeliveryOutcome
from consonance_sftp.web.metrics import render, router
from tests.metrics_store import ISBN, OTHER_ISBN, file_record, fill, settings

ALLOWED_LABELS = {"flow", "partner", "outcome", "direction", "kind", "state", "severity", "le"}


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    app = App(settings(tmp_path))
    try:
        yield app
    finally:
        app.store.close()


def _samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> {sorted labels: value}."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def _by(samples: dict[tuple[tuple[str, str], ...], float], *names: str) -> dict[Any, float]:
    return {tuple(dict(k)[n] for n in names): v for k, v in samples.items()}


def test_metrics_are_the_store_s_numbers(app: App) -> None:
    before = time.time()
    fill(app)
    text = render(MetricsSource(app, ttl=0)).decode()
    got = _samples(text)

    # The ledger as it stands, per (flow, partner, outcome), compared with the store's rows.
    rows = app.store.list_deliveries(limit=100)
    ledger: dict[tuple[str, str, str], int] = {}
    for r in rows:
        key = (r.flow, r.partner, r.outcome.value)
        ledger[key] = ledger.get(key, 0) + 1
    assert ledger == {("print", "printer", "sent"): 3}
    shown = _by(got["consonance_sftp_delivery_ledger_files"], "flow", "partner", "outcome")
    assert shown == {k: float(v) for k, v in ledger.items()}

    # Counters: every outcome recorded, so the retried failure still counts as one failure.
    deliveries = _by(got["consonance_sftp_deliveries_total"], "outcome")
    assert deliveries == {("sent",): 3.0, ("failed",): 1.0}
    out = _by(got["consonance_sftp_transfer_bytes_total"], "direction", "partner")
    assert out == {("out", "printer"): float(sum(r.size for r in rows)), ("in", "designer"): 321.0}
    assert _by(got["consonance_sftp_intake_files_total"], "partner") == {("designer",): 1.0}

    # Durations: 2 s, 40 s and 3 s, in the right buckets.
    buckets = _by(got["consonance_sftp_delivery_duration_seconds_bucket"], "le")
    assert buckets[("2.5",)] == 1 and buckets[("5.0",)] == 2 and buckets[("60.0",)] == 3
    assert got["consonance_sftp_delivery_duration_seconds_count"] == {
        (("flow", "print"), ("partner", "printer")): 3.0
    }

    assert _by(got["consonance_sftp_quarantine_files"], "partner") == {("designer",): 1.0}
    assert _by(got["consonance_sftp_quarantine_bytes"], "partner") == {("designer",): 321.0}
    # No report ever came from the vendor: the calendar's latest due period is missing.
    missing = _by(got["consonance_sftp_expected_reports_missing"], "flow", "partner")
    assert missing == {("sales", "vendor"): 1.0}
    restored = got["consonance_sftp_archive_last_verified_restore_timestamp_seconds"]
    assert list(restored) == [(("flow", "vault"),)]
    assert before - 1 <= restored[(("flow", "vault"),)] <= time.time() + 1
    alerts = _by(got["consonance_sftp_alerts_unacknowledged"], "severity", "kind")
    assert alerts == {("warning", "delivery_failed"): 1.0}
    last = _by(got["consonance_sftp_last_success_timestamp_seconds"], "flow")
    assert set(last) == {("print",)} and before - 60 <= last[("print",)] <= time.time() + 1
    assert got["consonance_sftp_engine_readable"] == {(): 1.0}


def test_no_label_carries_an_isbn_or_a_file_name(app: App) -> None:
    fill(app)
    text = render(MetricsSource(app, ttl=0)).decode()
    names = {
        *(r.remote_path for r in app.store.list_deliveries(limit=100)),
        *(r.remote_path for r in app.store.list_intakes(limit=100)),
    }
    forbidden = {ISBN, OTHER_ISBN} | {n.rsplit("/", 1)[-1] for n in names}
    assert len(forbidden) == 6  # two ISBNs, four file names
    seen = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert set(sample.labels) <= ALLOWED_LABELS, sample
            for value in sample.labels.values():
                seen += 1
                assert not re.search(r"\d{10,13}", value), sample
                assert "/" not in value and not any(f in value for f in forbidden), sample
    assert seen > 20  # the check looked at the real labels, not an empty page


def test_counters_read_incrementally_never_twice_and_the_reading_is_cached(app: App) -> None:
    fill(app)
    clock = Clock(1000.0)
    source = MetricsSource(app, ttl=10, clock=clock)
    first = source.snapshot()
    StoreLedger(app.store).record(file_record("extra.pdf", DeliveryOutcome.SENT, size=7))
    assert source.snapshot() is first  # within the cache's 10 s: the same reading
    clock.now += 11
    second = source.snapshot()
    sent = second.deliveries[("print", "printer", "sent")]
    assert (sent.files, sent.bytes) == (4, 4000 + 1500 + 1000 + 7)
    clock.now += 11
    third = source.snapshot()  # nothing new: the same totals, events not counted again
    assert third is not second
    assert third.deliveries[("print", "printer", "sent")].files == 4
    # A second process reading the same database from scratch agrees.
    fresh = MetricsSource(app, ttl=0).snapshot()
    assert fresh.deliveries == third.deliveries


def test_the_route_serves_the_text_format(app: App) -> None:
    fill(app)
    web = FastAPI()
    web.include_router(router(MetricsSource(app, ttl=0)))
    with TestClient(web) as client:
        response = client.get("/metrics")
        negotiated = client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    got = _samples(response.text)
    assert _by(got["consonance_sftp_deliveries_total"], "outcome")[("sent",)] == 3.0
    # A Prometheus server asking for OpenMetrics gets it (and the same numbers).
    assert negotiated.headers["content-type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in openmetrics_families(negotiated.text)}
    samples = families["consonance_sftp_deliveries"].samples
    assert [s.value for s in samples if s.labels["outcome"] == "sent"] == [3.0]
