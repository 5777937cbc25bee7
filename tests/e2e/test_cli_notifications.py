"""A delivery that fails for good, after its last retry, reaches people exactly once: one e-mail
to a real SMTP server and one signed webhook to a real receiver (``alerts notify``, which
``serve`` does by itself), then a test notification on demand."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from consonance_sftp.config.starter import CONFIG_NAME, init_project
from tests.cli import cli, free_port, running_sandbox
from tests.e2e.test_cli_service import _printable_titles
from tests.fixtures.notify_sinks import SECRET, SmtpSink, WebhookSink

pytestmark = pytest.mark.slow


def test_a_final_delivery_failure_sends_one_email_and_one_signed_webhook(
    tmp_path: Path,
    smtp_sink: SmtpSink,
    webhook_sink: WebhookSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    init_project(tmp_path, sftp_port=free_port(), api_port=free_port())
    config = tmp_path / CONFIG_NAME
    with config.open("a") as f:
        f.write(
            "\n[engine]\nretry_max_attempts = 3\nretry_initial_interval_s = 0.2\n"
            f"""
[[notifications]]
type = "email"
name = "production-desk"
smtp_host = "127.0.0.1"
smtp_port = {smtp_sink.port}
starttls = false
sender = "sftp@press.example"
recipients = ["production@press.example"]

[[notifications]]
type = "webhook"
name = "ops-chat"
url = "{webhook_sink.url}"
secret = {{env = "HOOK_SECRET"}}
"""
        )
    with running_sandbox(config, tmp_path):
        _work, isbn = _printable_titles(config)[0]
        blocker = tmp_path / "var" / "sandbox" / "sftp" / "printer" / "in" / isbn
        blocker.parent.mkdir(parents=True, exist_ok=True)
        blocker.write_text("not a folder")  # the printer's folder cannot be made
        failed = cli(config, "run", "print-files", "--isbn", isbn)
        assert failed.returncode == 1, failed.stdout + failed.stderr

        sent = cli(config, "alerts", "notify")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "production-desk: alert" in sent.stdout and "ops-chat: alert" in sent.stdout
        again = cli(config, "alerts", "notify")
        assert "nothing to send" in again.stdout

        # Three attempts, one incident: one message each way.
        (mail,) = smtp_sink.messages
        assert "delivery_failed" in mail["Subject"] and "printer" in mail["Subject"]
        assert isbn in mail.get_content()
        (post,) = webhook_sink.posts
        assert post.signature_ok()
        assert post.json["kind"] == "delivery_failed" and isbn in post.json["message"]

        tested = cli(config, "alerts", "notify", "--test", "--target", "ops-chat")
        assert tested.returncode == 0 and "ops-chat: test notification sent" in tested.stdout
        assert len(webhook_sink.posts) == 2 and webhook_sink.posts[1].json["test"] is True
        assert len(smtp_sink.messages) == 1

        # The receiver goes down; the same delivery fails again on retry: a second incident,
        # e-mailed, and the webhook's failure shows in status and on the command's exit code.
        webhook_sink.status = 500
        workflow_id = re.search(r"failed (dlv-\S+):", failed.stdout)
        assert workflow_id, failed.stdout
        retried = cli(config, "retry", workflow_id.group(1))
        assert retried.returncode == 1, retried.stdout + retried.stderr
        broken = cli(config, "alerts", "notify")
        assert broken.returncode == 1 and "ops-chat: alert" in broken.stdout
        assert "FAILED: HTTP 500" in broken.stdout
        assert len(smtp_sink.messages) == 2
        status = cli(config, "status").stdout
        assert "notifications: ops-chat failing since" in status and "HTTP 500" in status
        unknown = cli(config, "alerts", "notify", "--target", "nobody")
        assert unknown.returncode == 1 and "production-desk, ops-chat" in unknown.stdout
        listed = json.loads(cli(config, "alerts", "list", "--json").stdout)
        assert [a["kind"] for a in listed] == ["delivery_failed", "delivery_failed"]
