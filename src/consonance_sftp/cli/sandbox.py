"""CLI commands: ``sandbox`` (serve the local Consonance stand-in) and its control commands.

``consonance-sftp sandbox`` (or ``sandbox serve``) serves the Consonance-compatible GraphQL API;
``sandbox seed`` builds its catalogue (generated, or from an ONIX file); ``sandbox statements``
writes a royalty-statement batch for it (one PDF per payee); ``sandbox stage``,
``todo``, ``product`` and ``fault`` change a running sandbox the way a Consonance user (or a
flaky network) would, for the demo and for trying triggers by hand.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_DATA_DIR = Path("var/sandbox")
DEFAULT_URL = "http://127.0.0.1:8765"
TOKEN_FILE = Path("keys/consonance-sandbox-token")

sandbox_app = typer.Typer(
    name="sandbox",
    help="Local Consonance-compatible API for the demo, for trying the service, and for tests.",
    no_args_is_help=False,
    invoke_without_command=True,
)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="CONSONANCE_SANDBOX_DIR",
        help="Sandbox folder; the catalogue is kept in its 'consonance' sub-folder.",
    ),
]
Url = Annotated[
    str, typer.Option("--url", envvar="CONSONANCE_SANDBOX_URL", help="A running sandbox.")
]


def _tokens(token: str | None) -> tuple[str, ...]:
    from consonance_sftp.sandbox.consonance.server import DEFAULT_TOKEN

    if token:
        return (token,)
    if TOKEN_FILE.is_file():  # written by `consonance-sftp init`
        return (TOKEN_FILE.read_text().strip(), DEFAULT_TOKEN)
    return (DEFAULT_TOKEN,)


def serve_consonance_command(
    data_dir: Path = DEFAULT_DATA_DIR,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    works: int = 24,
    seed_value: int = 1,
    page_size: int | None = None,
) -> None:
    """Serve the Consonance sandbox in the foreground until interrupted."""
    from consonance_sftp.sandbox.consonance.resolvers import DEFAULT_PAGE_SIZE
    from consonance_sftp.sandbox.consonance.runner import run_consonance_sandbox

    tokens = _tokens(token or os.environ.get("CONSONANCE_SANDBOX_TOKEN"))

    def ready(url: str) -> None:
        typer.echo(f"Consonance sandbox: {url}/graphql (data in {data_dir / 'consonance'})")
        if tokens[0] != token and len(tokens) > 1:
            typer.echo(f"token: the one in {TOKEN_FILE}, or the public sandbox token")
        else:
            typer.echo(f"token: {tokens[0]}  (Authorization: Bearer <token>)")
        typer.echo("Ctrl-C stops it.")

    try:
        asyncio.run(
            run_consonance_sandbox(
                data_dir,
                host=host,
                port=port,
                tokens=tokens,
                works=works,
                seed_value=seed_value,
                page_size=page_size or DEFAULT_PAGE_SIZE,
                on_ready=ready,
            )
        )
    except KeyboardInterrupt:
        typer.echo("sandbox stopped")


def serve_from_config(config_path: Path) -> None:
    """Serve the Consonance API and the SFTP partners named by the config's ``[sandbox]``."""
    from consonance_sftp.config import load_settings
    from consonance_sftp.sandbox.services import sandbox_services

    settings = load_settings(config_path)

    async def run() -> None:
        async with sandbox_services(settings) as sb:
            typer.echo(f"Consonance sandbox: {sb.api_url}/graphql (token: consonance.token)")
            typer.echo(
                f"SFTP partners on {sb.sftp.host}:{sb.sftp.port} "
                f"(host key {sb.sftp.fingerprint}): {', '.join(sorted(sb.sftp.settings.users))}"
            )
            typer.echo(f"partner folders under {sb.data_dir / 'sftp'}; Ctrl-C stops the sandbox.")
            await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        typer.echo("sandbox stopped")


@sandbox_app.callback()
def _default(ctx: typer.Context) -> None:
    """With a config file (see --config): its [sandbox]; without one: the API on defaults."""
    if ctx.invoked_subcommand is None:
        from consonance_sftp.cli.main import state

        if state.config_path.is_file():
            serve_from_config(state.config_path)
        else:
            serve_consonance_command()


@sandbox_app.command("serve")
def serve(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8765,
    token: Annotated[
        str | None, typer.Option(help="API token to accept (default: keys/ token file).")
    ] = None,
    works: Annotated[int, typer.Option(help="Works to generate if there is no catalogue.")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed of the generated catalogue.")] = 1,
    page_size: Annotated[
        int | None, typer.Option(help="Records per page (the server's cap).")
    ] = None,
) -> None:
    """Serve the Consonance-compatible GraphQL API (POST /graphql)."""
    serve_consonance_command(data_dir, host, port, token, works, seed, page_size)


@sandbox_app.command("seed")
def seed_cmd(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    products: Annotated[
        int | None, typer.Option(help="Generate a catalogue of this many products.")
    ] = None,
    works: Annotated[int | None, typer.Option(help="Generate this many works instead.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same catalogue).")] = 1,
    onix: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Seed from an ONIX 3.0 file.")
    ] = None,
    keep_resource_urls: Annotated[
        bool, typer.Option(help="Keep the ONIX cover links instead of sandbox JPEGs.")
    ] = False,
    allow_empty: Annotated[
        bool,
        typer.Option(help="Seed from an ONIX message with no product (an empty catalogue)."),
    ] = False,
) -> None:
    """Build the sandbox catalogue (replacing the one there). Restart a running sandbox after.

    From ONIX, a message with no product, two products with the same record reference or ISBN,
    or a code the sandbox API cannot serve is refused by name; what the file holds that the
    catalogue cannot carry is listed, per element, with counts.
    """
    from consonance_sftp.formats.wording import counted
    from consonance_sftp.sandbox.consonance.seed import ReadReport, catalogue_dir, not_served
    from consonance_sftp.sandbox.consonance.seed import seed as do_seed

    report = ReadReport()
    catalogue = do_seed(
        data_dir,
        products=products,
        works=works,
        seed_value=seed,
        onix=onix,
        keep_resource_urls=keep_resource_urls,
        allow_empty=allow_empty,
        report=report,
    )
    typer.echo(
        f"seeded {counted(len(catalogue.works), 'work')}, "
        f"{counted(len(catalogue.products), 'product')} "
        f"into {catalogue_dir(data_dir)}"
    )
    if onix is not None and report.not_carried:
        total = sum(report.not_carried.values())
        typer.echo(f"not carried ({counted(total, 'element')}, by element, with counts):")
        for what, n in sorted(report.not_carried.items(), key=lambda kv: (-kv[1], kv[0])):
            typer.echo(f"  {n:>6}  {what}")
    elif onix is not None:
        typer.echo("not carried: nothing (every element of the file was read)")
    held = not_served(catalogue) if onix is not None else {}
    if held:
        total = sum(held.values())
        typer.echo(
            f"held but not served, as Consonance's API cannot carry them "
            f"({counted(total, 'element')}, by element, with counts):"
        )
        for what, n in sorted(held.items(), key=lambda kv: (-kv[1], kv[0])):
            typer.echo(f"  {n:>6}  {what}")


@sandbox_app.command("statements")
def statements_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the statement PDFs into.")],
    payees: Annotated[
        int | None, typer.Option(help="How many payees (default: every payee there is).")
    ] = None,
    period: Annotated[str, typer.Option(help="Statement period: 2026H1, 2026Q3 or 2026.")] = (
        "2026H1"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the figures (same seed, same files).")] = 1,
    bad: Annotated[
        bool,
        typer.Option(
            "--bad", help="Also write the three bad files (two payees, unknown, scan) to OUT/bad."
        ),
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Write a royalty-statement batch (one PDF per payee) for the sandbox's catalogue.

    Payees are the authors of works with a contract. If there are fewer than --payees, or no
    co-authored contract naming both authors, authors with a work and a contract are added to
    the saved catalogue (restart a running sandbox to serve them).
    """
    from consonance_sftp.formats.wording import counted
    from consonance_sftp.sandbox.consonance.seed import catalogue_dir, load_or_seed
    from consonance_sftp.sandbox.consonance.statements import (
        ensure_payees,
        no_text_layer,
        period_dates,
        two_payees,
        unknown_payee,
        write_statements,
    )

    try:
        period_dates(period)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--period") from None
    catalogue = load_or_seed(data_dir)
    works_before = len(catalogue.works)
    added = ensure_payees(catalogue, payees or 0, seed=seed)
    if len(catalogue.works) != works_before:
        catalogue.save(catalogue_dir(data_dir))
        typer.echo(
            f"added {counted(len(added), 'payee')} and "
            f"{counted(len(catalogue.works) - works_before, 'work')} with their contracts "
            f"to {catalogue_dir(data_dir)}; restart a running sandbox to serve them"
        )
    written = write_statements(catalogue, out, payees=payees, period=period, seed=seed)
    typer.echo(f"wrote {counted(len(written), 'statement')} for {period} into {out}")
    if bad:
        folder = out / "bad"
        made = {
            **two_payees(catalogue, folder, period=period, seed=seed),
            **unknown_payee(catalogue, folder, period=period, seed=seed),
            **no_text_layer(catalogue, folder, period=period, seed=seed),
        }
        typer.echo(f"wrote {counted(len(made), 'bad file')} into {folder}: {', '.join(made)}")


def _control_url(url: str) -> str:
    """An explicit --url wins; else the config's [sandbox] API (the demo picks free ports)."""
    from consonance_sftp.cli.main import state

    if url != DEFAULT_URL or not state.config_path.is_file():
        return url
    from consonance_sftp.config import load_settings

    sandbox = load_settings(state.config_path).sandbox
    if sandbox is None:
        return url
    return f"http://{sandbox.graphql_host}:{sandbox.graphql_port}"


def _call(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    from consonance_sftp.sandbox.consonance.control import SandboxControl, SandboxControlError

    with SandboxControl(_control_url(url)) as control:
        try:
            return control.call(method, path, body)
        except SandboxControlError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc


def _show(result: Any) -> None:
    typer.echo(json.dumps(result, indent=2))


@sandbox_app.command("stage")
def stage(
    work_id: int,
    stage_name: Annotated[str, typer.Argument(metavar="STAGE")],
    url: Url = DEFAULT_URL,
) -> None:
    """Move a work to a project stage."""
    _show(_call(url, "POST", f"works/{work_id}/stage", {"stage": stage_name}))


@sandbox_app.command("work")
def work(
    work_id: int,
    title: Annotated[str | None, typer.Option(help="New title.")] = None,
    subtitle: Annotated[str | None, typer.Option(help="New subtitle.")] = None,
    url: Url = DEFAULT_URL,
) -> None:
    """Change a work's title or subtitle."""
    body = {k: v for k, v in (("title", title), ("subtitle", subtitle)) if v is not None}
    _show(_call(url, "PATCH", f"works/{work_id}", body))


@sandbox_app.command("todo")
def todo(
    todo_id: int,
    reopen: Annotated[bool, typer.Option(help="Mark it open again.")] = False,
    url: Url = DEFAULT_URL,
) -> None:
    """Complete a to-do (or reopen it)."""
    _show(_call(url, "POST", f"todos/{todo_id}/complete", {"completed": not reopen}))


@sandbox_app.command("product")
def product(
    product_id: int,
    title: Annotated[str | None, typer.Option(help="New title.")] = None,
    status: Annotated[str | None, typer.Option(help="ONIX list 64 status, e.g. 04.")] = None,
    pub_date: Annotated[str | None, typer.Option(help="Publication date YYYY-MM-DD.")] = None,
    price: Annotated[
        str | None, typer.Option(help="CURRENCY:TYPE:QUALIFIER:AMOUNT, e.g. GBP:02:05:12.99.")
    ] = None,
    url: Url = DEFAULT_URL,
) -> None:
    """Change a product's title, publishing status, publication date or a price."""
    body: dict[str, Any] = {}
    if title is not None:
        body["title"] = title
    if status is not None:
        body["publishing_status"] = status
    if pub_date is not None:
        body["publication_date"] = pub_date
    if price is not None:
        try:
            currency, price_type, qualifier, amount = price.split(":")
        except ValueError:
            raise typer.BadParameter("use CURRENCY:TYPE:QUALIFIER:AMOUNT") from None
        body["price"] = {
            "currency": currency,
            "price_type": price_type,
            "qualifier": qualifier,
            "amount": amount,
        }
    _show(_call(url, "PATCH", f"products/{product_id}", body))


@sandbox_app.command("fault")
def fault(
    kind: Annotated[
        str, typer.Argument(help="rate_limit, server_error, malformed, slow, unauthorized, clear")
    ],
    count: Annotated[int, typer.Option(help="How many next requests fail.")] = 1,
    retry_after: Annotated[float, typer.Option(help="Retry-After seconds (rate_limit).")] = 1.0,
    delay: Annotated[float, typer.Option(help="Seconds before answering (slow).")] = 30.0,
    url: Url = DEFAULT_URL,
) -> None:
    """Make the next API requests fail, to watch the service retry."""
    if kind == "clear":
        _show(_call(url, "DELETE", "faults"))
        return
    body = {"kind": kind, "count": count, "retry_after": retry_after, "delay": delay}
    _show(_call(url, "POST", "faults", body))


@sandbox_app.command("stats")
def stats(url: Url = DEFAULT_URL) -> None:
    """Requests served, by operation, and pending faults."""
    _show(_call(url, "GET", "stats"))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(sandbox_app)
