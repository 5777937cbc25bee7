"""An explicit resend replaces the partner's copies when it publishes, never before: the real
OpenSSH sshd, the engine over the SFTP bridge with the resend transport, and the store's ledger.

The three files of a package were delivered; a resend of it cannot stage the third (its folder
is no longer the account's). The partner still holds the three old copies, untouched: a resend
that fails half-way takes nothing away. Once the folder is writable again, ``retry`` stages
the third and publishes all three, each a new arrival (a new inode) with the same bytes."""

from __future__ import annotations

import asyncio
import os
import pwd
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from consonance_sftp.adapters.sftp.endpoint import SftpEndpoint
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.adapters.store import open_store
from consonance_sftp.app.delivery import SftpDeliveryTransport
from consonance_sftp.app.runner import ResendTransport, mark_resend
from consonance_sftp.engine import Engine, EngineClient
from consonance_sftp.engine.ledger import StoreLedger
from consonance_sftp.models import DeliveryOutcome
from consonance_sftp.ports.delivery import DeliveryRequest
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.engine_worker import settings_from
from tests.integration.test_package_all_or_nothing import three_files


async def _until_done(client: EngineClient, workflow_id: str) -> None:
    deadline = time.monotonic() + 60
    while await asyncio.to_thread(client.status, workflow_id) != "SUCCESS":
        assert time.monotonic() < deadline, f"{workflow_id} did not finish"
        await asyncio.sleep(0.1)


async def test_a_failed_resend_leaves_the_old_copies_and_its_retry_replaces_them_all(
    openssh: OpenSshServer,
    openssh_endpoint: Callable[..., SftpEndpoint],
    openssh_dir: Callable[[str], tuple[Path, str]],
    tmp_path: Path,
) -> None:
    # As root the account is the chroot one and a folder it may not write to is root's;
    # otherwise the tests' own account and a read-only folder.
    account = "chroot" if os.geteuid() == 0 else "shell"
    local, remote = openssh_dir(account)
    (local / "title").mkdir()
    locked = local / "locked"
    locked.mkdir(mode=0o755)
    owner = pwd.getpwnam(openssh.chroot_user or "") if account == "chroot" else None
    if owner is not None:
        for folder in (local / "title", locked):
            os.chown(folder, owner.pw_uid, owner.pw_gid)

    def lock(writable: bool) -> None:
        if owner is None:
            locked.chmod(0o755 if writable else 0o555)
        elif writable:
            os.chown(locked, owner.pw_uid, owner.pw_gid)
        else:
            os.chown(locked, 0, 0)

    store = open_store(f"sqlite:///{tmp_path}/store.sqlite")
    sftp = SftpDeliveryTransport(
        lambda partner: SftpRemoteFS(openssh_endpoint(account), state_dir=tmp_path)
    )
    settings = settings_from(
        {
            "db": f"sqlite:///{tmp_path}/dbos.sqlite",
            "executor_id": "resend-publish",
            "retry": {"max_attempts": 1},
        }
    )
    engine = Engine(settings, transport=ResendTransport(sftp, store), ledger=StoreLedger(store))
    await asyncio.to_thread(engine.launch)
    client = EngineClient(settings)
    files = three_files(tmp_path, remote, size=30_000, seed=10)
    finals = [local / f.remote_path.removeprefix(remote + "/") for f in files]
    partner = f"openssh-{account}"
    try:
        first = DeliveryRequest(flow="t", partner=partner, package="pkg", files=files)
        await engine.result(await engine.enqueue_delivery(first, max_connections=2), 60)
        old = [p.stat() for p in finals]

        resend = DeliveryRequest(
            flow="t", partner=partner, package="pkg", files=files, generation=1
        )
        mark_resend(store, resend)
        lock(writable=False)
        workflow_id = await engine.enqueue_delivery(resend, max_connections=2)
        with pytest.raises(Exception, match="ermission denied"):
            await engine.result(workflow_id, 60)

        # The partner keeps the three old copies, untouched (same inode, same time).
        for f, final, before in zip(files, finals, old, strict=True):
            now = final.stat()
            assert (now.st_ino, now.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), final
            assert final.read_bytes() == Path(f.source).read_bytes()

        lock(writable=True)
        await asyncio.to_thread(client.retry, workflow_id)
        await _until_done(client, workflow_id)
    finally:
        client.close()
        await engine.aclose()
        await sftp.close()

    # All three arrived again: new files (new inodes) with the same bytes, no temporary left.
    for f, final, before in zip(files, finals, old, strict=True):
        assert final.stat().st_ino != before.st_ino, final
        assert final.read_bytes() == Path(f.source).read_bytes()
    assert sorted(p.name for p in (local / "title").iterdir()) == ["a.pdf", "b.jpg"]
    assert sorted(p.name for p in locked.iterdir()) == ["c.xml"]
    sent = {(r.remote_path, r.generation): r.outcome for r in store.list_deliveries(flow="t")}
    assert sent == {(f.remote_path, g): DeliveryOutcome.SENT for f in files for g in (0, 1)}
    store.close()
