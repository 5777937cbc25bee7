"""Alerts that reach people: each alert sent once to every notification target that wants it
(e-mail over SMTP; a JSON or Slack-style webhook, signed with HMAC-SHA256 when the target has a
``secret``; any service Apprise knows, by URL), or, for a target with ``digest = "daily"``, one
message a day listing the alerts raised since its last digest.

The alerts table is the outbox and the audit trail is the record: an alert is due for a target
while it is open (not acknowledged), recent (``LOOKBACK``), at or above the target's severity,
of a kind the target takes, and has no ``alert.notified`` event for that target. A failed send
is recorded as ``alert.notify_failed`` and tried again after a growing pause, at most
``MAX_ATTEMPTS`` times; it never holds up any other work. ``serve`` sends what is due every
``INTERVAL_S`` seconds; ``alerts notify`` does it once (after a ``run`` without ``serve``).
Run one ``serve`` per installation: two would each send.

Digest: at ``digest_at`` (in ``digest_timezone``) a target's digest lists the alerts it wants
that were raised after its last digest and up to that time, open or acknowledged; none is sent
when there were none. It is recorded as one ``alert.notified`` event with subject
``digest:<until>`` and the alert IDs, so a restarted service does not send it again; a failed
digest is retried like an alert. ``alerts notify --digest`` sends one at once, up to now.

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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx

from consonance_sftp.config.settings import AppriseTarget, EmailTarget, SentTarget, WebhookTarget
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
DIGEST_SEARCH = timedelta(days=31)  # how far back the last digest is looked for
DIGEST_MAX_ALERTS = 5000
SIGNATURE_HEADER = "X-Consonance-Sftp-Signature"
TIMESTAMP_HEADER = "X-Consonance-Sftp-Timestamp"

if TYPE_CHECKING:
    from consonance_sftp.app import App

Target = SentTarget


@dataclass(frozen=True, slots=True)
class Sent:
    """One attempt to tell a target about an alert (or a test)."""

    target: str
    subject: str  # "alert:<id>", "digest:<until>" or "test"
    ok: bool
    error: str | None = None
    alerts: int = 1  # how many alerts it told of (a digest: several)


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


@dataclass(frozen=True, slots=True)
class Digest:
    """A digest due for one target: the alerts raised in ``(since, until]``."""

    target: str
    since: datetime
    until: datetime
    alerts: list[AlertRecord]

    @property
    def subject(self) -> str:
        return f"digest:{self.until.isoformat()}"


def _digest_payload(digest: Digest, zone: str) -> dict[str, Any]:
    counts = Counter((a.severity.value, a.kind) for a in digest.alerts)
    order = sorted(counts, key=lambda sk: (-SEVERITY_RANK[sk[0]], sk[1]))
    worst = order[0][0] if order else "info"
    tz = ZoneInfo(zone)
    return {
        "service": "consonance-sftp",
        "test": False,
        "digest": True,
        "severity": worst,
        "kind": "digest",
        "since": digest.since.isoformat(),
        "until": digest.until.isoformat(),
        "timezone": zone,
        "period": f"{digest.since.astimezone(tz):%Y-%m-%d %H:%M} to "
        f"{digest.until.astimezone(tz):%Y-%m-%d %H:%M} ({zone})",
        "count": len(digest.alerts),
        "counts": [{"severity": s, "kind": k, "count": counts[(s, k)]} for s, k in order],
        "alerts": [
            {
                "id": a.id,
                "ts": a.ts.isoformat(),
                "local_ts": f"{a.ts.astimezone(tz):%Y-%m-%d %H:%M}",
                "severity": a.severity.value,
                "kind": a.kind,
                "message": a.message,
                "partner": a.partner,
                "flow": a.flow,
                "acknowledged_by": a.acknowledged_by if a.acknowledged_at else None,
            }
            for a in sorted(
                digest.alerts, key=lambda a: (-SEVERITY_RANK[a.severity.value], a.kind, a.ts, a.id)
            )
        ],
    }


def _digest_text(data: dict[str, Any]) -> tuple[str, str]:
    by_severity = Counter[str]()
    for c in data["counts"]:
        by_severity[c["severity"]] += c["count"]
    parts = ", ".join(
        f"{n} {s}" for s, n in sorted(by_severity.items(), key=lambda i: -SEVERITY_RANK[i[0]])
    )
    n = data["count"]
    subject = f"consonance-sftp daily digest: {n} alert{'s' if n != 1 else ''} ({parts})"
    lines = [f"{n} alert{'s' if n != 1 else ''} raised {data['period']}.", ""]
    for c in data["counts"]:
        lines.append(f"{c['severity']} {c['kind']}: {c['count']}")
        for a in data["alerts"]:
            if (a["severity"], a["kind"]) != (c["severity"], c["kind"]):
                continue
            where = " ".join(f"{k} {a[k]}" for k in ("partner", "flow") if a.get(k))
            seen = f"acknowledged by {a['acknowledged_by']}" if a["acknowledged_by"] else "open"
            lines.append(
                f"  alert {a['id']}, {a['local_ts']}"
                + (f", {where}" if where else "")
                + f": {a['message']} ({seen})"
            )
        lines.append("")
    lines.append("The open ones: consonance-sftp alerts list")
    return subject, "\n".join(lines) + "\n"


def _text(data: dict[str, Any]) -> tuple[str, str]:
    """A subject line and a plain-text body."""
    if data.get("digest"):
        return _digest_text(data)
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
        # The host only: a chat webhook's path is its credential (Slack, Teams), and this
        # text goes to the log, the audit trail and status.
        raise _Refused(f"HTTP {response.status_code} from {urlsplit(target.url).hostname}")


APPRISE_TYPE = {"info": "info", "warning": "warning", "critical": "failure"}


def _send_apprise(target: AppriseTarget, data: dict[str, Any]) -> None:
    import apprise  # imported when used: it is big, and most configs do not use it

    title, body = _text(data)
    sender = apprise.Apprise()
    bad = [
        str(i + 1) for i, url in enumerate(target.urls) if not sender.add(url.get_secret_value())
    ]
    if bad:
        raise _Refused(
            f"URL number {', '.join(bad)} of urls is not one Apprise knows "
            "(see https://appriseit.com/services/)"
        )
    result = sender.notify(
        body=body,
        title=title,
        notify_type=apprise.NotifyType(APPRISE_TYPE[data["severity"]]),
        timeout=TIMEOUT_S,
    )
    if not result:
        failed = ", ".join(s.name for s in result if not s) or "Apprise"
        said = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR", "CRITICAL")]
        raise _Refused(f"{failed} failed" + (f": {said[-1]}" if said else ""))


async def _deliver(target: Target, data: dict[str, Any]) -> str | None:
    """Send; the reason in words when it failed."""
    try:
        if isinstance(target, EmailTarget):
            subject, body = _text(data)
            await asyncio.to_thread(_send_email, target, subject, body)
        elif isinstance(target, AppriseTarget):
            await asyncio.to_thread(_send_apprise, target, data)
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
                if target.digest != "off" or not _wants(target, alert):
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

    def _last_digest(self, name: str, before: datetime) -> datetime | None:
        """When the target's latest digest sent ended (its ``until``)."""
        last = None
        for e in self.store.list_audit(
            action=AuditAction.ALERT_NOTIFIED, since=before - DIGEST_SEARCH
        ):
            if e.details.get("target") != name or not e.subject.startswith("digest:"):
                continue
            until = datetime.fromisoformat(e.subject.removeprefix("digest:"))
            last = until if last is None else max(last, until)
        return last

    def digest_slot(self, target: Target) -> datetime:
        """The latest time the target's daily digest was due, at or before now."""
        zone = ZoneInfo(target.digest_timezone)
        local = self.now().astimezone(zone)
        slot = datetime.combine(local.date(), target.digest_at, tzinfo=zone)
        if slot > local:
            slot = datetime.combine(local.date() - timedelta(days=1), target.digest_at, tzinfo=zone)
        return slot.astimezone(UTC)

    def digests_due(self, *, now: bool = False) -> list[tuple[str, Target, Digest]]:
        """Each digest target's digest to send now (with ``now``: up to this moment, whether its
        hour has come or not); none for a target without alerts since its last digest."""
        out = []
        history = self._history() if not now else {}
        alerts: list[AlertRecord] | None = None
        for name, target in self.targets:
            if target.digest == "off":
                continue
            until = self.now() if now else self.digest_slot(target)
            last = self._last_digest(name, until)
            if last is not None and last >= until:
                continue  # sent already (across restarts: it is on the audit trail)
            since = last if last is not None else until - timedelta(days=1)
            attempts = history.get((f"digest:{until.isoformat()}", name), [])
            if len(attempts) >= MAX_ATTEMPTS:
                continue  # given up: the next day's digest covers these alerts
            if attempts and self.now() < attempts[0][0] + _pause(len(attempts)):
                continue
            if alerts is None:
                alerts = self.store.list_alerts(limit=DIGEST_MAX_ALERTS)
            chosen = [a for a in alerts if since < a.ts <= until and _wants(target, a)]
            if chosen:
                out.append((name, target, Digest(name, since, until, chosen)))
        return out

    async def _send_digest(self, name: str, target: Target, digest: Digest) -> Sent:
        error = await _deliver(target, _digest_payload(digest, target.digest_timezone))
        details: dict[str, Any] = {
            "target": name,
            "type": target.type,
            "since": digest.since.isoformat(),
            "until": digest.until.isoformat(),
            "alerts": [a.id for a in digest.alerts],
        }
        if error is not None:
            details["error"] = error
        self.store.append_audit(
            ACTOR,
            AuditAction.ALERT_NOTIFIED if error is None else AuditAction.ALERT_NOTIFY_FAILED,
            digest.subject,
            details,
        )
        if error is not None:
            log.warning("digest to %s failed: %s", name, error)
        return Sent(name, digest.subject, error is None, error, len(digest.alerts))

    async def send_digests(self, *, now: bool = False) -> list[Sent]:
        """Send every due digest (``now``: each digest target's, up to this moment)."""
        return [await self._send_digest(n, t, d) for n, t, d in self.digests_due(now=now)]

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
        """Send every due (target, alert) and every due digest; each attempt on the audit
        trail."""
        sent = [await self._attempt(n, t, a) for n, t, a in self.due()]
        return sent + await self.send_digests()

    async def send_test(self, only: str | None = None) -> list[Sent]:
        """A test notification to every target (or the one named)."""
        chosen = [(n, t) for n, t in self.targets if only is None or n == only]
        return [await self._attempt(n, t, None) for n, t in chosen]

    def failing(self) -> list[FailingTarget]:
        """Targets whose latest send about an alert (or digest) failed, with the failures since
        the last success."""
        since = self.now() - LOOKBACK
        events = [
            e
            for action in (AuditAction.ALERT_NOTIFIED, AuditAction.ALERT_NOTIFY_FAILED)
            for e in self.store.list_audit(action=action, since=since)
            if e.subject.startswith(("alert:", "digest:"))
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
