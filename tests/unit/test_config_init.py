"""``init``: a starter that passes its own check, private files 0600, nothing overwritten."""

from __future__ import annotations

import stat
from pathlib import Path

import asyncssh
import pytest

from consonance_sftp.config import load_settings
from consonance_sftp.config.starter import InitRefused, init_project


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_keys_and_a_config_that_loads(tmp_path: Path) -> None:
    written = {item.path.relative_to(tmp_path).as_posix(): item for item in init_project(tmp_path)}
    assert set(written) == {
        "consonance-sftp.toml",
        "keys/client_ed25519",
        "keys/client_ed25519.pub",
        "var/sandbox/ssh_host_ed25519_key",
        "keys/consonance-sandbox-token",
    }
    for private in (
        "keys/client_ed25519",
        "var/sandbox/ssh_host_ed25519_key",
        "keys/consonance-sandbox-token",
    ):
        assert mode(tmp_path / private) == 0o600, private
    client = asyncssh.read_private_key(tmp_path / "keys/client_ed25519")
    assert client.algorithm == b"ssh-ed25519"
    public = asyncssh.read_public_key(tmp_path / "keys/client_ed25519.pub")
    assert public.public_data == client.public_data

    settings = load_settings(tmp_path / "consonance-sftp.toml")
    host_key = asyncssh.read_private_key(tmp_path / "var/sandbox/ssh_host_ed25519_key")
    fingerprint = host_key.get_fingerprint("sha256").rstrip("=")
    for partner in settings.partners.values():
        assert partner.host_key_fingerprints == {fingerprint}
        assert partner.auth.key == tmp_path.resolve() / "keys/client_ed25519"
    token = (tmp_path / "keys/consonance-sandbox-token").read_text().strip()
    assert settings.consonance.token.get_secret_value() == token
    assert token not in (tmp_path / "consonance-sftp.toml").read_text()


def test_init_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    mine = tmp_path / "keys" / "client_ed25519"
    mine.write_text("my own key")
    with pytest.raises(InitRefused) as caught:
        init_project(tmp_path)
    assert str(mine) in str(caught.value)
    assert caught.value.hint and "--dir" in caught.value.hint
    assert mine.read_text() == "my own key"
    # Refused before writing anything: no half-initialised folder.
    assert not (tmp_path / "consonance-sftp.toml").exists()


def test_init_twice_refuses_and_keeps_the_first_keys(tmp_path: Path) -> None:
    init_project(tmp_path)
    before = (tmp_path / "keys/client_ed25519").read_bytes()
    with pytest.raises(InitRefused):
        init_project(tmp_path)
    assert (tmp_path / "keys/client_ed25519").read_bytes() == before


def test_private_files_are_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0)
    try:
        init_project(tmp_path)
    finally:
        os.umask(old)
    assert mode(tmp_path / "keys/client_ed25519") == 0o600
    assert mode(tmp_path / "keys/consonance-sandbox-token") == 0o600
