"""The sales ledger port: every sales report taken in, every line loaded from it, exactly once,
and every Consonance import file made from them.

Consonance's sales importer only adds rows, so a line emitted twice pays an author twice. The
ledger keys each report by (partner, SHA-256 of its bytes) and each accepted line by
(partner, layout, the line's ``identity``, its occurrence among equal lines of its report): a
report re-sent under another name, or overlapping an earlier one, adds no line twice. Lines go
into an import file once (``create_sales_import``), whatever file they were first written in.

Synchronous, like the rest of the store; async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from consonance_sftp.formats.sales.lines import Rejection, SalesLine, UsageLine

ReportStatus = Literal["loaded", "held", "duplicate", "usage", "withdrawn"]
"""``loaded``: its new lines may go into import files. ``held``: kept out of import files until
a person releases it (rejected lines under ``on_rejected = "hold"``, totals that do not
reconcile). ``duplicate``: the same bytes as an earlier report (``duplicate_of``); nothing
loaded. ``usage``: a usage or market-data report: its lines are in the usage ledger, never in
an import file. ``withdrawn``: a held report read again (``sales reread``) as a new report,
which took its intake row; its lines are gone."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportHead:
    """What is known of a report before its lines are read: where it came from, its bytes,
    its layout."""

    flow: str
    partner: str
    name: str  # the file's name as the partner sent it
    original_path: str  # where the untouched original is kept (the intake store)
    intake_id: int | None  # the intake ledger row it came in as (None: loaded by hand)
    sha256: str
    layout: str
    layout_version: str
    kind: str  # "sales" | "usage" | "market"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportTail:
    """What is known once every line has been read (``load_sales_report`` asks for it then,
    inside its transaction)."""

    period_from: date | None
    period_to: date | None
    business_model: str
    currencies: tuple[str, ...]
    lines_read: int  # data lines in the file (accepted + rejected)
    # Sums of the accepted lines and the file's own totals, per currency:
    # {"GBP": {"quantity": "12", "value": "10.50", ...}} (decimals as strings, JSON-friendly)
    totals: dict[str, dict[str, str]]
    stated_totals: dict[str, dict[str, str]]
    reconciled: bool | None  # None: the file states no totals
    hold_reason: str | None  # not None: the report is held, with this reason


@dataclass(frozen=True, slots=True, kw_only=True)
class SalesReportRecord:
    id: int
    flow: str
    partner: str
    name: str
    original_path: str
    intake_id: int | None
    sha256: str
    layout: str
    layout_version: str
    kind: str
    period_from: date | None
    period_to: date | None
    business_model: str
    currencies: tuple[str, ...]
    status: ReportStatus
    reason: str | None  # why held / whose duplicate, in a sentence
    lines_read: int
    accepted: int
    rejected: int
    duplicate_lines: int  # accepted lines an earlier report had already loaded
    duplicate_of: int | None  # the earlier report these bytes or (first) lines came in
    totals: dict[str, dict[str, str]]
    stated_totals: dict[str, dict[str, str]]
    reconciled: bool | None
    created_at: datetime
    details: dict[str, Any] = field(default_factory=dict)
    # Who released a held report, and when (None: never held, or not released yet).
    released_at: datetime | None = None
    released_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredSalesLine:
    report_id: int
    line: SalesLine
    duplicate_of_report: int | None  # None: this line is new (it may go into an import file)
    import_id: int | None  # the import file it went into


@dataclass(frozen=True, slots=True, kw_only=True)
class SalesImportRecord:
    id: int
    flow: str
    scope: str  # "report:<id>" or "period:YYYY-MM"
    lines: int
    path: str | None  # set once the file is written
    sha256: str | None
    created_at: datetime


class SalesLedger(Protocol):
    def find_sales_report(self, partner: str, sha256: str) -> SalesReportRecord | None:
        """The first report of these bytes from this partner, if any."""
        ...

    def find_sales_report_for_intake(self, intake_id: int) -> SalesReportRecord | None:
        """The report an intake row was loaded as (a replayed hand-off finds its work done)."""
        ...

    def get_sales_report(self, report_id: int) -> SalesReportRecord | None: ...

    def list_sales_reports(
        self, *, partner: str | None = None, period: str | None = None, limit: int = 200
    ) -> list[SalesReportRecord]:
        """Newest first; ``period`` ``YYYY-MM`` keeps reports whose period overlaps that month."""
        ...

    def load_sales_report(
        self,
        head: ReportHead,
        items: Iterable[SalesLine | UsageLine | Rejection],
        finish: Callable[[], ReportTail],
        *,
        replaces: int | None = None,
        by: str = "",
    ) -> SalesReportRecord:
        """Record the report and all its lines in **one transaction** (a crash leaves nothing
        of it): ``items`` is streamed (memory stays flat however long the report), then
        ``finish()`` gives what only the whole file tells (period, totals, hold). Same bytes
        from the same partner as an earlier report: recorded as a ``duplicate`` of it,
        ``items`` not read. Each accepted line whose key an earlier report holds is kept as a
        duplicate of that report's line. An intake row already loaded returns that report
        unchanged (a replayed step). ``replaces``: a held report this one is read again for
        (``by`` whom): in the same transaction its lines go and it becomes ``withdrawn``."""
        ...

    def sales_report_lines(
        self, report_id: int, *, include_duplicates: bool = True
    ) -> Iterator[StoredSalesLine]:
        """A report's accepted lines in file order."""
        ...

    def sales_report_rejections(self, report_id: int) -> list[Rejection]: ...

    def release_sales_report(self, report_id: int, by: str) -> SalesReportRecord:
        """A held report becomes ``loaded`` (its new lines may go into import files)."""
        ...

    def create_sales_import(
        self, *, flow: str, report_id: int | None = None, period: str | None = None
    ) -> SalesImportRecord:
        """In one transaction: a new import and every line of the report (or of the loaded
        reports whose period overlaps ``YYYY-MM``) that is new, not held and in no import yet,
        assigned to it. An import with no lines is still recorded (``lines == 0``)."""
        ...

    def sales_import_lines(self, import_id: int) -> Iterator[SalesLine]:
        """The lines assigned to an import, in (report, line) order: the same rows whenever
        asked, so a file lost before it was written is written again identically."""
        ...

    def set_sales_import_file(self, import_id: int, path: str, sha256: str) -> None: ...

    def list_sales_imports(self, *, report_id: int | None = None) -> list[SalesImportRecord]: ...

    def usage_lines(self, report_id: int) -> Iterator[UsageLine]: ...


def decimal_str(value: Decimal) -> str:
    """A decimal as the ledger's JSON keeps it (no exponent)."""
    return format(value, "f")
