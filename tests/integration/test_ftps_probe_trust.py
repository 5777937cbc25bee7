"""``partner probe`` and ``partner trust`` on FTP/FTPS partners (issue 20), against pyftpdlib
(fault injection: rename refused, rename over an existing file refused, XSHA256, a private
PASV address) and vsftpd (explicit and implicit TLS, session reuse required)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomlkit

from consonance_sftp import errors
from consonance_sftp.adapters.ftp.fs import FtpRemoteFS
from consonance_sftp.config import load_settings
from consonance_sftp.config.starter import CONFIG_NAME, init_project
from tests.cli import free_port
from tests.fixtures.ftp_servers import FtpServer, make_certificate, start_pyftpd, start_vsftpd

CLI = [sys.executable, "-m", "consonance_sftp"]


async def test_pyftpdlib_probe_reports_features_and_recommends(
    pyftpd_tls: FtpServer, tmp_path: Path
) -> None:
    pyftpd_tls.faults.xsha256 = True
    async with FtpRemoteFS(pyftpd_tls.endpoint(), state_dir=tmp_path / "state") as fs:
        report = await fs.probe()
    facts = report.ftp
    assert facts is not None and report.protocol == "ftps"
    assert facts.mlsd and facts.size and facts.mdtm and facts.utf8 and facts.rest_stream
    assert facts.prot_p and facts.tls_version in ("TLSv1.2", "TLSv1.3")
    assert facts.session_reuse_required is False  # pyftpdlib does not enforce it
    assert facts.server_hash == "XSHA256" and facts.server_hash_works is True
    assert report.check_file
    assert report.rename and report.rename_over_existing and facts.remove is True
    assert facts.pasv_address.startswith("127.0.0.1:") and facts.pasv_matches_control
    assert facts.pasv_reachable is True
    assert report.folders == {"/in": {"list": True, "write": True}}
    assert report.clock_skew_seconds is not None and abs(report.clock_skew_seconds) < 5
    assert report.recommended == {}  # the defaults fit this server
    assert report.leftovers == ()
    assert os.listdir(pyftpd_tls.root / "in") == []  # the probe's files are gone
    for command in ("XSHA256", "RNFR", "RNTO", "DELE", "PASV"):
        assert command in pyftpd_tls.faults.commands


async def test_probe_of_a_server_that_forbids_rename_and_lies_in_pasv(
    pyftpd_tls: FtpServer, tmp_path: Path
) -> None:
    pyftpd_tls.faults.deny_rename = True
    assert pyftpd_tls.handler is not None
    pyftpd_tls.handler.masquerade_address = "10.255.255.1"  # private and unreachable
    endpoint = pyftpd_tls.endpoint(connect_timeout=5.0, operation_timeout=10.0)
    async with FtpRemoteFS(endpoint, state_dir=tmp_path / "state") as fs:
        report = await fs.probe()
    facts = report.ftp
    assert facts is not None
    assert not report.rename and not report.rename_over_existing
    assert report.recommended == {"upload_strategy": "direct", "done_marker": "{name}.done"}
    assert facts.server_hash is None and not report.check_file
    assert any("reading it back" in note for note in report.notes)
    assert facts.pasv_address.startswith("10.255.255.1:")
    assert facts.pasv_private and not facts.pasv_matches_control
    assert facts.pasv_reachable is False
    assert any("PASV announces a private address" in note for note in report.notes)
    assert os.listdir(pyftpd_tls.root / "in") == []


async def test_probe_rename_over_an_existing_file_refused(
    pyftpd_tls: FtpServer, tmp_path: Path
) -> None:
    pyftpd_tls.faults.deny_rename_over_existing = True
    async with FtpRemoteFS(pyftpd_tls.endpoint(), state_dir=tmp_path / "state") as fs:
        report = await fs.probe()
    assert report.rename and not report.rename_over_existing
    assert os.listdir(pyftpd_tls.root / "in") == []


async def test_probe_plain_ftp_has_no_tls_facts(pyftpd_plain: FtpServer, tmp_path: Path) -> None:
    async with FtpRemoteFS(pyftpd_plain.endpoint(), state_dir=tmp_path / "state") as fs:
        report = await fs.probe()
    assert report.ftp is not None and report.protocol == "ftp"
    assert report.ftp.prot_p is None and report.ftp.session_reuse_required is None
    assert any("unencrypted" in note for note in report.notes)


@pytest.mark.slow
async def test_vsftpd_probe_finds_session_reuse_required(vsftpd: FtpServer, tmp_path: Path) -> None:
    async with FtpRemoteFS(vsftpd.endpoint(), state_dir=tmp_path / "state") as fs:
        report = await fs.probe()
        # the pool is usable afterwards (the probe's connection was dropped, not reused)
        assert [e.name async for e in fs.list("/in")] == []
    facts = report.ftp
    assert facts is not None and facts.mode == vsftpd.mode.value
    assert facts.session_reuse_required is True
    assert facts.session_reuse_error is not None
    assert "vsftpd" in report.server_version.lower() or report.server_version.startswith("220")
    assert report.rename and report.rename_over_existing
    assert facts.remove is True and facts.size and facts.mdtm and facts.rest_stream
    assert not facts.mlsd  # vsftpd lists with LIST only
    # no server hash (no HASH, no XSHA256 in FEAT): each upload is read back, and said so
    assert facts.server_hash is None and not report.check_file
    assert not any(f.split()[0] in ("HASH", "XSHA256") for f in facts.features)
    assert any("reading it back" in note for note in report.notes)
    assert facts.pasv_matches_control and facts.pasv_reachable
    assert os.listdir(vsftpd.root / "in") == []


@pytest.mark.slow
async def test_vsftpd_certificate_is_shown_for_trust(vsftpd: FtpServer, tmp_path: Path) -> None:
    assert vsftpd.certificate is not None
    async with FtpRemoteFS(
        vsftpd.endpoint(fingerprints=("SHA256:" + ":".join(["00"] * 32),)),
        state_dir=tmp_path / "state",
    ) as fs:
        cert = await fs.presented_certificate()  # shown whatever is pinned
    assert cert.fingerprint == vsftpd.certificate.fingerprint
    assert cert.subject == "CN=127.0.0.1" and cert.self_signed
    assert not cert.system_ca_trusted and cert.system_ca_error


# --- the commands, on a config ----------------------------------------------------------------


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


def _ftps_partner(config: Path, server: FtpServer, pins: list[str]) -> None:
    doc = tomlkit.parse(config.read_text())
    partner = tomlkit.table()
    partner["protocol"] = server.mode.value
    partner["host"] = server.host
    partner["port"] = server.port
    partner["user"] = server.user
    if pins:
        partner["tls_fingerprints"] = pins
    partner["auth"] = {"password": {"env": "CSFTP_TEST_FTPS_PASSWORD"}}
    partner["folders"] = {"send": "/in", "receive": "/out"}
    doc["partners"]["distributor"] = partner  # type: ignore[index]
    config.write_text(tomlkit.dumps(doc))


@pytest.mark.slow
async def test_cli_probe_test_and_trust_on_an_ftps_partner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """probe (stored, --apply), test, then trust: the server's certificate is renewed; the
    old pin stops the partner; trust shows the new one and pins it once confirmed."""
    old = make_certificate(tmp_path / "tls-old")
    server = start_pyftpd(tmp_path / "ftp-root", tls=True, certificate=old)
    try:
        monkeypatch.setenv("CSFTP_TEST_FTPS_PASSWORD", server.password)
        init_project(tmp_path / "p", sftp_port=free_port(), api_port=free_port())
        config = tmp_path / "p" / CONFIG_NAME
        _ftps_partner(config, server, [old.fingerprint])
        server.faults.deny_rename = True

        code, out = await _cli(config, "partner", "probe", "distributor")
        assert code == 0, out
        assert "TLS session reuse required" in out and "PASV address" in out
        assert 'upload_strategy = "direct"' in out
        stored = json.loads((tmp_path / "p" / "var" / "probes" / "distributor.json").read_text())
        assert stored["ftp"]["mode"] == "ftps" and stored["rename"] is False
        code, out = await _cli(config, "partner", "probe", "distributor", "--apply")
        assert code == 0 and "applied:" in out, out
        transfer = tomllib.loads(config.read_text())["partners"]["distributor"]["transfer"]
        assert transfer == {"upload_strategy": "direct", "done_marker": "{name}.done"}

        code, out = await _cli(config, "partner", "test", "distributor")
        assert code == 0, out
        assert "ok: sent /in/consonance-sftp-test-" in out and "then removed it" in out

        server.stop()  # the partner renews its certificate
        new = make_certificate(tmp_path / "tls-new")
        server = start_pyftpd(tmp_path / "ftp-root", tls=True, certificate=new)
        monkeypatch.setenv("CSFTP_TEST_FTPS_PASSWORD", server.password)
        _ftps_partner(config, server, [old.fingerprint])
        code, out = await _cli(config, "partner", "test", "distributor")
        assert code != 0 and new.fingerprint in out, out  # the changed certificate stops it
        assert "STOR" not in server.faults.commands and "USER" not in server.faults.commands

        code, out = await _cli(config, "partner", "trust", "distributor")
        assert code == 0, out
        assert f"distributor presents a TLS certificate: {new.fingerprint}" in out
        assert "subject: CN=127.0.0.1" in out and "(self-signed)" in out
        code, out = await _cli(
            config, "partner", "trust", "distributor", "--fingerprint", old.fingerprint
        )
        assert code == 1 and "refused" in out, out
        assert load_settings(config).partners["distributor"].tls_fingerprints == [old.fingerprint]
        # as 'openssl x509 -fingerprint -sha256' prints it
        typed = "sha256 Fingerprint=" + new.fingerprint.removeprefix("SHA256:")
        code, out = await _cli(
            config, "partner", "trust", "distributor", "--fingerprint", typed, "--replace"
        )
        assert code == 0 and f"pinned TLS certificate {new.fingerprint}" in out, out
        assert "# consonance-sftp configuration" in config.read_text()  # comments kept
        pins = load_settings(config).partners["distributor"].tls_fingerprints
        assert pins == [new.fingerprint]
        code, out = await _cli(config, "partner", "test", "distributor")
        assert code == 0 and "ok: sent" in out, out
    finally:
        server.stop()


async def test_upload_only_drop_box_delivered_could_not_clean_up(
    pyftpd_tls: FtpServer, tmp_path: Path
) -> None:
    """An account that may write but not delete: ``partner test`` still delivered (the file
    stays, named), and the probe says DELE is refused and intake must leave files."""
    from consonance_sftp.config.transfer import PostAction

    assert pyftpd_tls.handler is not None
    table = pyftpd_tls.handler.authorizer.user_table[pyftpd_tls.user]
    table["perm"] = table["perm"].replace("d", "")  # no DELE
    endpoint = pyftpd_tls.endpoint(post_action=PostAction.DELETE)
    async with FtpRemoteFS(endpoint, state_dir=tmp_path / "state") as fs:
        sent = await fs.send_test_file()
        report = await fs.probe()
    assert not sent.removed and sent.left_behind == (sent.upload.remote_path,)
    assert sent.cleanup_error and "550" in sent.cleanup_error
    assert (pyftpd_tls.root / sent.upload.remote_path.lstrip("/")).exists()
    assert report.ftp is not None and report.ftp.remove is False
    assert report.recommended.get("post_action") == "leave"
    assert report.leftovers  # the probe's own file could not be removed either, and says so
    assert all((pyftpd_tls.root / p.lstrip("/")).exists() for p in report.leftovers)


@pytest.fixture(params=["pyftpdlib", "vsftpd-explicit", "vsftpd-implicit"])
def any_ftps(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FtpServer]:
    """pyftpdlib's explicit FTPS, then vsftpd's explicit and implicit TLS."""
    if request.param == "pyftpdlib":
        server = start_pyftpd(
            tmp_path / "ftp-root",
            tls=True,
            certificate=make_certificate(tmp_path / "tls"),
        )
    else:
        server = start_vsftpd(implicit=request.param == "vsftpd-implicit")
    try:
        yield server
    finally:
        server.stop()


async def test_unpinned_adapter_refuses_before_connecting(
    pyftpd_tls: FtpServer, tmp_path: Path
) -> None:
    local = tmp_path / "feed.xml"
    local.write_bytes(b"<ONIXMessage/>")
    async with FtpRemoteFS(
        pyftpd_tls.endpoint(fingerprints=()), state_dir=tmp_path / "state"
    ) as fs:
        with pytest.raises(errors.TlsCertificateMismatch) as caught:
            await fs.upload(local, "/in/feed.xml")
        assert fs.pool.opened == 0
        assert pyftpd_tls.faults.commands == []  # not even AUTH TLS: no connection was made
        cert = await fs.presented_certificate()  # trust still sees the certificate
    # the message itself says what to do (an alert or a log line carries no hint)
    assert "no TLS certificate is pinned" in str(caught.value)
    assert "partner trust ftp-pyftpdlib-ftps" in str(caught.value)
    assert "partner trust" in (caught.value.hint or "")
    assert "USER" not in pyftpd_tls.faults.commands
    assert os.listdir(pyftpd_tls.root / "in") == []
    assert pyftpd_tls.certificate is not None
    assert cert.fingerprint == pyftpd_tls.certificate.fingerprint


@pytest.mark.slow
async def test_cli_trust_pins_a_partner_with_no_pin_yet(
    any_ftps: FtpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new FTPS partner with no pin: config check warns, nothing is sent; partner trust
    shows the certificate (fingerprint, subject, issuer, validity, names) and pins it only
    for the right --fingerprint; then the partner works."""
    server = any_ftps
    assert server.certificate is not None
    monkeypatch.setenv("CSFTP_TEST_FTPS_PASSWORD", server.password)
    init_project(tmp_path / "p", sftp_port=free_port(), api_port=free_port())
    config = tmp_path / "p" / CONFIG_NAME
    _ftps_partner(config, server, [])

    code, out = await _cli(config, "config", "check")
    assert code == 0, out  # a warning, not an error
    assert "partners.distributor.tls_fingerprints" in out
    assert "partner trust distributor" in out, out

    code, out = await _cli(config, "partner", "test", "distributor")
    assert code != 0, out
    assert "no TLS certificate is pinned" in out and "partner trust distributor" in out, out
    assert os.listdir(server.root / "in") == []
    assert "USER" not in server.faults.commands  # (pyftpdlib logs every command it gets)

    code, out = await _cli(config, "partner", "trust", "distributor")
    assert code == 0, out
    fingerprint = server.certificate.fingerprint
    assert f"distributor presents a TLS certificate: {fingerprint}" in out
    assert "subject: CN=127.0.0.1" in out and "issuer:  CN=127.0.0.1 (self-signed)" in out
    assert "valid:   " in out and " to " in out
    assert "names:   DNS:localhost, IP:127.0.0.1" in out
    assert "pinned now: nothing" in out
    assert f"run again with --fingerprint {fingerprint}" in out
    assert load_settings(config).partners["distributor"].tls_unpinned  # nothing pinned yet

    wrong = "SHA256:" + ":".join(["AB"] * 32)
    code, out = await _cli(config, "partner", "trust", "distributor", "--fingerprint", wrong)
    assert code == 1 and "refused" in out, out
    assert load_settings(config).partners["distributor"].tls_fingerprints == []

    code, out = await _cli(config, "partner", "trust", "distributor", "--fingerprint", fingerprint)
    assert code == 0 and f"pinned TLS certificate {fingerprint}" in out, out
    assert load_settings(config).partners["distributor"].tls_fingerprints == [fingerprint]
    code, out = await _cli(config, "config", "check")
    assert "partners.distributor.tls_fingerprints" not in out, out
    code, out = await _cli(config, "partner", "test", "distributor")
    assert code == 0 and "ok: sent /in/consonance-sftp-test-" in out, out
