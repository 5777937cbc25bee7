"""The expected-report calendar: which period a report is due for, what answers it, and one
``expected_report_missing`` alert per overdue report, none for a partner that sends nothing
when there were no sales."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from consonance_sftp.config.sales import ExpectedReport
from consonance_sftp.flows import sales_calendar as cal
from consonance_sftp.ports.sales import SalesReportRecord


def _report(
    partner: str, first: date | None, last: date | None, layout: str = "lightning_source"
) -> SalesReportRecord:
    return SalesReportRecord(
        id=1, flow="sales", partner=partner, name="r.tsv", original_path="/x", intake_id=1,
        sha256="0" * 64, layout=layout, layout_version="1", kind="sales", period_from=first,
        period_to=last, business_model="", currencies=("USD",), status="loaded", reason=None,
        lines_read=1, accepted=1, rejected=0, duplicate_lines=0, duplicate_of=None, totals={},
        stated_totals={}, reconciled=None, created_at=datetime(2026, 11, 3, tzinfo=UTC),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("every", "today", "label", "due"),
    [
        ("monthly", date(2026, 11, 11), "2026-10", date(2026, 11, 10)),
        ("monthly", date(2026, 11, 10), "2026-09", date(2026, 10, 10)),  # due today: not yet
        ("monthly", date(2026, 1, 20), "2025-12", date(2026, 1, 10)),
        ("quarterly", date(2026, 11, 11), "2026-07..2026-09", date(2026, 10, 10)),
        ("quarterly", date(2026, 10, 5), "2026-04..2026-06", date(2026, 7, 10)),
        ("yearly", date(2026, 3, 1), "2025-01..2025-12", date(2026, 1, 10)),
    ],
)
def test_latest_due_period(every: str, today: date, label: str, due: date) -> None:
    entry = ExpectedReport.model_validate({"partner": "lsi", "every": every, "due_day": 10})
    period = cal.latest_due(entry, today)
    assert (period.label, period.due) == (label, due)


def test_a_missing_report_alerts_once_and_coresource_never() -> None:
    lsi = ExpectedReport(partner="lsi", layout="lightning_source", due_day=10)
    coresource = ExpectedReport(partner="coresource", sends_nothing_without_sales=True)
    reports: dict[tuple[str, str], list[SalesReportRecord]] = {}
    raised: list[dict[str, str]] = []

    def run(today: date) -> list[str]:
        alerts = cal.missing_alerts(
            "sales",
            [lsi, coresource],
            today,
            lambda partner, month: reports.get((partner, month), []),
            lambda details: details in raised,
        )
        raised.extend(dict(a.details) for a in alerts)
        return [a.message for a in alerts]

    [message] = run(date(2026, 11, 11))
    assert message == (
        "no lightning_source report from partner 'lsi' for 2026-10 (due by 2026-11-10, "
        "flow 'sales')"
    )
    assert run(date(2026, 11, 12)) == []  # raised once, not at every tick
    # October stays missing (alerted once); November's report arrives in time.
    reports[("lsi", "2026-11")] = [_report("lsi", date(2026, 11, 1), date(2026, 11, 30))]
    assert run(date(2026, 12, 10)) == []  # not due yet
    assert run(date(2026, 12, 11)) == []  # there
    # A report of another layout does not answer a layout's entry.
    reports[("lsi", "2026-12")] = [
        _report("lsi", date(2026, 12, 1), date(2026, 12, 31), layout="nbni")
    ]
    assert len(run(date(2027, 1, 11))) == 1


def test_what_answers_an_entry() -> None:
    entry = ExpectedReport(partner="lsi")
    period = cal.latest_due(entry, date(2026, 11, 11))  # October
    assert cal.covers(_report("lsi", date(2026, 10, 1), date(2026, 10, 31)), entry, period)
    assert not cal.covers(_report("lsi", date(2026, 9, 1), date(2026, 9, 30)), entry, period)
    assert not cal.covers(_report("nbni", date(2026, 10, 1), date(2026, 10, 31)), entry, period)
    # No period in the file: it answers the period it arrived after (Nov 3 > Oct 31).
    undated = _report("lsi", None, None)
    assert cal.covers(undated, entry, period)
    late = replace(undated, created_at=datetime(2026, 10, 20, tzinfo=UTC))
    assert not cal.covers(late, entry, period)
