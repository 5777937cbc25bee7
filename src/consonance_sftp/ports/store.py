"""Store port: our own records (ledgers, versions, audit trail, alerts) as the engine and flows
see them.

The methods are synchronous (SQLAlchemy underneath); async code calls them through
``asyncio.to_thread`` where a slow database would stall the event loop. Every failure of the
database comes out as ``errors.StoreError`` (tampering found by ``verify_audit`` is reported, and
raised as ``errors.AuditTamperError`` only by ``verify_audit_or_raise``).

The records below (and ``ports.delivery.DeliveryRecord``, the delivery ledger's row, which the
engine builds) are plain values: ``id`` is ``None`` until the store has saved them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from consonance_sftp.models import (
    Alert,
    AlertSeverity,
    DeliveryKey,
    DeliveryOutcome,
    IntakeOutcome,
    Verification,
)
from consonance_sftp.ports.delivery import DeliveryRecord
from consonance_sftp.ports.finance import FinanceLedger
from consonance_sftp.ports.sales import SalesLedger
from consonance_sftp.ports.snapshots import SnapshotStore
from consonance_sftp.ports.users import ConsoleUsers

JsonValue = Any
"""What audit details and alert details may hold: str, int, float, bool, None, lists, dicts."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeRecord:
    """One file received from a partner: one row of the intake ledger.

    Unique on (partner, remote_path, size, remote_mtime): the same listing entry seen again on the
    next poll is the same row, so a file is never taken in twice.
    """

    partner: str
    remote_path: str
    size: int
    remote_mtime: float
    flow: str | None = None
    sha256: str | None = None
    local_path: str | None = None
    outcome: IntakeOutcome = IntakeOutcome.STORED
    reason: str | None = None
    work_id: int | None = None
    product_id: int | None = None
    received_at: datetime | None = None
    # What a person should know about the name (NFD form, mixed scripts, bytes that are not
    # UTF-8), the NFC form of the name when it differs, the original name's bytes (hex) when
    # they are not UTF-8 (``remote_path`` then shows them as ``\xNN``), and the id of the
    # earlier, incomplete version of this file that this one completes.
    name_note: str | None = None
    name_nfc: str | None = None
    raw_name: str | None = None
    supersedes: int | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetVersion:
    """One version of an asset (interior PDF, cover, EPUB, ...) of a work or one of its products.

    Versions count up from 1 per (work_id, product_id, kind); adding a version marks the previous
    current one as superseded by it.
    """

    work_id: int
    kind: str
    sha256: str
    size: int
    product_id: int | None = None
    version: int | None = None  # assigned by the store
    source: str | None = None  # "consonance", "intake:typesetter", "derived", ...
    local_path: str | None = None
    derived_from: int | None = None  # id of the version this one was made from
    approved_at: datetime | None = None
    superseded_by: int | None = None
    created_at: datetime | None = None
    # Where a partner's file came from (migration 0009): the product's ISBN-13 it was matched
    # to, the partner, the name it was uploaded under, its intake ledger row.
    isbn: str | None = None
    partner: str | None = None
    original_name: str | None = None
    intake_id: int | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    """One entry of the append-only, hash-chained audit trail."""

    chain_id: str
    seq: int
    ts: datetime
    actor: str
    action: str
    subject: str
    details: Mapping[str, JsonValue]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditProblem:
    """One thing wrong with the audit trail: the first problem of a chain, or one ledger row.

    ``table`` names where: ``audit_events`` (a chain), ``audit_registry`` (the chain of chains),
    ``delivery_ledger`` or ``intake_ledger`` (then ``row`` is the row's id).
    """

    chain_id: str  # the chain concerned (for a ledger row: the chain that last covered it)
    seq: int | None  # the event concerned (None: the chain as a whole)
    kind: str  # "edited", "missing", "reordered", "truncated", "head_missing", ... (see docs)
    message: str
    table: str = "audit_events"
    row: int | None = None

    def __str__(self) -> str:
        if self.row is not None:
            where = f"{self.table} row {self.row}"
        elif self.table == "audit_registry" and not self.chain_id:
            where = f"audit_registry seq {self.seq}" if self.seq else "audit_registry"
        else:
            where = (
                f"chain {self.chain_id} seq {self.seq}" if self.seq else f"chain {self.chain_id}"
            )
            if self.table != "audit_events":
                where = f"{self.table} {where}"
        return f"{where}: {self.kind}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditChainHead:
    """Where one chain ends, as recorded: copy these elsewhere to anchor the trail."""

    chain_id: str
    writer: str
    started_at: datetime
    seq: int
    hash: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport:
    """What ``verify_audit`` checked and found: per chain its first problem, per ledger row one."""

    events: int
    chains: int
    problems: Sequence[AuditProblem] = ()
    heads: Sequence[AuditChainHead] = ()
    ledger_rows: int = 0  # delivery and intake ledger rows compared with the trail

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRecord:
    """A stored alert."""

    id: int
    ts: datetime
    severity: AlertSeverity
    kind: str
    message: str
    partner: str | None = None
    flow: str | None = None
    details: Mapping[str, JsonValue] = field(default_factory=dict)
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseRecord:
    """A partner's or a flow's pause as last set (a resume keeps who and why)."""

    scope: str  # "partner" or "flow"
    name: str
    paused: bool
    by: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldRecord:
    """A delivery held by a pause or a closed delivery window; open until released."""

    id: int
    partner: str
    flow: str
    package: str
    request: Mapping[str, JsonValue]  # the delivery request as the engine takes it (to_dict)
    reason: str  # why it was held, when it was
    held_at: datetime
    released_at: datetime | None = None
    released_by: str | None = None
    workflow_id: str | None = None  # what the release enqueued


class Store(SnapshotStore, SalesLedger, FinanceLedger, ConsoleUsers, Protocol):
    """Everything the engine and the flows record. Implemented by ``adapters.store.SqlStore``.

    The sales ledger's methods (``ports.sales.SalesLedger``) and the finance ledger's
    (``ports.finance.FinanceLedger``) are part of it, and so are the web console's users and
    sessions (``ports.users.ConsoleUsers``)."""

    # --- delivery ledger -------------------------------------------------------------------

    def record_delivery(self, record: DeliveryRecord) -> DeliveryRecord:
        """Insert the row for (partner, remote_path, sha256, generation), or return the existing
        one unchanged: workflow steps replay, and a replay must not make a second row."""
        ...

    def update_delivery(
        self,
        delivery_id: int,
        *,
        outcome: DeliveryOutcome | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        attempts: int | None = None,
        error: str | None = None,
        workflow_id: str | None = None,
        executor_id: str | None = None,
        verified_by: Verification | None = None,
    ) -> DeliveryRecord:
        """Change the given fields of one row (``None`` leaves a field as it is; ``error=""``
        clears a previous error, e.g. when a retry succeeded)."""
        ...

    def get_delivery(self, delivery_id: int) -> DeliveryRecord | None: ...

    def find_delivery(
        self, key: DeliveryKey, generation: int | None = None
    ) -> DeliveryRecord | None:
        """The row for this key and generation; without a generation, the latest one."""
        ...

    def list_deliveries(
        self,
        *,
        isbn: str | None = None,
        partner: str | None = None,
        flow: str | None = None,
        outcome: DeliveryOutcome | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        package: str | None = None,
        limit: int | None = None,
    ) -> list[DeliveryRecord]:
        """Newest first. ``since``/``until`` bound the start time (or creation, if not started)."""
        ...

    # --- intake ledger ---------------------------------------------------------------------

    def record_intake(self, record: IntakeRecord) -> IntakeRecord:
        """Insert the row for (partner, remote_path, size, remote_mtime), or return the existing
        one unchanged."""
        ...

    def update_intake(
        self,
        intake_id: int,
        *,
        outcome: IntakeOutcome | None = None,
        reason: str | None = None,
        sha256: str | None = None,
        local_path: str | None = None,
        work_id: int | None = None,
        product_id: int | None = None,
        supersedes: int | None = None,
    ) -> IntakeRecord: ...

    def find_intake(
        self, partner: str, remote_path: str, size: int, remote_mtime: float
    ) -> IntakeRecord | None: ...

    def list_intakes(
        self,
        *,
        partner: str | None = None,
        remote_path: str | None = None,
        outcome: IntakeOutcome | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[IntakeRecord]:
        """Newest first."""
        ...

    # --- asset versions --------------------------------------------------------------------

    def add_asset_version(self, version: AssetVersion) -> AssetVersion:
        """Store a new version (its number is the next one for its work/product/kind) and mark
        the previous current version superseded by it."""
        ...

    def get_asset_version(self, version_id: int) -> AssetVersion | None: ...

    def list_asset_versions(
        self, work_id: int, *, product_id: int | None = None, kind: str | None = None
    ) -> list[AssetVersion]:
        """Oldest first. ``product_id=None`` lists the work's versions at every level."""
        ...

    def current_asset_version(
        self, work_id: int, product_id: int | None, kind: str
    ) -> AssetVersion | None:
        """The latest version not superseded (``product_id=None``: the work-level asset)."""
        ...

    def asset_scopes_for_isbn(self, isbn13: str) -> list[tuple[int, int | None]]:
        """The (work_id, product_id) pairs our asset versions record for this ISBN-13 (from
        the versions matched to a product by ISBN), most recent first; empty when none is."""
        ...

    def approve_asset_version(
        self, version_id: int, at: datetime | None = None
    ) -> AssetVersion: ...

    # --- audit trail -----------------------------------------------------------------------

    def append_audit(
        self,
        actor: str,
        action: str,
        subject: str,
        details: Mapping[str, JsonValue] | None = None,
    ) -> AuditEvent:
        """Append one event to this store's own chain (no lock shared with other writers)."""
        ...

    def list_audit(
        self,
        *,
        subject: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
    ) -> list[AuditEvent]:
        """Newest first."""
        ...

    def verify_audit(self) -> AuditReport:
        """Re-check every chain; report the first problem of each."""
        ...

    def verify_audit_or_raise(self) -> AuditReport:
        """Like ``verify_audit``, but raise ``errors.AuditTamperError`` on any problem."""
        ...

    def export_audit(self) -> dict[str, list[dict[str, JsonValue]]]:
        """The raw rows ``verify_audit`` reads (events, chain heads, the chain of chains, the
        ledgers it covers and the asset versions they refer to), table by table, as JSON
        values: what an archive keeps so the trail can be verified on its copy."""
        ...

    # --- alerts ----------------------------------------------------------------------------

    def raise_alert(self, alert: Alert) -> AlertRecord:
        """Record the alert and log it (warning or critical, by its severity)."""
        ...

    def list_alerts(
        self,
        *,
        unacknowledged: bool = False,
        partner: str | None = None,
        kind: str | None = None,
        limit: int | None = None,
    ) -> list[AlertRecord]:
        """Newest first."""
        ...

    def acknowledge_alert(self, alert_id: int, by: str) -> AlertRecord: ...

    # --- ONIX feed state -------------------------------------------------------------------

    def load_onix_hashes(self, flow: str, partner: str) -> dict[str, str]:
        """Record reference -> content hash of every product the recipient (``flow``,
        ``partner``) holds since its last successful send (empty: never sent)."""
        ...

    def save_onix_hashes(self, flow: str, partner: str, hashes: Mapping[str, str]) -> None:
        """Replace the recipient's hashes with ``hashes`` in one transaction (references not
        in it are removed). Call only after the feed was delivered."""
        ...

    # --- operational state: pauses, holds, resend and publication-due marks --------------

    def get_pause(self, scope: str, name: str) -> PauseRecord | None:
        """The pause of partner or flow ``name`` as last set; None: never paused."""
        ...

    def list_pauses(self) -> list[PauseRecord]:
        """Every pause as last set (resumed ones too), by scope and name."""
        ...

    def set_pause(
        self, scope: str, name: str, *, paused: bool, by: str, reason: str
    ) -> PauseRecord:
        """Pause or resume; the change and its ``<scope>.paused``/``.resumed`` audit event
        commit together."""
        ...

    def hold_delivery(self, request: Mapping[str, JsonValue], reason: str) -> HoldRecord:
        """Hold a delivery request (``DeliveryRequest.to_dict``), with a ``delivery.held``
        audit event in the same transaction. The same request held again while held keeps
        its first hold (and its time); the event is recorded each time."""
        ...

    def open_holds(self) -> list[HoldRecord]:
        """The holds not released, oldest first (reads the holds only, not the audit trail)."""
        ...

    def release_hold(
        self,
        hold_id: int,
        *,
        by: str,
        workflow_id: str,
        details: Mapping[str, JsonValue] | None = None,
    ) -> HoldRecord:
        """Close a hold: its release and the ``delivery.released`` audit event commit
        together. Releasing a released hold changes nothing and records nothing."""
        ...

    def get_resend_mark(self, key: DeliveryKey) -> int | None:
        """The generation an explicit resend marked this file with; None: not marked."""
        ...

    def set_resend_mark(self, key: DeliveryKey, generation: int) -> None: ...

    def get_publication_due(self, days: int, product_id: int) -> str | None:
        """The publication date ``product_id`` was last found due for (within ``days``)."""
        ...

    def set_publication_due(self, days: int, product_id: int, publication_date: str) -> None: ...

    # --- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Release the database connections."""
        ...
