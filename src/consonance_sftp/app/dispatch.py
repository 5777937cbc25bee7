"""Dispatch: a flow's plan, through its registry entry, becomes engine deliveries here.

The middle of the outbound path (``docs/reference/architecture.md``): ``plan`` looks the flow
up in ``flows.registry`` and calls its plan with a ``flows.base.FlowContext`` of ports built
here; the planned ``Outbound`` packages become ``DeliveryRequest``s (``requests``: the one
place that builds them) and ``submit_all`` hands them to the engine through the runner (held
when a pause or a closed delivery window says so). Its callers: a manual or scheduled run
(``run_flow``, under the flow's run lock), the engine's event workflow (``run_event``, bound
by the composition root), and the demo. Also here: where a package lands on a partner
(``folder_of``), what a dry run shows (``remote_files``) and the request of an explicit resend
(``resend_request``: a recorded delivery's files again, one generation up) and the request
removing a withdrawn title's files from a partner (``withdrawal_request``, and
``withdrawal_requests`` for a planned run: submitted like deliveries, so a pause or a closed
delivery window holds them too).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from consonance_sftp.app.archive_drill import run_due as run_due_drill
from consonance_sftp.app.archive_retention import apply_retention
from consonance_sftp.app.delivery import ProgressSink
from consonance_sftp.app.finance_handler import fetch_batches
from consonance_sftp.app.runner import DeliveryRunner, Enqueued, Held, flow_lock
from consonance_sftp.config.flows import ArchiveFlow, FinanceOutFlow
from consonance_sftp.errors import ConfigError, ConfigProblem, ConsonanceSftpError
from consonance_sftp.flows import registry
from consonance_sftp.flows.base import FlowContext, Outbound, PlannedRun, Withdrawal
from consonance_sftp.flows.changes import event_from_json
from consonance_sftp.formats.packaging import join_remote
from consonance_sftp.formats.wording import counted
from consonance_sftp.logs import get_logger
from consonance_sftp.models import ChangeEvent
from consonance_sftp.ports.consonance import ConsonanceAPI
from consonance_sftp.ports.delivery import DeliveryRequest, FileToSend, RequestAction

if TYPE_CHECKING:
    from consonance_sftp.app import App
    from consonance_sftp.config.flows import FlowBase

log = get_logger(__name__)


def folder_of(app: App, flow: FlowBase, partner: str) -> str:
    """The remote path of the flow's folder on that partner (e.g. ``/in``)."""
    folders = app.partner_config(partner).folders
    if flow.folder not in folders:
        raise ConfigError(
            f"partner {partner!r} has no {flow.folder!r} folder",
            [ConfigProblem(f"partners.{partner}.folders", f"add {flow.folder} = '/path'")],
        )
    return folders[flow.folder]


def delivery_request(
    outbound: Outbound,
    *,
    flow: str,
    folder: str,
    trigger: str,
    generation: int | None = None,
) -> DeliveryRequest:
    """The engine's request for a planned package: every file, under the partner's folder
    (``folder`` is the remote path of the flow's folder on that partner, e.g. ``/in``).
    The generation is the outbound's own when it has one (a marketing package released again
    after a withdrawal), so it is a new workflow rather than the old one's result."""
    if generation is None:
        generation = int(getattr(outbound, "generation", 0))
    files = []
    for f in outbound.plan.files:
        if f.source is None:
            raise ValueError(f"{f.remote_path}: the plan must be materialized before delivery")
        files.append(
            FileToSend(
                source=str(f.source),
                remote_path=join_remote(folder, f.remote_path),
                sha256=f.sha256,
                size=f.size,
                upload_path=join_remote(folder, f.upload_path) if f.upload_path else None,
                asset_version_id=f.version_id,
            )
        )
    return DeliveryRequest(
        flow=flow,
        partner=outbound.partner,
        package=outbound.label,
        files=tuple(files),
        generation=generation,
        trigger=trigger,
        isbn=outbound.isbn,
    )


def request_for(app: App, flow: str, outbound: Outbound, *, trigger: str) -> DeliveryRequest:
    """The request for one package of the named flow, in that partner's folder of the flow."""
    config = app.settings.flow(flow)  # a typo is answered with the closest name
    folder = folder_of(app, config, outbound.partner)
    return delivery_request(outbound, flow=flow, folder=folder, trigger=trigger)


def requests(
    app: App, flow: str, outbounds: Iterable[Outbound], *, trigger: str
) -> list[DeliveryRequest]:
    """The requests of a planned run: one per package, in the plan's order."""
    return [request_for(app, flow, o, trigger=trigger) for o in outbounds]


def withdrawal_request(withdrawal: Withdrawal, *, flow: str, trigger: str) -> DeliveryRequest:
    """The engine's request removing a withdrawn title's files from one partner: each file
    as the ledger recorded it (full remote path, SHA-256, size; no local copy is needed), the
    generation withdrawn (so the same withdrawal planned again attaches to its workflow)."""
    files = tuple(
        FileToSend(source="", remote_path=f.remote_path, sha256=f.sha256, size=f.size)
        for f in withdrawal.files
    )
    return DeliveryRequest(
        flow=flow,
        partner=withdrawal.partner,
        package=withdrawal.label,
        files=files,
        generation=withdrawal.generation,
        trigger=trigger,
        isbn=withdrawal.isbn,
        action=RequestAction.WITHDRAW,
        work_id=withdrawal.work_id,
    )


def withdrawal_requests(planned: PlannedRun, *, trigger: str) -> list[DeliveryRequest]:
    """The withdrawal requests of a planned run, in the plan's order."""
    return [withdrawal_request(w, flow=planned.flow, trigger=trigger) for w in planned.withdrawals]


def remote_files(app: App, flow: FlowBase, outbound: Outbound) -> list[FileToSend]:
    """The files of a package as they will land on the partner's server (for dry runs)."""
    request = delivery_request(
        outbound, flow="-", folder=folder_of(app, flow, outbound.partner), trigger="-"
    )
    return list(request.files)


def workflow_owner(workflow_id: str) -> str:
    """The partner of ``dlv-<partner>-<hash>-g<n>`` / ``wdr-<partner>-<hash>-g<n>`` /
    ``ing-<partner>-<hash>``, or the flow of
    ``sched-flow:<flow>-<tick time>`` / ``evt-<flow>-<hash>``; partner and flow names may
    hold '-'."""
    if workflow_id.startswith("sched-flow:"):
        return workflow_id.removeprefix("sched-flow:").rsplit("-", 3)[0]
    if workflow_id.startswith("evt-"):
        return workflow_id.removeprefix("evt-").rsplit("-", 1)[0]
    parts = workflow_id.split("-")
    if workflow_id.startswith("ing-"):
        return "-".join(parts[1:-1])
    return "-".join(parts[1:-2]) if len(parts) >= 4 else ""


def resend_request(app: App, workflow_id: str, *, by: str, reason: str) -> DeliveryRequest:
    """The request for a new generation of a recorded delivery (same files, same places)."""
    rows = [
        r
        for r in app.store.list_deliveries(partner=workflow_owner(workflow_id) or None)
        if r.workflow_id == workflow_id
    ]
    if not rows:
        raise ConsonanceSftpError(
            f"no delivery {workflow_id!r} in the ledger",
            hint="Find it with 'consonance-sftp history --isbn ... --partner ...'.",
        )
    first = rows[0]
    newest = max(
        (app.store.find_delivery(r.key) for r in rows),
        key=lambda r: r.generation if r is not None else -1,
    )
    generation = (newest.generation if newest is not None else first.generation) + 1
    files = []
    for r in sorted(rows, key=lambda r: r.id or 0):
        if not r.source or not os.path.exists(r.source):
            raise ConsonanceSftpError(
                f"the local copy of {r.remote_path} is gone ({r.source or 'no source recorded'})",
                hint="Run the flow again for the title: 'consonance-sftp run FLOW --isbn ...'.",
            )
        files.append(
            FileToSend(
                source=r.source,
                remote_path=r.remote_path,
                sha256=r.sha256,
                size=r.size,
                asset_version_id=r.asset_version_id,
            )
        )
    return DeliveryRequest(
        flow=first.flow,
        partner=first.partner,
        package=first.package or workflow_id,
        files=tuple(files),
        generation=generation,
        trigger=f"resend:{by}: {reason}",
        isbn=first.isbn,
    )


# --- planning and submission ---------------------------------------------------------------


@dataclass(slots=True)
class RunOutcome:
    """What a run did: the plan, and per package the workflow or why it was held."""

    planned: PlannedRun
    enqueued: list[Enqueued] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the log: what was planned, sent, held, failed, skipped."""
        failed = sum(1 for r in self.results.values() if "error" in r)
        done = sum(1 for r in self.results.values() if "sent" in r)
        parts = [
            f"{counted(len(self.planned.outbounds), 'package')} planned",
            f"{len(self.enqueued)} enqueued",
        ]
        if self.results:
            parts.append(f"{done} delivered, {failed} failed")
        if self.held:
            parts.append(f"{len(self.held)} held ({self.held[0].reason})")
        if self.planned.incomplete:
            parts.append(f"not sent in full: {'; '.join(self.planned.incomplete)}")
        if self.planned.skipped:
            first = self.planned.skipped[0]
            parts.append(f"{len(self.planned.skipped)} skipped ({first.what}: {first.reason})")
        return ", ".join(parts)


def is_intake(app: App, name: str) -> bool:
    """Does the named flow take files in from partners' inboxes (``app.intake``) rather than
    plan packages out? A typo is answered with the closest name."""
    return registry.is_intake(app.settings.flow(name))


def trigger_of(event: ChangeEvent) -> str:
    """The trigger a delivery records for the Consonance event that fired its flow."""
    return f"consonance: work {event.work_id} {event.kind.value} {event.new}"


def manual_trigger() -> str:
    """The trigger of a run started by hand: who started it."""
    user = os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"
    return f"manual:{user}"


def flow_context(
    app: App,
    api: ConsonanceAPI,
    now: datetime,
    *,
    force_full: bool = False,
    test: bool = False,
    dry_run: bool = False,
) -> FlowContext:
    """The ports a flow plans with: this app's store, state folder and partners."""
    return FlowContext(
        api=api,
        store=app.store,
        state_dir=app.state_dir,
        folder=lambda flow, partner: folder_of(app, flow, partner),
        now=now,
        force_full=force_full,
        test=test,
        dry_run=dry_run,
    )


async def plan(
    app: App,
    name: str,
    *,
    isbns: Sequence[str] = (),
    event: ChangeEvent | None = None,
    api: ConsonanceAPI | None = None,
    force_full: bool = False,
    test: bool = False,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PlannedRun:
    """What a run of the flow would send: its registry entry's plan, given the ports. ``now``
    (a schedule's tick time, an event's detection time) makes the plan repeatable: message
    headers and file names that carry a time use it. ``api``: a Consonance client already
    open (else one is opened for the plan)."""
    flow = app.settings.flow(name)  # a typo is answered with the closest name
    plan_of = registry.plan_for(name, flow)  # a kind this release cannot run says so first
    if not flow.enabled:
        raise ConsonanceSftpError(
            f"flow {name!r} is disabled in the config",
            hint=f"Set enabled = true in the flows.{name} table of the config.",
        )
    now = now or datetime.now(UTC)
    options = {"force_full": force_full, "test": test, "dry_run": dry_run}
    if api is not None:
        return await plan_of(flow_context(app, api, now, **options), name, flow, isbns, event)
    async with app.consonance() as client:
        ctx = flow_context(app, client, now, **options)
        return await plan_of(ctx, name, flow, isbns, event)


async def plan_event(
    app: App, name: str, event: ChangeEvent, *, api: ConsonanceAPI | None = None
) -> PlannedRun:
    """The flow's plan for the Consonance event that fired it, as of the time the event was
    seen: planned again (a retry, a recovery), it plans the same packages."""
    return await plan(app, name, event=event, api=api, now=event.detected_at)


async def submit_all(
    app: App,
    runner: DeliveryRunner,
    outcome: RunOutcome,
    *,
    trigger: str,
    wait: bool,
) -> None:
    """Each planned package as one engine delivery, each planned withdrawal as one engine
    withdrawal (held when a pause or a closed window says so); with ``wait``, until each
    enqueued one has its outcome (in ``outcome``)."""
    planned = outcome.planned
    # Deliveries, then a withdrawn title's files off the partners: held alike. A flow's
    # after-delivery hook (an ONIX baseline) runs as the engine's ledger records each file
    # delivered (``app.runner.FlowLedger``), whether or not anyone waits here.
    for request in [
        *requests(app, planned.flow, planned.outbounds, trigger=trigger),
        *withdrawal_requests(planned, trigger=trigger),
    ]:
        submitted = await runner.submit(request)
        if isinstance(submitted, Held):
            outcome.held.append(submitted)
        else:
            outcome.enqueued.append(submitted)
    if wait:
        for e in outcome.enqueued:
            outcome.results[e.workflow_id] = await runner.wait(e.workflow_id)


async def run_flow(
    app: App,
    name: str,
    *,
    dry_run: bool = False,
    isbns: Sequence[str] = (),
    trigger: str | None = None,
    runner: DeliveryRunner | None = None,
    wait: bool = True,
    progress: ProgressSink | None = None,
    force_full: bool = False,
    test: bool = False,
    now: datetime | None = None,
) -> RunOutcome:
    """One manual (or scheduled) run of a flow. ``dry_run`` plans and sends nothing.

    A run that sends holds the flow's run lock (``flow_lock``) from its plan to its recorded
    outcome: another run of the same flow, manual or scheduled, in any process, waits for it
    and then plans from what it left (an ONIX baseline and MessageNumber)."""
    # A dry run sends nothing, so it need not wait for a run that does.
    lock = contextlib.nullcontext() if dry_run else flow_lock(app, name)
    async with lock:
        config = app.settings.flows.get(name)
        if isinstance(config, FinanceOutFlow) and not dry_run:
            # Statement batches finance put on an SFTP inbox come down before the plan.
            await fetch_batches(app, name, config)
        planned = await plan(
            app, name, isbns=isbns, force_full=force_full, test=test, dry_run=dry_run, now=now
        )
        outcome = RunOutcome(planned)
        if dry_run:
            return outcome
        if runner is not None:
            await submit_all(app, runner, outcome, trigger=trigger or "manual", wait=wait)
        else:
            async with DeliveryRunner(app, progress=progress, quiet=True) as own:
                trigger = trigger or manual_trigger()
                await submit_all(app, own, outcome, trigger=trigger, wait=wait)
        if isinstance(config, ArchiveFlow):
            # A restore drill when one is due (archives read back from where they live).
            await run_due_drill(app, name, config)
            # Then the archives its retention no longer keeps (a fresh drill counts).
            await apply_retention(
                app, name, config, folder=lambda p: folder_of(app, config, p), now=now
            )
    log.info("run of flow %s (%s): %s", name, trigger or "manual", outcome.summary())
    return outcome


async def run_event(
    app: App, name: str, event: dict[str, Any], *, runner: DeliveryRunner
) -> dict[str, Any]:
    """What one event workflow does (the engine's event runner, bound by ``App.bind_work``):
    plan the flow for the event (``plan_event``: a re-run plans the same packages and attaches
    to the same deliveries) and enqueue its packages.

    Errors propagate: the engine retries the retryable ones, then ends the workflow failed
    with the reason (``status`` shows it, ``retry`` runs it again)."""
    change = event_from_json(event)
    trigger = trigger_of(change)
    summary: dict[str, Any] = {"flow": name, "trigger": trigger}
    flow = app.settings.flows.get(name)
    if flow is None or not flow.enabled:
        return {**summary, "skipped": "no longer an enabled flow in the config"}
    planned = await plan_event(app, name, change)
    outcome = RunOutcome(planned)
    await submit_all(app, runner, outcome, trigger=trigger, wait=False)
    log.info("flow %s fired by %s: %s", name, trigger, outcome.summary())
    return {
        **summary,
        "deliveries": sorted(e.workflow_id for e in outcome.enqueued),
        "held": [h.reason for h in outcome.held],
        "skipped": [f"{s.what}: {s.reason}" for s in planned.skipped],
    }
