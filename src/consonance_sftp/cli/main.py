"""The ``consonance-sftp`` command: sub-commands are registered here, errors are made readable.

A user sees one clear line and a hint for every error we raise on purpose, never a traceback
(``--debug`` shows it). Configuration problems exit with code 2, other failures with 1.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from consonance_sftp import __version__
from consonance_sftp.errors import ConfigError, ConsonanceSftpError
from consonance_sftp.logs import setup_logging

if TYPE_CHECKING:
    from consonance_sftp.app import App

DEFAULT_CONFIG = Path("consonance-sftp.toml")
CONFIG_ENV = "CONSONANCE_SFTP_CONFIG"

app = typer.Typer(
    name="consonance-sftp",
    help="Automated, traceable file exchanges between Consonance and partners' SFTP servers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain (Click) help: Typer's Rich panels print a "<bool>" type after every flag and read
    # help text as markup, so "a key of [flows]" lost its brackets.
    rich_markup_mode=None,
)
# emoji=False: an error naming a fingerprint ('SHA256:AB:CD:...') must print it as it is.
err_console = Console(stderr=True, soft_wrap=True, emoji=False)


class State:
    debug: bool = False
    config_path: Path = DEFAULT_CONFIG


state = State()


def load_app() -> App:
    """The App of the config this command was given (loaded when a command runs, not when
    the CLI starts)."""
    from consonance_sftp.app import App

    return App.from_config(state.config_path)


def emit_json(data: Any) -> None:
    """One JSON value on its own line on stdout (``--json``)."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")


def acting_user(by: str | None = None) -> str:
    """Who acts, for the record: ``--by``, else the login name (``$USER``, ``$LOGNAME``, else
    the account's name, as in a bare container with no such variable), else ``unknown``."""
    if by:
        return by
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no variable and a uid with no account
        return "unknown"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"consonance-sftp {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    config: Annotated[
        Path,
        typer.Option(
            "--config",
            "-c",
            envvar=CONFIG_ENV,
            help="Config file (TOML).",
            show_default=True,
        ),
    ] = DEFAULT_CONFIG,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    state.debug = debug
    state.config_path = config
    setup_logging("DEBUG" if debug else "WARNING")


def _register() -> None:
    # Imported here so each command module can import ``app``/``state`` from this one.
    from consonance_sftp.cli import commands

    commands.register(app)


def main() -> None:
    _register()
    try:
        app()
    except ConsonanceSftpError as exc:
        if state.debug or "--debug" in sys.argv:
            raise
        report_error(exc)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/yellow]")
        sys.exit(130)


def report_error(exc: ConsonanceSftpError) -> None:
    """One line (plus the listed problems, if any) and a hint; no traceback."""
    first, *rest = str(exc).splitlines() or [type(exc).__name__]
    err_console.print(f"[bold red]error:[/bold red] {first}", highlight=False, markup=True)
    for line in rest:
        err_console.print(line, highlight=False, markup=False)
    if exc.hint:
        err_console.print(f"[dim]hint:[/dim] {exc.hint}", highlight=False)
