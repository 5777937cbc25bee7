"""The sandbox's HTTP server: Consonance-style ``POST /graphql`` plus a control API.

``/graphql`` accepts ``Authorization: Bearer <token>`` and ``Token <token>`` (both forms are in
the public record) and answers 401 otherwise. GraphQL errors come back as HTTP 200 with an
``errors`` list, as graphql-ruby does. Under ``/_sandbox/`` a control API, meant for tests and
the demo, injects faults into the next requests (429 with Retry-After, 500, a malformed JSON
body, a slow answer) and the next file downloads (500), counts requests, and changes the
catalogue the way a Consonance user would (move a work to a project stage, complete a to-do,
change a price, a title, a status).
Presigned uploads are served here too (``PUT /uploads/<token>``), and the files themselves
(``GET /files/...``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import tempfile
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    execute_sync,
    parse,
    validate,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from consonance_sftp.sandbox.consonance.catalogue import UPLOADS_DIR, Catalogue, CatalogueError
from consonance_sftp.sandbox.consonance.files import generated_file
from consonance_sftp.sandbox.consonance.mutations import MUTATIONS
from consonance_sftp.sandbox.consonance.resolvers import (
    DEFAULT_PAGE_SIZE,
    Context,
    build_sandbox_schema,
    default_resolver,
)

log = logging.getLogger(__name__)

# 32 letters and digits, like a real key; documented in docs/how-to/sandbox.md.
DEFAULT_TOKEN = "sandbox0token0for0local0use00001"  # noqa: S105 - a public sandbox key
FAULT_KINDS = ("rate_limit", "server_error", "malformed", "slow", "unauthorized")


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    tokens: tuple[str, ...] = (DEFAULT_TOKEN,)
    page_size: int = DEFAULT_PAGE_SIZE
    data_dir: Path | None = None  # None: nothing is persisted
    save_delay: float = 1.0


@dataclass(slots=True)
class Fault:
    kind: str
    retry_after: float | None = None
    delay: float = 0.0


@dataclass(slots=True)
class Stats:
    graphql_requests: int = 0
    faults_served: int = 0
    operations: dict[str, int] = field(default_factory=dict)


class SandboxState:
    def __init__(self, catalogue: Catalogue, settings: SandboxSettings) -> None:
        self.catalogue = catalogue
        self.settings = settings
        self.schema = build_sandbox_schema(MUTATIONS)
        self.faults: deque[Fault] = deque()
        self.failing_downloads = 0  # the next N file downloads answer HTTP 500
        self.stats = Stats()
        self.dirty = False

    def take_fault(self) -> Fault | None:
        return self.faults.popleft() if self.faults else None

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one state object per server
    def document(self, query: str) -> tuple[DocumentNode | None, tuple[GraphQLError, ...]]:
        try:
            doc = parse(query)
        except GraphQLError as exc:
            return None, (exc,)
        return doc, tuple(validate(self.schema, doc))

    def changed(self) -> None:
        self.dirty = True


def _authorised(request: Request, tokens: tuple[str, ...]) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if value.startswith("token="):  # the REST API's `Token token=...` form
        value = value[len("token=") :].strip('"')
    return scheme.lower() in ("bearer", "token") and value in tokens


def _operation(doc: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
    if name:
        return next((o for o in ops if o.name and o.name.value == name), None)
    return ops[0] if len(ops) == 1 else None


def _errors(*messages: str) -> dict[str, Any]:
    return {"errors": [{"message": m} for m in messages]}


async def graphql_endpoint(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    state.stats.graphql_requests += 1
    fault = state.take_fault()
    if fault is not None:
        state.stats.faults_served += 1
        if fault.kind == "rate_limit":
            return JSONResponse(
                _errors("Too many requests"),
                status_code=429,
                headers={"Retry-After": f"{fault.retry_after or 1:g}"},
            )
        if fault.kind == "server_error":
            return Response("<html><body>Internal Server Error</body></html>", 500)
        if fault.kind == "malformed":
            return Response('{"data": {"works": [', 200, media_type="application/json")
        if fault.kind == "unauthorized":
            return JSONResponse(_errors("Invalid API key"), status_code=401)
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
    if not _authorised(request, state.settings.tokens):
        return JSONResponse(_errors("Invalid or missing API key"), status_code=401)
    try:
        body = await request.json()
        query = body["query"]
        variables = body.get("variables") or {}
        operation_name = body.get("operationName")
        if not isinstance(query, str) or not isinstance(variables, dict):
            raise TypeError("query must be a string and variables an object")
    except (ValueError, KeyError, TypeError) as exc:
        return JSONResponse(_errors(f"Bad request body: {exc}"), status_code=400)
    doc, problems = state.document(query)
    if doc is None or problems:
        return JSONResponse({"errors": [e.formatted for e in problems]})
    operation = _operation(doc, operation_name)
    op_label = operation.name.value if operation and operation.name else "anonymous"
    state.stats.operations[op_label] = state.stats.operations.get(op_label, 0) + 1
    context = Context(
        catalogue=state.catalogue,
        base_url=str(request.base_url).rstrip("/"),
        page_size=state.settings.page_size,
    )
    result = execute_sync(
        state.schema,
        doc,
        variable_values=variables,
        operation_name=operation_name,
        context_value=context,
        field_resolver=default_resolver,
    )
    if operation is not None and operation.operation is OperationType.MUTATION:
        state.changed()
    out: dict[str, Any] = {"data": result.data}
    if result.errors:
        out["errors"] = [e.formatted for e in result.errors]
    return JSONResponse(out)


async def upload_endpoint(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    token = request.path_params["token"]
    pending = state.catalogue.uploads.get(token)
    if pending is None:
        return Response("unknown or used upload URL", 403)
    base = state.settings.data_dir or Path(request.app.state.scratch)
    target = base / UPLOADS_DIR / str(pending.record_id) / Path(pending.filename).name
    target.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with target.open("wb") as fh:
        async for chunk in request.stream():
            fh.write(chunk)
            size += len(chunk)
    state.catalogue.complete_upload(token, target, size)
    state.changed()
    return Response(status_code=200)


async def file_endpoint(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    if state.failing_downloads > 0:
        state.failing_downloads -= 1
        state.stats.faults_served += 1
        return Response("<html><body>Internal Server Error</body></html>", 500)
    path = "/files/" + request.path_params["path"]
    if path.startswith("/files/generated/"):
        made = generated_file(path.rsplit("/", 1)[-1])
        if made is not None:
            return Response(made[0], media_type=made[1])
    stored = state.catalogue.files.get(path)
    if stored is not None:
        return FileResponse(stored, media_type="application/octet-stream")
    return Response("not found", 404)


# --- control API ------------------------------------------------------------------------------


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    data = json.loads(raw) if raw.strip() else {}
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return data


def _control(handler: Any) -> Any:
    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        state: SandboxState = request.app.state.sandbox
        try:
            result = await handler(request, state)
        except CatalogueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)
        return JSONResponse(result)

    return wrapped


@_control
async def c_health(request: Request, state: SandboxState) -> dict[str, Any]:
    cat = state.catalogue
    return {"ok": True, "works": len(cat.works), "products": len(cat.products)}


@_control
async def c_stats(request: Request, state: SandboxState) -> dict[str, Any]:
    if request.method == "DELETE":
        state.stats = Stats()
    s = state.stats
    return {
        "graphql_requests": s.graphql_requests,
        "faults_served": s.faults_served,
        "operations": dict(s.operations),
        "faults_pending": len(state.faults),
    }


@_control
async def c_faults(request: Request, state: SandboxState) -> dict[str, Any]:
    if request.method == "DELETE":
        state.faults.clear()
        state.failing_downloads = 0
        return {"faults_pending": 0}
    data = await _json(request)
    kind = data["kind"]
    if kind not in FAULT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
    count = int(data.get("count", 1))
    for _ in range(count):
        state.faults.append(
            Fault(
                kind,
                retry_after=float(data["retry_after"]) if "retry_after" in data else None,
                delay=float(data.get("delay", 0.0)),
            )
        )
    return {"faults_pending": len(state.faults)}


@_control
async def c_download_faults(request: Request, state: SandboxState) -> dict[str, Any]:
    """POST ``{"count": N}``: the next N file downloads fail with HTTP 500; DELETE: none."""
    if request.method == "DELETE":
        state.failing_downloads = 0
    else:
        count = int((await _json(request)).get("count", 1))
        if count < 0:
            raise ValueError("count must be >= 0")
        state.failing_downloads = count
    return {"failing_downloads": state.failing_downloads}


@_control
async def c_work(request: Request, state: SandboxState) -> dict[str, Any]:
    data = await _json(request)
    work_id = int(request.path_params["work_id"])
    changes: dict[str, Any] = {}
    for key, attr in (("title", "title"), ("subtitle", "subtitle"), ("stage", "project_stage")):
        if key in data:
            changes[attr] = data[key]
    work = state.catalogue.update_work(work_id, **changes)
    state.changed()
    return {"id": work.id, "title": work.title, "stage": work.project_stage}


@_control
async def c_stage(request: Request, state: SandboxState) -> dict[str, Any]:
    data = await _json(request)
    work = state.catalogue.set_project_stage(int(request.path_params["work_id"]), data["stage"])
    state.changed()
    return {"id": work.id, "stage": work.project_stage}


@_control
async def c_todo(request: Request, state: SandboxState) -> dict[str, Any]:
    data = await _json(request)
    todo = state.catalogue.update_todo(
        int(request.path_params["todo_id"]), completed=bool(data.get("completed", True))
    )
    state.changed()
    return {"id": todo.id, "name": todo.name, "completed": todo.completed}


@_control
async def c_product(request: Request, state: SandboxState) -> dict[str, Any]:
    data = await _json(request)
    product_id = int(request.path_params["product_id"])
    changes: dict[str, Any] = {}
    if "title" in data:
        changes["title"] = data["title"]
    if "publishing_status" in data:
        changes["publishing_status"] = data["publishing_status"]
    if "publication_date" in data:
        changes["publication_date"] = date.fromisoformat(data["publication_date"])
    product = state.catalogue.update_product(product_id, **changes)
    price = data.get("price")
    if price:
        product = state.catalogue.set_price(
            product_id,
            currency=price["currency"],
            price_type=price.get("price_type", "02"),
            qualifier=price.get("qualifier", "05"),
            amount=Decimal(str(price["amount"])),
        )
    state.changed()
    return {
        "id": product.id,
        "title": product.title,
        "publishing_status": product.publishing_status,
        "publication_date": product.publication_date.isoformat()
        if product.publication_date
        else None,
        "prices": {p.slot: str(p.amount) for p in product.prices},
    }


@_control
async def c_save(request: Request, state: SandboxState) -> dict[str, Any]:
    if state.settings.data_dir is None:
        raise ValueError("this sandbox was started without a data directory")
    await asyncio.to_thread(state.catalogue.save, state.settings.data_dir)
    state.dirty = False
    return {"saved": str(state.settings.data_dir)}


async def _saver(state: SandboxState) -> None:
    """Persist changes in the background, at most once per ``save_delay``."""
    data_dir = state.settings.data_dir
    if data_dir is None:
        return
    while True:
        await asyncio.sleep(state.settings.save_delay)
        if state.dirty:
            state.dirty = False
            await asyncio.to_thread(state.catalogue.save, data_dir)


def create_app(catalogue: Catalogue, settings: SandboxSettings | None = None) -> Starlette:
    settings = settings or SandboxSettings()
    state = SandboxState(catalogue, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        saver = asyncio.create_task(_saver(state))
        try:
            yield
        finally:
            saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await saver
            if state.dirty and settings.data_dir is not None:
                catalogue.save(settings.data_dir)

    routes = [
        Route("/graphql", graphql_endpoint, methods=["POST"]),
        Route("/uploads/{token}", upload_endpoint, methods=["PUT"]),
        Route("/files/{path:path}", file_endpoint, methods=["GET"]),
        Route("/_sandbox/health", c_health, methods=["GET"]),
        Route("/_sandbox/stats", c_stats, methods=["GET", "DELETE"]),
        Route("/_sandbox/faults", c_faults, methods=["POST", "DELETE"]),
        Route("/_sandbox/faults/downloads", c_download_faults, methods=["POST", "DELETE"]),
        Route("/_sandbox/works/{work_id:int}", c_work, methods=["PATCH"]),
        Route("/_sandbox/works/{work_id:int}/stage", c_stage, methods=["POST"]),
        Route("/_sandbox/todos/{todo_id:int}/complete", c_todo, methods=["POST"]),
        Route("/_sandbox/products/{product_id:int}", c_product, methods=["PATCH"]),
        Route("/_sandbox/save", c_save, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sandbox = state
    app.state.scratch = str(settings.data_dir or tempfile.mkdtemp(prefix="consonance-sandbox-"))
    return app
