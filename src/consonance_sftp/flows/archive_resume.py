"""A run of the archive flow after an interrupted one: the archive already written whole is
delivered, not written again.

A run writes its archive, records it (``archive.written`` on the audit trail, with its path,
size and SHA-256), then hands it to the engine, whose delivery workflow's ID is a function of
what is sent where (each file's remote path and SHA-256). Killed mid-upload (kill -9, a power
cut), the next process that starts the engine recovers that workflow and resumes its upload
from the bytes already on the partner's server. If the next run wrote a new archive, it would
be another file with other bytes (age encrypts with a fresh key; the name carries the run's
time): another delivery, the partial copy abandoned, and multi-GiB written and sent twice.

So before writing, a run looks at the flow's latest written archive: when it is still on disk
whole (its size and its sidecar as recorded) and at least one of the flow's partners has no
outcome recorded for it in the delivery ledger (nothing, or a row still planned or running),
the run plans that archive again. Same files, same SHA-256: the same delivery workflow, which
the engine attaches to (or resumes) instead of starting another. An archive whose delivery
ended (sent, skipped, or failed for good: every partner has its row) is not reused: the next
run writes a fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from consonance_sftp.formats.archive import sidecar_line
from consonance_sftp.models import AuditAction, DeliveryOutcome
from consonance_sftp.ports.store import Store

_UNFINISHED = (DeliveryOutcome.PLANNED, DeliveryOutcome.RUNNING)
_LOOK_BACK = 200  # audit events and ledger rows looked at: the latest archive is among them


@dataclass(frozen=True, slots=True)
class Undelivered:
    """An archive written whole by an earlier run whose delivery has not ended."""

    path: Path
    sidecar: Path
    sha256: str
    size: int
    written_at: datetime
    files: int
    partners: tuple[str, ...]  # those without an outcome for it


def undelivered_archive(store: Store, flow: str, partners: list[str]) -> Undelivered | None:
    """The flow's latest written archive when it is whole on disk and some partner has no
    outcome recorded for it; else None (write a new one)."""
    if not partners:
        return None
    latest = next(
        (
            e
            for e in store.list_audit(action=AuditAction.ARCHIVE_WRITTEN.value, limit=_LOOK_BACK)
            if e.details.get("flow") == flow
        ),
        None,
    )
    if latest is None:
        return None
    details = latest.details
    path_s, sha, size, files = (
        details.get("path"),
        details.get("sha256"),
        details.get("size"),
        details.get("files"),
    )
    if not isinstance(path_s, str) or not isinstance(sha, str) or not isinstance(size, int):
        return None
    path = Path(path_s)
    sidecar = path.with_name(path.name + ".sha256")
    try:
        if path.stat().st_size != size or sidecar.read_text() != sidecar_line(sha, path.name):
            return None
    except (OSError, ValueError):
        return None  # gone (retention, by hand) or not what was recorded: write a new one
    waiting = tuple(
        p
        for p in partners
        if not any(
            r.sha256 == sha and r.outcome not in _UNFINISHED
            for r in store.list_deliveries(flow=flow, partner=p, limit=_LOOK_BACK)
        )
    )
    if not waiting:
        return None
    return Undelivered(
        path=path,
        sidecar=sidecar,
        sha256=sha,
        size=size,
        written_at=latest.ts,
        files=files if isinstance(files, int) else 0,
        partners=waiting,
    )
