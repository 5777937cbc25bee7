"""Proving a restore through the client (``archive restore --seed-sandbox``, issue 17).

The restored bag's ``metadata/works.json``, ``contacts.json`` and ``contracts.json`` are what
the client read from Consonance when the archive was written. ``read_archived`` turns them back
into the domain records (``models.Work``... validated by pydantic, so a field of the wrong type
is an error naming it, not a silent default); the sandbox is seeded with those records
(``sandbox.consonance.restored``) and read back through the project's own client over HTTP
(``read_back``); ``compare`` then checks every field of every record, as JSON, against the
archived files and names each difference by record and path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from consonance_sftp.adapters.consonance import ConsonanceClient
from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.flows.archive import records_json
from consonance_sftp.models import Contact, Contract, Work

KINDS = ("works", "contacts", "contracts")
_MODELS: dict[str, TypeAdapter[Any]] = {
    "works": TypeAdapter(list[Work]),
    "contacts": TypeAdapter(list[Contact]),
    "contracts": TypeAdapter(list[Contract]),
}


@dataclass(frozen=True, slots=True)
class ArchivedCatalogue:
    """The metadata of a restored bag: the JSON as archived, and the records it describes."""

    raw: dict[str, list[dict[str, Any]]]
    works: list[Work]
    contacts: list[Contact]
    contracts: list[Contract]


def metadata_dir(bag: Path) -> Path:
    """The bag's ``data/metadata`` (``bag`` may be the restored folder or its ``data/``)."""
    for candidate in (bag / "data" / "metadata", bag / "metadata"):
        if (candidate / "works.json").is_file():
            return candidate
    raise ConsonanceSftpError(
        f"{bag} holds no metadata/works.json",
        hint="Give the folder 'archive restore --to' wrote.",
    )


def read_archived(bag: Path) -> ArchivedCatalogue:
    """The works (with products, prices, to-dos...), contacts and contracts of a restored bag."""
    where = metadata_dir(bag)
    raw: dict[str, list[dict[str, Any]]] = {}
    records: dict[str, list[Any]] = {}
    for kind in KINDS:
        path = where / f"{kind}.json"
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConsonanceSftpError(f"cannot read {path}: {exc}") from None
        if not isinstance(rows, list):
            raise ConsonanceSftpError(f"{path} is not a JSON array")
        try:
            records[kind] = _MODELS[kind].validate_python(rows)
        except ValidationError as exc:
            first = exc.errors()[0]
            at = ".".join(str(p) for p in first["loc"])
            raise ConsonanceSftpError(
                f"{path.name}: record {at}: {first['msg']} ({exc.error_count()} problem(s))"
            ) from None
        raw[kind] = rows
    return ArchivedCatalogue(raw, records["works"], records["contacts"], records["contracts"])


async def read_back(url: str, token: str) -> dict[str, list[dict[str, Any]]]:
    """Everything the client reads, as the archive writes it (the same JSON encoding)."""
    async with ConsonanceClient(url, token) as api:
        works = [w async for w in api.iter_works()]
        contacts = [c async for c in api.iter_contacts()]
        contracts = [c async for c in api.iter_contracts()]
    return {
        "works": json.loads(records_json(works)),
        "contacts": json.loads(records_json(contacts)),
        "contracts": json.loads(records_json(contracts)),
    }


@dataclass(frozen=True, slots=True)
class Difference:
    """One field (or record) that is not the same after the round trip."""

    kind: str  # works, contacts, contracts
    record: str  # "id 123"
    path: str  # "products[id=4].prices[0].amount"; "" for a whole record
    archived: Any
    read_back: Any

    def __str__(self) -> str:
        where = f"{self.kind} {self.record}" + (f" {self.path}" if self.path else "")
        return f"{where}: archived {_short(self.archived)}, read back {_short(self.read_back)}"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass(slots=True)
class KindCheck:
    archived: int = 0
    read_back: int = 0
    matched: int = 0  # records identical in every field
    fields: int = 0  # leaf fields compared in records present on both sides


@dataclass(slots=True)
class SeedCheck:
    """What reading the seeded sandbox back found."""

    kinds: dict[str, KindCheck] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    url: str = ""
    data_dir: str = ""

    @property
    def ok(self) -> bool:
        return not self.differences


def _label(value: Any, index: int) -> str:
    if isinstance(value, dict) and "id" in value:
        return f"[id={value['id']}]"
    return f"[{index}]"


def _diff(archived: Any, read: Any, path: str) -> Iterator[tuple[str, Any, Any] | int]:
    """Differing leaves as (path, archived, read back); an int for each leaf compared."""
    if isinstance(archived, dict) and isinstance(read, dict):
        for key in sorted(set(archived) | set(read)):
            sub = f"{path}.{key}" if path else key
            if key not in archived or key not in read:
                yield 1
                yield sub, archived.get(key, "(absent)"), read.get(key, "(absent)")
            else:
                yield from _diff(archived[key], read[key], sub)
    elif isinstance(archived, list) and isinstance(read, list):
        for i in range(max(len(archived), len(read))):
            if i >= len(archived) or i >= len(read):
                yield 1
                sub = path + _label(archived[i] if i < len(archived) else read[i], i)
                yield (
                    sub,
                    archived[i] if i < len(archived) else "(absent)",
                    read[i] if i < len(read) else "(absent)",
                )
            else:
                yield from _diff(archived[i], read[i], path + _label(archived[i], i))
    else:
        yield 1
        if archived != read or type(archived) is not type(read):
            yield path, archived, read


def compare(
    archived: dict[str, list[dict[str, Any]]], read: dict[str, list[dict[str, Any]]]
) -> SeedCheck:
    """Every record and field of ``archived`` against ``read``, matched by record id."""
    check = SeedCheck()
    for kind in KINDS:
        counts = check.kinds.setdefault(kind, KindCheck())
        before: Sequence[dict[str, Any]] = archived.get(kind, [])
        after = {r.get("id"): r for r in read.get(kind, [])}
        counts.archived, counts.read_back = len(before), len(after)
        seen: set[Any] = set()
        for record in before:
            rid = record.get("id")
            seen.add(rid)
            back = after.get(rid)
            if back is None:
                check.differences.append(Difference(kind, f"id {rid}", "", "present", "(absent)"))
                continue
            found = False
            for item in _diff(record, back, ""):
                if isinstance(item, int):
                    counts.fields += item
                else:
                    found = True
                    check.differences.append(Difference(kind, f"id {rid}", *item))
            counts.matched += not found
        for rid in sorted(after.keys() - seen, key=str):
            check.differences.append(Difference(kind, f"id {rid}", "", "(absent)", "present"))
    return check
