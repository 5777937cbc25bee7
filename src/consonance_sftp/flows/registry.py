"""One table of every flow kind: its config model, how it fires, its plan or take, its
after-delivery hook, and whether this release can run it.

Adding a flow is one module in ``flows/`` (its ``plan``, or for an intake flow its ``take``:
the files of a partner's inbox it takes in), one config model in ``config/flows.py`` and one
line here. Everything that asks "can this kind run", "do Consonance events fire it", "is it an
intake flow" asks this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from consonance_sftp.config.flows import (
    ArchiveFlow,
    FinanceOutFlow,
    FlowBase,
    FormatsFlow,
    IntakeFlow,
    MarketingFlow,
    OnixFeedFlow,
    ProductionFlow,
    SalesInFlow,
)
from consonance_sftp.flows import (
    archive,
    finance_out,
    format_packages,
    intake,
    marketing,
    onix_feed,
    production,
    sales_in,
)
from consonance_sftp.flows.base import (
    AfterDelivery,
    FlowNotAvailable,
    Plan,
    Take,
)
from consonance_sftp.models import FlowKind


class Fires(StrEnum):
    """How a flow is set off (besides ``run`` by hand)."""

    EVENT = "event"  # a Consonance change makes its ``when`` true
    SCHEDULE = "schedule"  # its cron (``schedule``)
    INBOX = "inbox"  # its partners' inboxes, polled every ``poll_interval`` (or its cron)


@dataclass(frozen=True, slots=True)
class FlowEntry:
    """One flow kind. A ``plan`` (outbound) or a ``take`` (intake: which files of a partner's
    inbox it takes in; the app lists, fetches and stores them) makes it runnable in this release;
    ``module`` is where it lives (or will)."""

    kind: FlowKind
    model: type[FlowBase]
    fires: frozenset[Fires]
    module: str
    plan: Plan | None = None
    after_delivery: AfterDelivery | None = None
    take: Take | None = None

    @property
    def intake(self) -> bool:
        return Fires.INBOX in self.fires

    @property
    def runs_today(self) -> bool:
        return self.plan is not None or self.take is not None


_EVENT_OR_CRON = frozenset({Fires.EVENT, Fires.SCHEDULE})
_CRON = frozenset({Fires.SCHEDULE})
_INBOX = frozenset({Fires.INBOX})

REGISTRY: dict[str, FlowEntry] = {
    e.kind.value: e
    for e in (
        FlowEntry(
            FlowKind.PRODUCTION,
            ProductionFlow,
            _EVENT_OR_CRON,
            "flows/production.py",
            production.plan,
        ),
        FlowEntry(
            FlowKind.ONIX_FEED,
            OnixFeedFlow,
            _CRON,
            "flows/onix_feed.py",
            onix_feed.plan,
            onix_feed.after_delivery,
        ),
        FlowEntry(FlowKind.INTAKE, IntakeFlow, _INBOX, "flows/intake.py", take=intake.take),
        FlowEntry(FlowKind.SALES_IN, SalesInFlow, _INBOX, "flows/sales_in.py", take=sales_in.take),
        FlowEntry(
            FlowKind.FINANCE_OUT,
            FinanceOutFlow,
            _CRON,
            "flows/finance_out.py",
            finance_out.plan,
        ),
        FlowEntry(
            FlowKind.MARKETING, MarketingFlow, _EVENT_OR_CRON, "flows/marketing.py", marketing.plan
        ),
        FlowEntry(
            FlowKind.FORMATS,
            FormatsFlow,
            _EVENT_OR_CRON,
            "flows/format_packages.py",
            format_packages.plan,
        ),
        FlowEntry(FlowKind.ARCHIVE, ArchiveFlow, _CRON, "flows/archive.py", archive.plan),
    )
}
"""Every flow kind, by its ``kind`` value."""


def entry_of(flow: FlowBase) -> FlowEntry:
    """The registry entry of a flow's config."""
    return REGISTRY[str(getattr(flow, "kind", ""))]


def can_plan(flow: FlowBase) -> bool:
    """Is the flow an outbound kind this release can run?"""
    return entry_of(flow).plan is not None


def is_intake(flow: FlowBase) -> bool:
    """Is the flow an intake flow: files taken in from partners' inboxes (polled on its
    schedule)?"""
    return entry_of(flow).intake


def intake_flow(flow: FlowBase) -> IntakeFlow | SalesInFlow | None:
    """The flow as an intake flow (its files taken in from partners' inboxes), else None."""
    if not entry_of(flow).intake:
        return None
    assert isinstance(flow, IntakeFlow | SalesInFlow)  # the intake kinds' models
    return flow


def fired_by_events(flow: FlowBase) -> bool:
    """Do Consonance events fire the flow (its ``when``)?"""
    return Fires.EVENT in entry_of(flow).fires


def plan_for(name: str, flow: FlowBase) -> Plan:
    """The flow's ``plan``; a kind this release cannot run raises ``FlowNotAvailable`` naming
    where it will live."""
    kind = str(getattr(flow, "kind", ""))
    entry = REGISTRY.get(kind)
    if entry is None or entry.plan is None:
        where = entry.module if entry is not None else "flows/"
        implemented = sorted(k for k, e in REGISTRY.items() if e.plan is not None)
        raise FlowNotAvailable(
            f"flow {name!r} is of kind {kind!r}, which this release cannot run yet",
            hint=f"Implemented kinds: {', '.join(implemented)}. The {kind} exchange "
            f"({where}) is not wired into the service in this version.",
        )
    return entry.plan


def after_delivery_of(flow: FlowBase | None) -> AfterDelivery | None:
    """The hook the engine's ledger runs as it records a file of this flow delivered (the
    app's ``FlowLedger``), if its kind has one."""
    entry = REGISTRY.get(str(getattr(flow, "kind", ""))) if flow is not None else None
    return entry.after_delivery if entry is not None else None
