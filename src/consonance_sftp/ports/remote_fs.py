"""RemoteFS port: a partner's SFTP server as the flows see it."""

from __future__ import annotations

from typing import Protocol


class RemoteFS(Protocol):
    """Filled in by the SFTP transport issue."""
