"""Host-key pins against a stock-like sshd holding ed25519, ECDSA and RSA host keys.

The server shows one of its keys per connection, the one of the first key type the client
offers. A pin of any one of its keys must be accepted (no false "host key changed" that pauses
the partner), a server whose keys all changed must still be caught (alert, partner paused), and
``partner trust`` must show every key the server holds and accept a fingerprint of any.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import tomlkit

from consonance_sftp import errors
from consonance_sftp.adapters.sftp.connection import open_connection
from consonance_sftp.app import App
from consonance_sftp.app.delivery import SftpDeliveryTransport
from consonance_sftp.app.runner import Controls
from consonance_sftp.config import Settings, load_settings
from consonance_sftp.ports.delivery import FileToSend
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.cli import CLI
from tests.fixtures.sshd import shell_endpoint
from tests.settings import offline_settings, openssh_partner

pytestmark = pytest.mark.sshd

KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa")


def _pin(server: OpenSshServer, key_type: str, form: str) -> str:
    key = server.host_keys[key_type]
    fingerprint = str(key.get_fingerprint("sha256")).rstrip("=")
    if form == "fingerprint":
        return fingerprint
    if form == "typed":
        return f"{key_type} {fingerprint}"
    kind, blob = key.export_public_key("openssh").decode().split()[:2]
    return f"[{server.host}]:{server.port} {kind} {blob}"


def _shown(conn: asyncssh.SSHClientConnection) -> str:
    key = conn.get_server_host_key()
    assert key is not None
    return str(key.get_fingerprint("sha256")).rstrip("=")


@pytest.mark.parametrize("form", ["fingerprint", "typed", "known_hosts"])
@pytest.mark.parametrize("key_type", KEY_TYPES)
async def test_a_pin_of_any_one_of_the_servers_keys_is_accepted(
    openssh_multikey: OpenSshServer, key_type: str, form: str
) -> None:
    assert sorted(openssh_multikey.host_keys) == sorted(KEY_TYPES)
    ep = shell_endpoint(openssh_multikey, host_keys=(_pin(openssh_multikey, key_type, form),))
    conn = await open_connection(ep)
    try:
        # ...and it is the pinned key the server proved it holds
        assert _shown(conn) == openssh_multikey.fingerprints()[key_type]
    finally:
        conn.close()


def _app(tmp_path: Path, server: OpenSshServer, pins: list[str]) -> tuple[App, Path]:
    folder = tmp_path / "sftp-in"
    folder.mkdir()
    partner = openssh_partner(server, {"send": str(folder)}, host_keys=pins)
    data = offline_settings(tmp_path, partners={"printer": partner})
    config = tmp_path / "consonance-sftp.toml"
    config.write_text(tomlkit.dumps(data))
    return App(Settings.model_validate(data), config), folder


class _OpenFence:
    def check(self) -> None:
        return None


async def _send(app: App, folder: Path, tmp_path: Path) -> int:
    local = tmp_path / "a.pdf"
    local.write_bytes(b"%PDF-1.7\n" + b"x" * 1000)
    file = FileToSend(
        source=str(local),
        remote_path=str(folder / "a.pdf"),
        sha256=hashlib.sha256(local.read_bytes()).hexdigest(),
        size=local.stat().st_size,
    )
    transport = SftpDeliveryTransport(app.remote_fs, None, app.host_key_changed)
    try:
        sent = (await transport.stage("printer", file, _OpenFence())).sent
        await transport.publish("printer", file, _OpenFence())
        return sent
    finally:
        await transport.close()


async def test_a_pinned_ed25519_fingerprint_raises_no_false_alarm(
    openssh_multikey: OpenSshServer, tmp_path: Path
) -> None:
    """The case from the field: the partner gave its ed25519 fingerprint; the server also
    holds ECDSA and RSA keys."""
    app, folder = _app(tmp_path, openssh_multikey, [openssh_multikey.fingerprints()["ssh-ed25519"]])
    try:
        assert await _send(app, folder, tmp_path) > 0
        assert (folder / "a.pdf").exists()
        assert app.store.list_alerts(kind="host_key_mismatch") == []
        assert not Controls(app).is_paused("partner", "printer")
    finally:
        app.store.close()


async def test_a_server_whose_keys_all_changed_is_caught(
    openssh_multikey: OpenSshServer, tmp_path: Path
) -> None:
    old = {kind: asyncssh.generate_private_key(kind) for kind in ("ssh-ed25519", "ssh-rsa")}
    old["ecdsa-sha2-nistp256"] = asyncssh.generate_private_key("ecdsa-sha2-nistp256")
    pins = [
        str(old["ssh-ed25519"].get_fingerprint("sha256")),  # bare: any type may match
        "ssh-rsa " + str(old["ssh-rsa"].get_fingerprint("sha256")).rstrip("="),
        f"[127.0.0.1]:{openssh_multikey.port} "
        + old["ecdsa-sha2-nistp256"].export_public_key().decode().strip(),
    ]
    app, folder = _app(tmp_path, openssh_multikey, pins)
    try:
        with pytest.raises(errors.HostKeyMismatch) as info:
            await _send(app, folder, tmp_path)
        message = str(info.value)
        # the message names every key the server showed, with its type
        for kind, fingerprint in openssh_multikey.fingerprints().items():
            assert f"{kind} {fingerprint}" in message, message
        assert list(folder.iterdir()) == []  # nothing sent
        alerts = app.store.list_alerts(kind="host_key_mismatch")
        assert [(a.partner, a.severity) for a in alerts] == [("printer", "critical")]
        assert Controls(app).is_paused("partner", "printer")
    finally:
        app.store.close()


async def test_a_pin_of_a_type_the_server_lacks_says_what_it_offers(
    openssh_multikey: OpenSshServer,
) -> None:
    other = asyncssh.generate_private_key("ecdsa-sha2-nistp384")
    pin = "ecdsa-sha2-nistp384 " + str(other.get_fingerprint("sha256")).rstrip("=")
    with pytest.raises(errors.HostKeyMismatch) as info:
        await open_connection(shell_endpoint(openssh_multikey, host_keys=(pin,)))
    message = str(info.value)
    assert "holds no ecdsa-sha2-nistp384 host key" in message, message
    for kind in ("ssh-ed25519", "ecdsa-sha2-nistp256"):
        assert kind in message, message


def _cli(config: Path, *args: str) -> tuple[int, str]:
    proc = subprocess.run(
        [*CLI, "--config", str(config), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


async def test_partner_trust_shows_every_key_and_accepts_any(
    openssh_multikey: OpenSshServer, tmp_path: Path
) -> None:
    gone = str(asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256"))
    app, _folder = _app(tmp_path, openssh_multikey, [gone])
    app.store.close()
    config = app.config_path
    assert config is not None
    fingerprints = openssh_multikey.fingerprints()

    code, out = _cli(config, "partner", "trust", "printer")
    assert code == 0, out
    for kind, fingerprint in fingerprints.items():
        assert f"printer presents: {fingerprint} ({kind})" in out, out

    code, out = _cli(config, "partner", "trust", "printer", "--fingerprint", "SHA256:" + "B" * 43)
    assert code == 1 and "refused" in out, out
    assert load_settings(config).partners["printer"].host_keys == [gone]

    # the RSA key, which the server would not show first to a client preferring ed25519
    code, out = _cli(
        config, "partner", "trust", "printer", "--fingerprint", fingerprints["ssh-rsa"], "--replace"
    )
    assert code == 0, out
    pins: list[Any] = tomllib.loads(config.read_text())["partners"]["printer"]["host_keys"]
    assert pins == [f"ssh-rsa {fingerprints['ssh-rsa']}"]
    # ...and the pin it wrote connects
    app = App.from_config(config)
    try:
        async with app.remote_fs("printer") as fs:
            assert await fs.stat("/") is not None
    finally:
        app.store.close()
