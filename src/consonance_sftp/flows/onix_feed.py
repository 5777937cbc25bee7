"""Flow 2, ONIX feeds: full, delta and test feeds per recipient, validated before they leave.

The service calls two functions (``run FLOW``, ``serve`` schedules):

1. ``prepare_onix_feed(api, store, name, flow, now=, staging=, force_full=, test=)`` reads the
   catalogue once through the Consonance API and streams it into one ONIX message per partner
   of the flow (each partner's own rules: filters, prices, notification types, version, file
   name, compression). Every message is validated while it is written (the bundled EDItEUR XSD
   plus the recipient's rules, in a second process). It returns the packages to deliver
   (``OnixFeedPackage``, a ``flows.base.Outbound``: give each to
   ``app.dispatch.delivery_request``) and a ``FeedReport`` saying, per partner, what the message
   holds or why nothing goes: an invalid message is never returned as a package; the report
   names product, element and reason, and an alert and an audit event are recorded. With the
   recipient's ``on_invalid_product = "skip"`` the invalid products are cut from the message
   instead and the rest goes; each is named (ISBN, reason) in the report, an audit event and
   one alert per feed. ``FeedReport.incomplete()`` (``PlannedRun.incomplete``) lists what was
   blocked or skipped: ``run`` exits non-zero on it.
2. The recipient's delta baseline, its last sent time and its MessageNumber advance only
   once the engine has delivered the message, whoever delivers it: ``prepare_onix_feed``
   keeps what the message will make them as a *pending* message, and the registry's
   after-delivery hook (``after_delivery``, run as the engine's ledger records the file
   delivered: a first run, a ``retry`` hours later, a recovery after a crash) applies it
   (``flows.onix_baseline``, the recipient's side of the record). ``record_sent(store,
   package)`` does the same from the package, refusing unless the ledger shows the file
   delivered; applying the same message twice changes nothing. A test feed is recorded as a
   test and never advances the baseline.

A delta holds the products whose ONIX content changed since the last successful send to that
recipient, plus notification 05 for products it holds that were deleted, withdrawn or left its
filter. A feed whose send failed leaves the baseline where it was, so the next run carries its
changes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from consonance_sftp.config.flows import OnixFeedFlow, OnixRecipient, SpreadsheetExport
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.flows import onix_baseline
from consonance_sftp.flows.base import FlowContext, PlannedRun
from consonance_sftp.flows.onix_baseline import ACTOR, baseline, next_message_number
from consonance_sftp.formats.onix import (
    Compression,
    FeedMode,
    FeedResult,
    MessageHeader,
    OnixVersion,
    Problem,
    RecipientRules,
    compress,
    remove_skipped,
    write_feed,
)
from consonance_sftp.formats.packaging import PackagePlan, PlannedFile, join_remote, sha256_file
from consonance_sftp.formats.spreadsheet import export_csv, export_xlsx, resolve_columns
from consonance_sftp.formats.wording import counted
from consonance_sftp.logs import get_logger
from consonance_sftp.models import (
    Alert,
    AlertSeverity,
    AuditAction,
    ChangeEvent,
    DeliveryKey,
    DeliveryOutcome,
    FlowKind,
    Work,
)
from consonance_sftp.ports.consonance import ConsonanceAPI
from consonance_sftp.ports.delivery import DeliveryRecord
from consonance_sftp.ports.store import Store

FeedKind = Literal["full", "delta", "test"]
Validation = Literal["process", "inline"]
_CHUNK = 100  # works per hand-over from the API reader to the writer threads
_QUEUE_CHUNKS = 8  # chunks buffered per recipient: memory stays flat whatever the catalogue
_DELIVERED = {DeliveryOutcome.SENT, DeliveryOutcome.SKIPPED}

log = get_logger(__name__)


class FeedNotDelivered(ConsonanceSftpError):
    """``record_sent`` was asked to advance a baseline for a feed the ledger has not seen
    delivered."""


def recipient_rules(config: OnixRecipient) -> RecipientRules:
    """The pure-format rules for one recipient's config (the preset, then the keys set)."""
    values = config.model_dump(exclude={"preset"})
    if config.preset == "google_play_books":
        return RecipientRules.google_play_books(
            **config.model_dump(exclude={"preset"}, exclude_unset=True)
        )
    return RecipientRules.model_validate(values)


@dataclass(frozen=True, slots=True, kw_only=True)
class OnixFeedPackage:
    """One partner's ONIX message, written, validated and planned (a ``flows.base.
    Outbound``). ``state`` is what the recipient holds once it is delivered (None: test)."""

    flow: str
    partner: str
    kind: FeedKind
    file_name: str
    plan: PackagePlan
    result: FeedResult
    sent_at: datetime
    message_number: int | None = None

    @property
    def label(self) -> str:
        return f"onix {self.kind} {self.file_name}"

    @property
    def isbn(self) -> str | None:
        return None  # a feed is many titles

    @property
    def state(self) -> dict[str, str] | None:
        return self.result.state

    def delivery_keys(self, folder: str) -> list[DeliveryKey]:
        """The ledger keys of the files, under the partner's flow folder (e.g. ``/in``)."""
        return self.plan.delivery_keys(self.partner, folder)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpreadsheetPackage:
    """One partner's CSV/XLSX metadata export, planned (a ``flows.base.Outbound``)."""

    flow: str
    partner: str
    file_name: str
    plan: PackagePlan
    rows: int
    sent_at: datetime
    kind: Literal["spreadsheet"] = "spreadsheet"

    @property
    def label(self) -> str:
        return f"metadata spreadsheet {self.file_name}"

    @property
    def isbn(self) -> str | None:
        return None

    def delivery_keys(self, folder: str) -> list[DeliveryKey]:
        return self.plan.delivery_keys(self.partner, folder)


FeedPackage = OnixFeedPackage | SpreadsheetPackage
"""What ``prepare_onix_feed`` returns per partner: ONIX messages and spreadsheet exports."""


@dataclass(slots=True, kw_only=True)
class RecipientOutcome:
    """What one partner's message holds, or why nothing goes to it."""

    partner: str
    kind: FeedKind | Literal["spreadsheet"]
    status: Literal["ready", "empty", "invalid", "failed", "skipped"]
    file_name: str | None = None
    products: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    deleted: int = 0
    filtered_out: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    # products left out under ``on_invalid_product = "skip"``: "ISBN (record): reason"
    skipped: list[str] = field(default_factory=list)

    @property
    def incomplete(self) -> str | None:
        """Why this partner did not get everything (blocked, failed, products skipped), or
        None: ``run`` exits non-zero when any partner has one."""
        if self.status in ("invalid", "failed"):
            what = "blocked" if self.status == "invalid" else "failed"
            return f"{self.partner}: ONIX {self.kind} feed {what}: " + "; ".join(self.problems[:5])
        if self.skipped:
            return (
                f"{self.partner}: {counted(len(self.skipped), 'invalid product')} skipped: "
                + "; ".join(self.skipped[:20])
                + (" ..." if len(self.skipped) > 20 else "")
            )
        return None

    def line(self) -> str:
        text = self._line()
        if self.skipped:
            text += f"; {counted(len(self.skipped), 'invalid product')} skipped, not sent: " + (
                "; ".join(self.skipped[:5])
            )
        return text

    def _line(self) -> str:
        head = f"{self.partner}: {self.kind} {self.status}"
        if self.status == "failed":
            return f"{head}: {'; '.join(self.problems)}"
        if self.kind == "delta":
            counts = (
                f"{counted(self.products, 'product', sep=True)} "
                f"({self.new:,} new, {self.changed:,} changed, "
                f"{self.deleted:,} deletions as 05; {self.unchanged:,} unchanged, "
                f"{self.filtered_out:,} outside the filter)"
            )
        elif self.kind == "test":
            counts = f"{counted(self.products, 'product', sep=True)} (a test sample)"
        else:
            # A full message holds every product the filter passes: new, changed and
            # unchanged mean nothing there.
            counts = (
                f"{counted(self.products, 'product', sep=True)} (every product the filter passes; "
                f"{self.filtered_out:,} outside the filter)"
            )
        if self.status == "ready" and self.kind == "spreadsheet":
            return f"{head}: {self.file_name}, {self.bytes:,} bytes, {self.products} rows"
        if self.status == "ready":
            return f"{head}: {self.file_name}, {self.bytes:,} bytes, {counts}"
        if self.status == "empty":
            return f"{head}: nothing changed since the last send; nothing to send"
        if self.status == "skipped":
            return f"{head}: every product in the message was invalid and skipped; nothing sent"
        problems = counted(len(self.problems), "problem")
        return f"{head}: {problems}, not sent: " + "; ".join(self.problems[:5])


@dataclass(slots=True, kw_only=True)
class FeedReport:
    """The outcome of one run of an ``onix_feed`` flow, one line per partner."""

    flow: str
    works_read: int = 0
    products_read: int = 0
    seconds: float = 0.0
    recipients: list[RecipientOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.incomplete is None for r in self.recipients)

    def incomplete(self) -> list[str]:
        """One line per partner whose feed was blocked, failed or left products out."""
        return [line for r in self.recipients if (line := r.incomplete) is not None]

    def lines(self) -> list[str]:
        return [
            f"flow {self.flow}: read {counted(self.works_read, 'work')}, "
            f"{counted(self.products_read, 'product')} in {self.seconds:.1f} s",
            *(r.line() for r in self.recipients),
        ]


class _Feeder:
    """Hands works from the event loop to one writer thread through a bounded queue."""

    def __init__(self) -> None:
        self.queue: queue.Queue[list[Work] | None] = queue.Queue(_QUEUE_CHUNKS)
        self.stopped = threading.Event()  # the writer ended (finished or failed)

    def works(self) -> Iterator[Work]:
        while (chunk := self.queue.get()) is not None:
            yield from chunk

    def put(self, chunk: list[Work] | None) -> None:
        while not self.stopped.is_set():
            with contextlib.suppress(queue.Full):
                self.queue.put(chunk, timeout=0.2)
                return


@dataclass(slots=True)
class _Job:
    partner: str
    rules: RecipientRules
    kind: FeedKind
    xml_path: Path
    header: MessageHeader
    previous: dict[str, str]
    feeder: _Feeder = field(default_factory=_Feeder)


@dataclass(slots=True)
class _SheetJob:
    partner: str
    export: SpreadsheetExport
    rules: RecipientRules
    path: Path
    feeder: _Feeder = field(default_factory=_Feeder)
    kind: Literal["spreadsheet"] = "spreadsheet"


def _run_sheet(job: _SheetJob) -> int:
    columns = [(job.export.headers.get(c, c), c) for c in job.export.columns]
    try:
        resolve_columns(columns)  # unknown columns fail before anything is written
        job.path.parent.mkdir(parents=True, exist_ok=True)
        if job.export.format == "csv":
            with job.path.open("w", encoding="utf-8", newline="") as sink:
                return export_csv(job.feeder.works(), sink, columns, rules=job.rules)
        return export_xlsx(job.feeder.works(), job.path, columns, rules=job.rules)
    finally:
        _stop(job.feeder)


def _stop(feeder: _Feeder) -> None:
    feeder.stopped.set()
    # Drain so a reader blocked on a full queue can finish.
    with contextlib.suppress(queue.Empty):
        while True:
            feeder.queue.get_nowait()


def _kind(rules: RecipientRules, *, force_full: bool, test: bool) -> FeedKind:
    if test:
        return "test"
    return "full" if force_full or rules.mode is FeedMode.FULL else "delta"


def _run_writer(job: _Job, validate: Validation) -> FeedResult:
    try:
        job.xml_path.parent.mkdir(parents=True, exist_ok=True)
        with job.xml_path.open("wb") as sink:
            return write_feed(
                job.feeder.works(),
                sink,
                rules=job.rules,
                header=job.header,
                previous=job.previous,
                kind=job.kind,
                validate=validate,
            )
    finally:
        _stop(job.feeder)


async def _read_into(
    api: ConsonanceAPI, jobs: Sequence[_Job | _SheetJob], report: FeedReport
) -> None:
    chunk: list[Work] = []
    try:
        async for work in api.iter_works():
            report.works_read += 1
            report.products_read += len(work.products)
            chunk.append(work)
            if len(chunk) >= _CHUNK:
                for job in jobs:
                    await asyncio.to_thread(job.feeder.put, chunk)
                chunk = []
        for job in jobs:
            if chunk:
                await asyncio.to_thread(job.feeder.put, chunk)
    finally:
        for job in jobs:  # end of catalogue (or the reader failed): writers close the message
            await asyncio.to_thread(job.feeder.put, None)


async def prepare_onix_feed(
    api: ConsonanceAPI,
    store: Store,
    name: str,
    flow: OnixFeedFlow,
    *,
    now: datetime,
    staging: Path,
    force_full: bool = False,
    test: bool = False,
    partners: Sequence[str] | None = None,
    validate: Validation = "process",
    dry_run: bool = False,
) -> tuple[list[FeedPackage], FeedReport]:
    """One ONIX message per partner of flow ``name``, written, validated and planned.

    ``force_full``: every product the recipient's filter passes (a forced full resend), not
    only the changes. ``test``: a sample of ``test_sample_size`` products into the flow's
    ``test_folder``, recorded as a test. ``partners``: only these (default: all the flow's).
    Packages are returned only for valid, non-empty messages (empty ones too if the recipient
    wants them). What each package does once delivered (a delta or full message: its
    baseline) is kept pending (not with ``dry_run``: nothing will be sent) until the engine
    records it delivered (``after_delivery``) or ``record_sent`` applies it.
    """
    started = time.monotonic()
    report = FeedReport(flow=name)
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    jobs: list[_Job] = []
    sheets: list[_SheetJob] = []
    for partner in partners or flow.partners:
        rules = recipient_rules(flow.recipient_for(partner))
        folder = staging / name / partner / stamp
        export = flow.spreadsheets.get(partner)
        if export is not None and not test:
            suffix = f".{export.format}"
            sheets.append(_SheetJob(partner, export, rules, folder / f"metadata{suffix}"))
        if export is not None and export.only:
            continue
        kind = _kind(rules, force_full=force_full, test=test)
        previous = (
            {} if kind == "test" else dict(await asyncio.to_thread(baseline, store, name, partner))
        )
        number = (
            None
            if kind == "test"
            else await asyncio.to_thread(next_message_number, store, name, partner)
        )
        header = MessageHeader(
            sender_name=flow.sender_name,
            sent_at=now,
            message_number=number,
            contact_name=flow.contact_name,
            email=flow.email,
            addressee_name=rules.addressee_name,
            default_language=flow.default_language,
            message_note=f"{kind} feed" if kind != "test" else "test feed: not for sale",
        )
        jobs.append(_Job(partner, rules, kind, folder / "message.xml", header, previous))

    loop = asyncio.get_running_loop()
    everything: list[_Job | _SheetJob] = [*jobs, *sheets]
    # Writers get threads of their own: they block on their queues, and must never starve
    # the default executor the reader hands works over with.
    with ThreadPoolExecutor(max(1, len(everything)), thread_name_prefix="onix") as pool:
        writers: list[asyncio.Future[FeedResult | int]] = [
            loop.run_in_executor(pool, _run_writer, job, validate) for job in jobs
        ]
        writers += [loop.run_in_executor(pool, _run_sheet, job) for job in sheets]
        reader = asyncio.ensure_future(_read_into(api, everything, report))
        outcomes = await asyncio.gather(*writers, return_exceptions=True)
        await reader  # a failed catalogue read is the run's failure: raise it
    report.seconds = time.monotonic() - started

    packages: list[FeedPackage] = []
    for job, outcome in zip(everything, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                raise outcome
            report.recipients.append(
                RecipientOutcome(
                    partner=job.partner, kind=job.kind, status="failed", problems=[str(outcome)]
                )
            )
            await asyncio.to_thread(_failed, store, name, job.partner, job.kind, outcome)
            continue
        package: FeedPackage | None
        if isinstance(job, _SheetJob):
            assert isinstance(outcome, int)
            package, line = await asyncio.to_thread(
                _finish_sheet, store, name, flow, job, outcome, now
            )
        else:
            assert isinstance(outcome, FeedResult)
            package, line = await asyncio.to_thread(_finish, store, name, flow, job, outcome, now)
        if package is not None and not dry_run:
            await asyncio.to_thread(_keep_pending, store, package)
        report.recipients.append(line)
        if package is not None:
            packages.append(package)
    return packages, report


def _finish_sheet(
    store: Store, name: str, flow: OnixFeedFlow, job: _SheetJob, rows: int, now: datetime
) -> tuple[SpreadsheetPackage, RecipientOutcome]:
    file_name = (
        _safe_name(
            job.export.file_name.format(sender=flow.sender_name, recipient=job.partner, sent=now)
        )
        + f".{job.export.format}"
    )
    source = job.path.with_name(file_name)
    job.path.replace(source)
    size, digest = sha256_file(source)
    plan = PackagePlan(
        files=(
            PlannedFile(
                role="asset", remote_path=file_name, size=size, sha256=digest, source=source
            ),
        ),
        planned_at=now,
    )
    store.append_audit(
        ACTOR,
        "onix.spreadsheet.prepared",
        f"{job.partner}:{name}",
        {"file": file_name, "sha256": digest, "bytes": size, "rows": rows},
    )
    package = SpreadsheetPackage(
        flow=name, partner=job.partner, file_name=file_name, plan=plan, rows=rows, sent_at=now
    )
    line = RecipientOutcome(
        partner=job.partner,
        kind="spreadsheet",
        status="ready",
        file_name=file_name,
        products=rows,
        bytes=size,
    )
    return package, line


def _safe_name(value: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in value).strip("._") or "x"


def _outcome(job: _Job, result: FeedResult, status: str, file_name: str | None) -> RecipientOutcome:
    return RecipientOutcome(
        partner=job.partner,
        kind=job.kind,
        status=status,  # type: ignore[arg-type]
        file_name=file_name,
        products=result.products,
        new=result.new,
        changed=result.changed,
        unchanged=result.unchanged,
        deleted=len(result.deleted),
        filtered_out=result.filtered_out,
        bytes=result.bytes,
        problems=[str(p) for p in result.report.problems],
        skipped=[_skipped_text(p) for p in result.skipped],
    )


def _skipped_text(problem: Problem) -> str:
    who = problem.isbn13 or problem.record_reference or "?"
    if problem.isbn13 and problem.record_reference not in (None, problem.isbn13):
        who = f"ISBN {problem.isbn13} ({problem.record_reference})"
    elif problem.isbn13:
        who = f"ISBN {problem.isbn13}"
    return f"{who}: {problem.element}: {problem.reason}"


def _skipped(store: Store, name: str, job: _Job, result: FeedResult) -> None:
    """The feed policy ``skip`` left products out: on the audit trail, and one alert for the
    feed naming every skipped product (ISBN and reason)."""
    skipped = [_skipped_text(p) for p in result.skipped]
    isbns = [p.isbn13 or p.record_reference or "?" for p in result.skipped]
    listed = ", ".join(isbns[:50]) + (" ..." if len(isbns) > 50 else "")
    store.append_audit(
        ACTOR,
        AuditAction.ONIX_FEED_SKIPPED,
        f"{job.partner}:{name}",
        {
            "kind": job.kind,
            "skipped": [
                {
                    "isbn": p.isbn13,
                    "record_reference": p.record_reference,
                    "element": p.element,
                    "reason": p.reason,
                }
                for p in result.skipped
            ],
        },
    )
    if result.all_skipped:
        # Nothing of what changed reaches the recipient: the same incident as a blocked feed.
        kind = "onix_invalid"
        message = (
            f"the ONIX {job.kind} feed for {job.partner} carried no product: every one "
            f"({counted(len(skipped), 'invalid product')}) was skipped: {listed}; "
            + ("an empty message was sent (send_empty)" if result.should_send else "nothing sent")
        )
    else:
        kind = "onix_skipped"
        message = (
            f"the ONIX {job.kind} feed for {job.partner} left out "
            f"{counted(len(skipped), 'invalid product')}: {listed}"
        )
    store.raise_alert(
        Alert(
            severity=AlertSeverity.WARNING,
            kind=kind,
            message=message,
            partner=job.partner,
            flow=name,
            details={"skipped": "; ".join(skipped[:100])},
        )
    )


def _finish(
    store: Store,
    name: str,
    flow: OnixFeedFlow,
    job: _Job,
    result: FeedResult,
    now: datetime,
) -> tuple[OnixFeedPackage | None, RecipientOutcome]:
    subject = f"{job.partner}:{name}"
    if result.empty and job.rules.onix_version is OnixVersion.V21:
        # ONIX 2.1 has no NoProduct: an empty 2.1 message cannot be valid, so it is never
        # sent (even to a recipient that asks for empty files), and is no fault of the data.
        result.report.problems.clear()
        result.send_empty = False
    if not result.report.ok:
        line = _outcome(job, result, "invalid", None)
        _blocked(store, name, job, result, line)
        return None, line
    if result.skipped:
        remove_skipped(job.xml_path, result)
        _skipped(store, name, job, result)
    if not result.should_send:
        if result.skipped:  # every product was skipped: an incident (alerted), not "empty"
            return None, _outcome(job, result, "skipped", None)
        line = _outcome(job, result, "empty", None)
        store.append_audit(
            ACTOR,
            "onix.feed.empty",
            subject,
            {"kind": job.kind, "unchanged": result.unchanged, "filtered_out": result.filtered_out},
        )
        return None, line
    file_name = job.rules.render_file_name(
        sender=flow.sender_name, recipient=job.partner, sent=now, kind=job.kind
    )
    source = job.xml_path
    if job.rules.compression is not Compression.NONE:
        inner = file_name.rsplit(".", 1)[0]  # the message's own name inside the archive
        source = job.xml_path.with_name(file_name)
        with job.xml_path.open("rb") as raw, source.open("wb") as packed:
            compress(raw, packed, job.rules.compression, inner)
        job.xml_path.unlink()
    size, digest = sha256_file(source)
    remote = join_remote(flow.test_folder, file_name) if job.kind == "test" else file_name
    plan = PackagePlan(
        files=(
            PlannedFile(
                role="asset",
                remote_path=remote.lstrip("/"),
                size=size,
                sha256=digest,
                source=source,
            ),
        ),
        planned_at=now,
    )
    package = OnixFeedPackage(
        flow=name,
        partner=job.partner,
        kind=job.kind,
        file_name=file_name,
        plan=plan,
        result=result,
        sent_at=now,
        message_number=job.header.message_number,
    )
    line = _outcome(job, result, "ready", file_name)
    store.append_audit(
        ACTOR,
        "onix.test_feed.prepared" if job.kind == "test" else "onix.feed.prepared",
        subject,
        {
            "kind": job.kind,
            "file": remote,
            "sha256": digest,
            "bytes": size,
            "products": result.products,
            "new": result.new,
            "changed": result.changed,
            "deleted": len(result.deleted),
            "onix_version": str(job.rules.onix_version),
        },
    )
    return package, line


def _blocked(
    store: Store, name: str, job: _Job, result: FeedResult, line: RecipientOutcome
) -> None:
    problems = line.problems
    # the blocking products by ISBN (record reference when there is none), each once
    blocking = list(
        dict.fromkeys(p.isbn13 or p.record_reference or "?" for p in result.report.first_problems)
    )
    store.append_audit(
        ACTOR,
        "onix.feed.blocked",
        f"{job.partner}:{name}",
        {
            "kind": job.kind,
            "invalid_products": result.report.invalid_products,
            "problems": problems[:50],
            "truncated": result.report.truncated or len(problems) > 50,
        },
    )
    store.raise_alert(
        Alert(
            severity=AlertSeverity.WARNING,
            kind="onix_invalid",
            message=(
                f"the ONIX {job.kind} feed for {job.partner} was not sent: "
                f"{counted(len(problems), 'problem')} in "
                f"{counted(len(result.report.invalid_products), 'product')}"
                + (f" ({', '.join(blocking[:50])})" if blocking else "")
            ),
            partner=job.partner,
            flow=name,
            details={"problems": "; ".join(problems[:20])},
        )
    )


def _failed(store: Store, name: str, partner: str, kind: str, exc: Exception) -> None:
    store.append_audit(
        ACTOR, "onix.feed.failed", f"{partner}:{name}", {"kind": kind, "error": str(exc)}
    )
    store.raise_alert(
        Alert(
            severity=AlertSeverity.WARNING,
            kind="onix_failed",
            message=f"the ONIX {kind} output for {partner} could not be written: {exc}",
            partner=partner,
            flow=name,
        )
    )


def record_sent(
    store: Store,
    package: FeedPackage,
    *,
    folder: str,
    workflow_id: str | None = None,
) -> None:
    """After the engine delivered ``package``: advance the recipient's delta baseline.

    ``folder`` is the remote path of the flow's folder on the partner (the one given to
    ``delivery_request``). Refuses (``FeedNotDelivered``) unless the delivery ledger shows
    every file of the package sent (or already present), so a failed send never advances the
    baseline. A test feed or a spreadsheet is put on the record as sent and leaves the baseline
    alone. Safe to call again, and after the engine's ledger applied the same message
    (``after_delivery``): nothing changes then.
    """
    missing = []
    for key in package.delivery_keys(folder):
        row = store.find_delivery(key)
        if row is None or row.outcome not in _DELIVERED:
            missing.append(f"{key.remote_path}: {row.outcome if row else 'not in the ledger'}")
    if missing:
        raise FeedNotDelivered(
            f"the ONIX {package.kind} feed for {package.partner} is not delivered; its delta "
            "baseline stays where it was",
            hint="; ".join(missing),
        )
    details: dict[str, object] = {
        "kind": package.kind,
        "file": package.plan.files[0].remote_path,
        "sha256": package.plan.files[0].sha256,
        "workflow_id": workflow_id,
    }
    digest = package.plan.files[0].sha256
    if isinstance(package, SpreadsheetPackage):
        details["products"] = package.rows
        onix_baseline.record_test_or_sheet(store, package.flow, package.partner, digest, details)
        return
    details["products"] = package.result.products
    if package.kind == "test" or package.state is None:
        onix_baseline.record_test_or_sheet(store, package.flow, package.partner, digest, details)
        return
    found = onix_baseline.pending(store, package.flow, package.partner, digest)
    if found is None and (
        onix_baseline.last_sent(store, package.flow, package.partner) == package.sent_at
    ):
        return  # already applied (by the engine's ledger, as it recorded the delivery)
    onix_baseline.advance(
        store,
        package.flow,
        package.partner,
        sent_at=package.sent_at,
        message_number=package.message_number,
        state=package.state,
        details=details,
    )
    onix_baseline.drop_pending(store, package.flow, package.partner, digest, package.sent_at)


def _keep_pending(store: Store, package: FeedPackage) -> None:
    """Keep what delivering ``package`` will do (``onix_baseline.keep_pending``)."""
    if isinstance(package, SpreadsheetPackage):
        number, products, state = None, package.rows, None
    else:
        number, products, state = package.message_number, package.result.products, package.state
    onix_baseline.keep_pending(
        store,
        package.flow,
        package.partner,
        package.plan.files[0].sha256,
        kind=package.kind,
        file=package.file_name,
        sent_at=package.sent_at,
        message_number=number,
        products=products,
        state=state,
    )


async def plan(
    ctx: FlowContext,
    name: str,
    flow: OnixFeedFlow,
    isbns: Sequence[str],
    event: ChangeEvent | None,
) -> PlannedRun:
    """Flow 2: one ONIX message per recipient (delta by default), validated before it goes;
    the recipient's delta baseline advances only once the engine has delivered it
    (``after_delivery``)."""
    if isbns:
        raise ConsonanceSftpError(
            f"flow {name!r} (onix_feed) sends whole feeds, not single titles",
            hint=f"consonance-sftp run {name} [--full] [--test]",
        )
    packages, report = await prepare_onix_feed(
        ctx.api,
        ctx.store,
        name,
        flow,
        now=ctx.now,
        staging=ctx.state_dir / "onix" / name,
        force_full=ctx.force_full,
        test=ctx.test,
        dry_run=ctx.dry_run,
    )
    return PlannedRun(
        flow=name,
        kind=FlowKind.ONIX_FEED.value,
        outbounds=list(packages),
        notes=report.lines(),
        incomplete=report.incomplete(),
    )


def after_delivery(store: Store, record: DeliveryRecord) -> None:
    """The registry's after-delivery hook, run as the engine's ledger records a file of the
    flow delivered: a prepared message applies (``onix_baseline.feed_delivered``): a feed's
    baseline and MessageNumber advance, a test feed or spreadsheet is recorded as sent."""
    onix_baseline.feed_delivered(store, record.flow, record.key, record.workflow_id)
