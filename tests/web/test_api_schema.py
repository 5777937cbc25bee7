"""The console API's OpenAPI schema (/api/openapi.json) types every answer, and every route
answers what it says: each route called with real names and IDs on a real SQLite store (with a
pause, a probe report, a pinned key, an acknowledged alert and a version taken in, so that no
list is left empty), its answers, refusals included, checked by schemathesis against the schema:
status code, content type, headers, and body (no field its model does not name, each of its
type, times ISO 8601 with their offset). A route not called here fails the test."""

from __future__ import annotations

import json
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from consonance_sftp.models import AuditAction
from consonance_sftp.ports.store import AssetVersion
from consonance_sftp.web.app import create_app
from consonance_sftp.web.auth import LoginThrottle
from tests.web.conftest import ISBN, Project, run_cli

# What a conformant answer is, as `schemathesis run` checks it (also used by test_api_fuzz.py).
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]

# (who, method, path, path parameters, query, body, the status it must answer), in order: the
# acts first make the state the reads then show (a pause, an acknowledged alert).
CALLS: list[tuple[str, str, str, dict[str, Any], dict[str, Any], Any, int]] = [
    ("nobody", "GET", "/api/overview", {}, {}, None, 401),
    ("vera", "POST", "/api/partners/{partner}/pause", {"partner": "printer"}, {}, {}, 403),
    ("otto", "POST", "/api/partners/{partner}/pause", {"partner": "printer"}, {}, {}, 200),
    ("otto", "POST", "/api/partners/{partner}/resume", {"partner": "nope"}, {}, {}, 404),
    ("otto", "POST", "/api/partners/{partner}/resume", {"partner": "distributor"}, {}, None, 200),
    ("otto", "POST", "/api/flows/{flow}/pause", {"flow": "print-files"}, {}, {"reason": "x"}, 200),
    ("otto", "POST", "/api/flows/{flow}/resume", {"flow": "sales-reports"}, {}, None, 200),
    ("otto", "POST", "/api/alerts/{alert_id}/acknowledge", {"alert_id": 1}, {}, {"note": "n"}, 200),
    ("otto", "POST", "/api/alerts/{alert_id}/acknowledge", {"alert_id": 999}, {}, None, 404),
    ("otto", "POST", "/api/failures/retry", {}, {}, {"workflow_id": "dlv-x"}, 409),
    ("otto", "POST", "/api/failures/resend", {}, {}, {"workflow_id": "x", "reason": " "}, 422),
    ("otto", "POST", "/api/quarantine/{intake_id}/assign", {"intake_id": 1}, {}, {}, 422),
    (
        "otto",
        "POST",
        "/api/quarantine/{intake_id}/assign",
        {"intake_id": 1},
        {},
        {"isbn": ISBN, "kind": "nope"},
        409,
    ),
    (
        "otto",
        "POST",
        "/api/quarantine/{intake_id}/reject",
        {"intake_id": 2},
        {},
        {"reason": "junk"},
        200,
    ),
    ("otto", "POST", "/api/partners/{partner}/test", {"partner": "printer"}, {}, None, 409),
    ("otto", "POST", "/api/flows/{flow}/dry-run", {"flow": "marketing-release"}, {}, {}, 200),
    ("otto", "POST", "/api/flows/{flow}/dry-run", {"flow": "nightly-archive"}, {}, None, 409),
    ("otto", "POST", "/api/flows/{flow}/run", {"flow": "print-files"}, {}, {"isbns": [ISBN]}, 409),
    ("otto", "POST", "/api/notify/{target}/test", {"target": "x"}, {}, None, 403),
    ("vera", "POST", "/api/audit/verify", {}, {}, None, 200),
    ("vera", "GET", "/api/overview", {}, {}, None, 200),
    ("vera", "GET", "/api/deliveries", {}, {"isbn": ISBN, "since": "2020-01-01"}, None, 200),
    ("vera", "GET", "/api/deliveries", {}, {"outcome": "lost"}, None, 422),
    ("vera", "GET", "/api/titles/{isbn}", {"isbn": ISBN}, {}, None, 200),
    ("vera", "GET", "/api/failures", {}, {}, None, 200),
    ("vera", "GET", "/api/alerts", {}, {"all": "true"}, None, 200),
    ("vera", "GET", "/api/quarantine", {}, {}, None, 200),
    ("vera", "GET", "/api/partners", {}, {}, None, 200),
    ("vera", "GET", "/api/flows", {}, {}, None, 200),
    ("vera", "GET", "/api/audit", {}, {"limit": 50}, None, 200),
]
# Acts whose success needs what this test has not (a running service, a partner's server, an
# admin and a notification target, Consonance): called above and refused, each refusal checked.
# Their success answers Done (checked through the other acts) or RunNow.
NOT_DONE_HERE = {
    ("post", "/api/failures/retry"),
    ("post", "/api/failures/resend"),
    ("post", "/api/quarantine/{intake_id}/assign"),
    ("post", "/api/partners/{partner}/test"),
    ("post", "/api/flows/{flow}/run"),
    ("post", "/api/notify/{target}/test"),
}


@pytest.fixture(scope="module")
def tokens(project: Project) -> dict[str, str]:
    out = {}
    for name in ("vera", "otto"):
        done = run_cli(project.config, "users", "token", name, "--label", "schema")
        assert done.returncode == 0, done.stdout + done.stderr
        out[name] = done.stdout.strip().splitlines()[-1]
    return out


@pytest.fixture(scope="module")
def web(project: Project) -> FastAPI:
    """The console on the project's store, with what the reads would otherwise leave empty."""
    app = project.app
    probes = app.state_dir / "probes"
    probes.mkdir(parents=True, exist_ok=True)
    report = {"probed_at": "2026-01-02T03:04:05Z", "server_version": "OpenSSH_9.2"}
    (probes / "printer.json").write_text(json.dumps(report))
    app.store.append_audit("user:otto", AuditAction.PARTNER_TRUST, "partner:printer", {})
    app.store.add_asset_version(
        AssetVersion(
            work_id=1,
            kind="cover",
            sha256="ab" * 32,
            size=10,
            source="intake:designer",
            isbn=ISBN,
            partner="designer",
            original_name="cover.pdf",
        )
    )
    return create_app(app, secure_cookies=False, throttle=LoginThrottle())


def test_the_schema_is_valid_and_types_every_answer(web: FastAPI, tokens: dict[str, str]) -> None:
    with TestClient(web) as client:
        doc = client.get("/api/openapi.json", headers=_bearer(tokens["vera"])).json()
    schemathesis.openapi.from_dict(doc).validate()  # its OpenAPI version's meta-schema
    components = doc["components"]["schemas"]
    error = components["ErrorBody"]
    assert error["required"] == ["detail"] and error["additionalProperties"] is False
    operations = [(m, p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]
    assert len(operations) >= 20
    for method, path, op in operations:
        answers = op["responses"]
        ok = answers["200"]["content"]["application/json"]["schema"]
        ref = ok.get("$ref") or ok.get("items", {}).get("$ref")  # a model, or a list of one
        assert ref, (method, path, ok)
        model = components[ref.rsplit("/", 1)[-1]]
        assert model["type"] == "object" and model["additionalProperties"] is False, ref
        assert model["properties"], ref
        refusals = ["401", "403"] if method == "post" else ["401"]
        for status in refusals:
            body = answers[status]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)


def test_every_route_answers_as_its_schema_says(
    project: Project, web: FastAPI, tokens: dict[str, str]
) -> None:
    with TestClient(web) as client:
        doc = client.get("/api/openapi.json", headers=_bearer(tokens["vera"])).json()
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", web, headers=headers_of(tokens))
    called, done = set(), set()
    for who, method, path, path_parameters, query, body, status in CALLS:
        operation = schema[path][method]
        case = operation.Case(
            path_parameters=path_parameters,
            query=query,
            **({"body": body} if body is not None else {}),
        )
        headers = _bearer(tokens[who]) if who in tokens else {}
        response = case.call(headers=headers)
        assert response.status_code == status, (method, path, response.text)
        case.validate_response(response, checks=CHECKS, headers=headers)
        called.add((method.lower(), path))
        if status == 200:
            done.add((method.lower(), path))
    every = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert called == every  # a new route needs its calls here
    assert every - done == NOT_DONE_HERE
    # The state the acts made shows in the reads (so the checked answers were not empty).
    with TestClient(web) as client:
        h = _bearer(tokens["vera"])
        overview = client.get("/api/overview", headers=h).json()
        partners = {p["name"]: p for p in client.get("/api/partners", headers=h).json()}
        received = client.get(f"/api/titles/{ISBN}", headers=h).json()["received"]
        alerts = client.get("/api/alerts", params={"all": True}, headers=h).json()
    assert {(p["scope"], p["name"]) for p in overview["paused"]} == {
        ("partner", "printer"),
        ("flow", "print-files"),
    }
    printer = partners["printer"]
    assert printer["probed_at"] == "2026-01-02T03:04:05Z" and printer["pinned_at"]
    assert printer["last_sent"]["outcome"] == "sent"
    assert [v["original_name"] for v in received] == ["cover.pdf"]
    assert any(a["acknowledged_by"] == "otto" for a in alerts)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def headers_of(tokens: dict[str, str]) -> dict[str, str]:
    """The headers schemathesis reads the schema with (a viewer's token)."""
    return _bearer(tokens["vera"])
