"""``consonance-sftp demo``: one real end-to-end exchange on the embedded default, then exit.

It writes a starter config into a fresh folder, starts the local Consonance sandbox and SFTP
partner servers, and plays a production handoff the way it happens in a publishing house: the
poller learns the catalogue, a production editor moves a title to "Production approval" in
Consonance, the next poll sees it, the approved interior and cover PDFs and a spec sheet are
fetched, checked and planned by the printer's profile, and the durable engine (DBOS on SQLite)
delivers them to the printer's SFTP folder with the ledger and audit trail written as it goes.
Then the designer sends a revised cover and a misnamed file back: the intake flow matches the
cover to the title, versions and attaches it and completes its to-do, and quarantines the other
(``cli/demo_intake.py``). Then it says what happened and where to look.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from consonance_sftp.cli.demo_intake import designer_sends
from consonance_sftp.cli.follow import transfer_bars
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.formats.wording import counted

if TYPE_CHECKING:  # the app loads when the demo runs, not at start-up
    from consonance_sftp.app import App
    from consonance_sftp.app.dispatch import RunOutcome

MARKER = ".consonance-sftp-demo"
STAGE = "Production approval"
# Wide enough for a plan line (size, SHA-256, path) when the output is not a terminal.
console = Console(highlight=False, emoji=False, width=None if sys.stdout.isatty() else 140)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _fresh_folder(folder: Path) -> None:
    if folder.exists():
        if not (folder / MARKER).exists():
            raise ConsonanceSftpError(
                f"{folder} exists and was not made by the demo; nothing was changed",
                hint="Pass another folder: 'consonance-sftp demo --dir NEW_FOLDER'.",
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by consonance-sftp demo; removed by the next demo run\n")


def _step(n: int, text: str) -> None:
    console.rule(f"[bold]{n}. {text}", align="left")


def _print_ready(product: Any) -> bool:
    return product.typename == "PhysicalBookProduct" and {
        f.file_variant for f in product.production_files if f.approval_status == "APPROVED"
    } >= {"INTERIOR", "COVER"}


def _printable(work: Any) -> bool:
    """A work (``models.Work``, read through the app's Consonance client) whose print product
    has its interior and cover approved: what the starter's production flow sends."""
    return bool(work.production_runs) and any(_print_ready(p) for p in work.products)


async def _run(folder: Path) -> None:
    from consonance_sftp.app import App
    from consonance_sftp.app.dispatch import RunOutcome, plan_event, trigger_of
    from consonance_sftp.app.serving import change_detector, fired_flows
    from consonance_sftp.config import ProductionFlow, load_settings
    from consonance_sftp.config.starter import CONFIG_NAME
    from consonance_sftp.sandbox.consonance.control import SandboxControl
    from consonance_sftp.sandbox.services import sandbox_services

    config = folder / CONFIG_NAME
    settings = load_settings(config)
    app = App(settings)
    flow_name = next(name for name, f in settings.flows.items() if isinstance(f, ProductionFlow))

    _step(2, "Start the local Consonance sandbox and the partners' SFTP server")
    async with sandbox_services(settings) as sb:
        console.print(f"Consonance API  {sb.api_url}/graphql")
        console.print(
            f"SFTP partners   {sb.sftp.host}:{sb.sftp.port}, host key {sb.sftp.fingerprint} "
            "(pinned in the config)"
        )

        _step(3, "Learn the catalogue (the first poll is a silent baseline)")
        async with app.consonance() as api:
            # The serve loop's steps, one at a time: its poll, its triggers, dispatch's plan.
            detector = change_detector(app, api)
            baseline = await detector.poll()
            console.print(
                f"read {counted(baseline.works_read, 'work')} and "
                f"{counted(baseline.products_read, 'product')} in "
                f"{baseline.seconds:.1f} s; no events on a baseline"
            )
            work = await _first_printable(api)

            _step(4, f"A production editor moves a title to '{STAGE}' in Consonance")
            with SandboxControl(sb.api_url) as control:
                # A thread: the sandbox is served by this very event loop.
                await asyncio.to_thread(control.move_stage, work.id, STAGE)
            console.print(f"work {work.id}: [bold]{work.title}[/bold]")
            report = await detector.poll()
            for event in report.events:
                console.print(f"event: {event.kind.value} {event.old!r} -> {event.new!r}")
            fired = [(n, e) for n, e in fired_flows(app, report.events) if n == flow_name]
            if not fired:
                raise ConsonanceSftpError("the poll did not see the stage change")
            name, event = fired[0]
            console.print(f"flow {name} fires ({trigger_of(event)})")

            _step(5, "Fetch, check and plan the printer's package")
            planned = await plan_event(app, name, event, api=api)
        for s in planned.skipped:
            console.print(f"[yellow]skipped[/yellow] {s.what}: {s.reason}")
        for pkg in planned.outbounds:
            console.print(f"[bold]{pkg.label}[/bold] for {pkg.partner} (preflight passed):")
            for line in pkg.plan.lines():
                console.print("  " + line)

        _step(6, "Deliver through the durable engine (DBOS on SQLite)")
        await _deliver(app, RunOutcome(planned), trigger_of(event))

        _step(7, "What happened")
        _report(app, sb.partner_folder("printer", "/in"), planned.outbounds)
        async with app.consonance() as api:
            quiet = await change_detector(app, api).poll()
        console.print(
            f"one more poll: {counted(len(quiet.events), 'new event')} (nothing is sent twice)"
        )

        _step(8, "The designer sends a revised cover back, and a misnamed file")
        isbn = next(p.isbn13 for p in work.products if _print_ready(p) and p.isbn13)
        await designer_sends(console, app, sb, work, isbn)
    _where_to_look(folder, config, isbn)


async def _first_printable(api: Any) -> Any:
    async for work in api.iter_works():
        if _printable(work) and work.project_stage != STAGE:
            return work
    raise ConsonanceSftpError("the sandbox catalogue has no title ready for print")


async def _deliver(app: App, outcome: RunOutcome, trigger: str) -> None:
    """The same dispatch as ``run`` and the event workflow (``app.dispatch.submit_all``),
    handed to the engine by the runner (which starts it in this process: nothing else holds
    the demo's engine file)."""
    from consonance_sftp.app.dispatch import submit_all
    from consonance_sftp.app.runner import DeliveryRunner

    with transfer_bars(console) as on_progress:
        async with DeliveryRunner(app, progress=on_progress) as runner:
            await submit_all(app, runner, outcome, trigger=trigger, wait=True)
    for held in outcome.held:
        raise ConsonanceSftpError(f"the delivery was held: {held.reason}")
    for wid, result in outcome.results.items():
        if "error" in result:
            raise ConsonanceSftpError(f"{wid}: {result['error']}")
        console.print(
            f"workflow {wid}: {counted(len(result['sent']), 'file')} sent, "
            f"{len(result['already_present'])} already on the server, "
            f"{len(result['already_recorded'])} already in the ledger"
        )


def _report(app: App, printer_in: Path, packages: Sequence[object]) -> None:
    from consonance_sftp.app.operations import Operations

    table = Table("ledger: partner", "remote path", "bytes", "SHA-256", "outcome")
    ops = Operations(app)
    for row in reversed(ops.history(limit=20)):
        table.add_row(row.partner, row.remote_path, f"{row.size:,}", row.sha256[:16], row.outcome)
    console.print(table)
    on_disk = sorted(p.relative_to(printer_in) for p in printer_in.rglob("*") if p.is_file())
    console.print(f"on the printer's SFTP server ({printer_in}):")
    for p in on_disk:
        console.print(f"  {p}")
    report = ops.verify_audit()
    state = "verified" if report.ok else "BROKEN"
    console.print(
        f"audit trail: {state}, {counted(report.events, 'event')} in "
        f"{counted(report.chains, 'chain')}"
    )
    if not packages or not on_disk:
        raise ConsonanceSftpError("the demo delivered nothing; see the messages above")


def _where_to_look(folder: Path, config: Path, isbn: str) -> None:
    console.rule("[bold]Where to look", align="left")
    console.print(
        f"config and keys   {folder}/\n"
        f"partner folders   {folder}/var/sandbox/sftp/<partner>/\n"
        f"ledger, audit     {folder}/var/consonance-sftp.db (SQLite)\n"
        f"try               consonance-sftp --config {config} audit verify\n"
        f"                  consonance-sftp --config {config} assets {isbn} --offline\n"
        f"                  consonance-sftp --config {config} quarantine list\n"
        f"                  consonance-sftp --config {config} sandbox   (keeps the sandbox up)"
    )


def demo(
    folder: Annotated[
        Path, typer.Option("--dir", help="Fresh folder for the demo's config, keys and data.")
    ] = Path("demo-run"),
) -> None:
    """Run one real end-to-end exchange on the embedded default, print what happened, exit."""
    from consonance_sftp.config.starter import init_project

    _step(1, f"Write a starter config and keys into {folder}/")
    _fresh_folder(folder)
    written = init_project(folder, sftp_port=_free_port(), api_port=_free_port())
    for w in written:
        console.print(f"wrote {w.path} ({w.what})")
    asyncio.run(_run(folder))
    console.print("[bold green]demo finished[/bold green]")
    _console_login(folder)


DEMO_USER = "demo"


def _console_login(folder: Path) -> None:
    """The last thing the demo prints: how to see its data in the web console, with a login
    made for it now (an admin called ``demo``, its password generated and printed once)."""
    import secrets

    from consonance_sftp.app import App
    from consonance_sftp.app import console as web_users
    from consonance_sftp.config.starter import CONFIG_NAME

    config = folder / CONFIG_NAME
    password = secrets.token_urlsafe(15)
    app = App.from_config(config)
    try:
        web_users.add_user(app.store, DEMO_USER, "admin", password, by="demo")
    finally:
        app.store.close()
    console.rule("[bold]The web console", align="left")
    console.print(
        f"start it          consonance-sftp --config {config} web\n"
        f"then open         http://127.0.0.1:8080/\n"
        f"and log in as     {DEMO_USER}\n"
        f"with password     {password}   (shown once: only its hash is kept)",
        markup=False,
        soft_wrap=True,  # a command to copy: never broken across lines, however long the path
    )


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
