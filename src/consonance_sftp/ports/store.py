"""Store port: our own records (ledgers, versions, audit trail, alerts)."""

from __future__ import annotations

from typing import Protocol


class Store(Protocol):
    """Filled in by the store work of the foundation issue."""
