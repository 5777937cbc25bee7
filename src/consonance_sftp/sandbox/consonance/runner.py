"""Running the Consonance sandbox: in the current event loop, or in a background thread.

``serve_consonance`` is what ``consonance-sftp sandbox`` awaits (next to the SFTP partner
servers); ``SandboxThread`` is what tests and benchmarks use to get a real HTTP server on a
free port without a subprocess.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import uvicorn

from consonance_sftp.sandbox.consonance.catalogue import Catalogue
from consonance_sftp.sandbox.consonance.resolvers import DEFAULT_PAGE_SIZE
from consonance_sftp.sandbox.consonance.seed import catalogue_dir, load_or_seed
from consonance_sftp.sandbox.consonance.server import DEFAULT_TOKEN, SandboxSettings, create_app


def _bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP, not the default 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets
    # it can tell are TCP, and an accepted connection inherits the listener's protocol. With
    # Nagle on, a response written in two pieces waited for the client's delayed ACK: every
    # request took about 44 ms instead of about 1.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _server(catalogue: Catalogue, settings: SandboxSettings) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(catalogue, settings),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    return uvicorn.Server(config)


async def serve_consonance(
    catalogue: Catalogue,
    settings: SandboxSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until cancelled. ``on_ready`` gets the base URL once the socket listens."""
    sock = _bind(host, port)
    server = _server(catalogue, settings)
    url = f"http://{host}:{sock.getsockname()[1]}"
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task  # surfaces the startup error
                return
            await asyncio.sleep(0.05)
        if on_ready is not None:
            on_ready(url)
        # Shielded: cancelling this coroutine asks uvicorn to exit (below) instead of
        # cancelling it mid-request, which would print a lifespan traceback.
        await asyncio.shield(task)
    finally:
        server.should_exit = True
        if not task.done():
            await asyncio.wait_for(task, timeout=10)
        sock.close()


class SandboxThread:
    """A sandbox on 127.0.0.1 and a free port, in a daemon thread (a context manager)."""

    def __init__(
        self,
        catalogue: Catalogue,
        settings: SandboxSettings | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.catalogue = catalogue
        self.settings = settings or SandboxSettings()
        self._sock = _bind(host, port)
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        self._server = _server(catalogue, self.settings)
        self._thread = threading.Thread(target=self._run, name="consonance-sandbox", daemon=True)
        self._error: BaseException | None = None

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    @property
    def token(self) -> str:
        return self.settings.tokens[0]

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # reported by start()
            self._error = exc

    def start(self, timeout: float = 15.0) -> SandboxThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the Consonance sandbox did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError("the Consonance sandbox did not start in time")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> SandboxThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def run_consonance_sandbox(
    data_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    tokens: Sequence[str] = (DEFAULT_TOKEN,),
    works: int = 24,
    seed_value: int = 1,
    page_size: int = DEFAULT_PAGE_SIZE,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """What ``consonance-sftp sandbox`` runs for Consonance: load (or seed) and serve.

    The catalogue lives in ``<data_dir>/consonance``; changes are saved there as they happen.
    Runs until cancelled, so it can be gathered with the SFTP partner servers.
    """
    catalogue = await asyncio.to_thread(load_or_seed, data_dir, works=works, seed_value=seed_value)
    settings = SandboxSettings(
        tokens=tuple(tokens), page_size=page_size, data_dir=catalogue_dir(data_dir)
    )
    await serve_consonance(catalogue, settings, host=host, port=port, on_ready=on_ready)
