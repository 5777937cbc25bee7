"""``init``, ``config check`` and ``docs config-reference``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from consonance_sftp.cli.main import state
from consonance_sftp.formats.wording import counted

if TYPE_CHECKING:  # the config models (pydantic, asyncssh) load when a command runs
    from consonance_sftp.config import Settings

config_app = typer.Typer(help="Check and explain the config file.", no_args_is_help=True)
docs_app = typer.Typer(help="Generated documentation.", no_args_is_help=True)
# soft_wrap: long paths and key lines stay on one line, so they can be copied.
console = Console(highlight=False, emoji=False, soft_wrap=True)

_URL_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]+@")


@config_app.command("check")
def check(
    strict: Annotated[
        bool, typer.Option("--strict", help="Count warnings as problems too (exit code 2).")
    ] = False,
) -> None:
    """Validate the config file and what it points to; list every problem with its TOML path.

    Errors (what will fail: a missing or unreadable key, overlapping inboxes) exit with code
    2; warnings (what will surprise: a key others can read, a flow kind that cannot run yet)
    and notes are printed and exit 0, unless --strict.
    """
    from consonance_sftp.config.checks import check_file
    from consonance_sftp.errors import ConfigError, ConfigProblem

    settings, findings = check_file(state.config_path)
    errors = [f for f in findings if f.severity == "error" or (strict and f.severity == "warning")]
    others = [f for f in findings if f not in errors]
    if errors:
        for finding in others:
            console.print(f"{finding.severity}: {finding}", markup=False)
        raise ConfigError(
            f"{state.config_path}: {counted(len(errors), 'problem')} found by the checks",
            [ConfigProblem(f.path, f.message) for f in errors],
        )
    for line in summary(settings):
        console.print(line, markup=False)
    for finding in others:
        console.print(f"{finding.severity}: {finding}", markup=False)


def summary(settings: Settings) -> list[str]:
    """A few lines that show what the service will do with this config."""
    lines = [
        f"config ok: {state.config_path}",
        f"  consonance: {settings.consonance.base_url}",
        f"  database:   {_hide_password(settings.database.url)}",
        f"  partners:   {len(settings.partners)}",
    ]
    for name, partner in settings.partners.items():
        paused = " (paused)" if partner.paused else ""
        lines.append(
            f"    {name}: {partner.user}@{partner.host}:{partner.port}, {partner.auth.method} "
            f"auth, {counted(len(partner.host_keys), 'pinned host key')}{paused}"
        )
    lines.append(f"  flows:      {len(settings.flows)}")
    for name, flow in settings.flows.items():
        state_word = "" if flow.enabled else " (disabled)"
        who = ", ".join(flow.exchanges_with()) or "local"
        lines.append(f"    {name}: {flow.kind} -> {who}{state_word}")
    if settings.notifications:
        kinds = ", ".join(target.type for target in settings.notifications)
        lines.append(f"  notifications: {kinds}")
    return lines


def _hide_password(url: str) -> str:
    return _URL_PASSWORD.sub(r"\1***@", url)


def init(
    directory: Annotated[
        Path, typer.Option("--dir", "-d", help="Folder to write the starter files into.")
    ] = Path("."),
) -> None:
    """Write a starter config for the local sandbox, a client key pair and sandbox secrets."""
    from consonance_sftp.config.starter import CONFIG_NAME, init_project

    written = init_project(directory)
    console.print(f"[green]wrote[/green] {len(written)} files (never overwrites):")
    for item in written:
        console.print(f"  {escape(str(item.path))}  [dim]{oct(item.mode)[2:]}  {item.what}[/dim]")
    config = escape(str(directory / CONFIG_NAME))
    console.print(
        "next:\n"
        f"  consonance-sftp --config {config} config check\n"
        f"  consonance-sftp --config {config} sandbox"
    )


@docs_app.command("config-reference")
def docs_config_reference() -> None:
    """Print the Markdown config reference generated from the models' field descriptions."""
    from consonance_sftp.config.reference import config_reference

    typer.echo(config_reference(), nl=False)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
    app.add_typer(docs_app, name="docs")
    app.command("init")(init)
