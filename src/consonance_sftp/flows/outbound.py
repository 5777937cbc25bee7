"""What every outbound flow hands to the engine: planned packages, one per partner.

Each flow (production, onix_feed, marketing, formats, finance_out, archive) decides *what* a
partner receives and plans it with ``formats.packaging`` (exact files, remote paths, sizes,
SHA-256, materialized locally). ``app.delivery.delivery_request`` turns an ``Outbound`` into the
engine's request; ``run FLOW --dry-run`` prints ``plan.lines()`` instead of sending.
"""

from __future__ import annotations

from typing import Protocol

from consonance_sftp.formats.packaging import PackagePlan


class Outbound(Protocol):
    """One package for one partner, planned and checked, ready for the engine."""

    @property
    def partner(self) -> str: ...

    @property
    def plan(self) -> PackagePlan: ...

    @property
    def label(self) -> str:
        """Human label of the package, e.g. ``9780000000001 production``."""
        ...

    @property
    def isbn(self) -> str | None:
        """The title the package is for (None for multi-title files such as ONIX feeds)."""
        ...
