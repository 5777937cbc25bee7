"""A package is all-or-nothing with the real transport: the engine over the SFTP bridge and the
real OpenSSH sshd. The last file of a three-file package cannot be written (its folder is not
the account's); the first two are staged, verified, and left under their temporary names, none
under its final name. Once the folder is writable, ``retry`` stages the third and publishes all
three, each file sent once.

On a server that forbids rename (``upload_strategy = 'direct'``) the bytes are written under
the final names as they are staged: there all-or-nothing is the done-markers, none written
before every file of the package is staged and verified."""

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
from consonance_sftp.app.delivery import SftpDeliveryTransport
from consonance_sftp.engine import Engine, EngineClient
from consonance_sftp.ports.delivery import DeliveryRequest, FileToSend
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.engine_worker import SqliteLedger, ledger_rows, make_source, settings_from


def three_files(
    tmp_path: Path, remote: str, *, size: int = 40_000, seed: int = 0
) -> tuple[FileToSend, ...]:
    """A package of three files: two to ``title/``, the third to ``locked/``."""
    made = []
    for i, (name, folder) in enumerate(
        (("a.pdf", "title"), ("b.jpg", "title"), ("c.xml", "locked"))
    ):
        f = make_source(tmp_path / name, size + i * 1000, seed=seed + i)
        made.append(
            FileToSend(
                source=f.source,
                remote_path=f"{remote}/{folder}/{name}",
                sha256=f.sha256,
                size=f.size,
            )
        )
    return tuple(made)


@pytest.mark.parametrize("direct", [False, True], ids=["rename", "direct-with-markers"])
async def test_no_file_of_a_package_is_published_before_all_are_staged(
    direct: bool,
    openssh: OpenSshServer,
    openssh_endpoint: Callable[..., SftpEndpoint],
    openssh_dir: Callable[[str], tuple[Path, str]],
    tmp_path: Path,
) -> None:
    # A folder the account may not write to. As root (who may write anywhere), the account is
    # the chroot one and the folder root's; otherwise the tests' own account and a read-only
    # folder.
    account = "chroot" if os.geteuid() == 0 else "shell"
    local, remote = openssh_dir(account)
    (local / "title").mkdir()
    locked = local / "locked"
    locked.mkdir(mode=0o755)
    if account == "chroot":
        owner = pwd.getpwnam(openssh.chroot_user or "")
        os.chown(local / "title", owner.pw_uid, owner.pw_gid)
    else:
        locked.chmod(0o555)

    def partner_fixes_the_folder() -> None:
        if account == "chroot":
            os.chown(locked, owner.pw_uid, owner.pw_gid)
        else:
            locked.chmod(0o755)

    transfer = {"upload_strategy": "direct", "done_marker": "{name}.done"} if direct else {}
    endpoint = openssh_endpoint(account, **transfer)
    transport = SftpDeliveryTransport(lambda partner: SftpRemoteFS(endpoint, state_dir=tmp_path))
    cfg = {
        "db": f"sqlite:///{tmp_path}/dbos.sqlite",
        "executor_id": "all-or-nothing",
        "retry": {"max_attempts": 1},
    }
    settings = settings_from(cfg)
    ledger_path = tmp_path / "ledger.sqlite"
    engine = Engine(settings, transport=transport, ledger=SqliteLedger(str(ledger_path)))
    await asyncio.to_thread(engine.launch)
    client = EngineClient(settings)
    files = three_files(tmp_path, remote)
    try:
        partner = f"openssh-{account}"
        request = DeliveryRequest(flow="t", partner=partner, package="pkg", files=files)
        workflow_id = await engine.enqueue_delivery(request, max_connections=2)
        with pytest.raises(Exception, match="ermission denied"):
            await engine.result(workflow_id, 60)

        # Nothing of the package is published: the first two wait, verified, under their
        # temporary names (with 'direct': under their final names, without a done-marker).
        finals = [local / f.remote_path.removeprefix(remote + "/") for f in files]
        staged = sorted(p.name for p in (local / "title").iterdir())
        if direct:
            assert staged == ["a.pdf", "b.jpg"]
        else:
            assert [p.exists() for p in finals] == [False, False, False]
            assert len(staged) == 2 and not set(staged) & {"a.pdf", "b.jpg"}
        rows = {r[1]: r[4] for r in ledger_rows(ledger_path)}
        assert set(rows.values()) == {"failed"}

        partner_fixes_the_folder()
        await asyncio.to_thread(client.retry, workflow_id)
        deadline = time.monotonic() + 60
        while await asyncio.to_thread(client.status, workflow_id) != "SUCCESS":
            assert time.monotonic() < deadline, "retry did not finish"
            await asyncio.sleep(0.1)
    finally:
        client.close()
        await engine.aclose()
        await transport.close()

    for f, final in zip(files, finals, strict=True):
        assert final.read_bytes() == Path(f.source).read_bytes()
    # Published: no temporary name is left behind (with 'direct', each file has its marker).
    markers = [".done"] if direct else []
    assert sorted(p.name for p in (local / "title").iterdir()) == sorted(
        name + m for name in ("a.pdf", "b.jpg") for m in ["", *markers]
    )
    assert sorted(p.name for p in locked.iterdir()) == ["c.xml", *[f"c.xml{m}" for m in markers]]
    rows = {r[1]: r[4] for r in ledger_rows(ledger_path)}
    assert rows == {f.remote_path: "sent" for f in files}
