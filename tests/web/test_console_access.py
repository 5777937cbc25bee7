"""The console's access control beyond a login, against the real app on a real SQLite store:
API tokens that expire (and say so) and die with their user's password, a disabled or removed
user locked out of pages, API and tokens alike (all on the audit trail), login throttling
shared by two console apps on one database, and ``/metrics`` on the console for an API token
only, clean under ``promtool check metrics``."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from consonance_sftp.app import App
from consonance_sftp.web.app import create_app
from consonance_sftp.web.auth import LoginThrottle
from tests.web.conftest import ISBN, Project, login, run_cli

PASSWORD = "pat-password-one"
NEW_PASSWORD = "pat-password-two"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token(project: Project, name: str, *args: str) -> str:
    made = run_cli(project.config, "users", "token", name, *args)
    assert made.returncode == 0, made.stdout + made.stderr
    return made.stdout.strip().splitlines()[-1]


def _add(project: Project, name: str, role: str = "operator") -> None:
    done = run_cli(project.config, "users", "add", name, "--role", role, stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def web(project: Project) -> Iterator[TestClient]:
    app = create_app(project.app, secure_cookies=False, metrics_cache=0)
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as c:
        yield c


# --- tokens expire ---------------------------------------------------------------------------


def test_a_token_expires_by_default_and_never_only_when_asked(project: Project) -> None:
    _token(project, "vera", "--label", "default-life")
    _token(project, "vera", "--label", "forever", "--expires-in", "never")
    _token(project, "vera", "--label", "two-weeks", "--expires-in", "2w")
    tokens = {t.label: t for t in project.app.store.list_api_tokens("vera")}
    now = datetime.now(UTC)
    default = tokens["default-life"].expires_at
    assert default is not None
    assert abs(default - (now + timedelta(days=90))) < timedelta(minutes=5)
    assert tokens["forever"].expires_at is None
    two = tokens["two-weeks"].expires_at
    assert two is not None and abs(two - (now + timedelta(weeks=2))) < timedelta(minutes=5)
    listed = run_cli(project.config, "users", "tokens", "vera")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "default-life" in line)
    assert f"{default:%Y-%m-%d}" in row and "live" in row
    assert "never" in next(line for line in listed.stdout.splitlines() if "forever" in line)
    for wrong in ("0d", "forever", "off", "6000d"):
        refused = run_cli(project.config, "users", "token", "vera", "--expires-in", wrong)
        assert refused.returncode == 1, wrong
        assert "csftp_" not in refused.stdout
    added = [
        e.details
        for e in project.app.store.list_audit(subject="user:vera")
        if e.action == "user.token_added"
    ]
    assert any(d.get("expires_at") is None and d["label"] == "forever" for d in added)


def test_an_expired_token_is_refused_saying_so(project: Project, web: TestClient) -> None:
    token = _token(project, "vera", "--label", "brief", "--expires-in", "2s")
    assert web.get("/api/flows", headers=bearer(token)).status_code == 200
    time.sleep(2.5)
    refused = web.get("/api/flows", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert "expired on" in refused.json()["detail"]
    assert "users token vera" in refused.json()["detail"]
    scrape = web.get("/metrics", headers=bearer(token))
    assert scrape.status_code == 401 and "expired on" in scrape.text
    listed = run_cli(project.config, "users", "tokens", "vera", "--json")
    states = {t["label"]: t["state"] for t in json.loads(listed.stdout)}
    assert states["brief"] == "expired"


# --- a new password, a disabled or removed user ---------------------------------------------


def test_a_new_password_revokes_tokens_and_closes_sessions(
    project: Project, web: TestClient
) -> None:
    _add(project, "pat")
    token = _token(project, "pat", "--label", "script")
    login(web, "pat", PASSWORD)
    assert web.get("/").status_code == 200
    assert web.get("/api/flows", headers=bearer(token)).status_code == 200

    changed = run_cli(project.config, "users", "passwd", "pat", stdin=NEW_PASSWORD + "\n")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "sessions closed: 1" in changed.stdout

    assert web.get("/").status_code == 303  # the session is gone: back to the login form
    assert web.get("/api/flows", headers=bearer(token)).status_code == 401
    [record] = project.app.store.list_api_tokens("pat")
    assert record.revoked_why == "password changed"
    [event] = [
        e for e in project.app.store.list_audit(subject="user:pat") if e.action.startswith("user.p")
    ]
    assert event.action == "user.password_changed"
    assert event.details == {"tokens_revoked": [record.id], "sessions_closed": 1}
    [listed] = json.loads(run_cli(project.config, "users", "tokens", "pat", "--json").stdout)
    assert (listed["state"], listed["revoked_why"]) == ("revoked", "password changed")
    login(web, "pat", NEW_PASSWORD)  # the new password works


def test_a_replaced_user_loses_its_tokens_too(project: Project, web: TestClient) -> None:
    _add(project, "rex")
    token = _token(project, "rex")
    again = run_cli(
        project.config, "users", "add", "rex", "--role", "viewer", "--replace", stdin="x" * 12
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert web.get("/api/flows", headers=bearer(token)).status_code == 401
    event = next(
        e for e in project.app.store.list_audit(subject="user:rex") if e.action == "user.added"
    )
    assert event.details["replaced"] is True and len(event.details["tokens_revoked"]) == 1


def test_a_disabled_user_cannot_log_in_and_its_tokens_die(
    project: Project, web: TestClient
) -> None:
    _add(project, "dora")
    token = _token(project, "dora", "--expires-in", "never")
    login(web, "dora", PASSWORD)
    done = run_cli(project.config, "users", "disable", "dora", "--reason", "left the company")
    assert done.returncode == 0, done.stdout + done.stderr
    assert web.get("/").status_code == 303
    assert web.get("/api/flows", headers=bearer(token)).status_code == 401
    assert web.get("/metrics", headers=bearer(token)).status_code == 401
    # the right password no longer logs in; the page says no more than for a wrong one
    form = web.get("/login")
    csrf = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    refused = web.post(
        "/login", data={"username": "dora", "password": PASSWORD, "csrf_token": csrf}
    )
    assert refused.status_code == 401
    assert "Wrong user name or password." in refused.text
    trail = project.app.store.list_audit(subject="user:dora")
    assert any(
        e.action == "user.login_refused" and e.details["why"] == "user disabled" for e in trail
    )
    disabled = next(e for e in trail if e.action == "user.disabled")
    assert disabled.details["reason"] == "left the company"
    assert disabled.details["sessions_closed"] == 1 and len(disabled.details["tokens_revoked"]) == 1
    listed = run_cli(project.config, "users", "list", "--json").stdout
    assert '"disabled_at": null' in listed and '"name": "dora"' in listed
    assert run_cli(project.config, "users", "token", "dora").returncode == 1  # none for it

    assert run_cli(project.config, "users", "enable", "dora").returncode == 0
    login(web, "dora", PASSWORD)
    assert web.get("/api/flows", headers=bearer(token)).status_code == 401  # still revoked

    removed = run_cli(project.config, "users", "remove", "dora")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert web.get("/").status_code == 303
    assert project.app.store.get_console_user("dora") is None
    actions = [e.action for e in project.app.store.list_audit(subject="user:dora", limit=3)]
    assert actions[0] == "user.removed"


# --- login throttling shared by two console processes ---------------------------------------


def _attempt(client: TestClient, name: str, password: str) -> int:
    form = client.get("/login")
    csrf = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    return client.post(
        "/login", data={"username": name, "password": password, "csrf_token": csrf}
    ).status_code


def _limits() -> LoginThrottle:
    """Each console its own throttle object, as each process has: only the database is shared."""
    return LoginThrottle(per_user=4, per_client=1000)


def test_two_consoles_on_one_database_share_the_login_throttle(project: Project) -> None:
    _add(project, "tess")
    other = App.from_config(project.config)  # a second process's own store and engine
    try:
        with (
            TestClient(create_app(project.app, secure_cookies=False, throttle=_limits())) as one,
            TestClient(create_app(other, secure_cookies=False, throttle=_limits())) as two,
        ):
            one.follow_redirects = two.follow_redirects = False
            assert [_attempt(one, "tess", "wrong-password-x") for _ in range(2)] == [401, 401]
            assert [_attempt(two, "tess", "wrong-password-x") for _ in range(1)] == [401]
            # a success resets the user's count, wherever it happens
            assert _attempt(two, "tess", PASSWORD) == 303
            assert [_attempt(one, "tess", "wrong-password-x") for _ in range(3)] == [401] * 3
            assert _attempt(two, "tess", "wrong-password-x") == 401  # the fourth, on the other
            assert _attempt(one, "tess", PASSWORD) == 429  # throttled on both
            assert _attempt(two, "tess", PASSWORD) == 429
            assert _attempt(two, "tess", PASSWORD) == 429
    finally:
        other.store.close()
    throttled = [
        e
        for e in project.app.store.list_audit(subject="user:tess")
        if e.action == "user.login_refused" and e.details["why"] == "throttled"
    ]
    assert len(throttled) == 1  # noted once, though both consoles refused


# --- /metrics on the console ----------------------------------------------------------------


def test_metrics_on_the_console_need_a_token(project: Project, web: TestClient) -> None:
    anonymous = web.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert "consonance_sftp_" not in anonymous.text
    for wrong in ("csftp_made-up", "not-even-a-token", ""):
        refused = web.get("/metrics", headers={"Authorization": f"Bearer {wrong}"})
        assert refused.status_code == 401, wrong
    assert web.get("/metrics", headers={"Authorization": "Basic dmVyYTp4"}).status_code == 401

    token = _token(project, "vera", "--label", "prometheus")
    scraped = web.get("/metrics", headers=bearer(token))
    assert scraped.status_code == 200, scraped.text
    assert scraped.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    # the ledger's files now, by flow, partner and outcome, as the store holds them
    ledger: Counter[tuple[str, str, str]] = Counter(
        (r.flow, r.partner, str(r.outcome)) for r in project.app.store.list_deliveries()
    )
    shown = {
        (s.labels["flow"], s.labels["partner"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(scraped.text)
        for s in family.samples
        if s.name == "consonance_sftp_delivery_ledger_files"
    }
    assert ledger and shown == {k: float(n) for k, n in ledger.items()}
    assert ISBN not in scraped.text  # never an ISBN as a label
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's 'prometheus' (make system-deps does)"
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=scraped.text, capture_output=True, text=True
    )
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint

    login(web, "vera")  # a logged-in browser reads them too
    assert web.get("/metrics").status_code == 200
