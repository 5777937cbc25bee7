"""``users add|list|token``: the web console's local users, their roles and API tokens.

``viewer`` reads every page, ``operator`` also retries, resends and acknowledges, ``admin``
also manages users. The password is asked for twice at a terminal, or read from the first line
of standard input (``printf '%s\\n' "$PW" | consonance-sftp users add ann --role operator``);
only its bcrypt hash is stored. Adding a user is on the audit trail (``user.added``).

``users token NAME`` makes a token for the console's JSON API (``Authorization: Bearer ...``),
acting with NAME's role: it is printed once and only its SHA-256 is kept. ``--list`` shows a
user's tokens, ``--revoke ID`` ends one (both on the audit trail).
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

users_app = typer.Typer(
    help="The web console's users: add, list, API tokens.", no_args_is_help=True
)
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


@users_app.command("token")
def token_cmd(
    name: Annotated[str, typer.Argument(help="The user the token acts as.")],
    label: Annotated[str, typer.Option(help="What the token is for (shown in --list).")] = "",
    revoke: Annotated[
        int | None, typer.Option(metavar="ID", help="Revoke this token instead.")
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the user's tokens.")] = False,
    by: Annotated[str | None, typer.Option(help="Who acts (default: $USER).")] = None,
) -> None:
    """Make a JSON API token for a user (printed once, stored hashed); or list or revoke."""
    from consonance_sftp.app import console as web_users

    app = load_app()
    try:
        if list_:
            tokens = app.store.list_api_tokens(name)
            if not tokens:
                console.print(f"no API tokens for {name}", markup=False)
                return
            table = Table("id", "label", "made", "by", "revoked")
            for t in tokens:
                table.add_row(
                    str(t.id),
                    escape(t.label),
                    f"{t.created_at:%Y-%m-%d %H:%M} UTC",
                    escape(t.created_by),
                    f"{t.revoked_at:%Y-%m-%d %H:%M} UTC" if t.revoked_at else "",
                )
            console.print(table)
            return
        if revoke is not None:
            if all(t.id != revoke for t in app.store.list_api_tokens(name)):
                raise ConsonanceSftpError(f"{name} has no API token #{revoke}")
            record = web_users.revoke_token(app.store, revoke, by=acting_user(by))
            console.print(f"token #{record.id} revoked", markup=False)
            return
        token, record = web_users.add_token(app.store, name, by=acting_user(by), label=label)
    except ConsonanceSftpError as exc:
        console.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    console.print(
        f"token #{record.id} for {record.user_name} (shown once, keep it secret):", markup=False
    )
    print(token)
