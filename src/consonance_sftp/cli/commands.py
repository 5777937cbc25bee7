"""Which command modules make up the CLI. Each module owns one group of commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from consonance_sftp.cli import config_cmd

    config_cmd.register(app)
