"""``quarantine list|show|assign|reject``: the files an intake flow could not match, and what a
person does about them. The logic is ``app.quarantine``; this module parses and prints.

Who acts is the login name (``$USER``), or ``--by``; it goes on the row and the audit trail.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from consonance_sftp.cli.main import acting_user, load_app

if TYPE_CHECKING:
    pass

quarantine_app = typer.Typer(
    help="Files an intake flow could not match: list, show, assign to a title, reject.",
    no_args_is_help=True,
)
console = Console(highlight=False, emoji=False, soft_wrap=True)

By = Annotated[
    str | None,
    typer.Option("--by", help="Who acts (default: the login name); on the audit trail."),
]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(quarantine_app, name="quarantine")


@quarantine_app.command("list")
def list_cmd(
    partner: Annotated[str | None, typer.Option(help="Only this partner's files.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, one per file.")] = False,
) -> None:
    """The files waiting in quarantine, newest first, with why."""
    from consonance_sftp.app import quarantine as q

    rows = q.quarantined(load_app(), partner=partner)
    if as_json:
        for row in rows:
            console.print_json(
                json.dumps(q.QuarantinedFile(row, q.label_of(row.reason), []).to_dict())
            )
        return
    if not rows:
        console.print("the quarantine is empty")
        return
    table = Table(box=None)
    for column in ("id", "partner", "flow", "file", "size", "why"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row.id),
            row.partner,
            row.flow or "",
            row.remote_path,
            f"{row.size:,}",
            row.reason or "",
        )
    console.print(table)


@quarantine_app.command("show")
def show_cmd(
    intake_id: Annotated[int, typer.Argument(metavar="ID", help="The intake's id (list).")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON.")] = False,
) -> None:
    """Why a file is in quarantine, its SHA-256, original name, partner and history."""
    from consonance_sftp.app import quarantine as q

    found = q.show(load_app(), intake_id)
    data = found.to_dict()
    if as_json:
        data["events"] = [
            {"ts": e.ts.isoformat(), "actor": e.actor, "action": e.action} for e in found.events
        ]
        console.print_json(json.dumps(data))
        return
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for key in (
        "id",
        "outcome",
        "label",
        "reason",
        "partner",
        "flow",
        "original_name",
        "remote_path",
        "size",
        "sha256",
        "local_path",
        "received_at",
    ):
        table.add_row(key.replace("_", " "), "" if data[key] is None else str(data[key]))
    console.print(table)
    for event in found.events:
        console.print(f"  {event.ts:%Y-%m-%d %H:%M:%S} {event.actor} {event.action}")


@quarantine_app.command("assign")
def assign_cmd(
    intake_id: Annotated[int, typer.Argument(metavar="ID", help="The intake's id (list).")],
    isbn: Annotated[str, typer.Option(help="The product's ISBN (13 or 10 digits).")],
    kind: Annotated[
        str,
        typer.Option(help="interior, cover, index, jacket_copy, image, epub, audio or other."),
    ],
    by: By = None,
) -> None:
    """Match a quarantined file to a title and process it as if a rule had matched it."""
    from consonance_sftp.app import quarantine as q

    who = acting_user(by)
    result = asyncio.run(q.assign(load_app(), intake_id, isbn=isbn, kind=kind, by=who))
    console.print(f"intake #{intake_id}: {result.outcome.value}: {result.reason or ''}")
    if result.outcome.value in ("quarantined", "failed"):
        raise typer.Exit(1)


@quarantine_app.command("reject")
def reject_cmd(
    intake_id: Annotated[int, typer.Argument(metavar="ID", help="The intake's id (list).")],
    reason: Annotated[str, typer.Option(help="Why (on the row and the audit trail).")],
    by: By = None,
) -> None:
    """Close a quarantined file for good (its bytes are kept)."""
    from consonance_sftp.app import quarantine as q

    row = q.reject(load_app(), intake_id, reason=reason, by=acting_user(by))
    console.print(f"intake #{intake_id}: {row.outcome.value}: {row.reason}")
