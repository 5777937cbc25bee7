"""The expected-report calendar of a ``sales_in`` flow: which partner's report is overdue.

Each ``calendar`` entry says a partner sends a report (of a layout, or any) every month,
quarter or year, due by ``due_day`` of the month after the period ends. At each tick of the
flow the latest period whose due day has passed is checked against the sales ledger: no
report from that partner (of that layout) whose period overlaps it, and the entry does not
say the partner sends nothing when there were no sales (Ingram CoreSource), is one
``expected_report_missing`` alert, raised once per (flow, partner, layout, period).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from consonance_sftp.config.sales import ExpectedReport
from consonance_sftp.models import Alert, AlertSeverity
from consonance_sftp.ports.sales import SalesReportRecord

ALERT_KIND = "expected_report_missing"
_MONTHS = {"monthly": 1, "quarterly": 3, "yearly": 12}


@dataclass(frozen=True, slots=True)
class DuePeriod:
    """One period a report was due for, and the day it was due."""

    first: date
    last: date
    due: date

    @property
    def label(self) -> str:
        if self.first.month == self.last.month and self.first.year == self.last.year:
            return self.first.strftime("%Y-%m")
        return f"{self.first:%Y-%m}..{self.last:%Y-%m}"

    def months(self) -> list[str]:
        """Each month of the period, ``YYYY-MM``."""
        out: list[str] = []
        y, m = self.first.year, self.first.month
        while (y, m) <= (self.last.year, self.last.month):
            out.append(f"{y:04d}-{m:02d}")
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return out


def _add_months(year: int, month: int, n: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + n
    return index // 12, index % 12 + 1


def latest_due(entry: ExpectedReport, today: date) -> DuePeriod:
    """The latest period whose report was due before ``today`` (its due day passed)."""
    step = _MONTHS[entry.every]
    # Periods start on a multiple of the step from January (quarters: Jan, Apr, Jul, Oct).
    start_index = (today.year * 12 + today.month - 1) // step * step
    while True:
        y, m = divmod(start_index, 12)
        first = date(y, m + 1, 1)
        ny, nm = _add_months(y, m + 1, step)
        last = date(ny, nm, 1) - timedelta(days=1)
        due = date(ny, nm, entry.due_day)
        if due < today:
            return DuePeriod(first, last, due)
        start_index -= step


def covers(report: SalesReportRecord, entry: ExpectedReport, period: DuePeriod) -> bool:
    """Does this report answer the entry for the period?"""
    if report.partner != entry.partner:
        return False
    if entry.layout != "auto" and report.layout != entry.layout:
        return False
    if report.period_from is None or report.period_to is None:
        # A report that names no period counts for the period it arrived after.
        return report.created_at.date() > period.last
    return report.period_from <= period.last and report.period_to >= period.first


def missing_alerts(
    flow: str,
    calendar: Iterable[ExpectedReport],
    today: date,
    reports_for: Callable[[str, str], list[SalesReportRecord]],
    already_alerted: Callable[[dict[str, str]], bool],
) -> list[Alert]:
    """The alerts due at ``today``: ``reports_for(partner, month)`` lists the partner's
    reports overlapping a month; ``already_alerted(details)`` says one was raised before."""
    alerts: list[Alert] = []
    for entry in calendar:
        if entry.sends_nothing_without_sales:
            continue
        period = latest_due(entry, today)
        found = any(
            covers(r, entry, period)
            for month in period.months()
            for r in reports_for(entry.partner, month)
        )
        if found:
            continue
        details = {
            "flow": flow,
            "partner": entry.partner,
            "layout": entry.layout,
            "period": period.label,
            "due": period.due.isoformat(),
        }
        if already_alerted(details):
            continue
        which = "report" if entry.layout == "auto" else f"{entry.layout} report"
        alerts.append(
            Alert(
                severity=AlertSeverity.WARNING,
                kind=ALERT_KIND,
                message=f"no {which} from partner {entry.partner!r} for {period.label} "
                f"(due by {period.due.isoformat()}, flow {flow!r})",
                partner=entry.partner,
                flow=flow,
                details=details,
            )
        )
    return alerts
