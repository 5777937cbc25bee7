"""A small client of the sandbox's control API, for the demo, the CLI and tests.

It changes a running sandbox the way a Consonance user would (stage, to-do, title, status,
price) and injects faults. Synchronous on purpose: callers are scripts and test helpers.
"""

from __future__ import annotations

from decimal import Decimal
from types import TracebackType
from typing import Any

import httpx


class SandboxControlError(Exception):
    """The control API refused a request (unknown id, bad value) or is not reachable."""


class SandboxControl:
    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=f"{self.url}/_sandbox", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SandboxControl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, f"/{path.lstrip('/')}", json=body)
        except httpx.HTTPError as exc:
            raise SandboxControlError(f"no sandbox answers at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise SandboxControlError(f"{method} {path}: {message}")
        return response.json()

    # --- what a Consonance user does --------------------------------------------------------

    def move_stage(self, work_id: int, stage: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("POST", f"works/{work_id}/stage", {"stage": stage})
        return result

    def update_work(self, work_id: int, **changes: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("PATCH", f"works/{work_id}", changes)
        return result

    def complete_todo(self, todo_id: int, completed: bool = True) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            "POST", f"todos/{todo_id}/complete", {"completed": completed}
        )
        return result

    def update_product(
        self,
        product_id: int,
        *,
        title: str | None = None,
        publishing_status: str | None = None,
        publication_date: str | None = None,
        price: tuple[str, str, str | None, Decimal | str] | None = None,
    ) -> dict[str, Any]:
        """``price`` is (currency, ONIX price type, qualifier, amount), e.g. GBP 02 05 12.99."""
        body: dict[str, Any] = {}
        if title is not None:
            body["title"] = title
        if publishing_status is not None:
            body["publishing_status"] = publishing_status
        if publication_date is not None:
            body["publication_date"] = publication_date
        if price is not None:
            currency, price_type, qualifier, amount = price
            body["price"] = {
                "currency": currency,
                "price_type": price_type,
                "qualifier": qualifier,
                "amount": str(amount),
            }
        result: dict[str, Any] = self.call("PATCH", f"products/{product_id}", body)
        return result

    # --- faults and counters ---------------------------------------------------------------

    def inject(self, kind: str, count: int = 1, **params: float) -> None:
        self.call("POST", "faults", {"kind": kind, "count": count, **params})

    def fail_downloads(self, count: int = 1) -> None:
        """The next ``count`` file downloads (production files, resources) answer HTTP 500;
        0 lets them through again. GraphQL requests are not affected."""
        self.call("POST", "faults/downloads", {"count": count})

    def clear_faults(self) -> None:
        self.call("DELETE", "faults")

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", "stats")
        return result

    def reset_stats(self) -> None:
        self.call("DELETE", "stats")

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", "health")
        return result

    def save(self) -> None:
        self.call("POST", "save")
