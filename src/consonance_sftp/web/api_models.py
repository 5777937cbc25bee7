"""What the console's JSON API (web/api.py) answers: one pydantic model per response, so the
OpenAPI schema (``/api/openapi.json``) says each field's type, and the one error body.

Every model forbids fields it does not name: a route that returns a field its model lacks, or a
value of the wrong type, fails FastAPI's response validation (a 500, which the tests catch)
instead of changing the API unannounced. Times are ISO 8601 with their UTC offset (``date-time``
in the schema); a closed set of values is an enum.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from consonance_sftp.app.vocabulary import (
    AlertSeverity,
    DeliveryOutcome,
    IntakeOutcome,
    Verification,
    WorkState,
)


class Out(BaseModel):
    """A response model: no field it does not name."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(Out):
    """A refusal (401, 403, 404, 409): what was refused and why, in words. (A request that does
    not fit the schema is answered 422 with FastAPI's list of the fields at fault.)"""

    detail: str


class Done(Out):
    """An act done."""

    ok: bool = True
    message: str = Field(description="What was done, in words.")


# --- the ledger and the title timeline ---------------------------------------------------------


class Delivery(Out):
    """One row of the delivery ledger: one file sent (or to be sent) to one partner."""

    id: int | None
    flow: str
    partner: str
    remote_path: str
    sha256: str
    size: int = Field(description="Bytes.")
    generation: int = Field(description="0, then one up per resend.")
    source: str | None
    package: str | None = Field(description="The package's label.")
    isbn: str | None
    asset_version_id: int | None
    workflow_id: str | None
    executor_id: str | None
    trigger: str | None = Field(description='"schedule", "manual:<user>", an event, ...')
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    outcome: DeliveryOutcome
    error: str | None = Field(description="The last error of a failed row.")
    verified_by: Verification | None = Field(
        description="How the partner's copy was proven to be these bytes."
    )
    created_at: datetime | None


class AssetVersion(Out):
    """One version of a title's asset, as taken in (from a partner, or from Consonance)."""

    id: int | None
    work_id: int
    product_id: int | None
    kind: str
    version: int | None
    sha256: str
    size: int
    source: str | None = Field(description='"consonance", "intake:<partner>", "derived", ...')
    local_path: str | None
    derived_from: int | None
    approved_at: datetime | None
    superseded_by: int | None
    created_at: datetime | None
    isbn: str | None
    partner: str | None
    original_name: str | None
    intake_id: int | None


class Timeline(Out):
    """What went where for one title, and what came in, oldest first."""

    isbn: str
    sent: list[Delivery]
    received: list[AssetVersion]


# --- overview, failures, flows -------------------------------------------------------------------


class FlowState(enum.StrEnum):
    SCHEDULED = "scheduled"
    ON_EVENTS = "on events"
    PAUSED = "paused"
    DISABLED = "disabled"
    UNSCHEDULED = "unscheduled"  # can never fire by itself: runs only by hand


class FlowRow(Out):
    name: str
    kind: str
    state: FlowState
    partners: list[str]
    last_run: datetime | None = Field(description="The flow's latest ledger row.")
    last_outcome: DeliveryOutcome | None
    next_run: datetime | None


class WorkItem(Out):
    """A piece of the engine's durable work that is not done (``retry`` takes its ID)."""

    workflow_id: str
    owner: str = Field(description="Its partner or flow.")
    state: WorkState
    reason: str = Field(description='Why it failed ("" unless failed).')


class Pause(Out):
    scope: Literal["partner", "flow"]
    name: str
    paused: bool
    by: str
    reason: str
    at: datetime


class Alert(Out):
    id: int
    ts: datetime
    severity: AlertSeverity
    kind: str
    message: str
    partner: str | None
    flow: str | None
    details: dict[str, Any]
    acknowledged_at: datetime | None
    acknowledged_by: str | None


class Hint(Out):
    """A configuration hint: what is wrong, and where the fix is described."""

    text: str
    fix: str = Field(description="A command or a doc path.")
    link: str = Field(description='The console page where it is fixed, or "".')


class FailingTarget(Out):
    """A notification target whose latest send failed."""

    target: str
    since: datetime
    error: str
    failures: int


class Overview(Out):
    executor_running: bool = Field(description="A service (serve, worker) carries out acts.")
    engine_started: bool
    problem: str | None = Field(description="Why the engine's records could not be read.")
    flows: list[FlowRow]
    failed: list[WorkItem]
    quarantine: int = Field(description="Files waiting in quarantine.")
    held: int = Field(description="Deliveries held (a pause, a closed window).")
    paused: list[Pause]
    alerts: list[Alert]
    hints: list[Hint]
    notify_targets: list[str]
    notify_failing: list[FailingTarget]


class Failures(Out):
    work: list[WorkItem] = Field(description="Failed durable work: retry runs it again.")
    rows: list[Delivery] = Field(description="Failed ledger rows: resend sends them again.")
    problem: str | None


# --- quarantine, partners, audit -----------------------------------------------------------------


class QuarantinedFile(Out):
    """A file taken in and held for a person, with its reason in words (``label``)."""

    id: int | None
    partner: str
    remote_path: str
    size: int
    remote_mtime: float = Field(description="The server's mtime, seconds since the epoch.")
    flow: str | None
    sha256: str | None
    local_path: str | None
    outcome: IntakeOutcome
    reason: str | None
    label: str
    work_id: int | None
    product_id: int | None
    received_at: datetime | None
    name_note: str | None
    name_nfc: str | None
    raw_name: str | None = Field(description="The name's bytes (hex) when not UTF-8.")
    supersedes: int | None


class Partner(Out):
    """One partner's health."""

    name: str
    address: str = Field(description="user@host:port")
    host_keys: list[str] = Field(description="The pinned keys: type and SHA-256 fingerprint.")
    pinned_at: datetime | None = Field(description="The latest `partner trust`.")
    window: str = Field(description='"22:00-06:00 Europe/London", or "" for any time.')
    paused: bool
    paused_by: str
    paused_reason: str
    last_sent: Delivery | None
    last_failed: Delivery | None
    probed_at: datetime | None = Field(description="When `partner probe` last ran.")
    probe_summary: str


class AuditEvent(Out):
    chain_id: str
    seq: int
    ts: datetime
    actor: str = Field(description='"user:<name>", "system", ...')
    action: str = Field(description="One of the actions in docs/how-to/audit.md.")
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditProblem(Out):
    chain_id: str
    seq: int | None
    kind: str = Field(description='"edited", "missing", "reordered", "truncated", ...')
    message: str
    table: str = Field(description="audit_events, audit_registry, delivery_ledger, intake_ledger")
    row: int | None = Field(description="The ledger row's id.")


class AuditChainHead(Out):
    chain_id: str
    writer: str
    started_at: datetime
    seq: int
    hash: str


class AuditReport(Out):
    ok: bool = Field(description="No problem found.")
    events: int
    chains: int
    problems: list[AuditProblem]
    heads: list[AuditChainHead]
    ledger_rows: int = Field(description="Ledger rows compared with the trail.")


# --- flows: dry run and run now ------------------------------------------------------------------


class PlannedFile(Out):
    remote_path: str
    size: int
    sha256: str


class PlannedPackage(Out):
    partner: str
    label: str
    files: list[PlannedFile]


class Withdrawal(Out):
    partner: str
    label: str
    remote_paths: list[str]


class Skipped(Out):
    what: str
    why: str


class DryRun(Out):
    """The exact files each partner would receive from a run now."""

    flow: str
    packages: list[PlannedPackage]
    withdrawals: list[Withdrawal]
    skipped: list[Skipped]
    notes: list[str]


class RunFailure(Out):
    workflow_id: str
    error: str


class HeldPackage(Out):
    package: str
    partner: str
    why: str


class RunNow(Out):
    """What a run now started, with its outcome where known."""

    flow: str
    summary: str = Field(description='"2 done, 0 failed, 1 held, 0 skipped", in words.')
    sent: list[str] = Field(description="Workflow IDs done.")
    failed: list[RunFailure]
    queued: list[str] = Field(description="Workflow IDs handed over, outcome not known yet.")
    held: list[HeldPackage]
    skipped: list[Skipped]
