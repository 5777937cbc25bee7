"""Alerts raised for a person (``consonance-sftp alerts``, and ``status``'s open alerts): listing
them, and acknowledging them with who and why on the audit trail (``alert.acknowledged``)."""

from __future__ import annotations

from consonance_sftp.errors import RecordNotFound
from consonance_sftp.models import AuditAction
from consonance_sftp.ports.store import AlertRecord, Store

__all__ = ["AlertRecord", "acknowledge", "open_alerts"]


def open_alerts(store: Store, *, limit: int | None = None) -> list[AlertRecord]:
    """Alerts nobody has acknowledged yet, newest first."""
    return store.list_alerts(unacknowledged=True, limit=limit)


def acknowledge(
    store: Store, ids: list[int], *, by: str, reason: str | None = None
) -> tuple[list[AlertRecord], list[int]]:
    """Acknowledge each alert (one already acknowledged keeps its first who and when); returns
    the alerts acknowledged and the IDs that name no alert."""
    done: list[AlertRecord] = []
    missing: list[int] = []
    for alert_id in ids:
        try:
            alert = store.acknowledge_alert(alert_id, by)
        except RecordNotFound:
            missing.append(alert_id)
            continue
        store.append_audit(
            f"user:{by}",
            AuditAction.ALERT_ACKNOWLEDGED,
            f"alert:{alert_id}",
            {"kind": alert.kind, "message": alert.message, "reason": reason or ""},
        )
        done.append(alert)
    return done, missing
