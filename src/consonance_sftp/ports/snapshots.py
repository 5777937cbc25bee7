"""SnapshotStore port: what change detection remembers of each work/product between polls.

Consonance has no webhooks; the poller compares what it reads now with these snapshots to emit
domain events. Synchronous like the rest of our own records (SQLAlchemy); call it through
``asyncio.to_thread`` from async code when it matters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A record's content hash and the few fields that triggers look at."""

    content_hash: str
    fields: Mapping[str, str | None] = field(default_factory=dict)


class SnapshotStore(Protocol):
    def load_snapshots(self, kind: str) -> dict[int, Snapshot]:
        """Every snapshot of one kind ("work" or "product"), by Consonance id."""
        ...

    def save_snapshots(self, kind: str, snapshots: Mapping[int, Snapshot]) -> None:
        """Insert or replace these snapshots (others of the kind are left alone)."""
        ...

    def get_watermark(self, name: str) -> str | None:
        """A named bookmark, e.g. the date of the last successful incremental poll."""
        ...

    def set_watermark(self, name: str, value: str) -> None: ...
