"""``init`` and ``config check``."""

from __future__ import annotations

import typer

config_app = typer.Typer(help="Check and explain the config file.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
