"""``consonance-sftp audit verify``: re-check the audit trail's hash chains and what they cover.

Prints ``ok: N events in K chains`` when everything verifies, otherwise a table naming each
problem (the table, the chain and seq or the ledger row, what differs), and exits 1: the first
broken row of each broken chain, a ledger row that differs from the trail, a chain deleted whole
or cut back. ``--heads`` also prints each chain's last seq and hash, to copy somewhere else (an
anchor that even someone able to rewrite the database cannot change).

The database is ``--db URL`` or, without it, the one in the config file, whose ``[audit] key``
checks keyed chains (with ``--db``: ``--key-file``). The store is opened read-only in spirit: no
migration, and a SQLite path that does not exist is an error rather than a new, empty (and so
"valid") trail.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from consonance_sftp.cli.main import state
from consonance_sftp.formats.wording import counted

if TYPE_CHECKING:
    from consonance_sftp.app.operations import AuditReport, Store

audit_app = typer.Typer(help="The append-only, hash-chained audit trail.", no_args_is_help=True)
console = Console(highlight=False, emoji=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(audit_app, name="audit")


def _open_store(db: str | None, key_file: Path | None) -> Store:
    # Imported here: the composition root is heavier than this command needs at import time.
    from consonance_sftp.app import audit_key, open_existing_store

    key = None
    if db is None:
        from consonance_sftp.config import load_settings

        settings = load_settings(state.config_path)
        db, key = settings.database.url, audit_key(settings)
    if key_file is not None:
        key = _read_key(key_file)
    # Verifying must not migrate, nor create an empty SQLite file on a typo.
    return open_existing_store(db, key=key)


def _read_key(path: Path) -> bytes:
    from consonance_sftp.errors import ConfigError

    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the audit key file {path}: {exc.strerror or type(exc).__name__}",
            hint="Give the file named by [audit] key in the config.",
        ) from None
    if not key:
        raise ConfigError(f"the audit key file {path} is empty")
    return key.encode()


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
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="File holding the key of keyed chains (default: audit.key from the config).",
            show_default=False,
        ),
    ] = None,
    archive: Annotated[
        Path | None,
        typer.Option(
            "--archive",
            help="A restored archive (the folder 'archive restore --to' wrote): verify the "
            "audit trail it holds instead of a database.",
            show_default=False,
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Check the audit trail; exit 1 and name every problem found.

    The chains, the chain of chains, and every delivery and intake ledger row against the
    event that last recorded it. With --archive DIR: the trail of a restored archive instead
    (its history/audit.jsonl and history/tables/), each problem traced to its line.
    """
    if archive is not None:
        report = _verify_archive(archive, db, key_file)
    else:
        store = _open_store(db, key_file)
        try:
            report = store.verify_audit()
        finally:
            store.close()
    if heads:
        _print_heads(report)
    if report.ok:
        console.print(
            f"[green]ok:[/green] {counted(report.events, 'event')} in "
            f"{counted(report.chains, 'chain')}; "
            f"{counted(report.ledger_rows, 'ledger row')} checked against the trail",
            markup=True,
        )
        return
    _print_problems(report)
    raise typer.Exit(code=1)


def _verify_archive(archive: Path, db: str | None, key_file: Path | None) -> AuditReport:
    """The restored archive's trail, loaded into a temporary database and verified there."""
    from consonance_sftp.app.archive_history import EVENTS, archived_store

    if db is not None:
        raise typer.BadParameter("give --db or --archive, not both", param_hint="--archive")
    key = None if key_file is None else _read_key(key_file)
    with archived_store(archive, key=key) as (store, where):
        report = store.verify_audit()
    err = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)
    for problem in report.problems:
        line = where.get((problem.chain_id, problem.seq or 0))
        if problem.table == "audit_events" and line is not None:
            err.print(
                f"{EVENTS} line {line.line}: {line.action} {line.subject} "
                f"(chain {problem.chain_id} seq {problem.seq}): {problem.kind}",
                markup=False,
            )
    return report


def _print_problems(report: AuditReport) -> None:
    table = Table(title="audit trail does not verify", title_justify="left")
    table.add_column("table", no_wrap=True)
    table.add_column("row", justify="right")
    table.add_column("chain", no_wrap=True)
    table.add_column("seq", justify="right")
    table.add_column("problem")
    table.add_column("detail")
    for problem in report.problems:
        table.add_row(
            problem.table,
            "-" if problem.row is None else str(problem.row),
            problem.chain_id or "-",
            "-" if problem.seq is None else str(problem.seq),
            escape(problem.kind),
            escape(problem.message),
        )
    err = Console(stderr=True, highlight=False, emoji=False, width=max(console.width, 160))
    err.print(table)
    # One plain line per problem too, so logs and grep see it without the table's wrapping.
    for problem in report.problems:
        err.print(f"TAMPERED {problem}", markup=False)
    err.print(
        f"[bold red]FAILED:[/bold red] {counted(len(report.problems), 'problem')} "
        f"({counted(report.events, 'event')} in {counted(report.chains, 'chain')} checked)"
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
    Console(highlight=False, emoji=False, width=max(console.width, 200)).print(table)
