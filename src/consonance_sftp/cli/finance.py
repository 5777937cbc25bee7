"""``finance batches|show|approve|send|resend``: royalty-statement batches of the
``finance_out`` flows, from what was taken in to what each payee received
(``app.finance_handler``). Nothing of a batch leaves before ``approve``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from consonance_sftp.cli.main import acting_user, emit_json, load_app

if TYPE_CHECKING:
    from consonance_sftp.app.finance_handler import BatchRecord, SendOutcome, StatementRecord

finance_app = typer.Typer(
    help="Royalty-statement batches: list, show, approve, send, send the unsent, resend one.",
    no_args_is_help=True,
)
console = Console(highlight=False, emoji=False, soft_wrap=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
By = Annotated[str | None, typer.Option("--by", help="Who acts (default: $USER).")]
BatchArg = Annotated[str, typer.Argument(help="The batch's ID or name.")]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(finance_app, name="finance")


def _batch_dict(b: BatchRecord) -> dict[str, Any]:
    return {
        "id": b.id,
        "flow": b.flow,
        "name": b.name,
        "period": b.period,
        "received_at": b.received_at,
        "approved_at": b.approved_at,
        "approved_by": b.approved_by,
        "counts": b.counts,
        "source": b.source,
    }


def _statement_dict(s: StatementRecord) -> dict[str, Any]:
    return {
        "id": s.id,
        "file": s.file_name,
        "state": s.state,
        "reason": s.reason,
        "payee_id": s.payee_id,
        "payee": s.payee_name,
        "destinations": [
            {"partner": d.partner, "folder": d.folder, "role": d.role} for d in s.destinations
        ],
        "deliveries": s.deliveries,
        "sha256": s.sha256,
        "original": s.original_path,
    }


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()) if n) or "empty"


@finance_app.command("batches")
def batches_cmd(
    flow: Annotated[str | None, typer.Option(help="Only this finance_out flow.")] = None,
    as_json: AsJson = False,
) -> None:
    """Every statement batch taken in, newest first, with its statements per state."""
    app = load_app()
    found = app.store.list_finance_batches(flow=flow)
    if as_json:
        emit_json([_batch_dict(b) for b in found])
        return
    if not found:
        console.print("no statement batches yet (drop one into the flow's statements folder)")
        return
    table = Table("id", "flow", "batch", "period", "received", "approved", "statements")
    for b in found:
        approved = f"{b.approved_at:%Y-%m-%d %H:%M} by {b.approved_by}" if b.approved_at else "-"
        table.add_row(
            str(b.id),
            escape(b.flow),
            escape(b.name),
            b.period or "-",
            f"{b.received_at:%Y-%m-%d %H:%M}",
            approved,
            _counts(b.counts),
        )
    console.print(table)


@finance_app.command("show")
def show_cmd(batch: BatchArg, as_json: AsJson = False) -> None:
    """Every statement of a batch: its resolved payee, destinations, state and reason."""
    from consonance_sftp.app.finance_handler import find_batch

    app = load_app()
    found = find_batch(app, batch)
    statements = app.store.list_statements(found.id)
    if as_json:
        emit_json({**_batch_dict(found), "statements": [_statement_dict(s) for s in statements]})
        return
    approved = f", approved by {found.approved_by}" if found.approved_by else ", not approved"
    console.print(
        f"batch {found.id} {found.name} (flow {found.flow}, period {found.period or '?'})"
        f"{approved}: {_counts(found.counts)}",
        markup=False,
    )
    table = Table("id", "file", "payee", "destinations", "state", "reason")
    for s in statements:
        payee = f"{s.payee_name} ({s.payee_id})" if s.payee_id is not None else "-"
        where = "\n".join(f"{d.partner}:{d.folder}" for d in s.destinations) or "-"
        cells = (s.file_name, payee, where, s.state, s.reason or "")
        table.add_row(str(s.id), *(escape(c) for c in cells))
    console.print(table)


@finance_app.command("approve")
def approve_cmd(batch: BatchArg, by: By = None) -> None:
    """Let the batch's resolved statements leave (quarantined and held ones stay)."""
    from consonance_sftp.app.finance_handler import approve

    app = load_app()
    done = approve(app, batch, by=acting_user(by))
    console.print(
        f"batch {done.name} approved by {done.approved_by}: {_counts(done.counts)}", markup=False
    )


def _report(out: SendOutcome) -> None:
    for name in out.sent:
        console.print(f"sent {name}", markup=False)
    for name, why in out.held.items():
        console.print(f"held {name}: {why}", markup=False)
    for name, why in out.failed.items():
        console.print(f"FAILED {name}: {why}", markup=False)
    console.print(
        f"{len(out.sent)} sent, {len(out.held)} held, {len(out.failed)} failed", markup=False
    )
    if out.failed:
        raise typer.Exit(1)


@finance_app.command("send")
def send_cmd(
    batch: BatchArg,
    unsent: Annotated[
        bool,
        typer.Option("--unsent", help="Only the statements not sent yet (after a failure)."),
    ] = False,
    by: By = None,
) -> None:
    """Send an approved batch: each statement to its payee's (or agent's) folder and the
    finance copy; waits for every delivery."""
    from consonance_sftp.app.finance_handler import send
    from consonance_sftp.app.runner import DeliveryRunner

    app = load_app()

    async def go() -> SendOutcome:
        async with DeliveryRunner(app, quiet=True) as runner:
            return await send(app, runner, batch, unsent=unsent, by=acting_user(by))

    _report(asyncio.run(go()))


@finance_app.command("resend")
def resend_cmd(
    statement: Annotated[int, typer.Argument(help="The statement's ID (finance show).")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is sent again (recorded).")],
    by: By = None,
) -> None:
    """Send one statement again to all its destinations (recorded with who and why)."""
    from consonance_sftp.app.finance_handler import resend
    from consonance_sftp.app.runner import DeliveryRunner

    app = load_app()

    async def go() -> SendOutcome:
        async with DeliveryRunner(app, quiet=True) as runner:
            return await resend(app, runner, statement, by=acting_user(by), reason=reason)

    _report(asyncio.run(go()))
