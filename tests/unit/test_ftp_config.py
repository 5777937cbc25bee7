"""FTP/FTPS partners in the config: protocol, default ports, TLS pins, plain FTP only when
written down, every problem named by its TOML path."""

from __future__ import annotations

from pathlib import Path

import pytest

from consonance_sftp.config import load_settings
from consonance_sftp.config.checks import check_file
from consonance_sftp.errors import ConfigError

PIN = "sha256 Fingerprint=" + ":".join(f"{i:02x}" for i in range(32))
NORMAL = "SHA256:" + ":".join(f"{i:02X}" for i in range(32))


def config(partner: str) -> str:
    return f"""
[consonance]
token = {{ env = "CSFTP_TEST_TOKEN" }}

[partners.nbni]
host = "ftp.nbni.example"
user = "pub"
auth = {{ password = {{ env = "CSFTP_TEST_PW" }} }}
folders = {{ receive = "/OUT" }}
{partner}
"""


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSFTP_TEST_TOKEN", "tok")
    monkeypatch.setenv("CSFTP_TEST_PW", "pw")


def load(tmp_path: Path, partner: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "c.toml"
    path.write_text(config(partner))
    return load_settings(path)


def problems(tmp_path: Path, partner: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, partner)
    return {p.path: p.message for p in caught.value.problems}


def test_ftps_partner_defaults_and_pin_normalised(tmp_path: Path) -> None:
    nbni = load(tmp_path, f'protocol = "ftps"\ntls_fingerprints = ["{PIN}"]').partners["nbni"]
    assert nbni.protocol == "ftps"
    assert nbni.port == 21
    assert nbni.tls_fingerprints == [NORMAL]
    assert nbni.host_keys == []
    assert nbni.is_ftp


@pytest.mark.parametrize(("protocol", "port"), [("ftps-implicit", 990), ("sftp", 22)])
def test_default_port_follows_protocol(tmp_path: Path, protocol: str, port: int) -> None:
    extra = (
        "tls_system_ca = true" if protocol != "sftp" else 'host_keys = ["SHA256:' + "A" * 43 + '"]'
    )
    partner = load(tmp_path, f'protocol = "{protocol}"\n{extra}').partners["nbni"]
    assert partner.port == port


def test_explicit_port_wins(tmp_path: Path) -> None:
    partner = load(tmp_path, 'protocol = "ftps"\nport = 2121\ntls_system_ca = true')
    assert partner.partners["nbni"].port == 2121


def test_plain_ftp_is_refused_unless_written_down(tmp_path: Path) -> None:
    found = problems(tmp_path, 'protocol = "ftp"')
    assert "unencrypted" in found["partners.nbni.insecure_plaintext"]
    partner = load(tmp_path, 'protocol = "ftp"\ninsecure_plaintext = true').partners["nbni"]
    assert partner.insecure_plaintext


def test_config_check_warns_about_plain_ftp(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(config('protocol = "ftp"\ninsecure_plaintext = true'))
    _settings, found = check_file(path)
    warnings = [f for f in found if f.severity == "warning" and f.path == "partners.nbni.protocol"]
    assert len(warnings) == 1
    assert "unencrypted" in warnings[0].message
    path.write_text(config('protocol = "ftps"\ntls_system_ca = true'))
    _settings, found = check_file(path)
    assert not [f for f in found if f.path == "partners.nbni.protocol"]


@pytest.mark.parametrize("protocol", ["ftps", "ftps-implicit"])
def test_ftps_without_a_pin_loads_with_a_warning(tmp_path: Path, protocol: str) -> None:
    """Like a new partner before ``partner trust``: it loads (so that ``partner trust`` can
    run), ``config check`` warns, and the adapter refuses to connect (integration tests)."""
    path = tmp_path / "c.toml"
    path.write_text(config(f'protocol = "{protocol}"'))
    settings, found = check_file(path)
    assert settings.partners["nbni"].tls_unpinned
    warned = [f for f in found if f.path == "partners.nbni.tls_fingerprints"]
    assert [f.severity for f in warned] == ["warning"]
    assert "nothing is sent" in warned[0].message
    assert "partner trust nbni" in warned[0].message
    for pinned in (f'tls_fingerprints = ["{PIN}"]', "tls_system_ca = true"):
        path.write_text(config(f'protocol = "{protocol}"\n{pinned}'))
        settings, found = check_file(path)
        assert not settings.partners["nbni"].tls_unpinned
        assert not [f for f in found if f.path == "partners.nbni.tls_fingerprints"]


def test_segment_settings_on_an_ftp_partner_are_named_as_ignored(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    segmented = "[partners.nbni.transfer]\nsegment_connections = 4\nsegment_size = 8388608\n"
    path.write_text(config('protocol = "ftps"\ntls_system_ca = true\n' + segmented))
    _settings, found = check_file(path)
    ignored = {f.path: f for f in found if "ignored for an FTP/FTPS partner" in f.message}
    assert set(ignored) == {
        "partners.nbni.transfer.segment_connections",
        "partners.nbni.transfer.segment_size",
    }
    assert {f.severity for f in ignored.values()} == {"warning"}
    path.write_text(config('protocol = "ftps"\ntls_system_ca = true\n'))  # defaults: quiet
    _settings, found = check_file(path)
    assert not [f for f in found if "ignored for an FTP/FTPS partner" in f.message]


def test_bad_fingerprint_is_named(tmp_path: Path) -> None:
    found = problems(tmp_path, 'protocol = "ftps"\ntls_fingerprints = ["SHA256:abc"]')
    assert "not a SHA-256 certificate fingerprint" in found["partners.nbni.tls_fingerprints"]


def test_fields_of_another_protocol_are_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        'protocol = "ftps"\ntls_system_ca = true\ninsecure_plaintext = true\n'
        'host_keys = ["SHA256:' + "A" * 43 + '"]',
    )
    assert "only for protocol 'ftp'" in found["partners.nbni.insecure_plaintext"]
    assert "do not apply to protocol 'ftps'" in found["partners.nbni.host_keys"]
    found = problems(tmp_path, f'tls_fingerprints = ["{PIN}"]')  # an SFTP partner
    assert "host_keys" in found["partners.nbni.tls_fingerprints"]
    assert found["partners.nbni.host_keys"].startswith("required")


def test_ftp_partner_logs_in_with_a_password(tmp_path: Path) -> None:
    text = config('protocol = "ftps"\ntls_system_ca = true').replace(
        'auth = { password = { env = "CSFTP_TEST_PW" } }', 'auth = { key = "keys/k" }'
    )
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    found = {p.path: p.message for p in caught.value.problems}
    assert "password" in found["partners.nbni.auth"]


def test_unknown_protocol(tmp_path: Path) -> None:
    found = problems(tmp_path, 'protocol = "ftpes"')
    assert "ftps-implicit" in found["partners.nbni.protocol"]
