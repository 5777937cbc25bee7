"""The console's acts beside the pages' first slice, on a real project (``init`` with free ports:
nothing listens where its partners and Consonance are): "run now" on the flows page, "send a
test file" on the partners page, and on the overview a failing notification target and a "send
test notification" button per target for admins (one real webhook receiver, one dead port)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from fastapi.testclient import TestClient

from consonance_sftp.app import App
from consonance_sftp.app.notify import Notifier
from consonance_sftp.config.starter import CONFIG_NAME, init_project
from consonance_sftp.models import Alert, AlertSeverity
from consonance_sftp.web.app import create_app
from consonance_sftp.web.auth import LoginThrottle
from tests.cli import free_port
from tests.web.conftest import PASSWORDS, login, run_cli

ADMIN_PASSWORD = "admin-password-1"


class _Receiver(BaseHTTPRequestHandler):
    posts: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        _Receiver.posts.append(self.rfile.read(size))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@dataclass
class Acts:
    config: Path
    app: App
    receiver: list[bytes]


@pytest.fixture(scope="module")
def acts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Acts]:
    folder = tmp_path_factory.mktemp("acts")
    init_project(folder, sftp_port=free_port(), api_port=free_port())
    config = folder / CONFIG_NAME
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config.write_text(
        config.read_text()
        + f"""
[[notifications]]
type = "webhook"
name = "chat"
url = "http://127.0.0.1:{server.server_address[1]}/hook"

[[notifications]]
type = "webhook"
name = "dead-hook"
url = "http://127.0.0.1:{free_port()}/hook"
"""
    )
    users = {"vera": "viewer", "otto": "operator", "adam": "admin"}
    for name, role in users.items():
        password = ADMIN_PASSWORD if name == "adam" else PASSWORDS[name]
        done = run_cli(config, "users", "add", name, "--role", role, stdin=password + "\n")
        assert done.returncode == 0, done.stdout + done.stderr
    app = App.from_config(config)
    app.store.raise_alert(
        Alert(severity=AlertSeverity.CRITICAL, kind="delivery_failed", message="it failed")
    )
    sent = asyncio.run(Notifier(app.store, app.settings.sent_targets()).send_due())
    assert {(s.target, s.ok) for s in sent} == {("chat", True), ("dead-hook", False)}
    yield Acts(config, app, _Receiver.posts)
    server.shutdown()
    app.store.close()


@pytest.fixture
def web(acts: Acts) -> Iterator[TestClient]:
    console = create_app(acts.app, secure_cookies=False, throttle=LoginThrottle())
    with TestClient(console, base_url="http://testserver", follow_redirects=False) as c:
        yield c


def _login_admin(client: TestClient) -> str:
    return login(client, "adam", ADMIN_PASSWORD)


@pytest.mark.parametrize(
    ("path", "form", "needed"),
    [
        ("/flows/run", {"flow": "print-files"}, "operator"),
        ("/partners/test", {"partner": "printer"}, "operator"),
        ("/notify/test", {"target": "chat"}, "admin"),
    ],
)
def test_the_new_acts_refuse_anonymous_viewers_and_lower_roles(
    web: TestClient, path: str, form: dict[str, str], needed: str
) -> None:
    assert web.post(path, data={**form, "csrf_token": "guess"}).status_code == 401
    csrf = login(web, "vera")
    assert web.post(path, data=form).status_code == 403  # no CSRF token
    viewer = web.post(path, data={**form, "csrf_token": csrf})
    assert viewer.status_code == 403 and needed in viewer.text
    if needed == "admin":
        web.cookies.clear()
        csrf = login(web, "otto")
        operator = web.post(path, data={**form, "csrf_token": csrf})
        assert operator.status_code == 403 and "admin" in operator.text


def test_the_buttons_show_by_role(web: TestClient) -> None:
    login(web, "vera")
    assert "Run now" not in web.get("/flows").text
    assert "Send a test file" not in web.get("/partners").text
    assert "Send test notification" not in web.get("/").text
    web.cookies.clear()
    login(web, "otto")
    assert "Run now" in web.get("/flows").text
    assert "Send a test file" in web.get("/partners").text
    assert "Send test notification" not in web.get("/").text
    web.cookies.clear()
    _login_admin(web)
    assert web.get("/").text.count("Send test notification") == 2


def test_the_overview_shows_the_failing_notification_target(web: TestClient) -> None:
    login(web, "vera")
    page = web.get("/").text
    assert "Notification target <strong>dead-hook</strong> is failing" in page
    assert "Notification target <strong>chat</strong>" not in page  # it works


def test_an_admin_sends_a_test_notification(web: TestClient, acts: Acts) -> None:
    before = len(acts.receiver)
    csrf = _login_admin(web)
    done = web.post("/notify/test", data={"target": "chat", "csrf_token": csrf})
    assert done.status_code == 200, done.text
    assert "Test notification sent to chat." in done.text
    assert len(acts.receiver) == before + 1
    dead = web.post("/notify/test", data={"target": "dead-hook", "csrf_token": csrf})
    assert dead.status_code == 409 and "test notification to dead-hook failed" in dead.text
    trail = acts.app.store.list_audit(subject="notification-test:dead-hook", limit=1)
    assert trail and trail[0].action == "alert.notify_failed"
    unknown = web.post("/notify/test", data={"target": "nope", "csrf_token": csrf})
    assert unknown.status_code == 409 and "no notification target" in unknown.text


def test_run_now_without_a_service_says_how(web: TestClient) -> None:
    csrf = login(web, "otto")
    done = web.post("/flows/run", data={"flow": "print-files", "csrf_token": csrf})
    assert done.status_code == 409
    assert "no service is running" in done.text and "consonance-sftp run print-files" in done.text
    assert web.post("/flows/run", data={"flow": "nope", "csrf_token": csrf}).status_code == 404


def test_a_test_file_to_an_unreachable_partner_is_an_error_on_the_trail(
    web: TestClient, acts: Acts
) -> None:
    csrf = login(web, "otto")
    done = web.post("/partners/test", data={"partner": "printer", "csrf_token": csrf})
    assert done.status_code == 200
    assert "test file to printer failed" in done.text
    event = acts.app.store.list_audit(action="partner.test_file", limit=1)[0]
    assert event.actor == "user:otto" and event.subject == "partner:printer"
    assert event.details.get("error")
