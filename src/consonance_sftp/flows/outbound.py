"""What every outbound flow hands to the engine: planned packages, one per partner.

Each flow (production, onix_feed, marketing, formats, finance_out, archive) decides *what* a
partner receives and plans it with ``formats.packaging`` (exact files, remote paths, sizes,
SHA-256, materialized locally). ``app.delivery.delivery_request`` turns an ``Outbound`` into the
engine's request; ``run FLOW --dry-run`` prints ``plan.lines()`` instead of sending.
"""

from __future__ import annotations

from typing import Protocol

from consonance_sftp.config.flows import When
from consonance_sftp.formats.packaging import PackagePlan
from consonance_sftp.models import ChangeEvent, ChangeKind


class Triggered(Protocol):
    """An event-driven flow's config: enabled, and its ``when`` condition (unset: manual)."""

    @property
    def enabled(self) -> bool: ...

    @property
    def when(self) -> When | None: ...


def triggered(flow: Triggered, event: ChangeEvent) -> bool:
    """Does a Consonance event meet the flow's ``when`` condition?

    Project stage and to-do conditions are matched on the events the poller emits. To-dos
    depend on a guess about Consonance's API (the public schema may not expose them).
    ``approval_status`` has no event of its own yet, so it never fires from the poller.
    """
    when = flow.when
    if when is None or not flow.enabled:
        return False
    if when.project_stage is not None:
        return event.kind is ChangeKind.WORK_ENTERED_STAGE and event.new == when.project_stage
    if when.todo_done is not None:
        return event.kind is ChangeKind.TODO_COMPLETED and event.new == when.todo_done
    return False


class Outbound(Protocol):
    """One package for one partner, planned and checked, ready for the engine."""

    @property
    def partner(self) -> str: ...

    @property
    def plan(self) -> PackagePlan: ...

    @property
    def label(self) -> str:
        """Human label of the package, e.g. ``9780000000001 production``."""
        ...

    @property
    def isbn(self) -> str | None:
        """The title the package is for (None for multi-title files such as ONIX feeds)."""
        ...
