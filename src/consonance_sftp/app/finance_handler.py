"""The ``finance_out`` flow's statement batches, wired to this App: list and show them,
approve, send, send the unsent, resend one (``consonance-sftp finance ...``).

Taking batches in and resolving their payees happens at each run of the flow
(``flows.finance_out.plan``); here is only what a person does: nothing of a batch leaves
before ``approve``, and every act is on the audit trail with who did it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consonance_sftp.config.flows import FinanceOutFlow
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.flows import finance_out
from consonance_sftp.logs import get_logger
from consonance_sftp.ports.finance import BatchRecord as BatchRecord  # for the CLI
from consonance_sftp.ports.finance import StatementRecord as StatementRecord
from consonance_sftp.ports.finance import StatementState

if TYPE_CHECKING:
    from consonance_sftp.app import App
    from consonance_sftp.app.runner import DeliveryRunner

ACTOR_PREFIX = "user:"
log = get_logger(__name__)


def finance_flow(app: App, name: str) -> FinanceOutFlow:
    """The ``finance_out`` flow a batch came in by."""
    flow = app.settings.flows.get(name)
    if not isinstance(flow, FinanceOutFlow):
        flows = sorted(n for n, f in app.settings.flows.items() if isinstance(f, FinanceOutFlow))
        raise ConsonanceSftpError(
            f"no finance_out flow named {name!r} in the config (the batch came in by it)",
            hint="finance_out flows: " + (", ".join(flows) or "none"),
        )
    return flow


def find_batch(app: App, ref: str) -> BatchRecord:
    """A batch by its ID or its name (in any finance_out flow)."""
    store = app.store
    batch = store.get_finance_batch(int(ref)) if ref.isdigit() else None
    names = sorted(n for n, f in app.settings.flows.items() if isinstance(f, FinanceOutFlow))
    for name in names if batch is None else ():
        batch = batch or store.find_finance_batch(name, ref)
    if batch is None:
        raise ConsonanceSftpError(
            f"no statement batch {ref!r}", hint="consonance-sftp finance batches lists them."
        )
    return batch


def approve(app: App, ref: str, *, by: str) -> BatchRecord:
    """Let the batch's resolved statements leave (recorded with who); refused while a
    statement is not read yet."""
    return app.store.approve_finance_batch(find_batch(app, ref).id, by=by)


@dataclass(slots=True)
class SendOutcome:
    """What ``send`` and ``resend`` did, per statement."""

    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)


async def _contracts(app: App) -> dict[int, list[finance_out.PayeeContract]]:
    async with app.consonance() as api:
        return await finance_out.contracts_by_payee(api)


async def send(app: App, runner: DeliveryRunner, ref: str, *, unsent: bool, by: str) -> SendOutcome:
    """Send the approved statements of a batch, each to its destinations, and wait for each
    delivery's outcome. ``unsent``: after a partial failure, only those not sent yet (approved
    or failed); without it, a batch with a statement already sent or failed is refused."""
    batch = find_batch(app, ref)
    cfg = finance_flow(app, batch.flow)
    store = app.store
    statements = await asyncio.to_thread(store.list_statements, batch.id)
    started = [s for s in statements if s.state in ("sent", "failed")]
    if started and not unsent:
        raise ConsonanceSftpError(
            f"batch {batch.name!r} was sent before ({len(started)} statement(s) sent or failed)",
            hint=f"consonance-sftp finance send {batch.name} --unsent sends only the rest; "
            "finance resend STATEMENT --reason ... sends one again.",
        )
    sendable = ("approved", "failed") if unsent else ("approved",)
    todo = [s for s in statements if s.state in sendable]
    if not todo:
        waiting = [s for s in statements if s.state == "resolved"]
        raise ConsonanceSftpError(
            f"batch {batch.name!r} has nothing approved to send",
            hint=f"consonance-sftp finance approve {batch.name}" if waiting else None,
        )
    return await _deliver(app, runner, cfg, batch, todo, by=by)


async def _deliver(
    app: App,
    runner: DeliveryRunner,
    cfg: FinanceOutFlow,
    batch: BatchRecord,
    statements: list[StatementRecord],
    *,
    by: str,
    reason: str | None = None,
) -> SendOutcome:
    """Submit every destination's package of every statement to the engine (which runs them
    side by side, each partner within its connection budget), then record each statement's
    outcome as its deliveries end. With a ``reason`` it is a resend: each package one
    generation above the ledger's newest, marked so the partner gets it again even where it
    holds the same bytes."""
    contracts = await _contracts(app)
    now = datetime.now(UTC)
    submitted = [
        await _submit(app, runner, cfg, batch, s, contracts, now=now, by=by, reason=reason)
        for s in statements
    ]
    out = SendOutcome()
    details: dict[str, Any] = {"by": by} | ({"reason": reason} if reason is not None else {})
    for statement, (workflows, held, generation) in zip(statements, submitted, strict=True):
        state: StatementState
        results = [await runner.wait(w) for w in workflows.values()]
        errors = [
            f"{where}: {r['error']}"
            for where, r in zip(workflows, results, strict=True)
            if "error" in r
        ]
        if errors:
            state, why = "failed", "; ".join(errors)
            out.failed[statement.file_name] = why
        elif held:
            state, why = "approved", "held: " + "; ".join(held)
            out.held[statement.file_name] = "; ".join(held)
        else:
            state, why = "sent", ""
            out.sent.append(statement.file_name)
        await asyncio.to_thread(
            app.store.set_statement,
            statement.id,
            state,
            actor=ACTOR_PREFIX + by,
            reason=why,
            deliveries=workflows,
            details={**details, "generation": generation},
        )
    return out


async def _submit(
    app: App,
    runner: DeliveryRunner,
    cfg: FinanceOutFlow,
    batch: BatchRecord,
    statement: StatementRecord,
    contracts: dict[int, list[finance_out.PayeeContract]],
    *,
    now: datetime,
    by: str,
    reason: str | None,
) -> tuple[dict[str, str], list[str], int]:
    """One statement's packages handed to the engine: (``partner:role`` -> workflow ID,
    held reasons, the generation sent)."""
    from consonance_sftp.app.runner import Enqueued, mark_resend

    workflows: dict[str, str] = {}
    held: list[str] = []
    generation = 0
    for destination in statement.destinations:
        files = await asyncio.to_thread(
            finance_out.prepare,
            cfg,
            batch,
            statement,
            destination,
            state_dir=app.state_dir,
            contracts=contracts.get(statement.payee_id or -1, []),
            publisher=cfg.publisher_name,
            now=now,
        )
        request = finance_out.statement_request(
            batch.flow, batch, statement, destination, files, trigger=f"finance:{batch.name}:{by}"
        )
        if reason is not None:
            keys = request.keys()
            rows = [app.store.find_delivery(k) for k in keys]
            newest = max((r.generation for r in rows if r is not None), default=0)
            request = dataclasses.replace(request, generation=newest + 1)
            await asyncio.to_thread(mark_resend, app.store, request)
        generation = max(generation, request.generation)
        submitted = await runner.submit(request)
        if isinstance(submitted, Enqueued):
            workflows[f"{destination.partner}:{destination.role}"] = submitted.workflow_id
            # A package that failed before (send --unsent) runs again from its failed step.
            await asyncio.to_thread(runner.resume_failed, submitted.workflow_id)
        else:
            held.append(f"{destination.partner}: {submitted.reason}")
    return workflows, held, generation


async def resend(
    app: App, runner: DeliveryRunner, statement_id: int, *, by: str, reason: str
) -> SendOutcome:
    """Send one statement again to every destination, one generation up (the partner gets
    it even where it holds the same bytes); recorded with who and why."""
    if not reason.strip():
        raise ConsonanceSftpError("a resend needs a reason", hint="Pass --reason '...'.")
    store = app.store
    statement = await asyncio.to_thread(store.get_statement, statement_id)
    if statement is None:
        raise ConsonanceSftpError(
            f"no statement {statement_id}", hint="consonance-sftp finance show BATCH lists them."
        )
    if statement.state not in ("sent", "failed"):
        raise ConsonanceSftpError(
            f"statement {statement_id} ({statement.file_name}) is {statement.state}: only a "
            "statement sent (or failed) can be sent again",
            hint="consonance-sftp finance send BATCH sends an approved batch.",
        )
    batch = await asyncio.to_thread(store.get_finance_batch, statement.batch_id)
    assert batch is not None
    cfg = finance_flow(app, batch.flow)
    return await _deliver(app, runner, cfg, batch, [statement], by=by, reason=reason)


async def fetch_batches(app: App, name: str, cfg: FinanceOutFlow) -> list[str]:
    """A flow with ``statements_from``: each zip in the finance inbox that no batch of the
    flow has taken yet, once the partner has finished writing it (two looks agree), is
    downloaded (resumable, its size checked) into the statements folder, where the run takes
    it like a dropped one. The remote file stays: the batch's name keeps it to one batch.
    Nothing is fetched while the partner is paused. Returns the names fetched."""
    from consonance_sftp.app.runner import Controls

    source = cfg.statements_from
    if source is None or await asyncio.to_thread(
        Controls(app).is_paused, "partner", source.partner
    ):
        return []
    folder = app.partner_config(source.partner).folders[source.folder]
    target = finance_out.statements_dir(cfg, app.state_dir)
    target.mkdir(parents=True, exist_ok=True)
    fetched: list[str] = []
    async with app.remote_fs(source.partner) as fs:
        waiting = [
            entry
            async for entry in fs.list(folder, pattern="*.zip")
            if not (target / entry.name).exists()
            and app.store.find_finance_batch(name, finance_out.batch_name(Path(entry.name))) is None
        ]
        for entry in waiting:
            stable = await fs.wait_stable(entry)
            if stable is None:
                continue  # still being written: the next run looks again
            part = target / f".{entry.name}.part"
            await fs.download(str(entry.path), part, expected_size=stable.size)
            part.replace(target / entry.name)
            fetched.append(entry.name)
    if fetched:
        log.info("flow %s: fetched statement batch(es) %s", name, ", ".join(fetched))
    return fetched
