"""``alerts notify --digest``: a digest target (e-mail) and an Apprise digest target (a
``json://`` URL from the environment) get no per-alert message; the digest goes out on demand,
once, to a real SMTP server and a real HTTP receiver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consonance_sftp.app import App
from consonance_sftp.config.starter import CONFIG_NAME, init_project
from consonance_sftp.models import Alert, AlertSeverity
from tests.cli import cli, free_port
from tests.fixtures.notify_sinks import SmtpSink, WebhookSink

pytestmark = pytest.mark.slow


def test_alerts_notify_digest_sends_each_digest_once(
    tmp_path: Path,
    smtp_sink: SmtpSink,
    webhook_sink: WebhookSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHAT_URL", f"json://127.0.0.1:{webhook_sink.port}/digest")
    init_project(tmp_path, sftp_port=free_port(), api_port=free_port())
    config = tmp_path / CONFIG_NAME
    hour = (datetime.now(UTC) + timedelta(hours=6)).strftime("%H:%M")  # not due by itself
    with config.open("a") as f:
        f.write(
            f"""
[[notifications]]
type = "email"
name = "morning-mail"
smtp_host = "127.0.0.1"
smtp_port = {smtp_sink.port}
starttls = false
sender = "sftp@press.example"
recipients = ["production@press.example"]
digest = "daily"
digest_at = "{hour}"

[[notifications]]
type = "apprise"
name = "chat"
urls = [{{env = "CHAT_URL"}}]
digest = "daily"
digest_at = "{hour}"
"""
        )
    empty = cli(config, "alerts", "notify", "--digest")
    assert empty.returncode == 0 and "no alert since the last digest" in empty.stdout

    app = App.from_config(config)
    for partner in ("printer", "retailer"):
        app.store.raise_alert(
            Alert(
                severity=AlertSeverity.WARNING,
                kind="delivery_failed",
                message=f"delivery to partner '{partner}' failed",
                partner=partner,
            )
        )

    # Digest targets get no message per alert, and the digest's hour has not come.
    plain = cli(config, "alerts", "notify")
    assert plain.returncode == 0 and "nothing to send" in plain.stdout, plain.stdout
    assert smtp_sink.messages == [] and webhook_sink.posts == []

    sent = cli(config, "alerts", "notify", "--digest")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "morning-mail: digest of 2 alerts sent" in sent.stdout
    assert "chat: digest of 2 alerts sent" in sent.stdout
    (mail,) = smtp_sink.messages
    assert "2 alerts (2 warning)" in mail["Subject"]
    assert "warning delivery_failed: 2" in mail.get_content()
    (post,) = webhook_sink.posts
    assert post.path == "/digest" and "partner 'retailer' failed" in post.json["message"]

    again = cli(config, "alerts", "notify", "--digest")
    assert "no alert since the last digest" in again.stdout
    assert len(smtp_sink.messages) == 1 and len(webhook_sink.posts) == 1
