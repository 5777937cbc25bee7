"""Connecting to a partner: every auth method, pinned host keys, no ~/.ssh, the connection cap."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import asyncssh
import pytest

from consonance_sftp import errors
from consonance_sftp.adapters.sftp.connection import (
    ConnectionPool,
    InProcessConnectionBudget,
    open_connection,
)
from consonance_sftp.adapters.sftp.endpoint import AuthMethod
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.ports.remote_fs import UploadItem
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.sftp_servers import PARTNER_PASSWORD, EndpointFactory


@pytest.mark.parametrize("key", ["ed25519", "rsa", "ecdsa", "ed25519-passphrase"])
async def test_key_auth_each_key_type(fault_endpoint: EndpointFactory, key: str) -> None:
    conn = await open_connection(fault_endpoint(key=key))
    try:
        assert conn.get_extra_info("username") == "partner"
    finally:
        conn.close()


async def test_password_and_keyboard_interactive(
    fault_endpoint: EndpointFactory, fault_server: FaultServer
) -> None:
    for auth in (AuthMethod.PASSWORD, AuthMethod.KEYBOARD_INTERACTIVE):
        conn = await open_connection(fault_endpoint(auth=auth, password=PARTNER_PASSWORD))
        conn.close()
    with pytest.raises(errors.AuthenticationFailed, match="fault-partner") as info:
        await open_connection(fault_endpoint(auth=AuthMethod.PASSWORD, password="wrong"))
    assert not info.value.retryable


async def test_wrong_passphrase_is_an_auth_error(
    fault_endpoint: EndpointFactory, client_keys: object
) -> None:
    ep = fault_endpoint(key="ed25519-passphrase")
    bad = dataclasses.replace(ep, key_passphrase="nope")
    with pytest.raises(errors.AuthenticationFailed, match="cannot load the private key"):
        await open_connection(bad)


async def test_fingerprint_pin_is_accepted(
    fault_endpoint: EndpointFactory, fault_server: FaultServer
) -> None:
    conn = await open_connection(fault_endpoint(host_keys=(fault_server.server.fingerprint,)))
    conn.close()


@pytest.mark.parametrize("pin_form", ["known_hosts", "fingerprint"])
async def test_host_key_mismatch_sends_nothing(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path, pin_form: str
) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519")
    pin = (
        "[127.0.0.1]:22 " + other.export_public_key().decode().strip()
        if pin_form == "known_hosts"
        else other.get_fingerprint("sha256")
    )
    local = tmp_path / "secret.pdf"
    local.write_bytes(b"%PDF confidential" * 100)
    fs = SftpRemoteFS(fault_endpoint(host_keys=(pin,)), state_dir=tmp_path / "state")
    with pytest.raises(errors.HostKeyMismatch) as info:
        await fs.upload(local, "secret.pdf")
    await fs.close()
    assert fault_server.server.fingerprint in str(info.value)
    assert "fault-partner" in str(info.value)
    assert not info.value.retryable
    rec = fault_server.recorder
    assert rec.connections >= 1  # it did reach the server...
    assert (rec.auth_attempts, rec.sessions, rec.bytes_written) == (0, 0, 0)  # ...and sent nothing
    assert not any(fault_server.home("partner").iterdir())


async def test_no_pin_refuses_to_connect(fault_endpoint: EndpointFactory) -> None:
    ep = fault_endpoint()
    empty = dataclasses.replace(ep, host_keys=())
    with pytest.raises(errors.HostKeyMismatch, match="no host key is pinned"):
        await open_connection(empty)


async def test_never_reads_home_ssh_config_or_agent(
    fault_endpoint: EndpointFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    # Were any of these read, the connection would go to a dead address, use another user, or
    # trust any key.
    (home / ".ssh" / "config").write_text(
        "Host *\n  HostName 192.0.2.1\n  Port 1\n  User nobody\n  StrictHostKeyChecking no\n"
    )
    (home / ".ssh" / "known_hosts").write_text("garbage that does not parse\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "no-agent.sock"))
    conn = await open_connection(fault_endpoint())
    try:
        assert conn.get_extra_info("username") == "partner"
    finally:
        conn.close()


async def test_unreachable_host_is_retryable(fault_endpoint: EndpointFactory) -> None:
    ep = fault_endpoint(connect_timeout=2)
    closed = dataclasses.replace(ep, port=1)
    with pytest.raises(errors.ConnectionLost) as info:
        await open_connection(closed)
    assert info.value.retryable
    assert "fault-partner" in str(info.value)


async def test_pool_reuses_connections_and_respects_the_cap(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    files = []
    for i in range(40):
        path = tmp_path / f"f{i}.txt"
        path.write_bytes(os.urandom(2048))
        files.append(path)
    ep = fault_endpoint(max_connections=2, overwrite="replace")
    budget = InProcessConnectionBudget()
    async with (
        SftpRemoteFS(ep, state_dir=tmp_path / "s1", budget=budget) as fs1,
        SftpRemoteFS(ep, state_dir=tmp_path / "s2", budget=budget) as fs2,
    ):
        # Two adapters for the same partner, sharing the process budget, uploading at once.
        results = await asyncio.gather(
            *(fs1.upload(p, p.name) for p in files[:5]),
            *(fs2.upload(p, p.name) for p in files[5:10]),
            fs1.upload_many([UploadItem(local_path=p, remote_path=p.name) for p in files[10:]]),
        )
        assert budget.in_use("fault-partner") <= 2
    assert all(not isinstance(r, Exception) for r in results)
    assert fault_server.recorder.max_active <= 2
    assert fault_server.recorder.connections <= 4  # reused, not one per file
    assert sorted(p.name for p in fault_server.home("partner").iterdir()) == sorted(
        p.name for p in files
    )


async def test_idle_connections_close_and_give_back_their_slot(
    fault_endpoint: EndpointFactory, fault_server: FaultServer
) -> None:
    budget = InProcessConnectionBudget()
    pool = ConnectionPool(fault_endpoint(idle_timeout=0.2), budget)
    async with pool.lease() as pc:
        await pc.sftp.listdir(".")
    assert budget.in_use("fault-partner") == 1
    await asyncio.sleep(0.5)
    assert budget.in_use("fault-partner") == 0
    assert pool.open_connections == 0
    await pool.close()


async def test_silent_server_times_out_on_connect(
    fault_endpoint: EndpointFactory, tmp_path: Path
) -> None:
    async def accept_and_say_nothing(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await asyncio.sleep(30)

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ep = dataclasses.replace(fault_endpoint(connect_timeout=0.5), port=port)
    started = asyncio.get_running_loop().time()
    try:
        with pytest.raises((errors.TransferTimeout, errors.ConnectionLost)) as info:
            await open_connection(ep)
    finally:
        server.close()
    assert info.value.retryable
    assert asyncio.get_running_loop().time() - started < 5


async def test_hung_server_is_detected_by_keepalive(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    fault_server.faults.freeze_after_bytes = 1024 * 1024
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(4 * 1024 * 1024))
    ep = fault_endpoint(keepalive_interval=0.2, keepalive_count_max=2, block_size=64 * 1024)
    started = asyncio.get_running_loop().time()
    async with SftpRemoteFS(ep, state_dir=tmp_path / "s", retries=0) as fs:
        with pytest.raises(errors.ConnectionLost) as info:
            await fs.upload(local, "big.bin")
    assert asyncio.get_running_loop().time() - started < 10
    assert info.value.retryable


async def test_stalled_transfer_times_out_without_keepalive(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    fault_server.faults.freeze_after_bytes = 1024 * 1024
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(4 * 1024 * 1024))
    ep = fault_endpoint(keepalive_interval=0, operation_timeout=1, block_size=64 * 1024)
    async with SftpRemoteFS(ep, state_dir=tmp_path / "s", retries=0) as fs:
        with pytest.raises(errors.TransferTimeout, match="no progress"):
            await fs.upload(local, "big.bin")
