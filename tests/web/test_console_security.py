"""The console's access rules against the real app on a real SQLite store: nothing readable or
doable without a login, a viewer cannot act, a form without its CSRF token is refused, the
session cookie's flags, login throttling, and hostile text shown escaped."""

from __future__ import annotations

import json

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from consonance_sftp.models import IntakeOutcome
from consonance_sftp.web.app import create_app
from consonance_sftp.web.auth import LoginThrottle
from tests.web.conftest import ISBN, OTHER_ISBN, PASSWORDS, PNG, Project, login, run_cli

PAGES = [
    "/",
    "/deliveries",
    f"/deliveries?isbn={ISBN}",
    f"/titles/{ISBN}",
    "/failures",
    "/alerts",
    "/quarantine",
    "/partners",
    "/flows",
    "/audit",
    "/audit?action=alert.acknowledged",
]
ACTIONS = {
    "/failures/retry": {"workflow_id": "dlv-printer-x"},
    "/failures/resend": {"workflow_id": "dlv-printer-x", "reason": "lost"},
    "/alerts/ack": {"alert_id": "1"},
    "/partners/pause": {"partner": "printer", "action": "pause"},
    "/partners/probe": {"partner": "printer"},
    "/quarantine/reject": {"intake_id": "1", "reason": "junk"},
    "/quarantine/assign": {"intake_id": "1", "isbn": ISBN, "kind": "cover"},
    "/audit/verify": {},
    "/flows/pause": {"flow": "print-files", "action": "pause"},
    "/flows/dry-run": {"flow": "print-files"},
    "/logout": {},
}


@pytest.mark.parametrize("path", PAGES)
def test_every_page_refuses_an_anonymous_request(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")
    assert ISBN not in response.text


@pytest.mark.parametrize("path", sorted(ACTIONS))
def test_every_action_refuses_an_anonymous_request(client: TestClient, path: str) -> None:
    response = client.post(path, data={**ACTIONS[path], "csrf_token": "guess"})
    assert response.status_code == 401


def test_every_route_refuses_an_anonymous_request(project: Project, client: TestClient) -> None:
    """Every route the console has (listed from the app, so a new one is covered): only the
    login form and the static files answer an anonymous request; a page redirects to the login
    form, an act, the JSON API and ``/metrics`` answer 401."""
    web = create_app(project.app, secure_cookies=False)
    seen = set()
    for route in web.state.all_routes:
        if not isinstance(route, APIRoute) or route.path == "/login":
            continue
        path = (
            route.path.replace("{isbn}", ISBN)
            .replace("{intake_id}", "1")
            .replace("{alert_id}", "1")
            .replace("{flow}", "print-files")
            .replace("{partner}", "printer")
            .replace("{target}", "ops")
        )
        for method in sorted(route.methods):
            response = client.request(method, path, data={"csrf_token": "guess"})
            if method == "GET" and not path.startswith(("/api/", "/metrics")):
                assert response.status_code == 303, (method, path)
                assert response.headers["location"].startswith("/login?next="), path
            else:
                assert response.status_code == 401, (method, path, response.text)
            assert ISBN not in response.text and "consonance_sftp_" not in response.text, path
            seen.add((method, route.path))
    assert {("GET", "/metrics"), ("GET", "/"), ("GET", "/api/flows")} <= seen
    metrics = client.get("/metrics")
    assert metrics.headers["WWW-Authenticate"] == "Bearer"


def test_a_forged_session_cookie_is_no_login(client: TestClient) -> None:
    client.cookies.set("consonance-session", "made-up-token")
    assert client.get("/").status_code == 303


def test_pages_after_login_show_the_ledger(client: TestClient) -> None:
    login(client, "vera")
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
    found = client.get(f"/deliveries?isbn={ISBN}")
    assert f"/in/{ISBN}_interior.pdf" in found.text
    assert OTHER_ISBN not in found.text  # the search filters
    timeline = client.get(f"/titles/{ISBN}").text
    assert "printer" in timeline and "distributor" in timeline


def test_a_viewer_cannot_act(project: Project, client: TestClient) -> None:
    csrf = login(client, "vera")
    before = project.app.store.list_alerts(unacknowledged=True)
    response = client.post(
        "/alerts/ack", data={"alert_id": str(project.alert_id), "csrf_token": csrf}
    )
    assert response.status_code == 403
    assert "operator role" in response.text
    assert project.app.store.list_alerts(unacknowledged=True) == before
    operator_only = ACTIONS.keys() - {"/logout", "/audit/verify", "/alerts/ack"}
    for path in sorted(operator_only):
        assert client.post(path, data={**ACTIONS[path], "csrf_token": csrf}).status_code == 403, (
            path
        )
    assert project.app.store.list_pauses() == [] or not any(
        p.paused for p in project.app.store.list_pauses()
    )
    # and the viewer's pages offer no buttons to act with
    assert "Acknowledge <span" not in client.get("/alerts").text


def test_a_form_without_its_csrf_token_is_refused(project: Project, client: TestClient) -> None:
    csrf = login(client, "otto")
    for token in (None, "", csrf[:-1] + ("A" if csrf[-1] != "A" else "B")):
        data = {"alert_id": str(project.alert_id)}
        if token is not None:
            data["csrf_token"] = token
        assert client.post("/alerts/ack", data=data).status_code == 403
    assert any(a.id == project.alert_id for a in project.app.store.list_alerts(unacknowledged=True))
    # the login form has a token of its own, paired with a cookie
    fresh = TestClient(client.app, follow_redirects=False)
    refused = fresh.post("/login", data={"username": "otto", "password": PASSWORDS["otto"]})
    assert refused.status_code == 403


def test_an_operator_acknowledges_an_alert_on_the_audit_trail(
    project: Project, client: TestClient
) -> None:
    store = project.app.store
    alert = store.raise_alert(
        __import__("consonance_sftp.models", fromlist=["Alert"]).Alert(
            severity=__import__(
                "consonance_sftp.models", fromlist=["AlertSeverity"]
            ).AlertSeverity.INFO,
            kind="test_ack",
            message="to acknowledge",
        )
    )
    csrf = login(client, "otto")
    response = client.post(
        "/alerts/ack", data={"alert_id": str(alert.id), "note": "seen", "csrf_token": csrf}
    )
    assert response.status_code == 200
    assert f"Alert {alert.id} acknowledged" in response.text
    acked = next(a for a in store.list_alerts() if a.id == alert.id)
    assert acked.acknowledged_by == "otto"
    events = [e for e in store.list_audit() if e.subject == f"alert:{alert.id}"]
    assert [(e.actor, e.action) for e in events] == [("user:otto", "alert.acknowledged")]


def test_a_resend_needs_a_reason(client: TestClient) -> None:
    csrf = login(client, "otto")
    response = client.post(
        "/failures/resend",
        data={"workflow_id": f"dlv-printer-{OTHER_ISBN}", "reason": "  ", "csrf_token": csrf},
    )
    assert response.status_code == 400
    assert "needs a reason" in response.text


def test_session_cookie_flags(project: Project) -> None:
    web = create_app(project.app, secure_cookies=True, throttle=LoginThrottle())
    with TestClient(web, base_url="https://testserver", follow_redirects=False) as c:
        form = c.get("/login")
        csrf = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        login_cookie = form.headers["set-cookie"]
        done = c.post(
            "/login", data={"username": "vera", "password": PASSWORDS["vera"], "csrf_token": csrf}
        )
    assert done.status_code == 303
    session = [
        h for h in done.headers.get_list("set-cookie") if h.startswith("__Host-consonance-session=")
    ]
    assert len(session) == 1
    flags = {part.strip().lower() for part in session[0].split(";")}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= flags
    assert not any(f.startswith("domain=") for f in flags)
    assert "httponly" in login_cookie.lower() and "samesite=strict" in login_cookie.lower()


def test_login_throttling_per_user_and_per_client(project: Project) -> None:
    web = create_app(
        project.app, secure_cookies=False, throttle=LoginThrottle(per_user=3, per_client=5)
    )
    with TestClient(web, follow_redirects=False) as c:

        def attempt(name: str, password: str) -> int:
            form = c.get("/login")
            csrf = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            return c.post(
                "/login", data={"username": name, "password": password, "csrf_token": csrf}
            ).status_code

        assert [attempt("otto", "wrong-password-x") for _ in range(3)] == [401, 401, 401]
        # the right password no longer helps: throttled, without a password check
        assert attempt("otto", PASSWORDS["otto"]) == 429
        # another user from the same client still gets in...
        assert attempt("vera", PASSWORDS["vera"]) == 303
        # ...until the client itself has failed too often (5 in all, whatever the names)
        assert [attempt(f"nobody{i}", "wrong-password-x") for i in range(2)] == [401, 401]
        assert attempt("vera", PASSWORDS["vera"]) == 429
        assert attempt("vera", PASSWORDS["vera"]) == 429
    refused = [e for e in project.app.store.list_audit() if e.action == "user.login_refused"]
    throttled = [e.subject for e in refused if e.details.get("why") == "throttled"]
    # each (user, client) throttled once on the trail, however often it tried
    assert sorted(throttled) == ["user:otto", "user:vera"]
    assert all(
        "password" not in str(e.details).lower() or "wrong name" in str(e.details) for e in refused
    )


def test_hostile_text_is_shown_escaped(project: Project, client: TestClient) -> None:
    login(client, "otto")
    for path in (
        f"/deliveries?isbn={OTHER_ISBN}",
        "/failures",
        "/alerts",
        f"/titles/{OTHER_ISBN}",
        "/",
        "/quarantine",
        "/audit",
    ):
        text = client.get(path).text
        assert "<script>alert(" not in text, path
        assert "<img src=x" not in text, path
    assert "&lt;script&gt;" in client.get("/failures").text
    assert "&lt;script&gt;" in client.get("/alerts").text
    assert "&lt;script&gt;" in client.get("/quarantine").text


def test_security_headers_and_no_open_redirect(client: TestClient) -> None:
    response = client.get("/login?next=//evil.example/")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert 'name="next" value="/"' in response.text


def test_users_list_shows_names_and_roles_never_hashes(project: Project) -> None:
    done = run_cli(project.config, "users", "list", "--json")
    assert done.returncode == 0, done.stderr
    users = {u["name"]: u["role"] for u in json.loads(done.stdout)}
    assert users == {"vera": "viewer", "otto": "operator"}
    assert "$2b$" not in done.stdout
    stored = project.app.store.get_console_user("otto")
    assert stored is not None and stored.password_hash.startswith("$2b$")
    assert PASSWORDS["otto"] not in stored.password_hash
    again = run_cli(project.config, "users", "add", "otto", "--role", "admin", stdin="short\n")
    assert again.returncode == 1
    assert "exists already" in again.stdout or "at least 10" in again.stdout


def test_an_operator_pauses_and_resumes_a_partner_on_the_audit_trail(
    project: Project, client: TestClient
) -> None:
    csrf = login(client, "otto")
    paused = client.post(
        "/partners/pause",
        data={"partner": "printer", "action": "pause", "reason": "maintenance", "csrf_token": csrf},
    )
    assert paused.status_code == 200
    assert "Partner printer paused." in paused.text
    partners = client.get("/partners").text
    assert "maintenance" in partners
    assert "ssh-ed25519 SHA256:" in partners  # pinned keys shown as fingerprints
    overview = client.get("/").text
    assert "1</strong> paused partners" in overview
    assert 'href="/partners#partner-printer"' in overview  # a hint links to its fix
    resumed = client.post(
        "/partners/pause", data={"partner": "printer", "action": "resume", "csrf_token": csrf}
    )
    assert "Partner printer resumed." in resumed.text
    events = [
        (e.actor, e.action)
        for e in project.app.store.list_audit(subject="partner:printer")
        if e.action.startswith("partner.")
    ]
    assert events[:2] == [("user:otto", "partner.resumed"), ("user:otto", "partner.paused")]
    unknown = client.post(
        "/partners/pause", data={"partner": "nobody", "action": "pause", "csrf_token": csrf}
    )
    assert unknown.status_code == 404


def test_an_operator_rejects_a_quarantined_file(project: Project, client: TestClient) -> None:
    csrf = login(client, "otto")
    rows = project.app.store.list_intakes(outcome=IntakeOutcome.QUARANTINED)
    target = rows[0]
    page = client.get("/quarantine").text
    assert f'id="intake-{target.id}"' in page
    no_reason = client.post(
        "/quarantine/reject", data={"intake_id": str(target.id), "reason": " ", "csrf_token": csrf}
    )
    assert no_reason.status_code == 409
    done = client.post(
        "/quarantine/reject",
        data={"intake_id": str(target.id), "reason": "not ours", "csrf_token": csrf},
    )
    assert done.status_code == 200
    assert f"File #{target.id} rejected." in done.text
    assert f'id="intake-{target.id}"' not in done.text
    after = project.app.store.list_intakes(outcome=IntakeOutcome.REJECTED)
    assert [r.id for r in after] == [target.id]
    assert "rejected by otto: not ours" in (after[0].reason or "")


def _intake_id(project: Project, remote_path: str) -> int:
    (row,) = [r for r in project.app.store.list_intakes() if r.remote_path == remote_path]
    assert row.id is not None
    return row.id


def test_quarantine_previews_what_a_browser_can_show_and_nothing_else(
    project: Project, client: TestClient
) -> None:
    png = _intake_id(project, "/out/cover.png")
    pdf = _intake_id(project, "/out/proof.pdf")
    html = _intake_id(project, "/out/notes.html")
    assert client.get(f"/quarantine/{png}/preview").status_code == 303  # no login, no bytes
    login(client, "vera")
    assert f'href="/quarantine/{png}/preview"' in client.get("/quarantine").text
    shown = client.get(f"/quarantine/{png}/preview")
    assert shown.status_code == 200
    assert shown.headers["content-type"] == "image/png"
    assert shown.content == PNG
    assert shown.headers["content-security-policy"].startswith("sandbox;")
    assert shown.headers["x-content-type-options"] == "nosniff"
    assert shown.headers["content-disposition"].startswith("inline")
    as_pdf = client.get(f"/quarantine/{pdf}/preview")
    assert as_pdf.headers["content-type"] == "application/pdf"
    assert as_pdf.headers["content-security-policy"].startswith("sandbox;")
    # a file named and typed by a partner as anything else is never served to the browser
    refused = client.get(f"/quarantine/{html}/preview")
    assert refused.status_code == 404
    assert "no preview for this kind of file" in refused.text
    assert "<script>alert(1)" not in refused.text
    assert client.get("/quarantine/999999/preview").status_code == 404


def test_anyone_logged_in_verifies_the_audit_trail(client: TestClient) -> None:
    csrf = login(client, "vera")
    report = client.post("/audit/verify", data={"csrf_token": csrf})
    assert report.status_code == 200
    assert "Verified: intact" in report.text
    filtered = client.get("/audit?action=user.added").text
    assert "user:vera" in filtered or "user:otto" in filtered
    assert "alert.acknowledged</td>" not in filtered


def test_acting_on_work_that_is_not_there_is_a_clear_refusal(client: TestClient) -> None:
    csrf = login(client, "otto")
    retried = client.post(
        "/failures/retry", data={"workflow_id": "dlv-printer-nothing", "csrf_token": csrf}
    )
    assert retried.status_code == 409, retried.text
    assert "dlv-printer-nothing" in retried.text
    resent = client.post(
        "/failures/resend",
        data={"workflow_id": f"dlv-printer-{OTHER_ISBN}", "reason": "asked", "csrf_token": csrf},
    )
    # no serve runs on this SQLite project: the console says so rather than becoming one
    assert resent.status_code == 409
    assert "no service is running" in resent.text
