"""``users add|list|passwd|disable|enable|remove|token|tokens``: the web console's local
users, their roles and API tokens.

``viewer`` reads every page, ``operator`` also retries, resends and acknowledges, ``admin``
also manages users. The password is asked for twice at a terminal, or read from the first line
of standard input (``printf '%s\\n' "$PW" | consonance-sftp users add ann --role operator``);
only its bcrypt hash is stored. Adding a user is on the audit trail (``user.added``).
A new password (``passwd``, ``add --replace``), ``disable`` and ``remove`` revoke every API
token of the user and close its sessions, on the audit trail with what they ended.

``users token NAME`` makes a token for the console's JSON API and its ``/metrics``
(``Authorization: Bearer ...``), acting with NAME's role: it is printed once and only its
SHA-256 is kept. It expires after ``--expires-in`` (90 days unless told; ``never`` only when
written out). ``users tokens [NAME]`` (or ``token NAME --list``) lists tokens with their expiry
and state, ``token NAME --revoke ID`` ends one (on the audit trail).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from consonance_sftp.cli.main import acting_user, emit_json, load_app
from consonance_sftp.errors import ConsonanceSftpError

if TYPE_CHECKING:
    from consonance_sftp.app.console import AccessEnded, ApiToken

users_app = typer.Typer(
    help="The web console's users: add, list, passwd, disable, enable, remove, API tokens.",
    no_args_is_help=True,
)
console = Console(highlight=False, emoji=False, soft_wrap=True)


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


def _ended_line(name: str, ended: AccessEnded) -> str:
    ids = ", ".join(f"#{i}" for i in ended.token_ids) or "none"
    return f"{name}: API tokens revoked: {ids}; sessions closed: {ended.sessions}"


def _fail(exc: ConsonanceSftpError) -> typer.Exit:
    console.print(f"error: {exc}", markup=False)
    return typer.Exit(1)


@users_app.command("passwd")
def passwd_cmd(
    name: Annotated[str, typer.Argument(help="The user whose password changes.")],
    by: Annotated[str | None, typer.Option(help="Who acts (default: $USER).")] = None,
) -> None:
    """Give a user a new password (prompted, or read from standard input): its API tokens are
    revoked and its sessions closed."""
    from consonance_sftp.app import console as web_users

    app = load_app()
    try:
        ended = web_users.change_password(app.store, name, _password(), by=acting_user(by))
    except ConsonanceSftpError as exc:
        raise _fail(exc) from None
    console.print(f"password of {name} changed", markup=False)
    console.print(_ended_line(name, ended), markup=False)


@users_app.command("disable")
def disable_cmd(
    name: Annotated[str, typer.Argument(help="The user to disable.")],
    reason: Annotated[str, typer.Option(help="Why (on the audit trail).")] = "",
    by: Annotated[str | None, typer.Option(help="Who acts (default: $USER).")] = None,
) -> None:
    """Disable a user: no login; its API tokens revoked and its sessions closed."""
    from consonance_sftp.app import console as web_users

    app = load_app()
    try:
        ended = web_users.disable_user(app.store, name, by=acting_user(by), reason=reason)
    except ConsonanceSftpError as exc:
        raise _fail(exc) from None
    console.print(f"user {name} disabled", markup=False)
    console.print(_ended_line(name, ended), markup=False)


@users_app.command("enable")
def enable_cmd(
    name: Annotated[str, typer.Argument(help="The user to enable again.")],
    by: Annotated[str | None, typer.Option(help="Who acts (default: $USER).")] = None,
) -> None:
    """Let a disabled user log in again (its revoked tokens stay revoked)."""
    from consonance_sftp.app import console as web_users

    app = load_app()
    try:
        web_users.enable_user(app.store, name, by=acting_user(by))
    except ConsonanceSftpError as exc:
        raise _fail(exc) from None
    console.print(f"user {name} enabled", markup=False)


@users_app.command("remove")
def remove_cmd(
    name: Annotated[str, typer.Argument(help="The user to remove.")],
    by: Annotated[str | None, typer.Option(help="Who acts (default: $USER).")] = None,
) -> None:
    """Remove a user with its sessions and API tokens (the audit trail keeps what it did)."""
    from consonance_sftp.app import console as web_users

    app = load_app()
    try:
        ended = web_users.remove_user(app.store, name, by=acting_user(by))
    except ConsonanceSftpError as exc:
        raise _fail(exc) from None
    console.print(f"user {name} removed", markup=False)
    console.print(_ended_line(name, ended), markup=False)


@users_app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
) -> None:
    """The console's users and their roles (never their hashes)."""
    users = load_app().store.list_console_users()
    if as_json:
        emit_json(
            [
                {
                    "name": u.name,
                    "role": u.role,
                    "created_at": u.created_at,
                    "by": u.created_by,
                    "disabled_at": u.disabled_at,
                }
                for u in users
            ]
        )
        return
    if not users:
        console.print("no console users: add one with 'consonance-sftp users add NAME --role R'")
        return
    table = Table("name", "role", "added", "by", "disabled")
    for u in users:
        table.add_row(
            escape(u.name),
            u.role,
            _when(u.created_at),
            escape(u.created_by),
            _when(u.disabled_at),
        )
    console.print(table)


def _when(value: datetime | None) -> str:
    return "" if value is None else f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _token_rows(tokens: list[ApiToken], as_json: bool) -> None:
    now = datetime.now(UTC)
    if as_json:
        emit_json(
            [
                {
                    "id": t.id,
                    "user": t.user_name,
                    "label": t.label,
                    "created_at": t.created_at,
                    "by": t.created_by,
                    "expires_at": t.expires_at,
                    "state": t.state(now),
                    "revoked_at": t.revoked_at,
                    "revoked_why": t.revoked_why,
                }
                for t in tokens
            ]
        )
        return
    table = Table("id", "user", "label", "made", "by", "expires", "state")
    for t in tokens:
        state = t.state(now)
        if state == "revoked":
            state = f"revoked {_when(t.revoked_at)} ({t.revoked_why or 'revoked'})"
        table.add_row(
            str(t.id),
            escape(t.user_name),
            escape(t.label),
            _when(t.created_at),
            escape(t.created_by),
            _when(t.expires_at) or "never",
            escape(state),
        )
    console.print(table)


@users_app.command("tokens")
def tokens_cmd(
    name: Annotated[str | None, typer.Argument(help="Only this user's tokens.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
) -> None:
    """API tokens (of every user, or of NAME): label, who made them, when they expire, and
    whether they are live, expired or revoked (and why). Never the tokens themselves."""
    tokens = load_app().store.list_api_tokens(name)
    if not tokens and not as_json:
        console.print(f"no API tokens{f' for {name}' if name else ''}", markup=False)
        return
    _token_rows(tokens, as_json)


@users_app.command("token")
def token_cmd(
    name: Annotated[str, typer.Argument(help="The user the token acts as.")],
    label: Annotated[str, typer.Option(help="What the token is for (shown in --list).")] = "",
    expires_in: Annotated[
        str,
        typer.Option(
            metavar="DURATION",
            help="How long the token works: 90d, 12h, 2w, ... (at most five years), or "
            "'never' (written out: no token lives forever by default).",
        ),
    ] = "90d",
    revoke: Annotated[
        int | None, typer.Option(metavar="ID", help="Revoke this token instead.")
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the user's tokens.")] = False,
    by: Annotated[str | None, typer.Option(help="Who acts (default: $USER).")] = None,
) -> None:
    """Make a JSON API token for a user (printed once, stored hashed, expiring after
    --expires-in); or list or revoke."""
    from consonance_sftp.app import console as web_users

    app = load_app()
    try:
        if list_:
            tokens = app.store.list_api_tokens(name)
            if not tokens:
                console.print(f"no API tokens for {name}", markup=False)
                return
            _token_rows(tokens, as_json=False)
            return
        if revoke is not None:
            if all(t.id != revoke for t in app.store.list_api_tokens(name)):
                raise ConsonanceSftpError(f"{name} has no API token #{revoke}")
            record = web_users.revoke_token(app.store, revoke, by=acting_user(by))
            console.print(f"token #{record.id} revoked", markup=False)
            return
        lifetime = web_users.parse_lifetime(expires_in)
        token, record = web_users.add_token(
            app.store, name, by=acting_user(by), label=label, expires_in=lifetime
        )
    except ConsonanceSftpError as exc:
        raise _fail(exc) from None
    expiry = f"expires {_when(record.expires_at)}" if record.expires_at else "never expires"
    console.print(
        f"token #{record.id} for {record.user_name}, {expiry} (shown once, keep it secret):",
        markup=False,
    )
    print(token)
