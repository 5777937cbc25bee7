"""The intake port: what the engine's intake workflow needs from the rest of the service, and
the values it passes.

The intake workflow takes a partner's file in through an ``IntakeTransport``, screens it with
the ``IntakeScreen`` (zero bytes, size, archives, malware through a ``MalwareScanner``), records
it in an ``IntakeLedger`` and hands it to the flow kind's ``IntakeHandler`` when one is bound.
``app`` wires the real adapters to these. The delivery side's contracts (request, transport,
ledgers, alerts, fence) are in ``ports/delivery.py``.

Workflow inputs and outputs cross the DBOS system database, so they are plain JSON-friendly
dicts built from these dataclasses (``to_dict`` / ``from_dict``): a release that adds an optional
field can still resume work queued by the previous one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from consonance_sftp.models import IntakeOutcome
from consonance_sftp.ports.delivery import Fence

# --- intake: the intake workflow ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeRequest:
    """One version of one file in a partner's inbox, as the poll listed it: the unit an intake
    workflow runs for. (partner, remote path, size, mtime) is the intake ledger's key."""

    flow: str
    kind: str  # the flow's kind (intake, sales_in): which hand-off applies
    partner: str
    remote_path: str
    size: int
    mtime: float
    trigger: str = "manual"
    # The partner asked for acknowledgements when the file was listed (``intake_ack``).
    acknowledge: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "kind": self.kind,
            "partner": self.partner,
            "remote_path": self.remote_path,
            "size": self.size,
            "mtime": self.mtime,
            "trigger": self.trigger,
            "acknowledge": self.acknowledge,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntakeRequest:
        return cls(
            flow=str(data["flow"]),
            kind=str(data["kind"]),
            partner=str(data["partner"]),
            remote_path=str(data["remote_path"]),
            size=int(data["size"]),
            mtime=float(data["mtime"]),
            trigger=str(data.get("trigger", "manual")),
            acknowledge=bool(data.get("acknowledge", False)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchedFile:
    """Where a received file's bytes are kept locally (durably), and what they hash to."""

    local_path: str
    size: int
    sha256: str
    resumed_from: int = 0  # bytes an earlier, interrupted attempt had already fetched

    def to_dict(self) -> dict[str, Any]:
        return {
            "local_path": self.local_path,
            "size": self.size,
            "sha256": self.sha256,
            "resumed_from": self.resumed_from,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FetchedFile:
        return cls(
            local_path=str(data["local_path"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            resumed_from=int(data.get("resumed_from", 0)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class IntakeLedgerEntry:
    """The state of one received file, as the intake ledger stores it."""

    workflow_id: str
    request: IntakeRequest
    outcome: IntakeOutcome
    executor_id: str = ""
    fetched: FetchedFile | None = None  # None: nothing is stored locally (a failed fetch)
    reason: str | None = None
    work_id: int | None = None
    product_id: int | None = None
    reason_code: str | None = None  # a refusal's stable code (``name-device``, ``zero-bytes``)


@dataclass(frozen=True, slots=True, kw_only=True)
class Acknowledgement:
    """What the partner is told about one file it uploaded: ``accepted`` (stored or attached)
    or ``quarantined``, why, and the bytes we hold (size, SHA-256)."""

    verdict: str  # "accepted" | "quarantined": the acknowledgement's suffix
    outcome: IntakeOutcome
    size: int
    sha256: str
    reason: str | None = None

    def text(self, name: str) -> str:
        """The acknowledgement's content: plain text, one ``key: value`` per line, the same
        for the same decision (a repeated step writes the same bytes)."""
        lines = [
            f"{self.verdict}: {name}",
            f"outcome: {self.outcome.value}",
            f"size: {self.size}",
            f"sha256: {self.sha256}",
        ]
        if self.reason:
            lines.append("reason: " + " ".join(self.reason.split()))
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class HandOffResult:
    """What a flow's hand-off made of a stored file (matched to a work, or quarantined)."""

    outcome: IntakeOutcome
    reason: str | None = None
    work_id: int | None = None
    product_id: int | None = None


class IntakeTransport(Protocol):
    """Takes one file in from a partner. Every method must be safe to call again after a
    crash."""

    async def fetch(self, request: IntakeRequest, *, quarantine: bool, fence: Fence) -> FetchedFile:
        """Download the file durably (resuming from the bytes already here) to its local
        place: the inbox, or under a safe name in the quarantine folder; return where it is,
        its size and SHA-256. A re-run after a completed fetch returns the same file."""
        ...

    async def post_action(self, request: IntakeRequest, fence: Fence) -> str:
        """Leave, delete or move the remote file as the partner's settings say; return what
        was done (``leave``, ``delete``, ``move:<new path>``, or ``gone``/``changed`` when the
        remote file is no longer this version, which is then left alone)."""
        ...

    async def acknowledge(self, request: IntakeRequest, ack: Acknowledgement, fence: Fence) -> str:
        """Upload the acknowledgement of a decided file to the partner's server (temporary
        name, then rename), replacing an earlier one of the same name; return the remote path
        written, or "" when the partner no longer asks for acknowledgements. Safe to repeat."""
        ...


class IntakeLedger(Protocol):
    """Our own record of what was received (the store's intake ledger and audit trail).
    Synchronous, like the store; the engine calls it from a worker thread."""

    def record(self, record: IntakeLedgerEntry) -> int:
        """Insert or update the row for the request's (partner, path, size, mtime): one row
        per file version however often a step replays; return its id."""
        ...

    def event(self, action: str, request: IntakeRequest, details: dict[str, Any]) -> None:
        """Append an event about this file to the audit trail."""
        ...

    def alert(self, request: IntakeRequest, reason: str, workflow_id: str) -> None:
        """Raise one alert: taking this file in failed for good (after the last retry)."""
        ...

    def supersede_incomplete(self, request: IntakeRequest, fetched: FetchedFile) -> list[int]:
        """Mark earlier versions of this file that are a byte prefix of it (taken while the
        partner was still writing) ``superseded-incomplete``; return their ids."""
        ...


class IntakeHandler(Protocol):
    """A flow kind's processing of a stored file (matching an intake file to a work,
    validating a sales report). Without one, files stay stored, awaiting processing.

    An implementation may also have ``applies(request) -> bool``: False skips the hand-off
    for that file (the intake flow's processor says so for a flow without ``match``).
    """

    async def handle(self, request: IntakeRequest, file: FetchedFile) -> HandOffResult: ...


# --- screening: before any hand-off -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a received file is quarantined instead of processed: a short, stable code
    (``zero-bytes``, ``zip-slip``, ``malware``...; docs/reference/intake.md lists them) and
    a sentence for people. The file itself is kept."""

    reason_code: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"reason_code": self.reason_code, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Refusal:
        return cls(reason_code=str(data["reason_code"]), detail=str(data["detail"]))


class IntakeScreen(Protocol):
    """Checks a stored file before any hand-off (the flow's size limit, empty files, archives,
    a malware scan). Raises a retryable error when a check could not be made (the malware
    scanner is unreachable): a file is never let through unchecked."""

    async def screen(self, request: IntakeRequest, file: FetchedFile) -> Refusal | None:
        """None: the file may be processed; else why it is quarantined."""
        ...


class MalwareScanner(Protocol):
    """A malware scanner (clamd). Raises an error when the file could not be scanned."""

    async def scan(self, path: str) -> str | None:
        """The name of what was found in the file at ``path``; None when it is clean."""
        ...
