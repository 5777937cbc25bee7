"""The RemoteFS adapter of one partner, whichever protocol it speaks.

``SftpRemoteFS`` for SFTP partners, ``FtpRemoteFS`` for FTPS and plain FTP ones (the
partner's ``protocol``). Both implement ``ports.remote_fs.RemoteFS`` and the few extras the
delivery and intake transports use (``held_by``, ``list_kinds``, ``settings``).
"""

from __future__ import annotations

from pathlib import Path

from consonance_sftp.adapters.ftp.endpoint import FtpEndpoint, FtpMode
from consonance_sftp.adapters.ftp.fs import FtpRemoteFS
from consonance_sftp.adapters.sftp.endpoint import AuthMethod, SftpEndpoint
from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.config import PartnerConfig
from consonance_sftp.ports.remote_fs import ConnectionBudget

PartnerFS = SftpRemoteFS | FtpRemoteFS


def sftp_endpoint(name: str, partner: PartnerConfig) -> SftpEndpoint:
    """The SFTP adapter's view of one configured partner (secrets resolved)."""
    auth = partner.auth
    secret = auth.password or auth.keyboard_interactive
    return SftpEndpoint(
        partner=name,
        host=partner.host,
        port=partner.port,
        user=partner.user,
        host_keys=tuple(partner.host_keys),
        auth=AuthMethod(auth.method),
        key_path=auth.key,
        key_passphrase=auth.passphrase.get_secret_value() if auth.passphrase else None,
        password=secret.get_secret_value() if secret else None,
        max_connections=partner.max_connections,
        folders=tuple(partner.folders.values()),
        transfer=partner.transfer,
    )


def ftp_endpoint(name: str, partner: PartnerConfig) -> FtpEndpoint:
    """The FTP adapter's view of one configured FTP/FTPS partner (password resolved)."""
    password = partner.auth.password
    return FtpEndpoint(
        partner=name,
        host=partner.host,
        port=partner.port,
        user=partner.user,
        password=password.get_secret_value() if password else "",
        mode=FtpMode(partner.protocol),
        tls_fingerprints=tuple(partner.tls_fingerprints),
        tls_system_ca=partner.tls_system_ca,
        max_connections=partner.max_connections,
        folders=tuple(partner.folders.values()),
        transfer=partner.transfer,
    )


def partner_fs(
    name: str, partner: PartnerConfig, *, state_dir: Path, budget: ConnectionBudget
) -> PartnerFS:
    """The adapter the partner's ``protocol`` names."""
    if partner.is_ftp:
        return FtpRemoteFS(ftp_endpoint(name, partner), state_dir=state_dir, budget=budget)
    return SftpRemoteFS(sftp_endpoint(name, partner), state_dir=state_dir, budget=budget)
