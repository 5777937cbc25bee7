"""A partner's batch of small files taken in through the real engine from a real OpenSSH server:
the intakes reuse one connection instead of logging in again for every file (a handshake is
most of what a small file costs), and the connection is still given back soon after the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.app import App
from consonance_sftp.app.intake import LINGER_S, SftpIntakeTransport, poll_inbox
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.config import Settings
from consonance_sftp.config.flows import IntakeFlow
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.settings import offline_settings, openssh_partner

FILES = 12


@dataclass
class Batch:
    """A designer's inbox polled by an intake flow through a real executor, and every session
    pool the intake transport made (``pools``: one per login burst)."""

    settings: Settings
    app: App
    flow: IntakeFlow
    runner: DeliveryRunner
    transport: SftpIntakeTransport
    pools: list[SftpRemoteFS] = field(default_factory=list)


@contextlib.asynccontextmanager
async def batch(openssh: OpenSshServer, tmp_path: Path, inbox: Path) -> AsyncIterator[Batch]:
    partner = openssh_partner(
        openssh, {"receive": str(inbox)}, max_connections=2, transfer={"stable_interval": 0.1}
    )
    settings = Settings.model_validate(
        offline_settings(
            tmp_path,
            partners={"designer": partner},
            flows={"covers": {"kind": "intake", "partners": ["designer"]}},
        )
    )
    app = App(settings)
    flow = settings.flows["covers"]
    assert isinstance(flow, IntakeFlow)
    runner = DeliveryRunner(app, executor=True, quiet=True)
    await runner.__aenter__()
    try:
        assert runner.engine is not None
        transport = runner.engine.intake_transport
        assert isinstance(transport, SftpIntakeTransport)
        world = Batch(settings, app, flow, runner, transport)
        make = transport._make_fs

        def counting(name: str) -> SftpRemoteFS:
            world.pools.append(make(name))
            return world.pools[-1]

        transport._make_fs = counting
        yield world
    finally:
        await runner.__aexit__(None, None, None)
        app.store.close()


async def test_a_batch_of_small_files_shares_one_connection_and_gives_it_back(
    openssh: OpenSshServer, tmp_path: Path
) -> None:
    inbox = tmp_path / "sftp" / "inbox"
    inbox.mkdir(parents=True)
    then = time.time() - 60
    sha: dict[str, str] = {}
    for i in range(FILES):
        data = os.urandom(20_000 + i * 1000)
        (inbox / f"cover-{i:02d}.pdf").write_bytes(data)
        os.utime(inbox / f"cover-{i:02d}.pdf", (then, then))
        sha[f"cover-{i:02d}.pdf"] = hashlib.sha256(data).hexdigest()
    async with batch(openssh, tmp_path, inbox) as b:
        app, runner, transport, pools, flow = b.app, b.runner, b.transport, b.pools, b.flow
        report = await poll_inbox(app, runner, "covers", flow, trigger="test")
        assert len(report.taken) == FILES
        results: list[dict[str, Any]] = [
            await runner.wait(f.workflow_id or "", timeout_s=120) for f in report.taken
        ]
        assert sorted((Path(r["local_path"]).name, r["sha256"]) for r in results) == sorted(
            sha.items()
        )
        # One login for the batch (two at most, when the engine runs two intakes at once),
        # not one per file.
        opened = sum(fs.pool.opened for fs in pools)
        assert 1 <= opened <= 2, (opened, len(pools))
        # Soon after the batch the connection is closed and its slot of the cap given back.
        deadline = time.monotonic() + LINGER_S + 10
        while transport._fs and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert transport._fs == {}
        while app._budget.in_use("designer") and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert app._budget.in_use("designer") == 0
        assert all(fs.pool.open_connections == 0 for fs in pools)


async def test_a_changed_partner_config_is_not_served_by_a_lingering_connection(
    openssh: OpenSshServer, tmp_path: Path
) -> None:
    inbox = tmp_path / "sftp" / "inbox"
    inbox.mkdir(parents=True)
    async with batch(openssh, tmp_path, inbox) as b:
        app, runner, transport, pools = b.app, b.runner, b.transport, b.pools
        flow, settings = b.flow, b.settings
        transport.linger = 3.0  # long enough to reload while the connection lingers

        async def take(name: str) -> None:
            (inbox / name).write_bytes(os.urandom(5000))
            then = time.time() - 60
            os.utime(inbox / name, (then, then))
            report = await poll_inbox(app, runner, "covers", flow, trigger="test")
            [taken] = report.taken
            result = await runner.wait(taken.workflow_id or "", timeout_s=60)
            assert result["outcome"] == "stored", result

        await take("first.pdf")
        assert len(pools) == 1 and list(transport._fs.values()) == pools  # lingering
        # ``serve`` reloads a config in which this partner changed (a new pin, new keys...).
        app.reload(settings, changed_partners=["designer"])
        assert transport._fs == {}
        await take("second.pdf")
        assert len(pools) == 2  # a new pool, with the new settings, not the lingering one
        assert pools[0].pool.opened == 1 and pools[1].pool.opened == 1
        # Both are closed once their linger runs out, and the cap's slots given back.
        deadline = time.monotonic() + transport.linger + 10
        while (transport._fs or app._budget.in_use("designer")) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert transport._fs == {} and app._budget.in_use("designer") == 0
        assert [fs.pool.open_connections for fs in pools] == [0, 0]
