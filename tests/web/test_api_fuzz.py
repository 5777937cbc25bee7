"""schemathesis over the console API's own OpenAPI schema (served at /api/openapi.json, read
with an operator's token) against the real app on a real SQLite store with deliveries, alerts
and quarantined files: whatever it sends, no answer is a server error, and every answer is one
the schema declares: its status code, its content type, its headers and its body (each field
named by the route's response model, of its type; an error as the shared error body)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from consonance_sftp.web.app import create_app
from consonance_sftp.web.auth import LoginThrottle
from tests.web.conftest import Project, run_cli
from tests.web.test_api_schema import CHECKS  # each answer checked as `schemathesis run` does

EXAMPLES = 10  # per operation and mode: about 500 requests in all, a few seconds


@pytest.fixture(scope="module")
def operator_token(project: Project) -> str:
    done = run_cli(project.config, "users", "token", "otto", "--label", "schemathesis")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_the_api_answers_as_its_schema_says(project: Project, operator_token: str) -> None:
    web = create_app(project.app, secure_cookies=False, throttle=LoginThrottle())
    headers = {"Authorization": f"Bearer {operator_token}"}
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", web, headers=headers)
    schema.validate()  # a valid OpenAPI document (its version's meta-schema)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20  # the whole API is fuzzed
    answers: dict[int, int] = {}
    positive_401 = []  # a valid request with the token refused at the door: a wrong test

    # Valid requests and invalid ones (wrong types, missing fields, values out of range).
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)

    def fuzz(operation: Any, mode: schemathesis.GenerationMode) -> None:

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=headers)
            answers[response.status_code] = answers.get(response.status_code, 0) + 1
            if response.status_code == 401 and mode is schemathesis.GenerationMode.POSITIVE:
                positive_401.append(f"{case.method} {case.formatted_path}")
            case.validate_response(response, checks=CHECKS, headers=headers)

        check()

    for operation, mode in itertools.product(operations, modes):
        fuzz(operation, mode)
    print(f"answers by status: {dict(sorted(answers.items()))}")
    # It did get through: reads answered 200, and acts were tried (not all refused at the door).
    assert answers.get(200, 0) >= len(operations)
    assert positive_401 == []
    assert answers.get(422, 0) > 0  # invalid requests were sent, and refused as such
