"""The sandbox's mutations, in the one shape chosen among the contradictory drafts.

Relay style (``updateProduct(input: {...})``), ``Int`` ids, payloads carrying the record and
``errors``. A user error (a missing id) comes back in ``errors`` with HTTP 200, never as a
GraphQL error; each error answers ``field``, ``attribute``, ``message`` and ``messages`` so
clients written against any of the drafts can read it.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from consonance_sftp.sandbox.consonance.catalogue import CatalogueError
from consonance_sftp.sandbox.consonance.resolvers import (
    Context,
    Info,
    Resolver,
    from_enum,
    production_file_dict,
    resource_dict,
)


def _error(field: str | None, message: str) -> dict[str, Any]:
    return {"field": field, "attribute": field, "message": message, "messages": [message]}


def _ctx(info: Info) -> Context:
    ctx: Context = info.context
    return ctx


def _payload(key: str, value: Any, data: dict[str, Any]) -> dict[str, Any]:
    return {"clientMutationId": data.get("clientMutationId"), key: value, "errors": []}


def _failed(key: str, data: dict[str, Any], exc: CatalogueError, field: str) -> dict[str, Any]:
    return {
        "clientMutationId": data.get("clientMutationId"),
        key: None,
        "errors": [_error(field, str(exc))],
    }


def _date(value: Any) -> date | None:
    return None if value is None else date.fromisoformat(str(value))


def update_product(_: Any, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    cat = _ctx(info).catalogue
    changes: dict[str, Any] = {}
    if input.get("title") is not None:
        changes["title"] = input["title"]
    if "subtitle" in input:
        changes["subtitle"] = input["subtitle"]
    if input.get("publicationDate") is not None:
        changes["publication_date"] = _date(input["publicationDate"])
    if input.get("onixPublishingStatusCode") is not None:
        changes["publishing_status"] = from_enum(input["onixPublishingStatusCode"])
    try:
        return _payload("product", cat.update_product(input["id"], **changes), input)
    except CatalogueError as exc:
        return _failed("product", input, exc, "id")


def update_work(_: Any, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    cat = _ctx(info).catalogue
    changes = {
        k: input[g]
        for g, k in (
            ("title", "title"),
            ("subtitle", "subtitle"),
            ("projectStage", "project_stage"),
        )
        if g in input
    }
    try:
        return _payload("work", cat.update_work(input["id"], **changes), input)
    except CatalogueError as exc:
        return _failed("work", input, exc, "id")


def _upload_url(info: Info, token: str) -> str:
    return f"{_ctx(info).base_url.rstrip('/')}/uploads/{token}"


def create_supporting_resource(
    _: Any,
    info: Info,
    input: dict[str, Any],
) -> dict[str, Any]:
    cat = _ctx(info).catalogue
    filename = input.get("resourceFileName")
    if not filename:
        return {
            "clientMutationId": input.get("clientMutationId"),
            "supportingResource": None,
            "presignedUrl": None,
            "errors": [_error("resourceFileName", "the sandbox needs resourceFileName")],
        }
    try:
        work = cat.get_work(input["workId"])
        product_ids = tuple(input.get("productIds") or ())
        if input.get("linkToAllProducts"):
            product_ids = tuple(p.id for p in work.products)
        record = cat.add_supporting_resource(
            work.id,
            filename=filename,
            variant=input.get("resourceVariant") or "FRONT_COVER",
            product_ids=product_ids,
            caption=input.get("caption"),
            status=input.get("status") or "APPROVED",
            unlink_previous=bool(input.get("unlinkPrevious")),
        )
    except CatalogueError as exc:
        return {**_failed("supportingResource", input, exc, "workId"), "presignedUrl": None}
    token = cat.presign("supporting_resource", record.id, work.id, filename)
    payload = _payload("supportingResource", resource_dict(record, info), input)
    payload["presignedUrl"] = _upload_url(info, token)
    return payload


def create_production_file(
    _: Any,
    info: Info,
    input: dict[str, Any],
) -> dict[str, Any]:
    cat = _ctx(info).catalogue
    try:
        record = cat.add_production_file(
            input["workId"],
            filename=input["fileName"],
            variant=input["fileVariant"],
            product_ids=tuple(input.get("productIds") or ()),
            approval_status=input.get("approvalStatus") or "APPROVED",
        )
    except CatalogueError as exc:
        return {**_failed("productionFile", input, exc, "workId"), "presignedUrl": None}
    token = cat.presign("production_file", record.id, input["workId"], input["fileName"])
    payload = _payload("productionFile", production_file_dict(record, info), input)
    payload["presignedUrl"] = _upload_url(info, token)
    return payload


def update_todo(_: Any, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    try:
        todo = _ctx(info).catalogue.update_todo(
            input["id"],
            completed=input.get("completed"),
            name=input.get("name"),
            due_date=_date(input.get("dueDate")),
        )
    except CatalogueError as exc:
        return _failed("todo", input, exc, "id")
    return _payload("todo", todo, input)


def create_note(_: Any, info: Info, input: dict[str, Any]) -> dict[str, Any]:
    try:
        note = _ctx(info).catalogue.add_note(
            input["noteText"], work_id=input.get("workId"), product_id=input.get("productId")
        )
    except CatalogueError as exc:
        return _failed("note", input, exc, "workId")
    return _payload(
        "note", {"id": note.id, "noteText": note.text, "createdAt": note.created_at}, input
    )


MUTATIONS: dict[str, Resolver] = {
    "updateProduct": update_product,
    "updateWork": update_work,
    "createSupportingResource": create_supporting_resource,
    "createProductionFile": create_production_file,
    "updateTodo": update_todo,
    "createNote": create_note,
}
