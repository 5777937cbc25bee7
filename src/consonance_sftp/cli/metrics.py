"""``metrics``: serve ``/metrics`` (Prometheus text format) on its own, or print it once.

The numbers come from the shared database and the engine's records (``web.metrics``), so one
``metrics`` process beside ``serve`` and any number of ``worker`` processes answers for all of
them. This exporter has no login: it binds 127.0.0.1 by default and must not be exposed beyond
the machine without an authenticating proxy. The console (``web``) serves the same route to an
API token (``Authorization: Bearer ...``) and refuses an anonymous scrape.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from consonance_sftp.cli.main import load_app


def register(app: typer.Typer) -> None:
    """Add this module's command to the root app."""
    app.command("metrics")(metrics)


def metrics(
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on (127.0.0.1: this machine only). There is no login: "
            "never expose it without an authenticating proxy (or scrape the console's "
            "/metrics with an API token)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9464,
    once: Annotated[
        bool, typer.Option("--once", help="Print the metrics once to stdout and exit.")
    ] = False,
    cache: Annotated[
        float,
        typer.Option(help="Seconds a reading of the database is reused by the next scrapes."),
    ] = 10.0,
) -> None:
    """Serve GET /metrics in the Prometheus text format (business numbers read from the
    shared database at each scrape), or print them once with --once. No login: keep it on
    127.0.0.1 (the default) or behind an authenticating proxy."""
    from consonance_sftp.app.metrics import MetricsSource
    from consonance_sftp.web.metrics import render, router

    source = MetricsSource(load_app(), ttl=cache)
    if once:
        sys.stdout.write(render(source).decode())
        return

    import uvicorn
    from fastapi import FastAPI

    web = FastAPI(title="consonance-sftp metrics", docs_url=None, redoc_url=None, openapi_url=None)
    web.include_router(router(source))
    typer.echo(f"metrics on http://{host}:{port}/metrics", err=True)
    uvicorn.run(web, host=host, port=port, log_level="warning")
