"""``assets ISBN``: which version of each asset of a title is current, who sent it, when."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from consonance_sftp.cli.main import load_app
from consonance_sftp.formats.wording import counted

if TYPE_CHECKING:
    from consonance_sftp.app.assets import AssetHistory

console = Console(highlight=False, emoji=False, width=None if sys.stdout.isatty() else 160)

COLUMNS = (
    "kind",
    "level",
    "v",
    "current",
    "SHA-256",
    "bytes",
    "from",
    "original name",
    "received (UTC)",
    "supersedes",
)


def assets(
    isbn: Annotated[str, typer.Argument(help="The title's ISBN-13 or ISBN-10 (hyphens allowed).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object on stdout: the title and every version.")
    ] = False,
    offline: Annotated[
        bool,
        typer.Option("--offline", help="Use our own records only; never ask Consonance."),
    ] = False,
) -> None:
    """Every version of every asset kind of a product and of its work: SHA-256, size, the
    partner that sent it, its original name, when it was received, and the version it
    superseded.

    The ISBN is looked up in our own records first (the asset versions matched to that ISBN
    when a partner's file was taken in). Only when none is there is Consonance asked for the
    product and its work (the versions of flows that record no ISBN are found that way);
    --offline never asks Consonance.
    """
    from consonance_sftp.app.assets import asset_history

    app = load_app()
    try:
        found = asyncio.run(asset_history(app, isbn, offline=offline))
    finally:
        app.store.close()
    if as_json:
        sys.stdout.write(json.dumps(found.to_dict()) + "\n")
        return
    _table(found)


def _table(found: AssetHistory) -> None:
    where = "our records" if found.found_in == "records" else "Consonance"
    works = ", ".join(map(str, found.work_ids))
    products = ", ".join(map(str, found.product_ids)) or "-"
    console.print(f"ISBN {found.isbn13}: work {works}, product {products} (found in {where})")
    table = Table(title=None)
    for name in COLUMNS:
        table.add_column(name, overflow="fold")
    for line in found.lines:
        v = line.version
        when = v.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if v.created_at else ""
        table.add_row(
            v.kind,
            line.level,
            str(v.version or ""),
            "yes" if line.current else "",
            v.sha256[:12],
            f"{v.size:,}",
            v.partner or (v.source or ""),
            v.original_name or "",
            when,
            f"v{line.supersedes_version}" if line.supersedes_version else "",
        )
    console.print(table)
    console.print(counted(len(found.lines), "version"))


def register(app: typer.Typer) -> None:
    app.command("assets")(assets)
