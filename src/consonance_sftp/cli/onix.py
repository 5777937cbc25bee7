"""``onix compare SOURCE PRODUCED``: what a feed kept, changed and dropped, facet by facet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

onix_app = typer.Typer(help="ONIX files: compare a produced feed with its source.")


def register(app: typer.Typer) -> None:
    app.add_typer(onix_app, name="onix")


_MARK = {"match": "=", "changed": "~", "dropped": "-", "added": "+"}


@onix_app.command("compare")
def compare_cmd(
    source: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="The ONIX file you send today (3.0, 3.1 or 2.1)."
        ),
    ],
    produced: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="The ONIX file to check against it (3.0, 3.1 or 2.1)."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    show_matches: Annotated[
        bool, typer.Option("--matches", help="Also list the facets that match.")
    ] = False,
) -> None:
    """Compare two ONIX files (3.0, 3.1 or 2.1, any mix) product by product (ISBN, else GTIN,
    else record reference) and facet by facet: identifiers, form, titles, contributors,
    subjects, dates by role, rights, markets, prices with territories, supply, collateral,
    series, audience, related products. Exit 1 when anything changed, was added or was
    dropped; 2 when a file cannot be compared (not ONIX, not well-formed, two products with
    one ISBN). A 2.1 product is read as the 3.0 product it maps to, so a 2.1 feed compares
    with a 3.0 one facet by facet."""
    from consonance_sftp.app.onix_compare import compare_files
    from consonance_sftp.cli.main import report_error
    from consonance_sftp.errors import ConsonanceSftpError
    from consonance_sftp.formats.wording import counted

    try:
        comparison = compare_files(source, produced)
    except ConsonanceSftpError as exc:
        # Like diff(1): 1 says "different", so a file that cannot be compared is 2.
        report_error(exc)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(comparison.as_json(), indent=2, ensure_ascii=False))
    else:
        for product in comparison.products:
            typer.echo(f"{product.status.upper():8} {product.key}  {product.title}")
            if product.status in ("dropped", "added") and not product.facets:
                where = "produced" if product.status == "dropped" else "source"
                typer.echo(f"         not in the {where} file")
            for facet in product.facets:
                if facet.status == "match" and not show_matches:
                    continue
                typer.echo(f"  {facet.facet:12} {facet.status} ({facet.matched} same)")
                for item in facet.dropped:
                    typer.echo(f"      - {item}")
                for item in facet.added:
                    typer.echo(f"      + {item}")
        counts = comparison.counts()
        typer.echo(
            f"{counted(len(comparison.products), 'product')}: "
            + ", ".join(f"{n} {status}" for status, n in counts.items())
        )
    if not comparison.ok:
        raise typer.Exit(1)
