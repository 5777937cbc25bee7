"""The guessed shape of Consonance mutations, isolated here and in ``documents/mutations``.

The public drafts disagree (relay ``input:`` objects or plain arguments; ``ID`` or ``Int``;
``errors { field message }``, ``{ field messages }`` or ``{ attribute message }``). We send
relay-style inputs with ``Int`` ids and read ``errors { field message }``. When an
introspection query against a real account shows otherwise, change the documents and the three
functions below; nothing else in the service knows the shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consonance_sftp.adapters.consonance.documents import load
from consonance_sftp.errors import ConsonanceQueryError

Json = dict[str, Any]


def document(name: str) -> str:
    return load(f"mutations/{name}.graphql")


def variables(**fields: Any) -> Json:
    """Mutation arguments: one relay ``input`` object, without unset fields."""
    return {"input": {k: v for k, v in fields.items() if v is not None}}


def payload(operation: str, data: Json, root: str, record: str) -> Json:
    """The record from a mutation payload; its user ``errors`` become a query error."""
    body = data.get(root)
    if not isinstance(body, dict):
        raise ConsonanceQueryError(f"Consonance answered {operation} without a payload")
    errors: Sequence[Json] = body.get("errors") or ()
    if errors:
        text = "; ".join(
            f"{e.get('field') or e.get('attribute') or 'input'}: "
            f"{e.get('message') or ', '.join(e.get('messages') or ())}"
            for e in errors
        )
        raise ConsonanceQueryError(f"Consonance refused {operation}: {text}")
    value = body.get(record)
    if not isinstance(value, dict):
        raise ConsonanceQueryError(f"Consonance answered {operation} without {record}")
    return {**value, "_payload": body}
