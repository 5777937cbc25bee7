"""Delivery port: sending files to a partner, and our record of what was sent.

The engine's delivery workflow moves files through a ``DeliveryTransport`` (the SFTP adapter as
``app/delivery.py`` bridges it, or a local folder in tests), asks a ``DeliveryLedger`` whether a
file was already sent and records each outcome as a ``DeliveryRecord`` (one row of the store's
delivery ledger: the engine builds the same type the store keeps), and raises alerts through an
``AlertSink``. A request whose ``action`` is ``withdraw`` runs the withdrawal workflow instead:
the same transport removes the files, a ``WithdrawalLedger`` records it. A ``Fence`` is the
executor's right to write, checked by the transport.

A ``DeliveryRequest`` (a package of ``FileToSend`` for one partner) is what ``app`` asks the
engine to deliver; it crosses the engine's system database, so it is a JSON-friendly value
(``to_dict`` / ``from_dict``): a release that adds an optional field can still resume work
queued by the previous one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from consonance_sftp.logs import get_logger
from consonance_sftp.models import Alert, DeliveryKey, DeliveryOutcome, Verification


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
    """A package for one partner: the unit a delivery workflow runs for (its input: it crosses
    the engine's system database as ``to_dict``). With ``action =
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
    verified_by: Verification | None = None  # how ``final_matches`` was found (by hash)


def verification(value: object) -> Verification | None:
    """A ``Verification`` from a checkpoint or a row; None for nothing (written by a release
    before the ledger said how) or a name this release does not know."""
    try:
        return None if value is None else Verification(str(value))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class StageResult:
    """What ``DeliveryTransport.stage`` did: the bytes it sent and how the staged (or already
    published) copy was proven to hold the file's bytes. The engine checkpoints it as
    ``to_dict``; ``from_checkpoint`` also reads what the previous release checkpointed (the
    bytes sent, a plain int)."""

    sent: int  # bytes sent by this call (0 when the final name already held these bytes)
    verified_by: Verification | None = None  # None: not known (an older checkpoint)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "verified_by": None if self.verified_by is None else self.verified_by.value,
        }

    @classmethod
    def from_checkpoint(cls, data: object) -> StageResult:
        if isinstance(data, StageResult):
            return data
        if isinstance(data, dict):
            return cls(
                sent=int(data.get("sent", 0)), verified_by=verification(data.get("verified_by"))
            )
        if isinstance(data, int):  # the previous release's stage step: the bytes sent only
            return cls(sent=data)
        raise TypeError(f"not a stage result: {data!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryRecord:
    """One file sent (or to be sent) to one partner: one row of the delivery ledger, as the
    engine records it and the store keeps it.

    Unique on (partner, remote_path, sha256, generation): the same content to the same place is
    one row; a resend is a new generation. The store's column for ``package`` is
    ``package_id`` (a name kept from the first schema: it holds the package's label).
    """

    flow: str
    partner: str
    remote_path: str
    sha256: str
    size: int
    generation: int = 0
    source: str | None = None  # local path or other reference to where the bytes came from
    package: str | None = None  # the package's label, e.g. "9780000000001 production"
    isbn: str | None = None
    asset_version_id: int | None = None
    workflow_id: str | None = None
    executor_id: str | None = None  # the engine process that recorded the outcome
    trigger: str | None = None  # "schedule", "manual:alice", "consonance:work 12 stage", ...
    started_at: datetime | None = None  # when the delivery planned this file
    finished_at: datetime | None = None  # when the outcome was known
    attempts: int = 0
    outcome: DeliveryOutcome = DeliveryOutcome.PLANNED
    error: str | None = None  # why it failed (the last error), for a failed row
    # How the partner's copy was proven to be these bytes: a hash (the server's or a read-back)
    # or, only where ``checksum = "size"`` is configured, the size. Empty on a failed row and
    # on rows recorded before migration 0008.
    verified_by: Verification | None = None
    created_at: datetime | None = None  # set by the store
    id: int | None = None  # set by the store

    @property
    def key(self) -> DeliveryKey:
        return DeliveryKey(partner=self.partner, remote_path=self.remote_path, sha256=self.sha256)


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

    async def stage(self, partner: str, file: FileToSend, fence: Fence) -> StageResult:
        """Send the file to its temporary name (``file.upload_path`` when a delivery
        convention fixes it), resuming from the bytes already there, and verify it by hash
        (by size only where ``checksum = "size"`` is configured), raising ``IntegrityError`` if
        it does not match; nothing may get its final name here. Return the bytes sent by this
        call (0 when the final name already holds exactly these bytes: a re-run after
        ``publish``) and how the copy was verified."""
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
    """Alerts as log lines: the default when no store is wired (an engine in a test or a
    tool)."""

    def raise_alert(self, alert: Alert) -> None:
        get_logger("consonance_sftp.alerts").warning(
            alert.message, extra={"alert_kind": alert.kind, "severity": str(alert.severity)}
        )
