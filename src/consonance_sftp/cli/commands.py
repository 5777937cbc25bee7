"""Which command modules make up the CLI. Each module owns one group of commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from consonance_sftp.cli import audit, config_cmd, partner, sandbox

    for module in (config_cmd, audit, partner, sandbox):
        module.register(app)
