"""Alerts reach people: e-mailed to a real SMTP server (aiosmtpd) and POSTed, signed, to a real
HTTP receiver that checks the signature with its own code; once per alert and target, routed by
severity and kind, a failing target retried later without holding up the others."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from consonance_sftp.adapters.store import open_store
from consonance_sftp.adapters.store.sql_store import SqlStore
from consonance_sftp.app.notify import Notifier, notifier_loop
from consonance_sftp.config.settings import EmailTarget, WebhookTarget
from consonance_sftp.models import Alert, AlertSeverity, AuditAction
from tests.fixtures.notify_sinks import SECRET, SmtpSink, WebhookSink


@pytest.fixture(autouse=True)
def hook_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    st = open_store(f"sqlite:///{tmp_path}/store.db")
    try:
        yield st
    finally:
        st.close()


def email_target(sink: SmtpSink, **extra: Any) -> EmailTarget:
    return EmailTarget.model_validate(
        {
            "type": "email",
            "smtp_host": "127.0.0.1",
            "smtp_port": sink.port,
            "starttls": False,
            "sender": "sftp@press.example",
            "recipients": ["ops@press.example", "prod@press.example"],
            **extra,
        }
    )


def webhook_target(sink: WebhookSink, **extra: Any) -> WebhookTarget:
    return WebhookTarget.model_validate(
        {"type": "webhook", "url": sink.url, "secret": {"env": "HOOK_SECRET"}, **extra}
    )


def failed_delivery(store: SqlStore, partner: str = "printer") -> int:
    record = store.raise_alert(
        Alert(
            severity=AlertSeverity.WARNING,
            kind="delivery_failed",
            message=f"delivery of 9781900200011 production to partner '{partner}' failed",
            partner=partner,
            flow="print-files",
            details={"workflow_id": "dlv-printer-1-g0"},
        )
    )
    return record.id


async def test_an_alert_is_emailed_and_posted_signed_exactly_once(
    store: SqlStore, smtp_sink: SmtpSink, webhook_sink: WebhookSink
) -> None:
    alert_id = failed_delivery(store)
    targets = [("ops-mail", email_target(smtp_sink)), ("chat", webhook_target(webhook_sink))]
    sent = await Notifier(store, targets).send_due()
    assert sorted((s.target, s.ok) for s in sent) == [("chat", True), ("ops-mail", True)]

    (mail,) = smtp_sink.messages
    assert mail["To"] == "ops@press.example, prod@press.example"
    assert "delivery_failed" in mail["Subject"] and "printer" in mail["Subject"]
    body = mail.get_content()
    assert "partner 'printer' failed" in body and f"alerts ack {alert_id}" in body
    (post,) = webhook_sink.posts
    assert post.signature_ok()
    assert not post.signature_ok(secret="another-secret")
    assert post.json["id"] == alert_id and post.json["kind"] == "delivery_failed"
    assert post.json["details"] == {"workflow_id": "dlv-printer-1-g0"}

    # Told once: nothing more is due, however often the sender runs.
    assert await Notifier(store, targets).send_due() == []
    assert len(smtp_sink.messages) == 1 and len(webhook_sink.posts) == 1
    told = store.list_audit(action=AuditAction.ALERT_NOTIFIED)
    assert sorted(e.details["target"] for e in told) == ["chat", "ops-mail"]
    assert {e.subject for e in told} == {f"alert:{alert_id}"}


async def test_targets_get_only_the_severities_and_kinds_they_asked_for(
    store: SqlStore, smtp_sink: SmtpSink, webhook_sink: WebhookSink
) -> None:
    store.raise_alert(Alert(severity=AlertSeverity.INFO, kind="note", message="fyi"))
    failed_delivery(store)
    key = store.raise_alert(
        Alert(
            severity=AlertSeverity.CRITICAL,
            kind="host_key_mismatch",
            message="host key changed",
            partner="printer",
        )
    )
    targets = [
        ("everything-warning", email_target(smtp_sink)),
        ("keys-only", webhook_target(webhook_sink, kinds=["host_key_mismatch"])),
    ]
    await Notifier(store, targets).send_due()
    assert sorted(m["Subject"].split(": ")[1].split(" ")[0] for m in smtp_sink.messages) == [
        "delivery_failed",
        "host_key_mismatch",
    ]
    assert [p.json["id"] for p in webhook_sink.posts] == [key.id]


async def test_an_acknowledged_alert_is_not_sent(store: SqlStore, smtp_sink: SmtpSink) -> None:
    store.acknowledge_alert(failed_delivery(store), "dana")
    assert await Notifier(store, [("mail", email_target(smtp_sink))]).send_due() == []
    assert smtp_sink.messages == []


async def test_a_failing_target_is_tried_again_later_and_never_holds_up_another(
    store: SqlStore, smtp_sink: SmtpSink, webhook_sink: WebhookSink
) -> None:
    failed_delivery(store)
    webhook_sink.status = 500
    targets = [("mail", email_target(smtp_sink)), ("chat", webhook_target(webhook_sink))]
    first = await Notifier(store, targets).send_due()
    assert {(s.target, s.ok) for s in first} == {("mail", True), ("chat", False)}
    assert "HTTP 500" in next(s.error or "" for s in first if s.target == "chat")
    assert len(smtp_sink.messages) == 1

    (failing,) = Notifier(store, targets).failing()
    assert failing.target == "chat" and failing.failures == 1 and "HTTP 500" in failing.error
    assert webhook_sink.url.split("/", 3)[3] not in failing.error  # the path may be a key
    # Not again at once: it waits before the next try.
    assert await Notifier(store, targets).send_due() == []
    webhook_sink.status = 204
    later = datetime.now(UTC) + timedelta(minutes=2)
    again = await Notifier(store, targets, now=later).send_due()
    assert [(s.target, s.ok) for s in again] == [("chat", True)]
    assert len(webhook_sink.posts) == 2 and webhook_sink.posts[-1].signature_ok()
    assert len(smtp_sink.messages) == 1
    assert Notifier(store, targets).failing() == []


async def test_a_target_nobody_answers_is_recorded_failing(store: SqlStore) -> None:
    failed_delivery(store)
    dead = WebhookTarget.model_validate({"type": "webhook", "url": "http://127.0.0.1:9/hook"})
    (sent,) = await Notifier(store, [("dead", dead)]).send_due()
    assert not sent.ok and "Connect" in (sent.error or "")
    (event,) = store.list_audit(action=AuditAction.ALERT_NOTIFY_FAILED)
    assert event.details["target"] == "dead" and event.details["error"] == sent.error


async def test_a_test_notification_reaches_every_target(
    store: SqlStore, smtp_sink: SmtpSink, webhook_sink: WebhookSink
) -> None:
    targets = [
        ("mail", email_target(smtp_sink)),
        ("slack", webhook_target(webhook_sink, format="slack")),
    ]
    sent = await Notifier(store, targets).send_test()
    assert [(s.target, s.ok) for s in sent] == [("mail", True), ("slack", True)]
    assert "test" in smtp_sink.messages[0]["Subject"]
    (post,) = webhook_sink.posts
    assert "this target works" in post.json["text"] and post.signature_ok()
    # A test is no alert: nothing open was marked as told.
    subjects = {e.subject for e in store.list_audit(action=AuditAction.ALERT_NOTIFIED)}
    assert subjects == {"notification-test:mail", "notification-test:slack"}


async def test_serve_sends_what_is_due_on_its_own(store: SqlStore, smtp_sink: SmtpSink) -> None:
    settings = SimpleNamespace(sent_targets=lambda: [("mail", email_target(smtp_sink))])
    app = SimpleNamespace(settings=settings, store=store)
    stop = asyncio.Event()
    loop = asyncio.create_task(notifier_loop(stop, cast(Any, app), interval_s=0.05))
    try:
        failed_delivery(store)
        for _ in range(100):
            if smtp_sink.messages:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # a few more rounds: still one message
        assert len(smtp_sink.messages) == 1
    finally:
        stop.set()
        await asyncio.wait_for(loop, 5)
