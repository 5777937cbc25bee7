"""Connection parameters of one partner, as the SFTP adapter needs them.

A plain dataclass so the adapter does not depend on the shape of the config models;
``app`` builds one from ``PartnerConfig`` (secrets already resolved).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from consonance_sftp.config.transfer import TransferSettings


class AuthMethod(enum.StrEnum):
    KEY = "key"
    PASSWORD = "password"  # noqa: S105 (a method name, not a secret)
    KEYBOARD_INTERACTIVE = "keyboard_interactive"


@dataclass(frozen=True, slots=True, kw_only=True)
class SftpEndpoint:
    """Everything needed to reach one partner's server."""

    partner: str
    host: str
    user: str
    host_keys: tuple[str, ...]  # known_hosts lines or SHA256:... fingerprints; never empty
    port: int = 22
    auth: AuthMethod = AuthMethod.KEY
    key_path: Path | None = None
    key_passphrase: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    max_connections: int = 4
    folders: tuple[str, ...] = ()  # configured remote folders (the probe checks each)
    transfer: TransferSettings = field(default_factory=TransferSettings)
