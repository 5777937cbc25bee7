"""What every flow is written against: its context of ports, and the runs it plans.

A flow has one of two shapes:

* **plan** (outbound): ``(ctx, name, config, isbns, event) -> PlannedRun``, the packages each
  partner should receive (``Outbound``), planned and checked, and the files to take off a
  partner again (``Withdrawal``: a withdrawn title); the app hands both to the engine. A plan
  never writes to a partner itself.
* **take** (intake): a pure decision over a listing of a partner's inbox, which files to take
  in (``flows.intake``, ``flows.sales_in``, on the shared ``flows.inbox``); the app does the
  listing and the transfers.

``FlowContext`` carries ports and plain values only (the Consonance API, the store, where
packages are materialized, the partners' folders, the time and the run's options), never the
application itself, so a flow can be run and tested with any implementation of the ports.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from consonance_sftp.config.flows import FlowBase, IntakeFlowBase
from consonance_sftp.config.transfer import TransferSettings
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.formats.packaging import PackagePlan
from consonance_sftp.models import ChangeEvent, Work
from consonance_sftp.ports.consonance import ConsonanceAPI
from consonance_sftp.ports.delivery import DeliveryRecord
from consonance_sftp.ports.remote_fs import RemoteEntry
from consonance_sftp.ports.store import Store

if TYPE_CHECKING:
    from consonance_sftp.flows.inbox import Taking


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


@dataclass(frozen=True, slots=True)
class SkippedItem:
    """Something a flow did not package, and why (shown by ``run`` and on the record)."""

    what: str
    reason: str


@dataclass(frozen=True, slots=True)
class SentFile:
    """A file the delivery ledger says a partner holds: its full remote path, as sent."""

    remote_path: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Withdrawal:
    """Files sent to one partner that must come off its server (a withdrawn title): planned
    by the flow, removed by the engine like any other remote write (held by a pause or a
    closed delivery window), then marked ``withdrawn`` in the ledger."""

    partner: str
    isbn: str | None
    files: tuple[SentFile, ...]  # one per remote path
    generation: int  # the generation withdrawn (a later release is the next one)
    label: str  # e.g. "9780000000001 marketing withdrawal"
    work_id: int | None = None


@dataclass(slots=True)
class PlannedRun:
    """What one run of one flow would send: one ``Outbound`` per (package, partner), and one
    ``Withdrawal`` per partner a withdrawn title's files come off."""

    flow: str
    kind: str
    outbounds: list[Outbound] = field(default_factory=list)
    withdrawals: list[Withdrawal] = field(default_factory=list)
    skipped: list[SkippedItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # What the run could not send in full, one line each (an ONIX feed blocked by an invalid
    # product, products skipped): ``run`` exits non-zero and a tick's summary lists them.
    incomplete: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FlowContext:
    """What a flow's ``plan`` gets: ports and plain values, never the application.

    ``api``: a Consonance client; ``store``: the ledger and state; ``state_dir``: where
    packages are materialized (``state_dir/packages``, ``state_dir/onix``); ``folder``: the
    partner folder a flow's files go to (a ``ConfigError`` when the partner has none);
    ``now``: the run's time; ``force_full``: a full feed instead of a delta; ``test``: a test
    feed; ``dry_run``: plan only (nothing is sent, nothing withdrawn, nothing recorded that a
    real run would record)."""

    api: ConsonanceAPI
    store: Store
    state_dir: Path
    folder: Callable[[FlowBase, str], str]
    now: datetime
    force_full: bool = False
    test: bool = False
    dry_run: bool = False


Plan = Callable[[FlowContext, str, Any, Sequence[str], ChangeEvent | None], Awaitable[PlannedRun]]
"""An outbound flow: (context, flow name, flow config, ISBNs asked for, triggering event) ->
planned run."""

Take = Callable[[IntakeFlowBase, Iterable[tuple[RemoteEntry, str]], TransferSettings], "Taking"]
"""An intake flow: (its config, one listing of (entry, kind), the partner's transfer settings)
-> the files it takes and those it leaves (``flows.intake.take``, ``flows.sales_in.take``)."""


AfterDelivery = Callable[[Store, DeliveryRecord], None]
"""Run as the engine's ledger records a file of the flow delivered (sent, or found already
there), in the process that delivered it, whoever asked (a run, a ``retry``, a recovery):
(store, the ledger's row of the file)."""


class FlowNotAvailable(ConsonanceSftpError):
    """A flow kind whose exchange is not implemented (yet) in this release."""


def titles_needed(name: str, kind: str, isbns: Sequence[str], event: ChangeEvent | None) -> None:
    """A title-at-a-time flow run by hand must be told which titles."""
    if not isbns and event is None:
        raise ConsonanceSftpError(
            f"flow {name!r} ({kind}) sends one title at a time: name it",
            hint=f"consonance-sftp run {name} --isbn 978...",
        )


async def works_for(
    ctx: FlowContext, isbns: Sequence[str], event: ChangeEvent | None
) -> list[Work]:
    """The works a run is about: the event's work, or the works of the ISBNs asked for."""
    if event is not None:
        work = await ctx.api.get_work(event.work_id)
        return [work] if work is not None else []
    works: dict[int, Work] = {}
    for isbn in isbns:
        product = await ctx.api.get_product_by_isbn(isbn)
        if product is None:
            raise ConsonanceSftpError(
                f"no product with ISBN {isbn} in Consonance",
                hint="Check the ISBN-13 (13 digits, no hyphens).",
            )
        if product.work_id not in works:
            work = await ctx.api.get_work(product.work_id)
            if work is not None:
                works[product.work_id] = work
    return list(works.values())
