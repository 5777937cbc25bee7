"""``users add|list``: the web console's local users and their roles.

``viewer`` reads every page, ``operator`` also retries, resends and acknowledges, ``admin``
also manages users. The password is asked for twice at a terminal, or read from the first line
of standard input (``printf '%s\\n' "$PW" | consonance-sftp users add ann --role operator``);
only its bcrypt hash is stored. Adding a user is on the audit trail (``user.added``).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from consonance_sftp.cli.main import acting_user, emit_json, load_app
from consonance_sftp.errors import ConsonanceSftpError

users_app = typer.Typer(help="The web console's users: add, list.", no_args_is_help=True)
console = Console(highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(users_app, name="users")


def _password() -> str:
    if sys.stdin.isatty():
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().rstrip("\r\n")


@users_app.command("add")
def add_cmd(
    name: Annotated[str, typer.Argument(help="The user's login name.")],
    role: Annotated[str, typer.Option(help="viewer, operator or admin.")] = "viewer",
    replace: Annotated[
        bool, typer.Option(help="Give an existing user this role and a new password.")
    ] = False,
    by: Annotated[str | None, typer.Option(help="Who adds (default: $USER).")] = None,
) -> None:
    """Add a console user; the password is prompted for (or read from standard input)."""
    from consonance_sftp.app import console as web_users

    if role not in web_users.ROLES:
        raise typer.BadParameter(f"one of {', '.join(web_users.ROLES)}", param_hint="--role")
    app = load_app()
    try:
        user = web_users.add_user(
            app.store, name, role, _password(), by=acting_user(by), replace=replace
        )
    except ConsonanceSftpError as exc:
        console.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    console.print(
        f"user {user.name} ({user.role}) {'updated' if replace else 'added'}", markup=False
    )


@users_app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
) -> None:
    """The console's users and their roles (never their hashes)."""
    users = load_app().store.list_console_users()
    if as_json:
        emit_json(
            [
                {"name": u.name, "role": u.role, "created_at": u.created_at, "by": u.created_by}
                for u in users
            ]
        )
        return
    if not users:
        console.print("no console users: add one with 'consonance-sftp users add NAME --role R'")
        return
    table = Table("name", "role", "added", "by")
    for u in users:
        table.add_row(
            escape(u.name), u.role, f"{u.created_at:%Y-%m-%d %H:%M} UTC", escape(u.created_by)
        )
    console.print(table)
