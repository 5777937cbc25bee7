"""The delivery engine against servers partners run: a server killed in the middle of an
upload and started again ends with one ledger row for exactly the right bytes (issue 13,
"Must show"). The engine runs in this process on SQLite with the real store and transport,
as ``tests/integration/test_delivery_failures.py`` runs it."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from consonance_sftp.adapters.sftp.endpoint import SftpEndpoint
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.adapters.store.sql_store import SqlStore, open_store
from consonance_sftp.app.delivery import SftpDeliveryTransport
from consonance_sftp.engine import Engine, StoreLedger
from consonance_sftp.models import DeliveryOutcome, Verification
from consonance_sftp.ports.delivery import DeliveryRecord

# The delivery contracts as the engine worker imports them (they moved from the engine to
# ports/delivery.py; tests/engine_worker.py takes them from where they are).
from tests.engine_worker import DeliveryRequest, FileToSend, settings_from
from tests.fixtures.interop_servers import MIB, InteropServer, InteropSize
from tests.interop.test_upload_interop import _write_random, read_back


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    st = open_store(f"sqlite:///{tmp_path}/store.db")
    try:
        yield st
    finally:
        st.close()


def _bytes_on_server(server: InteropServer, temp_name: str) -> int:
    """Bytes of the temporary file wherever the server keeps them (rclone's write cache keeps
    them in its cache folder until the file is closed)."""
    return max((p.stat().st_size for p in server.workdir.rglob(temp_name)), default=0)


async def test_a_delivery_whose_server_is_killed_mid_upload_records_one_row_for_the_right_bytes(
    server_at: InteropServer, interop_size: InteropSize, store: SqlStore, tmp_path: Path
) -> None:
    server = server_at
    size = interop_size.size
    name = f"delivery-{random.randrange(10**9)}.pdf"
    local = tmp_path / name
    sha = _write_random(local, size)
    kill_at = random.randrange(size // 5, size * 4 // 5)

    def make_fs(partner: str) -> SftpRemoteFS:
        # Paced so the upload lasts a few seconds on any machine: on a fast loopback it could
        # finish between two looks of the killer below, and the test would prove nothing.
        endpoint = dataclasses.replace(
            server.endpoint(
                **interop_size.transfer, connect_timeout=5, bandwidth_limit=max(MIB, size // 4)
            ),
            partner=partner,
        )
        return SftpRemoteFS(endpoint, state_dir=tmp_path / "state")

    settings = settings_from(
        {
            "db": f"sqlite:///{tmp_path}/dbos.sqlite",
            "executor_id": "interop-test",
            "retry": {"max_attempts": 8, "initial_interval_s": 0.5},
        }
    )
    transport = SftpDeliveryTransport(make_fs)  # type: ignore[arg-type]
    engine = Engine(settings, transport=transport, ledger=StoreLedger(store), alerts=store)
    await asyncio.to_thread(engine.launch)
    killed = threading.Event()

    async def killer() -> None:
        # Kill the server (every session) once the upload is past kill_at, start it again.
        while _bytes_on_server(server, f".{name}.part") < kill_at:
            await asyncio.sleep(0.02)
        server.kill()
        killed.set()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.restart)

    watcher = asyncio.create_task(killer())
    try:
        request = DeliveryRequest(
            flow="print",
            partner="printer",
            package=f"{name} production",
            files=(FileToSend(source=str(local), remote_path=name, sha256=sha, size=size),),
        )
        workflow_id = await engine.enqueue_delivery(request, max_connections=4)
        await engine.result(workflow_id, 600)
        assert killed.is_set()
        rows = store.list_deliveries(partner="printer")
        assert [(r.remote_path, r.outcome, r.sha256) for r in rows] == [
            (name, DeliveryOutcome.SENT, sha)
        ]
        assert await read_back(server, name) == (size, sha)
    finally:
        watcher.cancel()
        await engine.aclose()
        await transport.close()


async def _deliver_one(
    make_fs: Callable[[str], SftpRemoteFS], store: SqlStore, tmp_path: Path, name: str
) -> DeliveryRecord:
    """One 2 MiB file delivered by the engine with the partner's defaults; its ledger row."""
    local = tmp_path / Path(name).name
    sha = _write_random(local, 2 * MIB)
    settings = settings_from(
        {"db": f"sqlite:///{tmp_path}/dbos.sqlite", "executor_id": "interop-verified"}
    )
    transport = SftpDeliveryTransport(make_fs)  # type: ignore[arg-type]
    engine = Engine(settings, transport=transport, ledger=StoreLedger(store), alerts=store)
    await asyncio.to_thread(engine.launch)
    try:
        request = DeliveryRequest(
            flow="print",
            partner="printer",
            package=f"{name} production",
            files=(FileToSend(source=str(local), remote_path=name, sha256=sha, size=2 * MIB),),
        )
        await engine.result(await engine.enqueue_delivery(request, max_connections=2), 120)
    finally:
        await engine.aclose()
        await transport.close()
    [row] = store.list_deliveries(partner="printer")
    assert (row.outcome, row.sha256) == (DeliveryOutcome.SENT, sha)
    return row


@pytest.mark.parametrize("interop_server", ["paramiko"], indirect=True)
async def test_a_delivery_to_a_server_without_a_hash_is_read_back_and_says_so(
    server_at: InteropServer, store: SqlStore, tmp_path: Path
) -> None:
    """paramiko's server offers no check-file and no exec: the default ('auto') reads the file
    back, and the ledger row says ``read_back``, never ``size``."""

    def make_fs(partner: str) -> SftpRemoteFS:
        endpoint = dataclasses.replace(server_at.endpoint(), partner=partner)
        return SftpRemoteFS(endpoint, state_dir=tmp_path / "state")

    row = await _deliver_one(make_fs, store, tmp_path, "read-back.pdf")
    assert row.verified_by is Verification.READ_BACK


@pytest.mark.sshd
async def test_a_delivery_to_openssh_with_a_shell_is_hashed_by_sha256sum_and_says_so(
    openssh_endpoint: Callable[..., SftpEndpoint],
    openssh_dir: Callable[[str], tuple[Path, str]],
    store: SqlStore,
    tmp_path: Path,
) -> None:
    """OpenSSH with a shell account the partner lets us use: the server runs ``sha256sum``
    and the ledger row says ``shell``."""
    _local_dir, remote_dir = openssh_dir("shell")

    def make_fs(partner: str) -> SftpRemoteFS:
        endpoint = dataclasses.replace(openssh_endpoint("shell", allow_shell=True), partner=partner)
        return SftpRemoteFS(endpoint, state_dir=tmp_path / "state")

    row = await _deliver_one(make_fs, store, tmp_path, f"{remote_dir}/hashed.pdf")
    assert row.verified_by is Verification.SHELL
