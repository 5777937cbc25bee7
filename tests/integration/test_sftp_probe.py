"""``partner probe`` and ``partner test``: against the fault server's crippled modes, real sshd,
and through the real CLI on a config written by ``init``."""

from __future__ import annotations

import asyncio
import json
import os
import tomllib
from pathlib import Path

import pytest
import tomlkit

from consonance_sftp.adapters.sftp import probe
from consonance_sftp.adapters.sftp.checksums import SHA256_COMMANDS
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.config import load_settings
from consonance_sftp.config.starter import init_project
from consonance_sftp.sandbox.sftp_server import start_configured_sandbox_sftp
from tests.cli import CLI, free_port
from tests.fixtures.fault_server import FaultServer
from tests.fixtures.sftp_servers import EndpointFactory


async def test_probe_full_featured_asyncssh_server(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    async with SftpRemoteFS(fault_endpoint(), state_dir=tmp_path / "s") as fs:
        report = await fs.probe()
    assert report.posix_rename and report.rename and report.setstat
    assert not report.rename_over_existing  # SFTPv3 rename refuses an existing target
    assert not report.check_file and not report.shell_hash  # SFTP-only account
    assert report.folders == {".": {"list": True, "write": True}}
    assert report.clock_skew_seconds is not None and abs(report.clock_skew_seconds) < 3
    assert "upload_strategy" not in report.recommended  # 'auto' already fits
    # No hash on this server: 'auto' (the default) reads each upload back, never size only.
    assert "checksum" not in report.recommended
    assert any("reading it back" in n for n in report.notes)
    # the probe cleans up after itself
    assert list(fault_server.home("partner").iterdir()) == []


async def test_probe_crippled_server_recommends_fallbacks(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    fault_server.faults.deny_rename = True
    fault_server.faults.deny_setstat = True
    async with SftpRemoteFS(fault_endpoint(set_mtime=True), state_dir=tmp_path / "s") as fs:
        report = await fs.probe()
    assert not report.posix_rename and not report.rename and not report.setstat
    assert report.recommended["upload_strategy"] == "direct"
    assert report.recommended["done_marker"] == "{name}.done"
    assert report.recommended["set_mtime"] is False
    assert any("rename is refused" in n for n in report.notes)


@pytest.mark.parametrize("configured", ["check_file", "size"])
async def test_probe_never_recommends_a_size_only_check(
    fault_endpoint: EndpointFactory, tmp_path: Path, configured: str
) -> None:
    """A server with no check-file and no shell gets each upload read back ('auto', instead of
    a method it lacks); a size-only check stays only where the partner's config already says
    so explicitly."""
    async with SftpRemoteFS(fault_endpoint(checksum=configured), state_dir=tmp_path / "s") as fs:
        report = await fs.probe()
    assert not report.check_file
    assert report.recommended.get("checksum") == ("auto" if configured == "check_file" else None)
    assert any("reading it back" in n for n in report.notes)


async def test_probe_no_posix_rename(
    fault_endpoint: EndpointFactory, fault_server: FaultServer, tmp_path: Path
) -> None:
    fault_server.faults.no_posix_rename = True
    fault_server.faults.check_file = True
    async with SftpRemoteFS(fault_endpoint(overwrite="replace"), state_dir=tmp_path / "s") as fs:
        report = await fs.probe()
        assert not report.posix_rename and report.rename
        assert report.recommended["upload_strategy"] == "delete_rename"
        assert report.check_file and report.recommended["checksum"] == "check_file"
        sent = await fs.send_test_file()
    assert sent.upload.size > 0 and sent.removed
    assert list(fault_server.home("partner").iterdir()) == []


@pytest.mark.sshd
@pytest.mark.parametrize("account", ["shell", "chroot"])
async def test_probe_openssh(openssh_endpoint, openssh_dir, tmp_path: Path, account: str) -> None:
    _local, remote = openssh_dir(account)
    ep = openssh_endpoint(account)
    ep = type(ep)(**{**{f: getattr(ep, f) for f in ep.__dataclass_fields__}, "folders": (remote,)})
    async with SftpRemoteFS(ep, state_dir=tmp_path / "s") as fs:
        report = await fs.probe()
    assert report.server_version.startswith("SSH-2.0-OpenSSH")
    assert report.posix_rename and report.setstat and report.statvfs
    assert report.limits["max_write_len"] == 261_120
    assert "block_size" not in report.recommended  # the default already matches
    # OpenSSH's plain rename refuses an existing name: 'fail' needs no look before sending
    assert report.rename_over_existing is False
    assert report.recommended["rename_keeps_existing"] is True
    assert report.shell_hash is (account == "shell")
    if account == "shell":
        # 'auto' (already the default) with the shell: a command for large files only
        assert "checksum" not in report.recommended
        assert report.recommended["allow_shell"] is True
        # The default sha256sum, or a SHA-256 command the probe found faster (and correct).
        assert report.recommended.get("shell_hash_command", "sha256sum") in SHA256_COMMANDS
    assert report.folders[remote] == {"list": True, "write": True}


@pytest.mark.sshd
async def test_probe_keeps_a_faster_hash_command_only_when_it_is_right(
    openssh_endpoint, openssh_dir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _local, remote = openssh_dir("shell")
    # 20 ms per file named: the 63 extra names take over a second, openssl's hash of 63 MiB
    # a tenth of that.
    slow = 'f() { for x; do sleep 0.02; sha256sum "$x"; done; }; f'
    wrong = "echo " + "0" * 64 + " #"  # fast, and wrong: never kept
    fs = SftpRemoteFS(openssh_endpoint("shell"), state_dir=tmp_path / "s")
    async with fs, fs.pool.lease() as pc:
        got = await probe._faster_sha256_command(pc, f"{remote}/a", slow)
        assert got == "openssl dgst -sha256 -r"
        monkeypatch.setattr(probe.checksums, "SHA256_COMMANDS", (wrong,))
        assert await probe._faster_sha256_command(pc, f"{remote}/b", slow) is None
        # As fast as itself: nothing else to prefer.
        assert await probe._faster_sha256_command(pc, f"{remote}/c", "sha256sum") is None


async def _cli(config: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "--config",
        str(config),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200"},
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


@pytest.mark.slow
async def test_cli_probe_apply_and_test_on_the_starter_config(tmp_path: Path) -> None:
    port = free_port()
    init_project(tmp_path, sftp_port=port, api_port=free_port())
    config = tmp_path / "consonance-sftp.toml"
    # A checksum method the sandbox server lacks, for the probe to correct: the starter
    # config's defaults already fit it ('auto' reads uploads back).
    doc = tomlkit.parse(config.read_text())
    doc["partners"]["printer"].setdefault("transfer", tomlkit.table())["checksum"] = "check_file"
    config.write_text(tomlkit.dumps(doc))
    before = config.read_text()
    server = await start_configured_sandbox_sftp(load_settings(config))
    assert server.port == port
    try:
        code, out = await _cli(config, "partner", "probe", "printer")
        assert code == 0, out
        assert "posix-rename" in out and "run again with --apply" in out
        assert config.read_text() == before  # never a silent change
        stored = json.loads((tmp_path / "var" / "probes" / "printer.json").read_text())
        assert stored["posix_rename"] is True
        # the listing lag is shown and saved with the report (issue 13, item 8)
        assert "listing lag" in out and "stat 0.0 s, listing 0.0 s (measured)" in out
        assert stored["listing_lag"]["lagging"] is False
        assert stored["listing_lag"]["stat_seconds"] == 0.0

        code, out = await _cli(config, "partner", "probe", "printer", "--apply")
        assert code == 0, out
        assert "applied:" in out
        after = config.read_text()
        assert "# consonance-sftp configuration" in after  # comments kept
        transfer = tomllib.loads(after)["partners"]["printer"]["transfer"]
        # No hash on the sandbox server: 'auto' (uploads are read back), never size only.
        assert transfer["checksum"] == "auto"
        assert load_settings(config).partners["printer"].transfer.checksum.value == "auto"

        code, out = await _cli(config, "partner", "test", "printer")
        assert code == 0, out
        assert "ok: sent /in/consonance-sftp-test-" in out
        assert list((tmp_path / "var" / "sandbox" / "sftp" / "printer" / "in").iterdir()) == []

        code, out = await _cli(config, "partner", "trust", "printer")
        assert code == 0, out
        assert f"printer presents: {server.fingerprint}" in out
        code, out = await _cli(
            config, "partner", "trust", "printer", "--fingerprint", "SHA256:" + "B" * 43
        )
        assert code == 1 and "refused" in out
        code, out = await _cli(
            config, "partner", "trust", "printer", "--fingerprint", server.fingerprint
        )
        assert code == 0, out
        pins = load_settings(config).partners["printer"].host_keys
        assert pins[-1] == f"ssh-ed25519 {server.fingerprint}" and len(pins) == 2
    finally:
        server.close()
        await server.wait_closed()
