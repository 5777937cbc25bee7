"""Everything the sandbox serves, started together from a config's ``[sandbox]`` section.

``consonance-sftp sandbox`` and the demo both use ``sandbox_services``: the Consonance-compatible
API (seeded on first start) and one SFTP server holding a chrooted folder per sandbox partner,
with each partner's configured remote folders (``/in``, ``/out``, ...) created up front.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consonance_sftp.config import Settings
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.sandbox.consonance.runner import serve_consonance
from consonance_sftp.sandbox.consonance.seed import catalogue_dir, load_or_seed
from consonance_sftp.sandbox.consonance.server import SandboxSettings as ApiSettings
from consonance_sftp.sandbox.sftp_server import SandboxSftpServer, start_configured_sandbox_sftp


@dataclass(frozen=True, slots=True)
class RunningSandbox:
    api_url: str
    sftp: SandboxSftpServer
    data_dir: Path

    def partner_folder(self, partner: str, remote: str = "/") -> Path:
        """Where a sandbox partner's remote path lives on this machine."""
        return self.sftp.home(partner) / remote.lstrip("/")


@contextlib.asynccontextmanager
async def sandbox_services(settings: Settings) -> AsyncIterator[RunningSandbox]:
    """Start the sandbox API and SFTP partners; stop both when the block ends."""
    try:
        sftp = await start_configured_sandbox_sftp(settings)
    except OSError as exc:
        raise ConsonanceSftpError(
            f"the sandbox SFTP server cannot start: {exc.strerror}",
            hint="Another sandbox may be running; stop it or change sandbox.sftp_port "
            "(and the partners' port and host_keys) in the config.",
        ) from exc
    sb = settings.sandbox
    assert sb is not None  # start_configured_sandbox_sftp refuses a config without one
    data_dir = Path(sb.data_dir)
    catalogue = await asyncio.to_thread(load_or_seed, data_dir, works=sb.seed)
    api_settings = ApiSettings(
        tokens=(settings.consonance.token.get_secret_value(),),
        data_dir=catalogue_dir(data_dir),
    )
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    api = asyncio.create_task(
        serve_consonance(
            catalogue,
            api_settings,
            host=sb.graphql_host,
            port=sb.graphql_port,
            on_ready=ready.set_result,
        )
    )
    try:
        waiting: set[asyncio.Future[Any]] = {api, ready}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if api in done:
            api.result()  # raises the start-up error
            raise ConsonanceSftpError("the Consonance sandbox stopped while starting")
        yield RunningSandbox(api_url=ready.result(), sftp=sftp, data_dir=data_dir)
    except OSError as exc:
        raise ConsonanceSftpError(
            f"the Consonance sandbox cannot listen on {sb.graphql_host}:{sb.graphql_port}: "
            f"{exc.strerror}",
            hint="Another sandbox may be running; stop it or change sandbox.graphql_port "
            "and consonance.base_url in the config.",
        ) from exc
    finally:
        api.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await api
        sftp.close()
        await sftp.wait_closed()
