"""The ``sales_in`` flow: distributor sales and usage reports.

Fired by its inbox: each partner's ``folder`` is polled every ``poll_interval``.

* **Which files it takes** (``take``): of one listing of a partner's inbox, every regular,
  visible file matching the flow's ``patterns`` that is not a done-marker nor one of our own
  temporary upload names (the shared decision in ``flows.inbox``); the app then waits for the
  partner to finish writing it and starts one intake workflow per file version, which stores
  it (``state_dir/inbox``, checksummed, one intake ledger row): the original, kept untouched.
* **What it does with a stored report** (``SalesProcessor``, the engine's hand-off for the
  ``sales_in`` kind): read it (``formats.sales.read``: sniffing), recognise or apply its layout,
  validate every line (``formats.sales.parse``: ISBN checksum, product known in Consonance from
  the change detector's snapshots, currency, dates, numbers; the partner's channel mapped to a
  Consonance channel ID), and load it into the sales ledger in **one transaction** (a crash or
  a bad file leaves nothing of it). Held when lines are rejected (``on_rejected = "hold"``) or
  its totals do not reconcile with the file's own. Then the report's Consonance import file
  (and a summary CSV) is written to the flow's outbox, with only the lines no earlier report
  brought: its rows are made as the lines load, and used when no earlier report had any of
  them; otherwise the file is written from the ledger. A report no layout fits goes to
  quarantine with the reason and the header seen.
* ``check_report`` is ``consonance-sftp sales check``: the same reading, nothing written.

Every step is safe to run again (the hand-off is at-least-once): a report already loaded for
this intake row is found, not loaded again; an import already made for it is reused, and its
file written again (identically) if it was lost before it was recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import posixpath
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from consonance_sftp.config.flows import IntakeFlowBase, SalesInFlow
from consonance_sftp.config.sales import GenericMapping
from consonance_sftp.config.transfer import TransferSettings
from consonance_sftp.flows import inbox
from consonance_sftp.flows.inbox import Taking
from consonance_sftp.formats.sales import consonance_import
from consonance_sftp.formats.sales.layouts import GenericLayout
from consonance_sftp.formats.sales.lines import Rejection, SalesLine, UsageLine
from consonance_sftp.formats.sales.parse import KnownAsin, ParsedReport, parse_report
from consonance_sftp.formats.sales.read import open_table
from consonance_sftp.formats.sales.table import ReportRefused
from consonance_sftp.formats.sales.validate import month_period
from consonance_sftp.formats.wording import counted
from consonance_sftp.logs import get_logger
from consonance_sftp.models import IntakeOutcome
from consonance_sftp.ports.intake import FetchedFile, HandOffResult, IntakeRequest
from consonance_sftp.ports.remote_fs import RemoteEntry
from consonance_sftp.ports.sales import (
    ReportHead,
    ReportTail,
    SalesImportRecord,
    SalesLedger,
    SalesReportRecord,
    decimal_str,
)
from consonance_sftp.ports.snapshots import Snapshot

log = get_logger(__name__)


def take(
    flow: IntakeFlowBase, listing: Iterable[tuple[RemoteEntry, str]], ts: TransferSettings
) -> Taking:
    """Of one listing of (entry, kind) of a partner's inbox, the reports this flow takes in
    and what it leaves alone (with why)."""
    return inbox.take(flow, listing, ts)


# --- settings ------------------------------------------------------------------------------


def generic_layout(mapping: GenericMapping) -> GenericLayout:
    """The parser's view of a flow's generic column mapping."""
    # The parser calls the sales date's role ``date``; config says ``sales_date`` (clearer
    # beside the period).
    columns = {("date" if role == "sales_date" else role): h for role, h in mapping.columns.items()}
    return GenericLayout(
        columns=columns,
        date_format=mapping.date_format,
        currency=mapping.currency,
        returns=mapping.returns,
    )


def known_isbns(snapshots: Mapping[int, Snapshot]) -> set[str] | None:
    """The ISBNs of the products the change detector has seen (its snapshots' ``isbn``
    field); None before any poll recorded one: products are then not checked (a fresh
    install must not reject every line)."""
    found = {s.fields.get("isbn") for s in snapshots.values()}
    found.discard(None)
    found.discard("")
    return {i for i in found if i is not None} or None


def known_asins(snapshots: Mapping[int, Snapshot]) -> dict[str, KnownAsin] | None:
    """The ASINs of the products the change detector has seen (their snapshots' ``asin``
    field; Amazon KDP names a Kindle ebook by its ``B0...`` ASIN), each with its product's id
    and ISBN-13 (None when it has none). None before any poll, like ``known_isbns``; an empty
    map when products are known but none has an ASIN."""
    if not snapshots:
        return None
    found: dict[str, KnownAsin] = {}
    for product_id, snap in snapshots.items():
        asin = (snap.fields.get("asin") or "").strip().upper()
        if asin:
            found[asin] = KnownAsin(product_id, snap.fields.get("isbn") or None)
    return found


@dataclass(frozen=True, slots=True)
class SalesSettings:
    """What the processor needs from a report's flow, for one partner."""

    flow: str
    layout: str
    generic: GenericLayout | None
    sheet: str | None
    channel_for: Callable[[str, str], str | None] | None
    on_rejected: str
    outbox: Path
    house_currency: str
    # The known products, read when a report is (not when the engine asks ``applies``);
    # None: products are not checked.
    isbns: Callable[[], Container[str] | None] | None
    per_report: bool = True  # write each report's import file at once
    # The known products' ASINs (KDP's ebook lines), read with ``isbns``; None: not matched.
    asins: Callable[[], Mapping[str, KnownAsin] | None] | None = None


def settings_of(
    name: str,
    flow: SalesInFlow,
    partner: str,
    *,
    default_outbox: Path,
    isbns: Callable[[], Container[str] | None],
    asins: Callable[[], Mapping[str, KnownAsin] | None] | None = None,
) -> SalesSettings:
    """The settings a report from ``partner`` by flow ``name`` is read with (``isbns``: the
    known products, read only when the flow checks them)."""
    channels = flow.channels_for(partner)
    layout = flow.layout_for(partner)
    return SalesSettings(
        flow=name,
        layout=layout,
        generic=None if flow.generic is None else generic_layout(flow.generic),
        # The mapping's sheet only for the mapped layout (Kobo's `Details` is found by name).
        sheet=flow.generic.sheet if flow.generic is not None and layout == "generic" else None,
        # Every import row needs a Consonance channel ID: a line the map leaves without one
        # is rejected (with its channel and territory), not written without it.
        channel_for=channels.channel_for,
        on_rejected=flow.on_rejected,
        outbox=flow.outbox or default_outbox,
        house_currency=flow.house_currency,
        isbns=isbns if flow.check_products else None,
        per_report=flow.import_per_report,
        asins=asins if flow.check_products else None,
    )


# --- sales check ---------------------------------------------------------------------------


@dataclass(slots=True)
class Counts:
    """Accepted and rejected lines, counted as the items stream past (nothing is kept but
    the rejections, which a person reads)."""

    accepted: int = 0
    usage: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    keep: int = 1000  # rejections kept for the report's details

    def wrap(
        self, items: Iterable[SalesLine | UsageLine | Rejection]
    ) -> Iterator[SalesLine | UsageLine | Rejection]:
        for item in items:
            if type(item) is SalesLine:  # the common case first: a million lines pass here
                self.accepted += 1
            elif isinstance(item, Rejection):
                self.rejected += 1
                if len(self.rejections) < self.keep:
                    self.rejections.append(item)
            elif isinstance(item, UsageLine):
                self.usage += 1
            else:
                self.accepted += 1
            yield item


def _totals(parsed: ParsedReport) -> dict[str, dict[str, str]]:
    return {
        cur: {k: decimal_str(v) for k, v in sums.items()} for cur, sums in parsed.totals().items()
    }


def _stated(parsed: ParsedReport) -> dict[str, dict[str, str]]:
    return {
        cur: {k: decimal_str(v) for k, v in sums.items()}
        for cur, sums in parsed.facts.stated_totals.items()
    }


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def check_report(
    path: Path,
    *,
    file_name: str | None = None,
    layout: str = "auto",
    generic: GenericLayout | None = None,
    sheet: str | None = None,
    period: tuple[date, date] | None = None,
    house_currency: str | None = None,
) -> dict[str, Any]:
    """Everything ``sales check`` says about a file, as one JSON-friendly dict (stable keys:
    ``layout``, ``period_from``, ``period_to``, ``currency``, ``lines``, ``accepted``,
    ``rejected``, ``rejections`` [{``line``, ``reason``}], ``totals``, ``reconciled``). Nothing
    is written. Raises ``ReportRefused`` for a file no layout fits."""
    counts = Counts(keep=10**9)
    with open_table(path, sheet=sheet) as table:
        parsed = parse_report(
            table,
            file_name=file_name or path.name,
            layout=layout,
            generic=generic,
            period=period,
            house_currency=house_currency,
        )
        for _ in counts.wrap(parsed.items):
            pass
        reconciled, mismatches = parsed.reconciliation()
        facts = parsed.facts
        currencies = sorted(facts.currencies)
        return {
            "layout": parsed.layout.name,
            "layout_version": parsed.layout.version,
            "title": parsed.layout.title,
            "kind": parsed.layout.kind,
            "container": table.container,
            "encoding": table.encoding,
            "delimiter": table.delimiter,
            "sheet": table.sheet,
            "notes": list(parsed.notes),
            "header_line": parsed.header_line,
            "period_from": _iso(facts.period_from),
            "period_to": _iso(facts.period_to),
            "business_model": facts.business_model,
            "currency": ",".join(currencies) if currencies else None,
            "currencies": currencies,
            "lines": parsed.lines_read,
            "accepted": counts.accepted + counts.usage,
            "rejected": counts.rejected,
            "rejections": [
                {"line": r.line, "column": r.column, "reason": r.reason} for r in counts.rejections
            ],
            "totals": _totals(parsed),
            "stated_totals": _stated(parsed),
            "reconciled": reconciled,
            "mismatches": mismatches,
        }


# --- the hand-off --------------------------------------------------------------------------


class SalesProcessor:
    """The ``sales_in`` kind's ``IntakeHandler`` (see the module docstring)."""

    def __init__(
        self,
        *,
        ledger: SalesLedger,
        settings: Callable[[IntakeRequest], SalesSettings | None],
        intake_id: Callable[[IntakeRequest], int | None],
    ) -> None:
        self.ledger = ledger
        self.settings = settings
        self.intake_id = intake_id

    def applies(self, request: IntakeRequest) -> bool:
        return self.settings(request) is not None

    async def handle(self, request: IntakeRequest, file: FetchedFile) -> HandOffResult:
        return await asyncio.to_thread(self.process, request, file)

    def process(self, request: IntakeRequest, file: FetchedFile) -> HandOffResult:
        s = self.settings(request)
        if s is None:
            return HandOffResult(outcome=IntakeOutcome.STORED)
        intake_id = self.intake_id(request)
        report = None if intake_id is None else self.ledger.find_sales_report_for_intake(intake_id)
        rows = None if report is not None else import_rows(s, request.flow, request.partner)
        with rows or contextlib.nullcontext():
            if report is None:
                try:
                    report = self.load(request, file, s, intake_id, rows=rows)
                except ReportRefused as refused:
                    log.warning(
                        "sales report %s from %s quarantined: %s",
                        request.remote_path,
                        request.partner,
                        refused.message,
                    )
                    hint = f" ({refused.hint})" if refused.hint else ""
                    return HandOffResult(
                        outcome=IntakeOutcome.QUARANTINED,
                        reason=f"{refused.reason_code}: {refused.message}{hint}",
                    )
            made = (
                emit_report_import(self.ledger, report, s.outbox, s.house_currency, rows=rows)
                if s.per_report
                else None
            )
        summary = describe(report, made)
        if report.status == "usage":
            summary += f"; usage lines in {write_usage_csv(self.ledger, report, s.outbox)}"
        log.info("sales report %s from %s: %s", request.remote_path, request.partner, summary)
        return HandOffResult(outcome=IntakeOutcome.STORED, reason=summary)

    def load(
        self,
        request: IntakeRequest,
        file: FetchedFile,
        s: SalesSettings,
        intake_id: int | None,
        *,
        replaces: int | None = None,
        by: str = "",
        rows: consonance_import.ImportRows | None = None,
    ) -> SalesReportRecord:
        """Parse and load the report in one ledger transaction (``replaces``: the held report
        it is read again for, withdrawn in that transaction; ``rows``: where its sales lines
        are also made into import rows as they pass)."""
        name = posixpath.basename(request.remote_path)
        counts = Counts()
        with open_table(Path(file.local_path), sheet=s.sheet) as table:
            parsed = parse_report(
                table,
                file_name=name,
                layout=s.layout,
                generic=s.generic,
                known_isbns=None if s.isbns is None else s.isbns(),
                known_asins=None if s.asins is None else s.asins(),
                channel_for=s.channel_for,
                house_currency=s.house_currency,
            )
            head = ReportHead(
                flow=request.flow,
                partner=request.partner,
                name=name,
                original_path=file.local_path,
                intake_id=intake_id,
                sha256=file.sha256,
                layout=parsed.layout.name,
                layout_version=parsed.layout.version,
                kind=parsed.layout.kind,
            )

            def finish() -> ReportTail:
                return report_tail(parsed, counts, s.on_rejected)

            items = counts.wrap(parsed.items)
            return self.ledger.load_sales_report(
                head,
                items if rows is None else into_rows(rows, items),
                finish,
                replaces=replaces,
                by=by,
            )


_ROWS_BATCH = 2000


def into_rows(
    rows: consonance_import.ImportRows, items: Iterable[SalesLine | UsageLine | Rejection]
) -> Iterator[SalesLine | UsageLine | Rejection]:
    """``items`` passed on as they come, their sales lines also made into ``rows`` (a batch at
    a time: one call per line would cost more than the row)."""
    batch: list[SalesLine] = []
    for item in items:
        if type(item) is SalesLine:
            batch.append(item)
            if len(batch) == _ROWS_BATCH:
                rows.add(batch)
                batch = []
        yield item
    rows.add(batch)


def report_tail(parsed: ParsedReport, counts: Counts, on_rejected: str) -> ReportTail:
    """What the whole file told, and whether the report is held (and why)."""
    reconciled, mismatches = parsed.reconciliation()
    holds: list[str] = []
    if reconciled is False:
        holds.append("its totals do not match the file's own: " + "; ".join(mismatches))
    if counts.rejected and on_rejected == "hold":
        holds.append(f'{counted(counts.rejected, "line")} rejected (on_rejected = "hold")')
    facts = parsed.facts
    return ReportTail(
        period_from=facts.period_from,
        period_to=facts.period_to,
        business_model=facts.business_model,
        currencies=tuple(sorted(facts.currencies)),
        lines_read=parsed.lines_read,
        totals=_totals(parsed),
        stated_totals=_stated(parsed),
        reconciled=reconciled,
        hold_reason="; ".join(holds) or None,
    )


def describe(report: SalesReportRecord, made: SalesImportRecord | None) -> str:
    """One sentence on what became of a report (the intake row's reason)."""
    what = f"sales report {report.id} ({report.layout} {report.layout_version}) {report.status}"
    if report.status == "duplicate":
        return f"{what}: the same bytes as report {report.duplicate_of}"
    parts = [f"{report.accepted} accepted", f"{report.rejected} rejected"]
    if report.duplicate_lines:
        parts.append(f"{report.duplicate_lines} already loaded by report {report.duplicate_of}")
    text = f"{what}: " + ", ".join(parts)
    if report.status == "held":
        text += f"; held: {report.reason}"
    if made is not None:
        text += f"; import {made.id}: {counted(made.lines, 'line')}"
        if made.path:
            text += f" in {made.path}"
    return text


# --- import files --------------------------------------------------------------------------


def partner_folder(outbox: Path, flow: str, partner: str) -> Path:
    """Where the files made from a partner's reports go: ``<outbox>/<flow>/<partner>/``."""
    return outbox / flow / partner


def _stem(report: SalesReportRecord) -> str:
    """The report's own file name without its extensions, which finance recognises."""
    return Path(report.name).name.split(".", 1)[0] or "report"


def import_path(outbox: Path, report: SalesReportRecord, imp: SalesImportRecord) -> Path:
    """Where a report's import file goes (``partner_folder``), named after the report's own
    file (which finance recognises) and the import's id (unique)."""
    folder = partner_folder(outbox, report.flow, report.partner)
    return folder / f"{_stem(report)}.import-{imp.id}.xlsx"


def import_rows(s: SalesSettings, flow: str, partner: str) -> consonance_import.ImportRows | None:
    """Where a report's import rows are made while it loads, in the folder its import file
    will go to (``import_path``). None when its import file is made later (per period), or
    that folder cannot be made: the file is then written from the ledger after the load (and
    any error about the folder comes then, as for any import file)."""
    if not s.per_report:
        return None
    try:
        return consonance_import.ImportRows(
            partner_folder(s.outbox, flow, partner),
            house_currency=s.house_currency,
            source=partner,
        )
    except OSError:
        return None


def period_import_path(outbox: Path, flow: str, period: str, imp: SalesImportRecord) -> Path:
    return outbox / flow / f"period-{period}.import-{imp.id}.xlsx"


def summary_path(path: Path) -> Path:
    """The summary CSV beside an import file (``x.import-4.xlsx`` ->
    ``x.import-4.summary.csv``)."""
    return path.with_name(path.name.removesuffix(".xlsx") + ".summary.csv")


def write_import(
    ledger: SalesLedger,
    imp: SalesImportRecord,
    path: Path,
    *,
    house_currency: str,
    source: str,
    rows: consonance_import.ImportRows | None = None,
) -> SalesImportRecord:
    """Write an import's file (and its summary CSV beside it) atomically from the ledger's
    lines, or from ``rows`` already made of the same lines, and record where and what it
    hashes to. The ledger gives the same lines in the same order whenever asked, so a file
    written again is the same file."""
    if rows is not None:
        written = rows.write(path, summary_path=summary_path(path))
    else:
        written = consonance_import.write_import_file(
            ledger.sales_import_lines(imp.id),
            path,
            house_currency=house_currency,
            source=source,
            summary_path=summary_path(path),
        )
    ledger.set_sales_import_file(imp.id, str(path), written.sha256)
    return replace(imp, path=str(path), sha256=written.sha256)


def emit_report_import(
    ledger: SalesLedger,
    report: SalesReportRecord,
    outbox: Path,
    house_currency: str,
    *,
    rows: consonance_import.ImportRows | None = None,
) -> SalesImportRecord | None:
    """The report's import (made once; its file written when it has lines and is not yet
    written). None: the report is not loaded (held, a duplicate, usage or market data).

    ``rows``: the report's sales lines made into rows while it loaded. They are its import
    file when the import holds every one of them (no earlier report had any): the same lines
    in the same order as the ledger would give. Otherwise the file is written from the
    ledger."""
    if report.status != "loaded" or report.kind != "sales":
        return None
    scope = f"report:{report.id}"
    made = [i for i in ledger.list_sales_imports(report_id=report.id) if i.scope == scope]
    imp = made[0] if made else ledger.create_sales_import(flow=report.flow, report_id=report.id)
    if imp.lines and (imp.path is None or not Path(imp.path).exists()):
        path = import_path(outbox, report, imp)
        # Every line of the report made a row; the import holds as many only when none of
        # them was an earlier report's.
        whole = rows is not None and rows.error is None and rows.count == imp.lines
        imp = write_import(
            ledger,
            imp,
            path,
            house_currency=house_currency,
            source=report.partner,
            rows=rows if whole else None,
        )
    return imp


USAGE_HEADERS = (
    "ISBN",
    "Period from",
    "Period to",
    "Metric",
    "Count",
    "Country",
    "Institution",
    "Title",
    "Line",
)


def write_usage_csv(ledger: SalesLedger, report: SalesReportRecord, outbox: Path) -> Path:
    """A usage (or market-data) report's lines as a CSV beside the import files (never an
    import file): ``<outbox>/<flow>/<partner>/<stem>.usage-<report id>.csv``, written
    atomically once (a re-run finds it there)."""
    folder = partner_folder(outbox, report.flow, report.partner)
    path = folder / f"{_stem(report)}.usage-{report.id}.csv"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(USAGE_HEADERS)
        for u in ledger.usage_lines(report.id):
            writer.writerow(
                [
                    u.isbn13,
                    u.period_from.isoformat(),
                    u.period_to.isoformat(),
                    u.metric,
                    u.count,
                    u.country,
                    u.institution,
                    u.title,
                    u.line,
                ]
            )
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    return path


def export_period(
    ledger: SalesLedger, *, flow: str, period: str, outbox: Path, house_currency: str
) -> SalesImportRecord:
    """One import file for every loaded report of a period (``YYYY-MM``): the lines of those
    reports that are new and in no import file yet."""
    month_period(period)  # a ValueError for anything but YYYY-MM
    imp = ledger.create_sales_import(flow=flow, period=period)
    if imp.lines:
        path = period_import_path(outbox, flow, period, imp)
        # A period's import mixes partners: its Source column is left for finance to fill.
        imp = write_import(ledger, imp, path, house_currency=house_currency, source="")
    return imp
