"""The console's JSON API against the real app on a real SQLite store: every route refuses an
anonymous request (its OpenAPI schema too), tokens made by ``users token`` (shown once, stored
hashed, revocable) act with their user's role, a viewer cannot act, every act is on the audit
trail with the user's name, and a session cookie needs its CSRF header to act."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from consonance_sftp.web.app import create_app
from consonance_sftp.web.auth import LoginThrottle
from tests.web.conftest import ISBN, Project, login, run_cli


@pytest.fixture(scope="module")
def tokens(project: Project) -> dict[str, str]:
    """A token per role, made through the CLI (as an operator would)."""
    out = {}
    for name in ("vera", "otto"):
        done = run_cli(project.config, "users", "token", name, "--label", "tests")
        assert done.returncode == 0, done.stdout + done.stderr
        out[name] = done.stdout.strip().splitlines()[-1]
    return out


@pytest.fixture
def api(project: Project) -> Iterator[TestClient]:
    web = create_app(project.app, secure_cookies=False, throttle=LoginThrottle())
    with TestClient(web, base_url="http://testserver", follow_redirects=False) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _routes(project: Project) -> list[tuple[str, str]]:
    web = create_app(project.app, secure_cookies=False)
    out = []
    for route in web.state.api_routes:
        if isinstance(route, APIRoute):
            for method in sorted(route.methods):
                path = (
                    route.path.replace("{isbn}", ISBN)
                    .replace("{flow}", "print-files")
                    .replace("{partner}", "printer")
                    .replace("{alert_id}", "1")
                    .replace("{intake_id}", "1")
                )
                out.append((method, path))
    return out


def test_every_api_route_refuses_an_anonymous_request(project: Project, api: TestClient) -> None:
    routes = _routes(project)
    assert ("GET", "/api/openapi.json") in routes
    assert ("POST", "/api/failures/resend") in routes
    assert len(routes) >= 20
    for method, path in routes:
        response = api.request(method, path, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert ISBN not in response.text
        # A made-up token is no better.
        made_up = api.request(method, path, json={}, headers=bearer("csftp_made-up"))
        assert made_up.status_code == 401, (method, path)


def test_a_token_is_shown_once_and_stored_hashed(project: Project, tokens: dict[str, str]) -> None:
    token = tokens["vera"]
    assert token.startswith("csftp_") and len(token) > 40
    stored = project.app.store.list_api_tokens("vera")
    assert stored and all(t.token_hash != token for t in stored)
    assert hashlib.sha256(token.encode()).hexdigest() in {t.token_hash for t in stored}
    listed = run_cli(project.config, "users", "token", "vera", "--list")
    assert listed.returncode == 0 and "tests" in listed.stdout
    assert token not in listed.stdout


def test_reads_with_a_token(api: TestClient, tokens: dict[str, str]) -> None:
    h = bearer(tokens["vera"])
    found = api.get("/api/deliveries", params={"isbn": ISBN}, headers=h)
    assert found.status_code == 200, found.text
    assert {r["partner"] for r in found.json()} == {"printer", "distributor"}
    timeline = api.get(f"/api/titles/{ISBN}", headers=h).json()
    assert len(timeline["sent"]) == 2
    overview = api.get("/api/overview", headers=h).json()
    assert {f["name"] for f in overview["flows"]} >= {"print-files"}
    schema = api.get("/api/openapi.json", headers=h).json()
    assert "/api/flows/{flow}/dry-run" in schema["paths"]
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    for path in ("/api/failures", "/api/alerts", "/api/quarantine", "/api/partners"):
        assert api.get(path, headers=h).status_code == 200, path
    assert api.get("/api/audit", params={"action": "user.token_added"}, headers=h).json()


ACTS: dict[str, dict[str, Any]] = {
    "/api/failures/retry": {"workflow_id": "dlv-printer-x"},
    "/api/failures/resend": {"workflow_id": "dlv-printer-x", "reason": "lost"},
    "/api/alerts/1/acknowledge": {"note": "seen"},
    "/api/partners/printer/pause": {"reason": "x"},
    "/api/partners/printer/resume": {},
    "/api/partners/printer/test": {},
    "/api/quarantine/1/reject": {"reason": "junk"},
    "/api/quarantine/1/assign": {"isbn": ISBN, "kind": "cover"},
    "/api/flows/print-files/pause": {},
    "/api/flows/print-files/resume": {},
    "/api/flows/print-files/dry-run": {},
    "/api/flows/print-files/run": {},
}


@pytest.mark.parametrize("path", sorted(ACTS))
def test_a_viewer_cannot_act(api: TestClient, tokens: dict[str, str], path: str) -> None:
    response = api.post(path, json=ACTS[path], headers=bearer(tokens["vera"]))
    assert response.status_code == 403, response.text
    assert "operator" in response.json()["detail"]


def test_an_operator_acts_and_the_trail_names_them(
    project: Project, api: TestClient, tokens: dict[str, str]
) -> None:
    h = bearer(tokens["otto"])
    paused = api.post("/api/partners/printer/pause", json={"reason": "api test"}, headers=h)
    assert paused.status_code == 200, paused.text
    partners = {p["name"]: p for p in api.get("/api/partners", headers=h).json()}
    assert partners["printer"]["paused"] is True
    assert partners["printer"]["paused_by"] == "otto"
    resumed = api.post("/api/partners/printer/resume", headers=h)
    assert resumed.status_code == 200, resumed.text
    trail = project.app.store.list_audit(subject="partner:printer", limit=5)
    assert [e.action for e in trail[:2]] == ["partner.resumed", "partner.paused"]
    assert all("otto" in e.actor for e in trail[:2])
    # Refusals are answers, not crashes: unknown names, a resend without a reason.
    assert api.post("/api/flows/nope/pause", headers=h).status_code == 404
    no_reason = api.post("/api/failures/resend", json={"workflow_id": "x", "reason": ""}, headers=h)
    assert no_reason.status_code == 422
    assert api.post("/api/alerts/999999/acknowledge", headers=h).status_code == 404


def test_a_revoked_token_is_refused(project: Project, api: TestClient) -> None:
    made = run_cli(project.config, "users", "token", "otto", "--label", "short-lived")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert api.get("/api/flows", headers=bearer(token)).status_code == 200
    token_id = next(
        t.id for t in project.app.store.list_api_tokens("otto") if t.label == "short-lived"
    )
    # Another user's token is not revoked by naming the wrong user.
    wrong = run_cli(project.config, "users", "token", "vera", "--revoke", str(token_id))
    assert wrong.returncode == 1
    assert api.get("/api/flows", headers=bearer(token)).status_code == 200
    done = run_cli(project.config, "users", "token", "otto", "--revoke", str(token_id))
    assert done.returncode == 0, done.stdout + done.stderr
    refused = api.get("/api/flows", headers=bearer(token))
    assert refused.status_code == 401
    actions = [e.action for e in project.app.store.list_audit(subject="user:otto", limit=5)]
    assert "user.token_revoked" in actions


def test_a_session_cookie_reads_and_acts_only_with_its_csrf_header(api: TestClient) -> None:
    csrf = login(api, "otto")
    assert api.get("/api/openapi.json").status_code == 200
    without = api.post("/api/flows/print-files/pause", json={})
    assert without.status_code == 403
    with_header = api.post("/api/flows/print-files/pause", json={}, headers={"X-CSRF-Token": csrf})
    assert with_header.status_code == 200, with_header.text
    assert (
        api.post("/api/flows/print-files/resume", headers={"X-CSRF-Token": csrf}).status_code == 200
    )
