"""The ``sales_in`` flow's hand-off, wired to this App: ``flows.sales_in.SalesProcessor`` with
the store (its sales ledger, intake ledger and the change detector's product snapshots) and
each flow's settings, read at each report so a config reload applies to the next one.

``App.engine`` binds it as the engine's handler for the ``sales_in`` kind; the ``sales`` CLI
commands use the helpers below (the outbox, release, a period's export).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Container, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consonance_sftp.config.flows import SalesInFlow
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.flows import sales_calendar as calendar
from consonance_sftp.flows import sales_in
from consonance_sftp.formats.packaging import join_remote, sha256_file
from consonance_sftp.formats.sales.layouts import layout_names as layout_names  # for the CLI
from consonance_sftp.formats.sales.parse import KnownAsin
from consonance_sftp.formats.sales.table import ReportRefused
from consonance_sftp.formats.sales.validate import month_period
from consonance_sftp.models import DeliveryKey, DeliveryOutcome
from consonance_sftp.ports.delivery import DeliveryRequest, FileToSend
from consonance_sftp.ports.intake import FetchedFile, IntakeRequest
from consonance_sftp.ports.sales import SalesImportRecord as SalesImportRecord  # for the CLI
from consonance_sftp.ports.sales import SalesReportRecord as SalesReportRecord

if TYPE_CHECKING:
    from consonance_sftp.app import App
    from consonance_sftp.app.runner import DeliveryRunner
    from consonance_sftp.ports.snapshots import Snapshot


def default_outbox(app: App) -> Path:
    """Where import files go when a flow sets no ``outbox``."""
    return app.state_dir / "sales" / "outbox"


def sales_flow(app: App, name: str | None) -> tuple[str, SalesInFlow]:
    """The named ``sales_in`` flow, or the only one."""
    flows = {n: f for n, f in app.settings.flows.items() if isinstance(f, SalesInFlow)}
    if name is not None:
        if name not in flows:
            raise ConsonanceSftpError(
                f"no sales_in flow named {name!r} in the config",
                hint="sales_in flows: " + (", ".join(sorted(flows)) or "none"),
            )
        return name, flows[name]
    if len(flows) != 1:
        raise ConsonanceSftpError(
            f"the config has {len(flows)} sales_in flows: name one with --flow",
            hint="sales_in flows: " + (", ".join(sorted(flows)) or "none"),
        )
    return next(iter(flows.items()))


def check_file(
    file: Path,
    *,
    layout: str = "auto",
    period: str | None = None,
    house_currency: str | None = None,
    app: App | None = None,
    flow: str | None = None,
) -> dict[str, Any]:
    """``sales check``: what the flow would make of a file (``flows.sales_in.check_report``),
    nothing written. ``app`` and ``flow``: the config whose ``generic`` mapping reads it. A
    file no layout fits: ``{"layout": None, "refused": CODE, "reason": ...}``."""
    generic = None
    sheet = None
    if app is not None:
        _, config = sales_flow(app, flow)
        if config.generic is not None:
            generic = sales_in.generic_layout(config.generic)
            sheet = config.generic.sheet
    try:
        months = None if period is None else month_period(period)
    except ValueError as exc:
        raise ConsonanceSftpError(str(exc), hint="e.g. --period 2026-10") from None
    try:
        return sales_in.check_report(
            file,
            layout=layout,
            generic=generic,
            sheet=sheet,
            period=months,
            house_currency=house_currency,
        )
    except ReportRefused as refused:
        return {
            "layout": None,
            "refused": refused.reason_code,
            "reason": refused.message,
            "hint": refused.hint,
        }


def settings_for(app: App, flow_name: str, partner: str) -> sales_in.SalesSettings | None:
    flow = app.settings.flows.get(flow_name)
    if not isinstance(flow, SalesInFlow):
        return None

    # Read when a report is, once for both (the processor asks for ISBNs, then ASINs).
    @functools.cache
    def products() -> dict[int, Snapshot]:
        return app.store.load_snapshots("product")

    def isbns() -> Container[str] | None:
        return sales_in.known_isbns(products())

    def asins() -> Mapping[str, KnownAsin] | None:
        return sales_in.known_asins(products())

    return sales_in.settings_of(
        flow_name,
        flow,
        partner,
        default_outbox=default_outbox(app),
        isbns=isbns,
        asins=asins,
    )


def sales_processor(app: App) -> sales_in.SalesProcessor:
    """The ``sales_in`` kind's hand-off for this App."""

    def intake_id(request: IntakeRequest) -> int | None:
        row = app.store.find_intake(
            request.partner, request.remote_path, request.size, request.mtime
        )
        return None if row is None else row.id

    return sales_in.SalesProcessor(
        ledger=app.store,
        settings=lambda request: settings_for(app, request.flow, request.partner),
        intake_id=intake_id,
    )


def release(
    app: App, report_id: int, by: str
) -> tuple[SalesReportRecord, SalesImportRecord | None]:
    """A held report released: loaded, and its import file written."""
    report = app.store.release_sales_report(report_id, by)
    s = settings_for(app, report.flow, report.partner)
    if s is not None and not s.per_report:
        return report, None  # its lines wait for the period's export
    outbox = s.outbox if s is not None else default_outbox(app)
    currency = s.house_currency if s is not None else "GBP"
    return report, sales_in.emit_report_import(app.store, report, outbox, currency)


def reread(app: App, report_id: int, by: str) -> tuple[SalesReportRecord, SalesImportRecord | None]:
    """A held report read again from its kept original with the flow's settings as they are
    now (a channel map or a product fixed since): the new report takes its intake row, the
    old one is withdrawn, both in one transaction (a failed read leaves it held as it was);
    then the new one's import file, as for any report."""
    old = app.store.get_sales_report(report_id)
    if old is None:
        raise ConsonanceSftpError(
            f"no sales report {report_id}", hint="'consonance-sftp sales list' shows their ids"
        )
    s = settings_for(app, old.flow, old.partner)
    if s is None:
        raise ConsonanceSftpError(
            f"report {report_id} came from partner {old.partner!r} through flow {old.flow!r}, "
            "which no longer takes its reports",
            hint="Put the partner back in the flow's partners to read it again.",
        )
    original = Path(old.original_path)
    if not original.is_file():
        raise ConsonanceSftpError(f"report {report_id}'s original {original} is gone")
    size, sha256 = sha256_file(original)
    request = IntakeRequest(
        flow=old.flow,
        kind="sales_in",
        partner=old.partner,
        remote_path=old.name,
        size=size,
        mtime=0,
    )
    fetched = FetchedFile(local_path=str(original), size=size, sha256=sha256)
    try:
        report = sales_processor(app).load(
            request, fetched, s, old.intake_id, replaces=report_id, by=by
        )
    except ReportRefused as refused:
        raise ConsonanceSftpError(
            f"report {report_id} read again: {refused.message}", hint=refused.hint
        ) from None
    if not s.per_report:
        return report, None
    return report, sales_in.emit_report_import(app.store, report, s.outbox, s.house_currency)


def export(app: App, flow_name: str | None, period: str) -> SalesImportRecord:
    """One import file for a period's loaded reports (lines in no import file yet)."""
    name, flow = sales_flow(app, flow_name)
    try:
        month_period(period)
    except ValueError as exc:
        raise ConsonanceSftpError(str(exc), hint="e.g. --period 2026-10") from None
    return sales_in.export_period(
        app.store,
        flow=name,
        period=period,
        outbox=flow.outbox or default_outbox(app),
        house_currency=flow.house_currency,
    )


def check_calendar(app: App, name: str, now: datetime) -> list[str]:
    """The flow's expected-report calendar at ``now``: one ``expected_report_missing`` alert
    per overdue report (raised once); returns their messages. Run at each of the flow's
    ticks (``app.serving``)."""
    flow = app.settings.flows.get(name)
    if not isinstance(flow, SalesInFlow) or not flow.calendar:
        return []
    store = app.store

    def reports_for(partner: str, month: str) -> list[SalesReportRecord]:
        return store.list_sales_reports(partner=partner, period=month, limit=1000)

    def already(details: dict[str, str]) -> bool:
        return any(
            all(a.details.get(k) == v for k, v in details.items())
            for a in store.list_alerts(kind=calendar.ALERT_KIND, partner=details["partner"])
        )

    raised = calendar.missing_alerts(name, flow.calendar, now.date(), reports_for, already)
    for alert in raised:
        store.raise_alert(alert)
    return [a.message for a in raised]


def import_delivery(
    flow: str, partner: str, folder: str, imp: SalesImportRecord
) -> DeliveryRequest | None:
    """The engine's request delivering an import file and its summary to the finance
    partner's folder (None: the file is not written)."""
    if imp.path is None or imp.sha256 is None:
        return None
    files = []
    for local in (Path(imp.path), sales_in.summary_path(Path(imp.path))):
        if local == Path(imp.path):
            size, digest = local.stat().st_size, imp.sha256
        else:
            size, digest = sha256_file(local)
        files.append(
            FileToSend(
                source=str(local),
                remote_path=join_remote(folder, local.name),
                sha256=digest,
                size=size,
            )
        )
    return DeliveryRequest(
        flow=flow,
        partner=partner,
        package=f"sales import {imp.id} ({imp.scope})",
        files=tuple(files),
        trigger=f"sales-import:{imp.id}",
    )


async def deliver_imports(app: App, runner: DeliveryRunner, name: str) -> list[str]:
    """Each written import file of the flow not yet delivered to its ``deliver_to`` partner,
    submitted to the engine (held like any delivery by a pause or a closed window); returns
    the workflow IDs. Run at each of the flow's ticks: the delivery ledger keeps each file
    to one delivery, and an import already sent is not submitted again."""
    from consonance_sftp.app.runner import Enqueued  # the runner builds on App

    flow = app.settings.flows.get(name)
    if not isinstance(flow, SalesInFlow) or flow.deliver_to is None:
        return []
    folder = app.partner_config(flow.deliver_to).folders[flow.deliver_folder]
    imports = await asyncio.to_thread(app.store.list_sales_imports)
    submitted: list[str] = []
    for imp in sorted(imports, key=lambda i: i.id):
        if imp.flow != name or imp.path is None or imp.sha256 is None:
            continue
        key = DeliveryKey(
            partner=flow.deliver_to,
            remote_path=join_remote(folder, Path(imp.path).name),
            sha256=imp.sha256,
        )
        done = await asyncio.to_thread(app.store.find_delivery, key)
        if done is not None and done.outcome in (DeliveryOutcome.SENT, DeliveryOutcome.SKIPPED):
            continue
        request = await asyncio.to_thread(import_delivery, name, flow.deliver_to, folder, imp)
        if request is None:
            continue
        result = await runner.submit(request)
        if isinstance(result, Enqueued):
            submitted.append(result.workflow_id)
    return submitted
