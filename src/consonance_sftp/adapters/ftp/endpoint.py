"""Connection parameters of one FTP/FTPS partner, as the FTP adapter needs them.

A plain dataclass so the adapter does not depend on the shape of the config models; ``app``
builds one from ``PartnerConfig`` (the password already resolved).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from consonance_sftp.config.transfer import TransferSettings


class FtpMode(enum.StrEnum):
    """How the control and data connections are protected (the config's ``protocol``)."""

    EXPLICIT = "ftps"  # AUTH TLS on the plain port, then PROT P: every byte encrypted
    IMPLICIT = "ftps-implicit"  # TLS from the first byte (port 990)
    PLAIN = "ftp"  # no TLS at all: only with ``insecure_plaintext`` in the config


@dataclass(frozen=True, slots=True, kw_only=True)
class FtpEndpoint:
    """Everything needed to reach one partner's FTP/FTPS server."""

    partner: str
    host: str
    user: str
    password: str = field(repr=False)
    port: int = 21
    mode: FtpMode = FtpMode.EXPLICIT
    # Pinned SHA-256 fingerprints of the server certificate ("SHA256:AB:CD:..."), and/or the
    # system's certificate authorities with host-name checking. FTPS needs one of the two:
    # with neither, nothing connects (``client.refuse_unpinned``) until ``partner trust``.
    tls_fingerprints: tuple[str, ...] = ()
    tls_system_ca: bool = False
    max_connections: int = 2
    folders: tuple[str, ...] = ()
    transfer: TransferSettings = field(default_factory=TransferSettings)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
