"""Kept for callers not yet moved: the outbound package type now lives in ``flows.base`` and
the trigger rules in ``flows.triggers``. New code imports those modules."""

from __future__ import annotations

from consonance_sftp.flows.base import Outbound
from consonance_sftp.flows.triggers import TitleState, Triggered, due, holds, triggered

__all__ = ["Outbound", "TitleState", "Triggered", "due", "holds", "triggered"]
