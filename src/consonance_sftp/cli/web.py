"""``web``: the operator console (FastAPI, served by uvicorn) on 127.0.0.1:8080 by default.

Put it behind a reverse proxy that terminates TLS to reach it from other machines (see
docs/how-to/console.md); users come from ``consonance-sftp users add``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from consonance_sftp.cli.main import CONFIG_ENV, load_app, state

if TYPE_CHECKING:
    import uvicorn

# uvicorn imports the console by name: the CLI and the web layer never import each other.
FACTORY = "consonance_sftp.web.app:from_environment"

console = Console(highlight=False, emoji=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("web")(web)


def web(
    host: Annotated[
        str, typer.Option(help="Address to listen on (keep 127.0.0.1 behind a proxy).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    secure_cookies: Annotated[
        bool,
        typer.Option(
            "--secure-cookies/--no-secure-cookies",
            help="Send the session cookie over HTTPS only (the default). Turn off only for "
            "plain http on localhost with a browser that refuses Secure cookies there.",
        ),
    ] = True,
    forwarded_allow_ips: Annotated[
        str,
        typer.Option(
            help="Proxies whose X-Forwarded-For is believed (the client address login "
            "throttling counts)."
        ),
    ] = "127.0.0.1",
) -> None:
    """Serve the operator console until Ctrl-C: overview, deliveries and title timelines,
    failures (retry, resend), alerts (acknowledge). Every page needs a login."""
    import uvicorn

    app = load_app()
    users = app.store.list_console_users()
    if not users:
        console.print(
            "no console users yet: add one with 'consonance-sftp users add NAME --role admin'",
            markup=False,
        )
    console.print(f"console on http://{host}:{port}/ (Ctrl-C stops it)", markup=False)
    uvicorn.Server(_config(host, port, secure_cookies, forwarded_allow_ips, "info")).run()


def _config(
    host: str, port: int, secure_cookies: bool, forwarded_allow_ips: str, log_level: str
) -> uvicorn.Config:
    import uvicorn

    os.environ[CONFIG_ENV] = str(state.config_path.resolve())
    os.environ["CONSONANCE_SFTP_WEB_INSECURE_COOKIES"] = "0" if secure_cookies else "1"
    return uvicorn.Config(
        FACTORY,
        factory=True,
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
        log_level=log_level,
    )


@contextmanager
def console_beside(host: str, port: int, *, secure_cookies: bool = True) -> Iterator[None]:
    """The console served from a thread of this process for the length of the block
    (``serve --web``); stopped on the way out."""
    import uvicorn

    server = uvicorn.Server(_config(host, port, secure_cookies, "127.0.0.1", "warning"))
    thread = threading.Thread(target=server.run, name="console", daemon=True)
    thread.start()
    console.print(f"console on http://{host}:{port}/", markup=False)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
