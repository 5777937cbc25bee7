"""What every outbound flow hands to the engine: planned packages, one per partner.

Each flow (production, onix_feed, marketing, formats, finance_out, archive) decides *what* a
partner receives and plans it with ``formats.packaging`` (exact files, remote paths, sizes,
SHA-256, materialized locally). ``app.delivery.delivery_request`` turns an ``Outbound`` into the
engine's request; ``run FLOW --dry-run`` prints ``plan.lines()`` instead of sending.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
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


@dataclass(frozen=True, slots=True)
class TitleState:
    """What the poller last saw of a work and its products: what ``when`` conditions test."""

    stage: str | None = None
    todos_done: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()  # publishing status codes of its products
    publication_dates: tuple[date, ...] = ()


def _fires(when: When, event: ChangeEvent) -> bool:
    """Does the event make one of the flow's conditions true?"""
    match event.kind:
        case ChangeKind.WORK_ENTERED_STAGE:
            return when.project_stage is not None and event.new == when.project_stage
        case ChangeKind.TODO_COMPLETED:
            return when.todo_done is not None and event.subject == when.todo_done
        case ChangeKind.PUBLISHING_STATUS_CHANGED:
            return when.publishing_status is not None and event.new == when.publishing_status
        case ChangeKind.PUBLICATION_DUE:
            days = when.days_before_publication
            return days is not None and event.subject == str(days)
    return False


def due(days: int, publication: date, today: date) -> bool:
    """Is ``today`` within ``days`` before ``publication`` (publication day included)?"""
    return 0 <= (publication - today).days <= days


def holds(when: When, state: TitleState, today: date) -> bool:
    """Does the title's state meet every condition set?"""
    checks = [
        when.project_stage is None or state.stage == when.project_stage,
        when.todo_done is None or when.todo_done in state.todos_done,
        when.publishing_status is None or when.publishing_status in state.statuses,
        when.days_before_publication is None
        or any(due(when.days_before_publication, d, today) for d in state.publication_dates),
    ]
    return all(checks)


def triggered(
    flow: Triggered, event: ChangeEvent, state: TitleState | None = None, today: date | None = None
) -> bool:
    """Does a Consonance event fire the flow: it makes one of the ``when`` conditions true and,
    with the title's ``state`` at hand, every other condition holds too? Without a state only a
    single-condition ``when`` can fire (the others cannot be checked).

    To-do conditions depend on a guess about Consonance's API (the public schema may not
    expose to-dos).
    """
    when = flow.when
    if when is None or not flow.enabled or not _fires(when, event):
        return False
    if state is None:
        return len(when.conditions()) == 1
    return holds(when, state, today or date.today())


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
