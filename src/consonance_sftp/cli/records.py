"""``status``, ``history``, ``retry``, ``resend`` and the pause/resume controls.

These read our own store (ledger, audit trail) and the engine through the DBOS client; they
never become a second executor next to ``serve``. When nothing executes on the SQLite engine
file, ``retry`` and ``resend`` run the delivery in-process and wait for it.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from consonance_sftp.cli.main import acting_user, load_app
from consonance_sftp.formats.wording import counted

if TYPE_CHECKING:
    from consonance_sftp.app import App
    from consonance_sftp.app.delivery import ProgressSink
    from consonance_sftp.app.operations import (
        DeliveryRecord,
        Operations,
        PauseChange,
        Status,
        WorkTable,
    )
    from consonance_sftp.app.poller_health import PollerHealth
    from consonance_sftp.app.runner import DeliveryRunner

# Not a terminal (a pipe, a log): 160 columns. Tables fold what does not fit, never cut it.
console = Console(highlight=False, emoji=False, width=None if sys.stdout.isatty() else 160)
flow_app = typer.Typer(help="Flows: pause and resume.", no_args_is_help=True)

HISTORY_COLUMNS = (
    "finished (UTC)",
    "flow",
    "partner",
    "ISBN",
    "remote path",
    "bytes",
    "SHA-256",
    "gen",
    "outcome",
    "verified by",
    "workflow",
)
CSV_COLUMNS = (
    "finished_at",
    "started_at",
    "created_at",
    "flow",
    "partner",
    "isbn",
    "package",
    "remote_path",
    "size",
    "sha256",
    "generation",
    "asset_version_id",
    "outcome",
    "attempts",
    "workflow_id",
    "trigger",
    "error",
    # Last, so that scripts reading the columns by position before it existed still work.
    "verified_by",
)


def _ops(app: App | None = None) -> Operations:
    from consonance_sftp.app.operations import Operations

    return Operations(app or load_app())


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO date or time: {value!r}", param_hint=option) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _ts(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else ""


# --- history -------------------------------------------------------------------------------


def history(
    isbn: Annotated[str | None, typer.Option(help="Only this title (ISBN-13).")] = None,
    partner: Annotated[str | None, typer.Option(help="Only this partner.")] = None,
    flow: Annotated[str | None, typer.Option(help="Only this flow.")] = None,
    since: Annotated[str | None, typer.Option(help="From this date/time (ISO).")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this date/time (ISO).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many files (newest first).")] = 200,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="CSV on stdout: did it go, when, which version.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON lines on stdout, one object per file.")
    ] = False,
) -> None:
    """What was delivered: one row per file sent (or failed, or skipped), newest first.

    The table folds long paths and IDs onto several lines rather than cut them; --csv and
    --json print every column in full, one file per line.
    """
    rows = _ops().history(
        isbn=isbn,
        partner=partner,
        flow=flow,
        since=_when(since, "--since"),
        until=_when(until, "--until"),
        limit=limit,
    )
    if as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(CSV_COLUMNS)
        for r in rows:
            writer.writerow(_csv_row(r))
        return
    if as_json:
        for r in rows:
            sys.stdout.write(json.dumps(_json_row(r)) + "\n")
        return
    table = Table(title=None)
    # A column never cuts its text with "…": a path or workflow ID too long for the terminal
    # is folded onto more lines, so it can still be read (and copied) whole.
    for name in HISTORY_COLUMNS:
        table.add_column(name, overflow="fold")
    for r in rows:
        style = {"failed": "red", "sent": "green", "skipped": "yellow"}.get(r.outcome.value, "")
        table.add_row(
            _short_ts(r.finished_at or r.created_at),
            r.flow,
            r.partner,
            r.isbn or "",
            r.remote_path,
            f"{r.size:,}",
            r.sha256[:12],
            str(r.generation),
            f"[{style}]{r.outcome.value}[/{style}]" if style else r.outcome.value,
            _verified(r),
            r.workflow_id or "",
        )
    console.print(table)
    console.print(counted(len(rows), "file"))


def _verified(r: DeliveryRecord) -> str:
    """How the partner's copy was verified; a size-only check stands out (it is no proof of
    content, and only a partner configured with ``checksum = "size"`` gets it)."""
    if r.verified_by is None:
        return ""
    return f"[yellow]{r.verified_by}[/yellow]" if not r.verified_by.by_hash else r.verified_by


def _short_ts(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _json_row(r: DeliveryRecord) -> dict[str, object]:
    """The CSV columns with numbers as numbers and absent values as null."""
    row: dict[str, object] = {k: v or None for k, v in zip(CSV_COLUMNS, _csv_row(r), strict=True)}
    row.update(
        size=r.size,
        generation=r.generation,
        attempts=r.attempts,
        asset_version_id=r.asset_version_id,
    )
    return row


def _csv_row(r: DeliveryRecord) -> list[str]:
    return [
        _ts(r.finished_at),
        _ts(r.started_at),
        _ts(r.created_at),
        r.flow,
        r.partner,
        r.isbn or "",
        r.package or "",
        r.remote_path,
        str(r.size),
        r.sha256,
        str(r.generation),
        "" if r.asset_version_id is None else str(r.asset_version_id),
        r.outcome.value,
        str(r.attempts),
        r.workflow_id or "",
        r.trigger or "",
        r.error or "",
        "" if r.verified_by is None else r.verified_by.value,
    ]


# --- status --------------------------------------------------------------------------------


def status() -> None:
    """What is running, queued and failed; paused partners and flows; next schedule ticks."""
    app = load_app()
    st = _ops(app).status()
    console.print(
        f"engine: {'an executor is running' if st.executor_running else 'no executor running'} "
        f"({st.backend})"
    )
    if not st.engine_started:
        console.print("deliveries: none yet (the engine has not run on this config)")
    else:
        _work_tables(st.work)
    _poller_health(st.poller)
    _open_alerts(app)
    _controls_and_schedules(st)


def _failing_notifications(app: App) -> None:
    """Notification targets whose latest send failed: nobody hears of alerts through them."""
    from consonance_sftp.app.notify import Notifier

    for f in Notifier(app.store, app.settings.sent_targets()).failing():
        console.print(
            f"[red]notifications: {escape(f.target)} failing since "
            f"{f.since.astimezone(UTC):%Y-%m-%d %H:%M} ({counted(f.failures, 'failed send')}): "
            f"{escape(f.error)}[/red]"
        )


def _open_alerts(app: App) -> None:
    """The newest alerts nobody has acknowledged (``alerts list`` shows them all)."""
    from consonance_sftp.app.alerts import open_alerts
    from consonance_sftp.cli.alerts import alerts_table

    shown = 5
    _failing_notifications(app)
    rows = open_alerts(app.store, limit=shown + 1)
    if not rows:
        console.print("alerts: none open")
        return
    console.print(alerts_table(rows[:shown], title="open alerts"))
    more = "more than " if len(rows) > shown else ""
    console.print(
        f"alerts: {more}{counted(min(len(rows), shown), 'open alert')}; "
        "'consonance-sftp alerts list' shows them all, 'alerts ack ID' marks one handled",
        markup=False,
    )


def _poller_health(health: PollerHealth | None) -> None:
    """When ``serve`` last read Consonance, and its last failure (kept by the service)."""
    if health is None:
        console.print("Consonance poller: has not polled yet (it runs in 'serve')")
        return
    ok = (
        f"last read {health.last_success} ({health.last_mode})"
        if health.last_success
        else ("never read successfully")
    )
    console.print(f"Consonance poller: {ok}", markup=False)
    if health.last_error:
        console.print(
            f"Consonance poller: last error {health.last_error_at}: {health.last_error}",
            markup=False,
        )
    if health.failing_since:
        console.print(
            f"[red]Consonance poller: failing since {health.failing_since} "
            f"({counted(health.failures, 'poll')} in a row)[/red]"
        )


def _work_tables(tables: list[WorkTable]) -> None:
    """Per kind of durable work: what is not done (running, queued, failed with its reason),
    then a count per state."""
    for work in tables:
        table = Table(
            Column("workflow", overflow="fold"),  # an ID is folded, never cut
            work.owner,
            "state",
            "reason",
            title=work.what,
            title_justify="left",
        )
        for item in work.open:
            table.add_row(item.workflow_id, item.owner, item.state.value, item.reason)
        if table.row_count:
            console.print(table)
        summary = ", ".join(f"{k.value} {v}" for k, v in work.counts.items()) or "none"
        console.print(f"{work.what}: {summary}")


def _controls_and_schedules(st: Status) -> None:
    if st.held:
        t = Table("held since", "partner", "package", "why", title="held", title_justify="left")
        for h in st.held:
            why = h.reason or (
                "free to go: the running service is sending it"
                if st.executor_running
                else "free to go: sent when 'consonance-sftp serve' starts"
            )
            when = h.held_at.isoformat(timespec="seconds")
            t.add_row(when, h.request.partner, h.request.package, why)
        console.print(t)
    if st.paused:
        t = Table(
            "paused",
            "name",
            "by",
            "since",
            "reason",
            title="operator controls",
            title_justify="left",
        )
        for p in st.paused:
            t.add_row(p.scope, p.name, p.by, p.at, p.reason)
        console.print(t)
    else:
        console.print("nothing paused")
    sched = Table("flow", "cron", "timezone", "next tick", title="schedules", title_justify="left")
    for s in st.schedules:
        sched.add_row(s.flow, s.cron, s.timezone, s.next_tick.isoformat())
    console.print(sched)


# --- retry and resend ----------------------------------------------------------------------


def retry(
    workflow_id: Annotated[
        str,
        typer.Argument(
            help="ID of a failed workflow: a delivery, an intake, a flow tick or a flow "
            "fired by a Consonance event."
        ),
    ],
    by: Annotated[str | None, typer.Option(help="Who asks (default: $USER).")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait")] = True,
) -> None:
    """Re-run a failed delivery, intake, flow tick or flow event from its first failed step
    (same ID)."""
    app = load_app()
    _ops(app).retry(workflow_id, by=acting_user(by))
    console.print(f"retrying {workflow_id}")
    if wait:
        result = asyncio.run(_wait_for(app, workflow_id))
        _report(workflow_id, result)


async def _wait_for(app: App, workflow_id: str) -> dict[str, object]:
    from consonance_sftp.app.runner import DeliveryRunner
    from consonance_sftp.cli.follow import follow, following

    ops = _ops(app)
    files = ops.files_of(workflow_id)
    with following(app, console) as bars:
        async with DeliveryRunner(app, quiet=True, progress=bars) as runner:
            await ops.take_queues_of(runner, workflow_id)
            if workflow_id.startswith("evt-"):
                return await _follow_event(runner, workflow_id)
            return await follow(console, runner, workflow_id, files=files or None)


async def _follow_event(runner: DeliveryRunner, workflow_id: str) -> dict[str, object]:
    """A flow event's plan, then the deliveries it enqueued: all sent, or the first failure."""
    from consonance_sftp.cli.follow import follow

    planned = await follow(console, runner, workflow_id)
    if "error" in planned:
        return planned
    sent: list[object] = []
    deliveries = planned.get("deliveries")
    for wid in deliveries if isinstance(deliveries, list) else []:
        result = await follow(console, runner, str(wid))
        if "error" in result:
            return {"error": f"{wid}: {result['error']}"}
        files = result.get("sent")
        sent.extend(files if isinstance(files, list) else [])
    return {"sent": sent}


def _report(workflow_id: str, result: dict[str, object]) -> None:
    if "error" in result:
        console.print(
            f"[red]failed[/red] {workflow_id}: {escape(str(result['error']))}", soft_wrap=True
        )
        console.print(
            "[dim]hint:[/dim] the failure is in 'consonance-sftp history' and raised an alert; "
            f"once the cause is fixed, 'consonance-sftp retry {workflow_id}' tries again",
            soft_wrap=True,
        )
        raise typer.Exit(1)
    sent = result.get("sent")
    if isinstance(sent, list):
        console.print(f"[green]done[/green] {workflow_id}: {counted(len(sent), 'file')} sent")
    else:
        console.print(f"{workflow_id}: {result.get('status')}")


def resend(
    reason: Annotated[str, typer.Option("--reason", help="Why it is sent again (required).")],
    workflow_id: Annotated[
        str | None, typer.Argument(help="Workflow ID of the delivery to send again.")
    ] = None,
    isbn: Annotated[str | None, typer.Option(help="Or: the title's latest delivery...")] = None,
    partner: Annotated[str | None, typer.Option(help="...to this partner.")] = None,
    flow: Annotated[str | None, typer.Option(help="...of this flow (optional).")] = None,
    by: Annotated[str | None, typer.Option(help="Who asks (default: $USER).")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait")] = True,
) -> None:
    """Send a delivered package again, on purpose: a new generation, recorded with who and why."""
    from consonance_sftp.app.runner import DeliveryRunner
    from consonance_sftp.cli.follow import follow, following

    app = load_app()
    ops = _ops(app)
    who = acting_user(by)
    if not reason.strip():
        raise typer.BadParameter("give a reason", param_hint="--reason")
    if workflow_id is None:
        if not (isbn and partner):
            raise typer.BadParameter("name a workflow ID, or --isbn and --partner")
        workflow_id = ops.latest_delivery(isbn, partner, flow)
    request = ops.prepare_resend(workflow_id, by=who, reason=reason)
    from_workflow = workflow_id

    async def go() -> tuple[str, dict[str, object] | None]:
        with following(app, console) as bars:
            return await send(bars)

    async def send(bars: ProgressSink | None) -> tuple[str, dict[str, object] | None]:
        async with DeliveryRunner(app, quiet=True, progress=bars) as runner:
            new_id = await ops.submit_resend(
                runner, request, from_workflow=from_workflow, by=who, reason=reason
            )
            console.print(f"resending as {new_id}", markup=False)
            files = len(request.files)
            result = await follow(console, runner, new_id, files=files) if wait else None
            return new_id, result

    new_id, result = asyncio.run(go())
    console.print(f"resend of {workflow_id} as generation {request.generation}: {new_id}")
    if result is not None:
        _report(new_id, result)


# --- pause and resume ----------------------------------------------------------------------


def _control(scope: str, name: str, paused: bool, by: str | None, reason: str | None) -> None:
    change = _ops().set_paused(scope, name, paused=paused, by=acting_user(by), reason=reason or "")
    p = change.pause
    verb = "paused" if p.paused else "resumed"
    console.print(f"{scope} {name} {verb} by {p.by}" + (f": {p.reason}" if p.reason else ""))
    if not paused:
        _say_what_happens_to_held(change)


def _say_what_happens_to_held(change: PauseChange) -> None:
    """After a resume: what becomes of the held work, true to whether a service runs."""
    n = change.released
    held = f"{n} held deliver{'y' if n == 1 else 'ies'}"
    if change.executor_running:
        console.print(f"{held} released: the running service sends them now")
    else:
        console.print(f"no service is running: {held} will go when 'consonance-sftp serve' starts")
    if change.still_held:
        console.print(f"{change.still_held} more still held (see 'consonance-sftp status' for why)")
    for wid in change.failed_not_held:
        console.print(
            f"failed earlier, not held: {wid} (send it with 'consonance-sftp retry {wid}')",
            markup=False,
        )


ByOpt = Annotated[str | None, typer.Option(help="Who (default: $USER).")]
ReasonOpt = Annotated[str | None, typer.Option(help="Why (recorded in the audit trail).")]


def partner_pause(name: str, by: ByOpt = None, reason: ReasonOpt = None) -> None:
    """Hold every delivery to this partner until it is resumed (recorded)."""
    _control("partner", name, True, by, reason)


def partner_resume(name: str, by: ByOpt = None, reason: ReasonOpt = None) -> None:
    """Release the partner's held deliveries (the running service sends them)."""
    _control("partner", name, False, by, reason)


@flow_app.command("pause")
def flow_pause(name: str, by: ByOpt = None, reason: ReasonOpt = None) -> None:
    """Hold every delivery of this flow until it is resumed (recorded)."""
    _control("flow", name, True, by, reason)


@flow_app.command("resume")
def flow_resume(name: str, by: ByOpt = None, reason: ReasonOpt = None) -> None:
    """Release the flow's held deliveries (the running service sends them)."""
    _control("flow", name, False, by, reason)


def register(app: typer.Typer) -> None:
    from consonance_sftp.cli.partner import partner_app

    app.command("history")(history)
    app.command("status")(status)
    app.command("retry")(retry)
    app.command("resend")(resend)
    partner_app.command("pause")(partner_pause)
    partner_app.command("resume")(partner_resume)
    app.add_typer(flow_app, name="flow")
