"""One GraphQL request to Consonance over httpx, with retries and our error tree.

Retries are hand-rolled (no tenacity): a capped exponential backoff with jitter on 429, 5xx,
timeouts, dropped connections and bodies that are not JSON, honouring ``Retry-After`` (seconds
or an HTTP date) up to ``max_retry_after``. 401/403 fail at once with ``ConsonanceAuthError``;
GraphQL ``errors`` in a 200 answer fail at once with ``ConsonanceQueryError`` naming the
operation and the field path. The token is registered with the log redactor and never logged.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from consonance_sftp.errors import (
    ConsonanceAuthError,
    ConsonanceError,
    ConsonanceQueryError,
    ConsonanceUnavailable,
)
from consonance_sftp.logs import get_logger, register_secret

log = get_logger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_base: float = 0.5  # seconds; doubles per attempt
    backoff_cap: float = 30.0
    max_retry_after: float = 120.0  # a longer Retry-After is cut to this

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        backoff: float = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return backoff * (0.5 + random.random() / 2)  # jitter: spread retrying clients


@dataclass(slots=True)
class RequestStats:
    """What the client did, for poll-cost notes and benchmarks."""

    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0
    seconds: float = 0.0
    by_operation: dict[str, int] = field(default_factory=dict)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_text(operation: str, errors: list[Any]) -> str:
    parts = []
    for err in errors[:5]:
        if not isinstance(err, dict):
            parts.append(str(err))
            continue
        message = str(err.get("message", "unknown error"))
        path = err.get("path")
        where = ".".join(str(p) for p in path) if path else None
        if where is None and err.get("locations"):
            loc = err["locations"][0]
            where = f"line {loc.get('line')} column {loc.get('column')}"
        parts.append(f"{message} (at {where})" if where else message)
    more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
    return f"Consonance query {operation} failed: " + "; ".join(parts) + more


class GraphQLTransport:
    """POSTs documents to ``{base_url}/graphql``; returns ``data`` or raises our errors."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        auth_scheme: str = "Bearer",
        client: httpx.AsyncClient | None = None,
    ) -> None:
        register_secret(token)
        self.endpoint = base_url.rstrip("/") + "/graphql"
        if base_url.rstrip("/").endswith("/graphql"):
            self.endpoint = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.stats = RequestStats()
        self._headers = {
            "Authorization": f"{auth_scheme} {token}",
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json",
        }
        self._unprocessed = False  # set by _attempt: the failed request never reached the API
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout))

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    @property
    def http(self) -> httpx.AsyncClient:
        return self._client

    def auth_headers_for(self, url: str) -> dict[str, str]:
        """The Authorization header, only for URLs on the API's own origin."""
        target, api = httpx.URL(url), httpx.URL(self.endpoint)
        same = (target.scheme, target.host, target.port) == (api.scheme, api.host, api.port)
        return {"Authorization": self._headers["Authorization"]} if same else {}

    async def execute(
        self,
        operation: str,
        document: str,
        variables: dict[str, Any] | None = None,
        *,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """Run one operation. ``idempotent=False`` (mutations) retries only failures that
        certainly did not reach Consonance (429, no connection): a repeated mutation could
        create a second note or resource."""
        body: dict[str, Any] = {"query": document, "variables": variables or {}}
        if re.search(rf"\b(query|mutation)\s+{re.escape(operation)}\b", document):
            body["operationName"] = operation  # else ``operation`` only labels logs and errors
        attempt = 0
        while True:
            attempt += 1
            self._unprocessed = False
            problem, retry_after, cause = await self._attempt(operation, body)
            if problem is None:
                assert isinstance(cause, dict)
                return cause
            exc_cause = cause if isinstance(cause, BaseException) else None
            if problem.retryable and not idempotent and not self._unprocessed:
                raise ConsonanceUnavailable(
                    f"{problem} - Consonance may or may not have applied {operation}; "
                    "check before repeating it",
                    retryable=False,
                ) from exc_cause
            if attempt >= self.retry.max_attempts or not problem.retryable:
                raise problem from exc_cause
            wait = self.retry.delay(attempt, retry_after)
            self.stats.retries += 1
            log.warning(
                "Consonance %s: %s; retry %d/%d in %.1fs",
                operation,
                problem,
                attempt,
                self.retry.max_attempts - 1,
                wait,
            )
            await asyncio.sleep(wait)

    async def _attempt(
        self, operation: str, body: dict[str, Any]
    ) -> tuple[ConsonanceError | None, float | None, Any]:
        """One HTTP exchange: (None, None, data) or (error, retry_after, cause)."""
        self.stats.requests += 1
        self.stats.by_operation[operation] = self.stats.by_operation.get(operation, 0) + 1
        started = time.perf_counter()
        try:
            response = await self._client.post(self.endpoint, json=body, headers=self._headers)
        except httpx.TimeoutException as exc:
            self._unprocessed = isinstance(exc, httpx.ConnectTimeout)
            return (
                ConsonanceUnavailable(f"Consonance did not answer {operation} in time ({exc!r})"),
                None,
                exc,
            )
        except httpx.TransportError as exc:
            self._unprocessed = isinstance(exc, httpx.ConnectError)
            return (
                ConsonanceUnavailable(f"cannot reach Consonance at {self.endpoint}: {exc!r}"),
                None,
                exc,
            )
        finally:
            self.stats.seconds += time.perf_counter() - started
        status = response.status_code
        log.debug("Consonance %s: HTTP %d", operation, status)
        if status in (401, 403):
            return (
                ConsonanceAuthError(
                    f"Consonance refused the API token (HTTP {status}) for {operation}"
                ),
                None,
                None,
            )
        if status in RETRY_STATUS:
            self._unprocessed = status == 429
            what = "rate limit" if status == 429 else "server error"
            return (
                ConsonanceUnavailable(f"Consonance {what} (HTTP {status}) for {operation}"),
                _retry_after(response),
                None,
            )
        if status >= 400:
            return (
                ConsonanceQueryError(
                    f"Consonance rejected {operation} with HTTP {status}: {response.text[:200]}"
                ),
                None,
                None,
            )
        try:
            payload = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            # Truncated or proxy-mangled bodies are usually transient: retry, then give up
            # with a query error (a body that stays broken is not an outage).
            return (
                ConsonanceQueryError(
                    f"Consonance answered {operation} with a body that is not JSON "
                    f"({len(response.content)} bytes)",
                    retryable=True,
                ),
                None,
                exc,
            )
        if not isinstance(payload, dict):
            return ConsonanceQueryError(f"unexpected answer to {operation}"), None, None
        errors = payload.get("errors")
        if errors:
            return ConsonanceQueryError(_error_text(operation, errors)), None, None
        data = payload.get("data")
        if not isinstance(data, dict):
            return ConsonanceQueryError(f"Consonance answered {operation} without data"), None, None
        return None, None, data
