"""Which command modules make up the CLI. Each module owns one group of commands."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from consonance_sftp.cli import (
        alerts,
        archive,
        assets,
        audit,
        config_cmd,
        demo,
        finance,
        metrics,
        onix,
        partner,
        quarantine,
        records,
        sales,
        sandbox,
        service,
        users,
        web,
    )

    for module in (
        config_cmd,
        demo,
        audit,
        partner,
        sandbox,
        service,
        records,
        assets,
        quarantine,
        sales,
        finance,
        archive,
        alerts,
        metrics,
        users,
        web,
        onix,
    ):
        module.register(app)
    # Each sub-app is a Typer of its own whose help would otherwise be rendered with Rich
    # markup (see ``main.app``): the whole CLI prints plain help.
    for group in app.registered_groups:
        if group.typer_instance is not None:
            group.typer_instance.rich_markup_mode = None
