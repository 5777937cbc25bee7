"""``consonance-sftp audit verify``: re-check the audit trail's hash chains.

Prints ``ok: N events in K chains`` when every chain verifies, otherwise a table naming the first
broken row of each broken chain, and exits 1. ``--heads`` also prints each chain's last seq and
hash, to copy somewhere else (an anchor that even someone able to rewrite the database cannot
change).

The database is ``--db URL`` or, without it, the one in the config file. The store is opened
read-only in spirit: no migration, and a SQLite path that does not exist is an error rather than
a new, empty (and so "valid") trail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from consonance_sftp.cli.main import state
from consonance_sftp.formats.wording import counted

if TYPE_CHECKING:
    from consonance_sftp.ports.store import AuditReport, Store

audit_app = typer.Typer(help="The append-only, hash-chained audit trail.", no_args_is_help=True)
console = Console(highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(audit_app, name="audit")


def _open_store(db: str | None) -> Store:
    # Imported here: the composition root is heavier than this command needs at import time.
    from consonance_sftp.app import open_existing_store

    if db is None:
        from consonance_sftp.config import load_settings

        db = load_settings(state.config_path).database.url
    # Verifying must not migrate, nor create an empty SQLite file on a typo.
    return open_existing_store(db)


@audit_app.command("verify")
def verify(
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database URL (sqlite:///path.db, postgresql+psycopg://...). "
            "Default: database.url from the config file.",
            show_default=False,
        ),
    ] = None,
    heads: Annotated[
        bool, typer.Option("--heads", help="Also print each chain's last seq and hash.")
    ] = False,
) -> None:
    """Check every audit chain; exit 1 and name the first broken row of each broken chain."""
    store = _open_store(db)
    try:
        report = store.verify_audit()
    finally:
        store.close()
    if heads:
        _print_heads(report)
    if report.ok:
        console.print(
            f"[green]ok:[/green] {counted(report.events, 'event')} in "
            f"{counted(report.chains, 'chain')}",
            markup=True,
        )
        return
    _print_problems(report)
    raise typer.Exit(code=1)


def _print_problems(report: AuditReport) -> None:
    table = Table(title="audit trail does not verify", title_justify="left")
    table.add_column("chain", no_wrap=True)
    table.add_column("seq", justify="right")
    table.add_column("problem")
    table.add_column("detail")
    for problem in report.problems:
        table.add_row(
            problem.chain_id,
            "-" if problem.seq is None else str(problem.seq),
            problem.kind,
            problem.message,
        )
    err = Console(stderr=True, highlight=False, width=max(console.width, 160))
    err.print(table)
    # One plain line per problem too, so logs and grep see it without the table's wrapping.
    for problem in report.problems:
        err.print(f"TAMPERED {problem}", markup=False)
    err.print(
        f"[bold red]FAILED:[/bold red] {len(report.problems)} of "
        f"{counted(report.chains, 'chain')} broken ({counted(report.events, 'event')} checked)"
    )


def _print_heads(report: AuditReport) -> None:
    table = Table(title="chain heads", title_justify="left")
    for column in ("chain", "writer", "started", "seq", "hash"):
        table.add_column(column, no_wrap=column in {"chain", "hash"})
    for head in report.heads:
        table.add_row(
            head.chain_id,
            head.writer,
            head.started_at.isoformat(timespec="seconds"),
            str(head.seq),
            head.hash,
        )
    Console(highlight=False, width=max(console.width, 200)).print(table)
