"""When does a flow fire: every rule in one place.

* a Consonance event fires an event-driven flow (``registry.Fires.EVENT``) when it makes one of
  the flow's ``when`` conditions true and every other condition holds on the title's state
  (``triggered``, ``event_matches``);
* ``days_before_publication`` windows are checked once a day and when a publication date
  moved (``publication_windows``, ``due``); the titles' state is read only when a condition
  needs it (``needs_title_state``);
* ``newly_due``: a window's ``publication_due`` event fires once per product and publication
  date (a moved date fires again);
* cron schedules and inbox polls: ``schedule_of`` says which cron (and time zone) a flow ticks
  on; the app declares it to the engine (``app.serving.flow_schedules``).

The detection of changes themselves (snapshots, events) is ``flows.changes``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Protocol, TypeVar, runtime_checkable

from consonance_sftp.config.flows import FlowBase, When
from consonance_sftp.flows import registry
from consonance_sftp.models import ChangeEvent, ChangeKind

F = TypeVar("F", bound=FlowBase)


@runtime_checkable
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


def event_matches(
    flow: FlowBase,
    event: ChangeEvent,
    state: TitleState | None = None,
    today: date | None = None,
) -> bool:
    """Does a Consonance event fire the flow's ``when`` condition (event-driven kinds only)?"""
    if not registry.fired_by_events(flow) or not isinstance(flow, Triggered):
        return False
    return triggered(flow, event, state, today)


def fired(
    flows: Mapping[str, F],
    events: Iterable[ChangeEvent],
    state_of: Callable[[int], TitleState] | None = None,
    today: date | None = None,
) -> Iterator[tuple[str, F, ChangeEvent]]:
    """Each (flow name, flow, event) where the event fires an enabled flow's ``when``, every
    other condition holding on ``state_of(work_id)`` (the titles' state, when read)."""
    events = list(events)
    for name, flow in flows.items():
        for event in events:
            state = state_of(event.work_id) if state_of is not None else None
            if flow.enabled and event_matches(flow, event, state, today):
                yield name, flow, event


def windows_due(
    windows: Iterable[int], last_checked: date | None, today: date, events: Iterable[ChangeEvent]
) -> bool:
    """Are the publication windows checked in this poll: once a day, and whenever a
    publication date moved?"""
    moved = any(e.kind is ChangeKind.PUBLICATION_DATE_CHANGED for e in events)
    return bool(list(windows)) and (last_checked != today or moved)


def _event_whens(flows: Iterable[FlowBase]) -> list[When]:
    return [
        when
        for f in flows
        if f.enabled and registry.fired_by_events(f)
        if (when := getattr(f, "when", None)) is not None
    ]


def publication_windows(flows: Iterable[FlowBase]) -> list[int]:
    """The ``days_before_publication`` windows of the enabled event-driven flows, sorted."""
    return sorted(
        {
            w.days_before_publication
            for w in _event_whens(flows)
            if w.days_before_publication is not None
        }
    )


def needs_title_state(flows: Iterable[FlowBase]) -> bool:
    """Does any enabled event-driven flow combine conditions (so an event alone cannot say
    whether it fires, and the titles' state must be read)?"""
    return any(len(w.conditions()) > 1 for w in _event_whens(flows))


def fires_on_events(flows: dict[str, FlowBase]) -> list[str]:
    """The enabled flows Consonance events fire, of kinds this release can run."""
    return [
        name
        for name, flow in flows.items()
        if flow.enabled and registry.fired_by_events(flow) and registry.can_plan(flow)
    ]


def newly_due(
    windows: Iterable[int],
    due_events: Callable[[int], Iterable[ChangeEvent]],
    marked: Callable[[int, int], str | None],
) -> list[tuple[int, ChangeEvent]]:
    """The ``publication_due`` events not seen before for their product and publication date,
    each with its window in days. ``due_events(days)``: the window's events from the titles'
    state; ``marked(days, product)``: the publication date a window last fired for (its mark
    is set once the event's work is enqueued, so each fires once; a moved date fires again)."""
    fresh = []
    for days in windows:
        for event in due_events(days):
            if marked(days, event.product_id or 0) != event.new:
                fresh.append((days, event))
    return fresh


def schedule_of(flow: FlowBase, override: str | None = None) -> tuple[str, str] | None:
    """(cron, time zone) a flow ticks on: a test's ``override`` (six fields, seconds first),
    its ``schedule``, or an intake flow's ``poll_interval``; None when it has none, is disabled
    or is of a kind this release cannot run."""
    if not flow.enabled or not registry.entry_of(flow).runs_today:
        return None
    if override is not None:
        return (override, "UTC")
    if flow.schedule is not None:
        return (flow.schedule.cron, flow.schedule.timezone)
    intake = registry.intake_flow(flow)
    return (intake.poll_cron(), "UTC") if intake is not None else None
