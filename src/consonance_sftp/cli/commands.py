"""Which command modules make up the CLI. Each module owns one group of commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from consonance_sftp.cli import audit, config_cmd, demo, partner, records, sandbox, service

    for module in (config_cmd, demo, audit, partner, sandbox, service, records):
        module.register(app)
