"""Daily digests and Apprise targets, against real receivers: a digest target gets one e-mail a
day (at its hour, in its time zone) listing the alerts raised since its last digest, counted by
severity and kind, open and acknowledged; nothing on a day without alerts; once, even after a
restart. Apprise URLs (``json://``, ``form://``, ``mailto://``) reach the local HTTP receiver and
SMTP server. The clock is the store's: alerts and audit events carry the time the test sets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from pydantic import ValidationError

from consonance_sftp.adapters.store import open_store
from consonance_sftp.adapters.store.sql_store import SqlStore
from consonance_sftp.app.notify import Notifier
from consonance_sftp.config.settings import (
    AppriseTarget,
    EmailTarget,
    WebhookTarget,
    target_name,
)
from consonance_sftp.models import Alert, AlertSeverity, AuditAction
from tests.fixtures.consonance_sandbox import ManualClock
from tests.fixtures.notify_sinks import SECRET, SmtpSink, WebhookSink

# Thursday 3 December 2026, 06:00 in London (UTC+0 in winter); the digest goes out at 08:00.
START = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def store(tmp_path: Path, clock: ManualClock) -> Iterator[SqlStore]:
    st = open_store(f"sqlite:///{tmp_path}/store.db", clock=clock)
    try:
        yield st
    finally:
        st.close()


def digest_mail(sink: SmtpSink, **extra: Any) -> EmailTarget:
    return EmailTarget.model_validate(
        {
            "type": "email",
            "smtp_host": "127.0.0.1",
            "smtp_port": sink.port,
            "starttls": False,
            "sender": "sftp@press.example",
            "recipients": ["ops@press.example"],
            "digest": "daily",
            "digest_at": "08:00",
            "digest_timezone": "Europe/London",
            **extra,
        }
    )


def raise_(store: SqlStore, severity: AlertSeverity, kind: str, partner: str = "printer") -> int:
    return store.raise_alert(
        Alert(severity=severity, kind=kind, message=f"{kind} at {partner}", partner=partner)
    ).id


async def round_(store: SqlStore, clock: ManualClock, targets: list[tuple[str, Any]]) -> list[Any]:
    """One round of ``serve``'s sender, by a fresh Notifier (as after a restart)."""
    return await Notifier(store, targets, now=clock.now()).send_due()


async def test_a_daily_digest_lists_the_days_alerts_once_at_its_hour(
    store: SqlStore, clock: ManualClock, smtp_sink: SmtpSink
) -> None:
    targets = [("daily", digest_mail(smtp_sink))]
    clock.current = START - timedelta(days=2)  # Tue 06:00: before the window of any digest here
    too_old = raise_(store, AlertSeverity.CRITICAL, "host_key_mismatch")
    clock.current = START  # Thu 06:00
    first = raise_(store, AlertSeverity.WARNING, "delivery_failed")
    clock.current = START + timedelta(minutes=30)
    second = raise_(store, AlertSeverity.WARNING, "delivery_failed", partner="retailer")
    key = raise_(store, AlertSeverity.CRITICAL, "host_key_mismatch")
    raise_(store, AlertSeverity.INFO, "note")  # below the target's min_severity
    store.acknowledge_alert(second, "dana")

    # Not at once, one by one: nothing before 08:00 London.
    clock.current = START + timedelta(hours=1, minutes=59)
    assert await round_(store, clock, targets) == []
    assert smtp_sink.messages == []

    clock.current = START + timedelta(hours=2, seconds=10)
    (sent,) = await round_(store, clock, targets)
    assert sent.ok and sent.alerts == 3 and sent.subject.startswith("digest:")
    (mail,) = smtp_sink.messages
    assert mail["Subject"] == "consonance-sftp daily digest: 3 alerts (1 critical, 2 warning)"
    body = mail.get_content()
    assert "2026-12-02 08:00 to 2026-12-03 08:00 (Europe/London)" in body
    assert "critical host_key_mismatch: 1" in body and "warning delivery_failed: 2" in body
    assert body.index("critical host_key_mismatch") < body.index("warning delivery_failed")
    assert f"alert {second}," in body and "(acknowledged by dana)" in body
    assert f"alert {first}," in body and f"alert {key}," in body
    assert f"alert {too_old}," not in body and "note" not in body

    # Once: later rounds, and a restarted service, send nothing more today.
    for minutes in (1, 15, 600):
        clock.current = START + timedelta(hours=2, minutes=minutes)
        assert await round_(store, clock, targets) == []
    assert len(smtp_sink.messages) == 1
    (event,) = store.list_audit(action=AuditAction.ALERT_NOTIFIED)
    assert event.details["target"] == "daily"
    assert sorted(event.details["alerts"]) == sorted([first, second, key])  # type: ignore[type-var]

    # Per-alert messages are not sent to a digest target.
    assert Notifier(store, targets, now=clock.now()).due() == []

    # Next day: only what was raised after this digest.
    later = raise_(store, AlertSeverity.WARNING, "report_missing", partner="retailer")
    clock.current = START + timedelta(days=1, hours=2, minutes=1)
    (sent,) = await round_(store, clock, targets)
    assert sent.ok and sent.alerts == 1
    body = smtp_sink.messages[-1].get_content()
    assert f"alert {later}," in body and f"alert {first}," not in body
    assert "1 alert raised 2026-12-03 08:00 to 2026-12-04 08:00" in body


async def test_no_digest_on_a_day_without_alerts(
    store: SqlStore, clock: ManualClock, smtp_sink: SmtpSink
) -> None:
    targets = [("daily", digest_mail(smtp_sink, kinds=["host_key_mismatch"]))]
    raise_(store, AlertSeverity.CRITICAL, "delivery_failed")  # a kind the target does not take
    for hours in (2, 3, 26):
        clock.current = START + timedelta(hours=hours)
        assert await round_(store, clock, targets) == []
    assert smtp_sink.messages == []
    assert store.list_audit(action=AuditAction.ALERT_NOTIFIED) == []


async def test_the_digest_hour_is_in_the_targets_time_zone(
    store: SqlStore, clock: ManualClock, smtp_sink: SmtpSink
) -> None:
    # 08:00 in New York is 13:00 UTC in December.
    targets = [("ny", digest_mail(smtp_sink, digest_timezone="America/New_York"))]
    raise_(store, AlertSeverity.WARNING, "delivery_failed")
    clock.current = datetime(2026, 12, 3, 12, 59, tzinfo=UTC)
    assert await round_(store, clock, targets) == []
    clock.current = datetime(2026, 12, 3, 13, 0, 30, tzinfo=UTC)
    (sent,) = await round_(store, clock, targets)
    assert sent.ok and sent.subject == "digest:2026-12-03T13:00:00+00:00"


async def test_a_failed_digest_is_retried_later_and_shows_failing(
    store: SqlStore, clock: ManualClock, smtp_sink: SmtpSink, webhook_sink: WebhookSink
) -> None:
    hook = AppriseTarget.model_validate(
        {"type": "apprise", "urls": [{"env": "HOOK_URL"}], "digest": "daily"}
    )
    targets = [("daily", digest_mail(smtp_sink)), ("chat", hook)]
    raise_(store, AlertSeverity.WARNING, "delivery_failed")
    webhook_sink.status = 500
    clock.current = START + timedelta(hours=2, minutes=1)
    sent = await round_(store, clock, targets)
    assert sorted((s.target, s.ok) for s in sent) == [("chat", False), ("daily", True)]
    (failing,) = Notifier(store, targets, now=clock.now()).failing()
    assert failing.target == "chat" and failing.failures == 1
    # Not again at once; after the pause, it goes, and the mail target is not sent twice.
    clock.current += timedelta(seconds=5)
    assert await round_(store, clock, targets) == []
    webhook_sink.status = 200
    clock.current += timedelta(minutes=2)
    (again,) = await round_(store, clock, targets)
    assert (again.target, again.ok) == ("chat", True)
    assert len(smtp_sink.messages) == 1 and len(webhook_sink.posts) == 2
    assert Notifier(store, targets, now=clock.now()).failing() == []


@pytest.fixture(autouse=True)
def hook_url(monkeypatch: pytest.MonkeyPatch, webhook_sink: WebhookSink) -> None:
    monkeypatch.setenv("HOOK_URL", f"json://127.0.0.1:{webhook_sink.port}/hook")


async def test_digest_now_sends_before_the_hour_and_the_hour_then_skips_it(
    store: SqlStore, clock: ManualClock, smtp_sink: SmtpSink
) -> None:
    targets = [("daily", digest_mail(smtp_sink))]
    raise_(store, AlertSeverity.WARNING, "delivery_failed")
    clock.current = START + timedelta(minutes=10)
    (sent,) = await Notifier(store, targets, now=clock.now()).send_digests(now=True)
    assert sent.ok and sent.alerts == 1
    # Nothing new since: the 08:00 digest has nothing to say.
    clock.current = START + timedelta(hours=2, minutes=1)
    assert await round_(store, clock, targets) == []
    assert len(smtp_sink.messages) == 1
    assert await Notifier(store, targets, now=clock.now()).send_digests(now=True) == []


async def test_an_apprise_json_url_reaches_the_receiver(
    store: SqlStore, webhook_sink: WebhookSink
) -> None:
    target = AppriseTarget.model_validate({"type": "apprise", "urls": [{"env": "HOOK_URL"}]})
    alert_id = raise_(store, AlertSeverity.CRITICAL, "host_key_mismatch")
    (sent,) = await Notifier(store, [("teams", target)]).send_due()
    assert sent.ok and sent.subject == f"alert:{alert_id}"
    (post,) = webhook_sink.posts
    assert post.path == "/hook"
    assert post.json["type"] == "failure"  # critical
    assert "host_key_mismatch" in post.json["title"]
    assert f"alerts ack {alert_id}" in post.json["message"]
    assert await Notifier(store, [("teams", target)]).send_due() == []


async def test_an_apprise_form_url_and_a_failing_one(
    store: SqlStore, webhook_sink: WebhookSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORM_URL", f"form://127.0.0.1:{webhook_sink.port}/form")
    monkeypatch.setenv("DEAD_URL", "json://127.0.0.1:9/nobody")
    form = AppriseTarget.model_validate({"type": "apprise", "urls": [{"env": "FORM_URL"}]})
    both = AppriseTarget.model_validate(
        {"type": "apprise", "urls": [{"env": "FORM_URL"}, {"env": "DEAD_URL"}]}
    )
    raise_(store, AlertSeverity.WARNING, "delivery_failed")
    sent = await Notifier(store, [("form", form), ("half-dead", both)]).send_due()
    assert [(s.target, s.ok) for s in sent] == [("form", True), ("half-dead", False)]
    assert "JSON failed" in (sent[1].error or "")
    fields = parse_qs(webhook_sink.posts[0].body.decode())
    assert fields["type"] == ["warning"] and "delivery_failed" in fields["title"][0]


async def test_an_apprise_mailto_url_reaches_the_smtp_server(
    store: SqlStore, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "MAIL_URL",
        f"mailto://127.0.0.1:{smtp_sink.port}?smtp=127.0.0.1&mode=insecure"
        "&from=sftp@press.example&to=ops@press.example",
    )
    target = AppriseTarget.model_validate({"type": "apprise", "urls": [{"env": "MAIL_URL"}]})
    raise_(store, AlertSeverity.WARNING, "delivery_failed")
    (sent,) = await Notifier(store, [("mail", target)]).send_due()
    assert sent.ok, sent.error
    (mail,) = smtp_sink.messages
    assert "delivery_failed" in mail["Subject"]


async def test_an_unknown_apprise_url_is_a_failure_in_words(store: SqlStore) -> None:
    target = AppriseTarget.model_validate({"type": "apprise", "urls": [{"env": "BAD_URL"}]})
    raise_(store, AlertSeverity.WARNING, "delivery_failed")
    (sent,) = await Notifier(store, [("bad", target)]).send_due()
    assert not sent.ok and "URL number 1" in (sent.error or "")
    assert "nosuchservice" not in (sent.error or "")  # the URL (a secret) is not repeated


@pytest.fixture(autouse=True)
def bad_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAD_URL", "nosuchservice://token@host")


def test_apprise_urls_must_be_secret_references_and_zones_known() -> None:
    with pytest.raises(ValidationError, match="reference"):
        AppriseTarget.model_validate({"type": "apprise", "urls": ["json://host/x"]})
    with pytest.raises(ValidationError, match="time zone"):
        EmailTarget.model_validate(
            {
                "type": "email",
                "smtp_host": "h",
                "sender": "a@b.c",
                "recipients": ["x@y.z"],
                "digest": "daily",
                "digest_timezone": "Mars/Olympus",
            }
        )
    target = AppriseTarget.model_validate({"type": "apprise", "urls": [{"env": "HOOK_URL"}]})
    assert target_name(target, 0) == "apprise-1"


async def test_a_webhook_digest_is_json_with_counts_and_signed(
    store: SqlStore, clock: ManualClock, webhook_sink: WebhookSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    hook = WebhookTarget.model_validate(
        {
            "type": "webhook",
            "url": webhook_sink.url,
            "secret": {"env": "HOOK_SECRET"},
            "digest": "daily",
            "digest_at": "07:30",
        }
    )
    ids = [raise_(store, AlertSeverity.WARNING, "delivery_failed") for _ in range(2)]
    key = raise_(store, AlertSeverity.CRITICAL, "host_key_mismatch")
    clock.current = START + timedelta(hours=1, minutes=31)
    (sent,) = await round_(store, clock, [("hook", hook)])
    assert sent.ok and sent.alerts == 3
    (post,) = webhook_sink.posts
    assert post.signature_ok()
    data = post.json
    assert data["digest"] is True and data["count"] == 3 and data["severity"] == "critical"
    assert data["counts"] == [
        {"severity": "critical", "kind": "host_key_mismatch", "count": 1},
        {"severity": "warning", "kind": "delivery_failed", "count": 2},
    ]
    assert [a["id"] for a in data["alerts"]] == [key, *ids]
    assert data["until"] == "2026-12-03T07:30:00+00:00"
