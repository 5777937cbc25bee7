"""The error tree: retryable flags, hints and messages that name partner and path."""

from consonance_sftp.errors import (
    ConfigError,
    ConfigProblem,
    ConnectionLost,
    ConsonanceSftpError,
    HostKeyMismatch,
    RemotePermissionDenied,
)


def test_transport_errors_name_partner_and_path_and_carry_retryable() -> None:
    exc = ConnectionLost("connection dropped", partner="printer", path="/in/x.pdf")
    assert isinstance(exc, ConsonanceSftpError)
    assert exc.retryable is True
    assert "partner 'printer'" in str(exc) and "/in/x.pdf" in str(exc)
    assert RemotePermissionDenied("denied", partner="p").retryable is False


def test_host_key_mismatch_has_a_hint_naming_the_trust_command() -> None:
    assert "partner trust" in (HostKeyMismatch("changed key", partner="p").hint or "")


def test_config_error_lists_every_problem() -> None:
    exc = ConfigError("2 problems", [ConfigProblem("a.b", "required"), ConfigProblem("c", "bad")])
    assert str(exc).splitlines() == ["2 problems", "  a.b: required", "  c: bad"]
