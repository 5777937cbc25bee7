"""Per-partner SFTP transfer settings (upload protocol, fallbacks, timeouts, limits)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class TransferSettings(BaseModel):
    """How files move to and from one partner. Filled in by the SFTP transport issue."""

    model_config = ConfigDict(extra="forbid")
