"""``serve``, ``worker`` and ``run FLOW``: the long-running processes and one manual run.

``serve`` is everything in one process on the embedded default (SQLite): the engine, the
Consonance poller, the flows' schedules and the release of held deliveries. ``worker`` is an
executor for scale-out on PostgreSQL, with a stable ID. ``run`` plans one flow now and either
prints what would be sent (``--dry-run``) or delivers it, in-process, or through ``serve`` when
it holds the engine file.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from consonance_sftp.cli.main import load_app, state
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.formats.wording import counted
from consonance_sftp.logs import setup_logging

if TYPE_CHECKING:
    from consonance_sftp.app import App
    from consonance_sftp.app.dispatch import RunOutcome
    from consonance_sftp.app.intake import InboxReport
    from consonance_sftp.app.serving import ServeLoop

console = Console(highlight=False, emoji=False, width=None if sys.stdout.isatty() else 160)


def _print_plan(app: App, outcome: RunOutcome) -> None:
    from consonance_sftp.app.dispatch import remote_files

    planned = outcome.planned
    flow = app.settings.flows[planned.flow]
    if not planned.outbounds:
        # Say why, per title: "nothing to send" alone reads like a fault.
        why = "" if planned.skipped or planned.notes else " (no title to package)"
        console.print(f"flow {planned.flow}: nothing to send{why}")
        for s in planned.skipped:
            console.print(f"  {s.what}: {s.reason}", markup=False)
    for o in planned.outbounds:
        files = remote_files(app, flow, o)
        total = sum(f.size for f in files)
        table = Table(
            # Folded, never cut: the path and hash are what an operator compares.
            Column("remote path", overflow="fold"),
            "bytes",
            Column("SHA-256", overflow="fold"),
            title=f"{o.partner}: {o.label}",
            title_justify="left",
        )
        for f in files:
            table.add_row(f.remote_path, f"{f.size:,}", f.sha256)
        console.print(table)
        console.print(
            f"{counted(len(files), 'file')}, {counted(total, 'byte', sep=True)} "
            f"to partner {o.partner}"
        )
    for w in planned.withdrawals:
        console.print(
            f"withdraw {counted(len(w.files), 'file')} of {w.label} from partner {w.partner}: "
            + ", ".join(f.remote_path for f in w.files),
            markup=False,
            soft_wrap=True,
        )
    for s in planned.skipped if planned.outbounds else ():
        console.print(f"[yellow]skipped[/yellow] {escape(s.what)}: {escape(s.reason)}")
    for note in planned.notes:
        console.print(escape(note), soft_wrap=True)


def run(
    flow: Annotated[
        str, typer.Argument(metavar="FLOW", help="Name of the flow (a key of [flows]).")
    ],
    isbn: Annotated[
        list[str] | None,
        typer.Option("--isbn", metavar="ISBN", help="Title(s) to run the flow for (repeatable)."),
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
    from consonance_sftp.app.dispatch import is_intake, run_flow
    from consonance_sftp.app.operations import Operations

    app = load_app()
    isbns = tuple(isbn or ())
    if is_intake(app, flow):
        if dry_run or isbns or full or test:
            raise ConsonanceSftpError(
                f"flow {flow!r} takes files in: --dry-run, --isbn, --full and --test do not apply",
                hint=f"consonance-sftp run {flow} looks into its partners' inboxes now.",
            )
        _print_inbox(*asyncio.run(_poll_with_progress(app, flow, wait)))
        return
    if dry_run:
        outcome = asyncio.run(
            run_flow(app, flow, dry_run=True, isbns=isbns, force_full=full, test=test)
        )
        _print_plan(app, outcome)
        console.print("[bold]dry run[/bold]: nothing was sent")
        return
    started = datetime.now(UTC)
    outcome = asyncio.run(_run_with_progress(app, flow, isbns, wait, full=full, test=test))
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
        elif "sent" in result and (earlier := Operations(app).sent_before(e, started)):
            # The same files and generation give the same workflow: the engine answered with
            # the earlier run's result, and nothing went now.
            when = min(r.finished_at or r.created_at or started for r in earlier)
            console.print(
                f"[yellow]already sent[/yellow] on {when.astimezone(UTC):%Y-%m-%d %H:%M} UTC "
                f"({counted(len(earlier), 'file')}), nothing sent now; use "
                f"`consonance-sftp resend {e.workflow_id} --reason ...` to send again"
            )
        elif "sent" in result:
            console.print(
                f"[green]done[/green] {e.workflow_id}: {len(result['sent'])} sent, "
                f"{len(result['already_present'])} already on the server, "
                f"{len(result['already_recorded'])} already in the ledger"
            )
        elif "removed" in result:  # a withdrawn title's files, off the partner
            console.print(
                f"[green]withdrawn[/green] {e.workflow_id}: {len(result['removed'])} removed, "
                f"{len(result['already_gone'])} already gone"
            )
        else:
            console.print(f"{e.workflow_id}: {result.get('status')}")
    for line in outcome.planned.incomplete:
        console.print(f"[red]not sent in full[/red] {escape(line)}", soft_wrap=True)
    if failed:
        _failure_hint(failed)
        raise typer.Exit(1)
    if outcome.planned.incomplete:
        # A blocked feed or skipped products: cron and monitoring must see it.
        raise typer.Exit(1)


async def _poll_with_progress(
    app: App, flow: str, wait: bool
) -> tuple[InboxReport, dict[str, dict[str, Any]]]:
    """An intake flow's poll, with a progress bar per download (on a terminal)."""
    from consonance_sftp.app.intake import poll_inbox_now
    from consonance_sftp.cli.follow import transfer_bars

    with transfer_bars(console, "(download)") as on_progress:
        return await poll_inbox_now(app, flow, wait=wait, progress=on_progress)


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
    notes: list[str] = []
    for f in report.taken:
        result = results.get(f.workflow_id or "", {})
        outcome = str(result.get("error") or result.get("outcome") or f"taken ({f.workflow_id})")
        if result.get("reason") and "error" not in result:
            outcome += f": {result['reason']}"
        if result.get("supersedes"):
            ids = ", ".join(f"#{i}" for i in result["supersedes"])
            outcome += f" (completes intake {ids}, taken while still being written)"
        if result.get("name_note"):
            notes.append(f"[yellow]note[/yellow] {escape(f.path)}: {escape(result['name_note'])}")
        t.add_row(f.partner, escape(f.path), f"{f.size:,}", escape(outcome))
    for f in report.unstable:
        why = f"not yet: {f.reason or 'still changing'}"
        t.add_row(f.partner, escape(f.path), f"{f.size:,}", escape(why))
    for f in report.ignored:
        why = f"ignored: {f.reason or 'not a wanted name'}"
        t.add_row(f.partner, escape(f.path), f"{f.size:,}", escape(why))
    console.print(t)
    for note in notes:
        console.print(note, soft_wrap=True)
    console.print(f"{counted(len(report.known), 'file')} already taken in earlier")
    for partner, why in {**report.held, **report.errors}.items():
        console.print(f"[yellow]{partner}[/yellow]: {escape(why)}", soft_wrap=True)
    if report.errors or any("error" in r for r in results.values()):
        raise typer.Exit(1)


async def _run_with_progress(
    app: App, flow: str, isbns: tuple[str, ...], wait: bool, *, full: bool, test: bool
) -> RunOutcome:
    from consonance_sftp.app.dispatch import run_flow
    from consonance_sftp.cli.follow import transfer_bars

    with transfer_bars(console) as on_progress:
        return await run_flow(
            app, flow, isbns=isbns, wait=wait, progress=on_progress, force_full=full, test=test
        )


def serve(
    poll_interval: Annotated[
        float, typer.Option(help="Seconds between two Consonance change polls.")
    ] = 60.0,
    reconcile_hours: Annotated[
        float, typer.Option(help="Hours between two full reconciles of the catalogue.")
    ] = 24.0,
    watch_config: Annotated[
        float,
        typer.Option(
            help="Seconds between two looks at the config file for changes (0: reload only "
            "on SIGHUP)."
        ),
    ] = 5.0,
    web: Annotated[
        bool, typer.Option("--web", help="Also serve the operator console (see 'web').")
    ] = False,
    web_host: Annotated[str, typer.Option(help="The console's address (--web).")] = "127.0.0.1",
    web_port: Annotated[int, typer.Option(help="The console's port (--web).")] = 8080,
) -> None:
    """Run everything in one process (engine, poller, schedules) until SIGTERM/SIGINT.

    The config is reloaded on SIGHUP and when the file changes, validated first: an invalid
    file is logged with its problems and the config in force is kept."""
    from consonance_sftp.app.serving import ServeLoop

    app = load_app()
    _service_logging(app)
    loop = ServeLoop(app)

    def ready() -> None:
        console.print(
            f"serving: executor {app.engine_settings().executor_id}, "
            f"{len(app.settings.flows)} flows, poll every {poll_interval:g} s",
            soft_wrap=True,
        )

    from consonance_sftp.cli.web import console_beside

    beside = console_beside(web_host, web_port) if web else contextlib.nullcontext()
    with beside, _CatalogueStatus() as shown:
        _until_signal(
            loop,
            poll_interval_s=poll_interval,
            reconcile_every=timedelta(hours=reconcile_hours),
            on_ready=ready,
            watch_config_s=watch_config,
            poll_progress=shown.update if console.is_terminal else None,
        )
    console.print("stopped (in-flight deliveries resume on the next start)")


class _CatalogueStatus:
    """On a terminal, a spinner while a poll reads the Consonance catalogue (the first poll
    reads all of it: tens of seconds), with the works and products read so far."""

    def __init__(self) -> None:
        self._status: Any = None

    def __enter__(self) -> _CatalogueStatus:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def update(self, mode: str, works: int, products: int, done: bool) -> None:
        if done:
            if self._status is not None and mode != "incremental":
                console.print(f"Consonance {mode}: {works:,} works, {products:,} products read")
            self._stop()
            return
        text = f"reading Consonance ({mode}): {works:,} works, {products:,} products so far"
        if self._status is None:
            self._status = console.status(text)
            self._status.start()
        else:
            self._status.update(text)


def worker(
    executor_id: Annotated[
        str | None, typer.Option("--id", help="Stable executor ID of this worker process.")
    ] = None,
) -> None:
    """An executor for scale-out on PostgreSQL: runs queued deliveries until SIGTERM."""
    app = load_app()
    _service_logging(app)
    settings = app.engine_settings(executor_id)
    if not settings.is_postgres:
        raise ConsonanceSftpError(
            "'worker' is for PostgreSQL; this config's engine database is SQLite",
            hint="On SQLite run one 'consonance-sftp serve' (one executor per SQLite file).",
        )
    from consonance_sftp.app.serving import ServeLoop

    def ready() -> None:
        console.print(f"worker {settings.executor_id} started", soft_wrap=True)

    # An executor only: deliveries and flow ticks from the queues; 'serve' polls Consonance
    # and the inboxes through the schedules it declares.
    _until_signal(ServeLoop(app), on_ready=ready, triggers=False, executor_id=executor_id)
    console.print(f"worker {settings.executor_id} stopped")


def _service_logging(app: App) -> None:
    """A long-running process logs at the config's level (INFO by default: one line per run,
    delivery, intake and tick), not the one-shot commands' WARNING; --debug still wins."""
    if not state.debug:
        logs = app.settings.logging
        setup_logging(logs.level, json_lines=logs.json_lines)


def _until_signal(loop: ServeLoop, **options: Any) -> None:
    """Run ``loop.serve`` until SIGTERM/SIGINT, then stop at a resumable point; SIGHUP
    reloads the config."""

    async def main() -> None:
        stop = asyncio.Event()
        sighup = asyncio.Event()
        events = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            events.add_signal_handler(sig, stop.set)
        events.add_signal_handler(signal.SIGHUP, sighup.set)
        await loop.serve(stop=stop, sighup=sighup, **options)

    asyncio.run(main())


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("serve")(serve)
    app.command("worker")(worker)
