"""What the engine needs from the rest of the service, as Protocols, and the values it passes.

The delivery workflow moves files through a ``DeliveryTransport`` (the SFTP transport, or a local
folder in tests), asks a ``DeliveryLedger`` whether a file key was already sent and records the
outcome, and raises alerts through an ``AlertSink``. A request whose ``action`` is ``withdraw``
runs the withdrawal workflow instead: the same transport removes the files, a
``WithdrawalLedger`` records it. The intake workflow takes a partner's file in
through an ``IntakeTransport``, records it in an ``IntakeLedger`` and hands it to the flow kind's
``IntakeHandler`` when one is bound. ``app`` wires the real adapters to these;
they belong in ``ports/`` once the RemoteFS and Store ports are filled in.

Workflow inputs and outputs cross the DBOS system database, so they are plain JSON-friendly
dicts built from these dataclasses (``to_dict`` / ``from_dict``): a release that adds an optional
field can still resume work queued by the previous one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from consonance_sftp.models import Alert, DeliveryKey, DeliveryOutcome, IntakeOutcome


@dataclass(frozen=True, slots=True, kw_only=True)
class FileToSend:
    """One file of a package: where its bytes are, where they go, and what they hash to."""

    source: str  # a local path (or any locator the transport understands)
    remote_path: str
    sha256: str
    size: int
    upload_path: str | None = None  # the temporary name a delivery convention fixes (.XOT)
    asset_version_id: int | None = None  # the approved version these bytes are, for the ledger

    def key(self, partner: str) -> DeliveryKey:
        return DeliveryKey(partner=partner, remote_path=self.remote_path, sha256=self.sha256)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "remote_path": self.remote_path,
            "sha256": self.sha256,
            "size": self.size,
            "upload_path": self.upload_path,
            "asset_version_id": self.asset_version_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileToSend:
        return cls(
            source=str(data["source"]),
            remote_path=str(data["remote_path"]),
            sha256=str(data["sha256"]),
            size=int(data["size"]),
            upload_path=data.get("upload_path"),
            asset_version_id=data.get("asset_version_id"),
        )


class RequestAction(enum.StrEnum):
    """What a request does on the partner's server."""

    DELIVER = "deliver"  # send the files (the delivery workflow)
    WITHDRAW = "withdraw"  # remove files sent before (the withdrawal workflow)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryRequest:
    """A package for one partner: the unit a delivery workflow runs for. With ``action =
    WITHDRAW``, files sent before to remove from the partner (a withdrawn title): each file is
    what the ledger says the partner holds (``source`` may be empty, nothing is read), and
    ``generation`` is the one being withdrawn."""

    flow: str
    partner: str
    package: str  # human label, e.g. "9780000000001 production"
    files: tuple[FileToSend, ...]
    generation: int = 0  # bumped by an explicit resend
    trigger: str = "manual"
    isbn: str | None = None  # the title the package is for, for the ledger and `history`
    action: RequestAction = RequestAction.DELIVER
    work_id: int | None = None  # the title's work (a withdrawal records it on the audit trail)

    @property
    def withdraws(self) -> bool:
        return self.action is RequestAction.WITHDRAW

    def keys(self) -> list[DeliveryKey]:
        return [f.key(self.partner) for f in self.files]

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "flow": self.flow,
            "partner": self.partner,
            "package": self.package,
            "files": [f.to_dict() for f in self.files],
            "generation": self.generation,
            "trigger": self.trigger,
            "isbn": self.isbn,
        }
        # Only a withdrawal carries these: a delivery's dict (and so its hold key, and what
        # a queued workflow of the previous release holds) stays as it was.
        if self.withdraws:
            data["action"] = self.action.value
            data["work_id"] = self.work_id
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeliveryRequest:
        work_id = data.get("work_id")
        return cls(
            flow=str(data["flow"]),
            partner=str(data["partner"]),
            package=str(data["package"]),
            files=tuple(FileToSend.from_dict(f) for f in data["files"]),
            generation=int(data.get("generation", 0)),
            trigger=str(data.get("trigger", "manual")),
            isbn=data.get("isbn"),
            action=RequestAction(data.get("action", RequestAction.DELIVER.value)),
            work_id=None if work_id is None else int(work_id),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteFileState:
    """What the partner's server holds for one file before (re)sending it."""

    final_matches: bool = False  # the final name already holds exactly these bytes
    partial_bytes: int = 0  # bytes already under the temporary name


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryRecord:
    """The outcome of one file of a delivery, as the ledger stores it."""

    workflow_id: str
    flow: str
    key: DeliveryKey
    size: int
    generation: int
    outcome: DeliveryOutcome
    attempts: int = 1
    trigger: str = "manual"
    executor_id: str = ""
    reason: str | None = None
    package: str | None = None
    isbn: str | None = None
    source: str | None = None
    details: dict[str, str] = field(default_factory=dict)
    started_at: datetime | None = None  # when the delivery planned this file
    asset_version_id: int | None = None


class Fence(Protocol):
    """This executor's right to write. The transport calls ``check`` before each chunk."""

    def check(self) -> None:
        """Return if this process still holds its executor lease; otherwise never return
        normally (the default stops the process) so a rescuer and a stale writer never both
        write the same file."""
        ...


class DeliveryTransport(Protocol):
    """Moves one file to one partner in two halves, so that a package is all-or-nothing: the
    engine stages every file of a package before it publishes the first. Every method must be
    safe to call again after a crash."""

    async def remote_state(self, partner: str, file: FileToSend) -> RemoteFileState: ...

    async def stage(self, partner: str, file: FileToSend, fence: Fence) -> int:
        """Send the file to its temporary name (``file.upload_path`` when a delivery
        convention fixes it), resuming from the bytes already there, and verify its size (and
        hash where possible), raising ``IntegrityError`` if it does not match; nothing may get
        its final name here. Return the bytes sent by this call (0 when the final name already
        holds exactly these bytes: a re-run after ``publish``)."""
        ...

    async def publish(self, partner: str, file: FileToSend, fence: Fence) -> None:
        """Move the staged file to its final name. Succeeds without doing anything when the
        final name already holds these bytes and nothing is staged (a re-run after a crash)."""
        ...

    async def remove(self, partner: str, remote_path: str, fence: Fence) -> bool:
        """Remove a file sent before (a withdrawal); ``fence.check()`` right before the
        removal. Return False when it is already gone, which is no error: a re-run after a
        crash, or an answer lost with the connection, finds it gone."""
        ...


class DeliveryLedger(Protocol):
    """Our own record of what was sent (the store's delivery ledger). Synchronous, like the
    store; the engine calls it from a worker thread."""

    def already_sent(self, key: DeliveryKey, generation: int) -> bool: ...

    def record(self, record: DeliveryRecord) -> None:
        """Insert or update the row for (key, generation): one row per file, whatever the
        number of attempts or re-runs."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class WithdrawalRecord:
    """What a withdrawal did on the partner's server, for the ledger and the audit trail."""

    workflow_id: str
    request: DeliveryRequest
    removed: tuple[str, ...]  # remote paths removed now
    already_gone: tuple[str, ...]  # remote paths that were not there any more
    executor_id: str = ""


class WithdrawalLedger(Protocol):
    """Our own record of withdrawals (the store's delivery ledger and audit trail).
    Synchronous, like the store; the engine calls it from a worker thread."""

    def withdrawn(self, record: WithdrawalRecord) -> bool:
        """Mark the ledger's ``sent`` rows of these files ``withdrawn`` and append one
        ``package.withdrawn`` event; a replay of the same workflow changes and appends
        nothing (return False)."""
        ...


class AlertSink(Protocol):
    """Where executor alerts go (``ports.store.Store`` fits: its ``raise_alert`` records and
    logs them)."""

    def raise_alert(self, alert: Alert) -> object: ...


class LogAlertSink:
    """Alerts as log lines: the default until the store's alert table is wired."""

    def raise_alert(self, alert: Alert) -> None:
        from consonance_sftp.logs import get_logger

        get_logger("consonance_sftp.alerts").warning(
            alert.message, extra={"alert_kind": alert.kind, "severity": str(alert.severity)}
        )


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "kind": self.kind,
            "partner": self.partner,
            "remote_path": self.remote_path,
            "size": self.size,
            "mtime": self.mtime,
            "trigger": self.trigger,
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
    validating a sales report). None is bound yet: files then stay stored, awaiting it."""

    async def handle(self, request: IntakeRequest, file: FetchedFile) -> HandOffResult: ...
