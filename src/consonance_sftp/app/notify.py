"""Alerts that reach people: each alert sent once to every notification target that wants it
(e-mail over SMTP; a JSON or Slack-style webhook, signed with HMAC-SHA256 when the target has a
``secret``).

The alerts table is the outbox and the audit trail is the record: an alert is due for a target
while it is open (not acknowledged), recent (``LOOKBACK``), at or above the target's severity,
of a kind the target takes, and has no ``alert.notified`` event for that target. A failed send
is recorded as ``alert.notify_failed`` and tried again after a growing pause, at most
``MAX_ATTEMPTS`` times; it never holds up any other work. ``serve`` sends what is due every
``INTERVAL_S`` seconds; ``alerts notify`` does it once (after a ``run`` without ``serve``).
Run one ``serve`` per installation: two would each send.

Signature (when ``secret`` is set): header ``X-Consonance-Sftp-Timestamp`` (Unix seconds) and
``X-Consonance-Sftp-Signature: sha256=<hex>``, the HMAC-SHA256 with the secret of
``<timestamp>.<raw body>``. The receiver recomputes it and rejects an old timestamp.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import smtplib
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import httpx

from consonance_sftp.config.settings import EmailTarget, WebhookTarget
from consonance_sftp.logs import get_logger
from consonance_sftp.models import AuditAction
from consonance_sftp.ports.store import AlertRecord, Store

log = get_logger(__name__)

ACTOR = "notifier"
LOOKBACK = timedelta(days=7)
MAX_ATTEMPTS = 8
FIRST_PAUSE_S = 30.0
LONGEST_PAUSE_S = 3600.0
INTERVAL_S = 15.0
TIMEOUT_S = 20.0
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
SIGNATURE_HEADER = "X-Consonance-Sftp-Signature"
TIMESTAMP_HEADER = "X-Consonance-Sftp-Timestamp"

if TYPE_CHECKING:
    from consonance_sftp.app import App

Target = EmailTarget | WebhookTarget


@dataclass(frozen=True, slots=True)
class Sent:
    """One attempt to tell a target about an alert (or a test)."""

    target: str
    subject: str  # "alert:<id>" or "test"
    ok: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class FailingTarget:
    """A target whose latest send failed."""

    target: str
    since: datetime
    error: str
    failures: int


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Consonance-Sftp-Signature`` value of a webhook body."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class _Refused(Exception):
    """The receiver answered, and said no."""


def _pause(failures: int) -> timedelta:
    return timedelta(seconds=min(LONGEST_PAUSE_S, FIRST_PAUSE_S * 2 ** (failures - 1)))


def _payload(alert: AlertRecord | None) -> dict[str, Any]:
    if alert is None:
        return {
            "service": "consonance-sftp",
            "test": True,
            "severity": "info",
            "kind": "test",
            "message": "test notification from consonance-sftp: this target works",
        }
    return {
        "service": "consonance-sftp",
        "test": False,
        "id": alert.id,
        "ts": alert.ts.isoformat(),
        "severity": alert.severity.value,
        "kind": alert.kind,
        "message": alert.message,
        "partner": alert.partner,
        "flow": alert.flow,
        "details": dict(alert.details),
    }


def _text(data: dict[str, Any]) -> tuple[str, str]:
    """A subject line and a plain-text body."""
    where = " ".join(f"{k} {data[k]}" for k in ("partner", "flow") if data.get(k))
    subject = f"consonance-sftp {data['severity']}: {data['kind']}" + (
        f" ({where})" if where else ""
    )
    lines = [data["message"], ""]
    if not data["test"]:
        lines += [f"raised: {data['ts']}", f"alert: {data['id']}"]
        lines += [f"{k}: {v}" for k, v in sorted(data["details"].items())]
        lines += ["", f"When it is handled: consonance-sftp alerts ack {data['id']}"]
    return subject, "\n".join(lines) + "\n"


def _send_email(target: EmailTarget, subject: str, body: str) -> None:
    msg = EmailMessage()
    msg["From"] = target.sender
    msg["To"] = ", ".join(target.recipients)
    msg["Subject"] = subject
    msg.set_content(body)
    with smtplib.SMTP(target.smtp_host, target.smtp_port, timeout=TIMEOUT_S) as smtp:
        if target.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if target.username:
            password = target.password.get_secret_value() if target.password else ""
            smtp.login(target.username, password)
        smtp.send_message(msg)


async def _post(target: WebhookTarget, data: dict[str, Any]) -> None:
    if target.format == "slack":
        subject, text = _text(data)
        body = json.dumps({"text": f"{subject}\n{text}"}).encode()
    else:
        body = json.dumps(data, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "consonance-sftp"}
    if target.header_value is not None:
        headers[target.header_name] = target.header_value.get_secret_value()
    if target.secret is not None:
        stamp = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = stamp
        headers[SIGNATURE_HEADER] = signature(
            target.secret.get_secret_value().encode(), stamp, body
        )
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
        response = await client.post(target.url, content=body, headers=headers)
    if response.status_code >= 300:
        raise _Refused(f"HTTP {response.status_code} from {target.url}")


async def _deliver(target: Target, data: dict[str, Any]) -> str | None:
    """Send; the reason in words when it failed."""
    try:
        if isinstance(target, EmailTarget):
            subject, body = _text(data)
            await asyncio.to_thread(_send_email, target, subject, body)
        else:
            await _post(target, data)
    except _Refused as exc:
        return str(exc)
    except Exception as exc:  # any failure is recorded and retried, never raised into work
        text = str(exc)
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return None


def _wants(target: Target, alert: AlertRecord) -> bool:
    return SEVERITY_RANK[alert.severity.value] >= SEVERITY_RANK[target.min_severity] and (
        not target.kinds or alert.kind in target.kinds
    )


class Notifier:
    """Sends what is due to the configured targets and records each attempt."""

    def __init__(
        self, store: Store, targets: Sequence[tuple[str, Target]], *, now: datetime | None = None
    ) -> None:
        self.store = store
        self.targets = list(targets)
        self._now = now

    def now(self) -> datetime:
        return self._now or datetime.now(UTC)

    def _history(self) -> dict[tuple[str, str], list[tuple[datetime, bool, str]]]:
        """(subject, target) -> its attempts, newest first: (when, ok, error)."""
        since = self.now() - LOOKBACK - timedelta(days=1)
        out: dict[tuple[str, str], list[tuple[datetime, bool, str]]] = {}
        for action, ok in (
            (AuditAction.ALERT_NOTIFIED, True),
            (AuditAction.ALERT_NOTIFY_FAILED, False),
        ):
            for e in self.store.list_audit(action=action, since=since):
                key = (e.subject, str(e.details.get("target", "")))
                out.setdefault(key, []).append((e.ts, ok, str(e.details.get("error") or "")))
        for attempts in out.values():
            attempts.sort(reverse=True)
        return out

    def due(self) -> list[tuple[str, Target, AlertRecord]]:
        """Each (target, alert) to send now."""
        if not self.targets:
            return []
        now = self.now()
        history = self._history()
        out = []
        for alert in self.store.list_alerts(unacknowledged=True, limit=1000):
            if alert.ts < now - LOOKBACK:
                continue
            for name, target in self.targets:
                if not _wants(target, alert):
                    continue
                attempts = history.get((f"alert:{alert.id}", name), [])
                if any(ok for _, ok, _ in attempts):
                    continue
                if len(attempts) >= MAX_ATTEMPTS:
                    continue
                if attempts and now < attempts[0][0] + _pause(len(attempts)):
                    continue
                out.append((name, target, alert))
        return out

    async def _attempt(self, name: str, target: Target, alert: AlertRecord | None) -> Sent:
        subject = "test" if alert is None else f"alert:{alert.id}"
        error = await _deliver(target, _payload(alert))
        details: dict[str, Any] = {"target": name, "type": target.type}
        if error is not None:
            details["error"] = error
        if alert is not None:
            details["kind"] = alert.kind
        self.store.append_audit(
            ACTOR,
            AuditAction.ALERT_NOTIFIED if error is None else AuditAction.ALERT_NOTIFY_FAILED,
            subject if alert is not None else f"notification-test:{name}",
            details,
        )
        if error is not None:
            log.warning("notification to %s about %s failed: %s", name, subject, error)
        return Sent(name, subject, error is None, error)

    async def send_due(self) -> list[Sent]:
        """Send every due (target, alert); each attempt on the audit trail."""
        return [await self._attempt(n, t, a) for n, t, a in self.due()]

    async def send_test(self, only: str | None = None) -> list[Sent]:
        """A test notification to every target (or the one named)."""
        chosen = [(n, t) for n, t in self.targets if only is None or n == only]
        return [await self._attempt(n, t, None) for n, t in chosen]

    def failing(self) -> list[FailingTarget]:
        """Targets whose latest send about an alert failed, with the failures since the last
        success."""
        since = self.now() - LOOKBACK
        events = [
            e
            for action in (AuditAction.ALERT_NOTIFIED, AuditAction.ALERT_NOTIFY_FAILED)
            for e in self.store.list_audit(action=action, since=since)
            if e.subject.startswith("alert:")
        ]
        events.sort(key=lambda e: e.ts, reverse=True)
        out = []
        for name, _ in self.targets:
            run = []
            for e in events:
                if e.details.get("target") != name:
                    continue
                if e.action == AuditAction.ALERT_NOTIFIED:
                    break
                run.append(e)
            if run:
                out.append(
                    FailingTarget(name, run[-1].ts, str(run[0].details.get("error", "")), len(run))
                )
        return out


async def notifier_loop(stop: asyncio.Event, app: App, interval_s: float = INTERVAL_S) -> None:
    """``serve``'s sender: what is due, every ``interval_s``, with the config in force at the
    time (a reload changes the targets); a failure is logged and never stops the service."""
    while not stop.is_set():
        targets = app.settings.sent_targets()
        if targets:
            try:
                await Notifier(app.store, targets).send_due()
            except Exception:  # the store or a bug: logged, tried again next round
                log.exception("sending notifications failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
