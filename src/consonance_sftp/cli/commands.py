"""Which command modules make up the CLI. Each module owns one group of commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from consonance_sftp.cli import audit, config_cmd, demo, partner, sandbox

    for module in (config_cmd, demo, audit, partner, sandbox):
        module.register(app)
