"""The finance ledger port: royalty-statement batches taken in, each statement's resolved
payee, its destinations, its state, and the approval that lets a batch leave.

A batch is what finance staff export from one Consonance statement batch (a folder or a zip
of PDFs, one per payee). Each statement moves
``received -> resolved -> approved -> sent`` (or ``failed``), or stops at ``quarantined``
(no payee, or more than one) or ``held`` (a payee with no destination configured); a failed
statement can be sent again. Nothing of a batch is sent before it is approved. Every change
of state is also an audit event (the caller appends it in the same call, see each method).

Synchronous, like the rest of the store; async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

StatementState = Literal[
    "received", "resolved", "held", "quarantined", "approved", "sent", "failed"
]
"""``received``: taken in, not read yet. ``resolved``: matched to exactly one payee with a
destination. ``held``: matched, but the payee has no destination configured (nothing is
guessed; it waits for the config or for e-mail by hand). ``quarantined``: no payee, or the
text names another payee of the batch, or no text to check (``reason`` says which).
``approved``: its batch was approved; it may be sent. ``sent``: every destination recorded
it delivered. ``failed``: a delivery failed (``reason``); ``finance send --unsent`` retries."""

STATEMENT_STATES: tuple[StatementState, ...] = (
    "received",
    "resolved",
    "held",
    "quarantined",
    "approved",
    "sent",
    "failed",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    """Where one copy of a statement goes: a partner and a full remote folder path."""

    partner: str
    folder: str  # the remote folder, e.g. "/send/501-jane-doe"
    role: str  # "payee" (the author's own partner), "agent:<name>", or "finance"


@dataclass(frozen=True, slots=True, kw_only=True)
class NewStatement:
    """A statement file as the batch is taken in (before its payee is resolved)."""

    file_name: str  # its name in the batch
    original_path: str  # where the untouched original is kept
    sha256: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StatementRecord:
    id: int
    batch_id: int
    file_name: str
    original_path: str
    sha256: str
    size: int
    state: StatementState
    reason: str | None  # why quarantined, held or failed, in a sentence
    payee_id: int | None  # the Consonance contact ID it resolved to
    payee_name: str | None
    destinations: tuple[Destination, ...]
    # Per destination (``partner:role``), the delivery workflow that sent (or is sending) it.
    deliveries: dict[str, str] = field(default_factory=dict)
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchRecord:
    id: int
    flow: str
    name: str  # the folder or zip name finance dropped
    source: str  # where the batch's originals are kept
    period: str | None  # "YYYY-MM..YYYY-MM" when known (from the batch name or the statements)
    received_at: datetime
    approved_at: datetime | None = None
    approved_by: str | None = None
    counts: dict[str, int] = field(default_factory=dict)  # statements per state


class FinanceLedger(Protocol):
    def add_finance_batch(
        self,
        *,
        flow: str,
        name: str,
        source: str,
        period: str | None,
        statements: list[NewStatement],
    ) -> BatchRecord:
        """Record a batch and its statements (all ``received``) in one transaction, with a
        ``finance.batch_received`` audit event. A batch of that (flow, name) already recorded
        is returned unchanged (a replayed tick takes nothing twice)."""
        ...

    def find_finance_batch(self, flow: str, name: str) -> BatchRecord | None: ...

    def get_finance_batch(self, batch_id: int) -> BatchRecord | None: ...

    def list_finance_batches(
        self, *, flow: str | None = None, limit: int = 200
    ) -> list[BatchRecord]:
        """Newest first, each with its ``counts``."""
        ...

    def list_statements(
        self, batch_id: int, *, states: tuple[StatementState, ...] | None = None
    ) -> list[StatementRecord]:
        """A batch's statements by file name (only those in ``states`` when given)."""
        ...

    def get_statement(self, statement_id: int) -> StatementRecord | None: ...

    def set_statement(
        self,
        statement_id: int,
        state: StatementState,
        *,
        actor: str,
        reason: str | None = None,
        payee_id: int | None = None,
        payee_name: str | None = None,
        destinations: tuple[Destination, ...] | None = None,
        deliveries: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> StatementRecord:
        """Move a statement to ``state`` (fields given replace the stored ones, ``reason=""``
        clears the reason; ``deliveries`` is merged in), with a ``finance.statement_<state>``
        audit event by ``actor`` on subject ``statement:<id>`` carrying the batch, file,
        payee, reason and ``details``, in the same transaction."""
        ...

    def approve_finance_batch(self, batch_id: int, *, by: str) -> BatchRecord:
        """Every ``resolved`` statement of the batch becomes ``approved``, the batch records
        who and when, with a ``finance.batch_approved`` audit event (one transaction). A
        batch with a statement still ``received`` raises ``ConsonanceSftpError``; approving
        again approves statements resolved since (e.g. released from hold)."""
        ...
