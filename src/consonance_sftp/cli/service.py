"""``serve``, ``worker`` and ``run FLOW``: the long-running processes and one manual run.

``serve`` is everything in one process on the embedded default (SQLite): the engine, the
Consonance poller, the flows' schedules and the release of held deliveries. ``worker`` is an
executor for scale-out on PostgreSQL, with a stable ID. ``run`` plans one flow now and either
prints what would be sent (``--dry-run``) or delivers it, in-process, or through ``serve`` when
it holds the engine file.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from consonance_sftp.cli.main import state
from consonance_sftp.errors import ConsonanceSftpError

if TYPE_CHECKING:
    from consonance_sftp.app import App
    from consonance_sftp.app.inbox import InboxReport
    from consonance_sftp.app.service import RunOutcome, Service

console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _app() -> App:
    from consonance_sftp.app import App

    return App.from_config(state.config_path)


def _print_plan(app: App, outcome: RunOutcome) -> None:
    from consonance_sftp.app.service import remote_files

    planned = outcome.planned
    flow = app.settings.flows[planned.flow]
    if not planned.outbounds:
        console.print(f"flow {planned.flow}: nothing to send")
    for o in planned.outbounds:
        files = remote_files(app, flow, o)
        total = sum(f.size for f in files)
        table = Table(
            "remote path", "bytes", "SHA-256", title=f"{o.partner}: {o.label}", title_justify="left"
        )
        for f in files:
            table.add_row(f.remote_path, f"{f.size:,}", f.sha256)
        console.print(table)
        console.print(f"{len(files)} files, {total:,} bytes to partner {o.partner}")
    for s in planned.skipped:
        console.print(f"[yellow]skipped[/yellow] {s.what}: {s.reason}")
    for note in planned.notes:
        console.print(note)


def run(
    flow: Annotated[str, typer.Argument(help="Name of the flow (a key of [flows]).")],
    isbn: Annotated[
        list[str] | None, typer.Option("--isbn", help="Title(s) to run the flow for.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be sent; send nothing.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait for the deliveries to finish.")
    ] = True,
    full: Annotated[
        bool, typer.Option("--full", help="ONIX feeds: a full feed instead of a delta.")
    ] = False,
    test: Annotated[
        bool, typer.Option("--test", help="ONIX feeds: a test sample into the test folder.")
    ] = False,
) -> None:
    """Run one flow now (manual trigger); with --dry-run, show exactly what would be sent."""
    from consonance_sftp.app.service import Service

    app = _app()
    service = Service(app)
    isbns = tuple(isbn or ())
    if service.is_inbound(flow):
        if dry_run or isbns or full or test:
            raise ConsonanceSftpError(
                f"flow {flow!r} takes files in: --dry-run, --isbn, --full and --test do not apply",
                hint=f"consonance-sftp run {flow} looks into its partners' inboxes now.",
            )
        _print_inbox(*asyncio.run(service.poll_inbox_now(flow, wait=wait)))
        return
    if dry_run:
        outcome = asyncio.run(
            service.run_flow(flow, dry_run=True, isbns=isbns, force_full=full, test=test)
        )
        _print_plan(app, outcome)
        console.print("[bold]dry run[/bold]: nothing was sent")
        return
    outcome = asyncio.run(_run_with_progress(service, flow, isbns, wait, full=full, test=test))
    _print_plan(app, outcome)
    failed: list[str] = []
    for h in outcome.held:
        console.print(
            f"[yellow]held[/yellow] {h.request.package} for {h.request.partner}: {h.reason}"
        )
    for e in outcome.enqueued:
        result = outcome.results.get(e.workflow_id)
        if result is None:
            console.print(f"queued {e.workflow_id} ({e.request.package} -> {e.request.partner})")
        elif "error" in result:
            failed.append(e.workflow_id)
            console.print(
                f"[red]failed[/red] {e.workflow_id}: {escape(str(result['error']))}", soft_wrap=True
            )
        elif "sent" in result:
            console.print(
                f"[green]done[/green] {e.workflow_id}: {len(result['sent'])} sent, "
                f"{len(result['already_present'])} already on the server, "
                f"{len(result['already_recorded'])} already in the ledger"
            )
        else:
            console.print(f"{e.workflow_id}: {result.get('status')}")
    if failed:
        _failure_hint(failed)
        raise typer.Exit(1)


def _failure_hint(workflow_ids: list[str]) -> None:
    """What to do about failed deliveries: they are on the record, and how to send them."""
    example = workflow_ids[0] if len(workflow_ids) == 1 else "WORKFLOW_ID"
    console.print(
        f"[dim]hint:[/dim] the failure is in 'consonance-sftp history' and raised an alert; "
        f"once the cause is fixed, 'consonance-sftp retry {example}' sends it (running the "
        "flow again returns the same failed delivery)",
        soft_wrap=True,
    )


def _print_inbox(report: InboxReport, results: dict[str, dict[str, Any]]) -> None:
    t = Table("partner", "file", "bytes", "outcome", title=f"inbox poll: {report.flow}")
    for f in report.taken:
        result = results.get(f.workflow_id or "", {})
        outcome = result.get("error") or result.get("outcome") or f"taken ({f.workflow_id})"
        t.add_row(f.partner, f.path, f"{f.size:,}", str(outcome))
    for f in report.unstable:
        t.add_row(f.partner, f.path, f"{f.size:,}", f"not yet: {f.reason or 'still changing'}")
    for f in report.ignored:
        t.add_row(f.partner, f.path, f"{f.size:,}", f"ignored: {f.reason or 'not a wanted name'}")
    console.print(t)
    console.print(f"{len(report.known)} file(s) already taken in earlier")
    for partner, why in {**report.held, **report.errors}.items():
        console.print(f"[yellow]{partner}[/yellow]: {why}")
    if report.errors or any("error" in r for r in results.values()):
        raise typer.Exit(1)


async def _run_with_progress(
    service: Any, flow: str, isbns: tuple[str, ...], wait: bool, *, full: bool, test: bool
) -> Any:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[str, Any] = {}

        def on_progress(partner: str, path: str, done: int, total: int) -> None:
            key = f"{partner}:{path}"
            if key not in tasks:
                tasks[key] = progress.add_task(f"{partner} {path}", total=total)
            progress.update(tasks[key], completed=done)

        return await service.run_flow(
            flow, isbns=isbns, wait=wait, progress=on_progress, force_full=full, test=test
        )


def serve(
    poll_interval: Annotated[
        float, typer.Option(help="Seconds between two Consonance change polls.")
    ] = 60.0,
    reconcile_hours: Annotated[
        float, typer.Option(help="Hours between two full reconciles of the catalogue.")
    ] = 24.0,
) -> None:
    """Run everything in one process (engine, poller, schedules) until SIGTERM/SIGINT."""
    from consonance_sftp.app.service import Service

    app = _app()
    service = Service(app)

    def ready() -> None:
        console.print(
            f"serving: executor {app.engine_settings().executor_id}, "
            f"{len(app.settings.flows)} flows, poll every {poll_interval:g} s",
            soft_wrap=True,
        )

    _until_signal(
        service,
        poll_interval_s=poll_interval,
        reconcile_every=timedelta(hours=reconcile_hours),
        on_ready=ready,
    )
    console.print("stopped (in-flight deliveries resume on the next start)")


def worker(
    executor_id: Annotated[
        str | None, typer.Option("--id", help="Stable executor ID of this worker process.")
    ] = None,
) -> None:
    """An executor for scale-out on PostgreSQL: runs queued deliveries until SIGTERM."""
    app = _app()
    settings = app.engine_settings(executor_id)
    if not settings.is_postgres:
        raise ConsonanceSftpError(
            "'worker' is for PostgreSQL; this config's engine database is SQLite",
            hint="On SQLite run one 'consonance-sftp serve' (one executor per SQLite file).",
        )
    from consonance_sftp.app.service import Service

    def ready() -> None:
        console.print(f"worker {settings.executor_id} started", soft_wrap=True)

    # An executor only: deliveries and flow ticks from the queues; 'serve' polls Consonance
    # and the inboxes through the schedules it declares.
    _until_signal(Service(app), on_ready=ready, triggers=False, executor_id=executor_id)
    console.print(f"worker {settings.executor_id} stopped")


def _until_signal(service: Service, **options: Any) -> None:
    """Run ``service.serve`` until SIGTERM/SIGINT, then stop at a resumable point."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await service.serve(stop=stop, **options)

    asyncio.run(main())


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("serve")(serve)
    app.command("worker")(worker)
