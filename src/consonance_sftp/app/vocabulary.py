"""The closed sets of values the user interfaces show, for a user interface to name them (the
JSON API declares each as an enum in its OpenAPI schema): user interfaces import the domain's
models only through ``app``."""

from __future__ import annotations

from consonance_sftp.models import (
    AlertSeverity,
    DeliveryOutcome,
    IntakeOutcome,
    Verification,
    WorkState,
)

__all__ = ["AlertSeverity", "DeliveryOutcome", "IntakeOutcome", "Verification", "WorkState"]
