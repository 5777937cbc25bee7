"""What the audit trail covers besides its own events: ledger rows, and the chains themselves.

**Ledger rows.** Every write of a ``delivery_ledger`` or ``intake_ledger`` row bumps the row's
``audit_rev`` and appends, in the same transaction, an event ``ledger.write`` to the writer's
chain whose details carry the row as written (every column). ``audit verify`` takes, per row,
the covering event with the highest ``rev`` and compares it with the row: a row edited in the
database (a forged SHA-256), rolled back to an older state, added outside the store, or
deleted, is named with the field that differs. Rows that existed before migration 0005 are
sealed by it: ``ledger.seal`` events carry a digest of each such row, so they are covered too
(without their values: a problem there says the row differs, not which field).

**Chains.** ``audit_registry`` is a hash chain of chains: one entry per audit chain, written in
the transaction of that chain's first event, recording as well the heads (last seq) of the
chains that moved since the previous entry. So a chain deleted whole, head and all, is still in
the registry; a chain cut back below a head recorded there is found; a chain that is not
registered was added outside the store.

This module is pure (no database): the store reads the rows and feeds them here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from consonance_sftp.adapters.store.audit_chain import (
    ALG_KEYED,
    GENESIS,
    StoredEvent,
    canonical_json,
    link_hash,
    ts_text,
)
from consonance_sftp.models import AuditAction
from consonance_sftp.ports.store import AuditProblem

LEDGER_WRITE = AuditAction.LEDGER_WRITE
LEDGER_SEAL = AuditAction.LEDGER_SEAL
LEDGER_ACTOR = "store"
LEDGER_TABLES = ("delivery_ledger", "intake_ledger")
REGISTRY = "audit_registry"


def db_value(value: Any) -> Any:
    """A column value as it goes into a row image: times as hashed times, the rest as is."""
    if isinstance(value, datetime):
        return ts_text(value)
    return value


def row_image(row: Mapping[str, Any]) -> dict[str, Any]:
    """Every column of a ledger row, as JSON values."""
    return {name: db_value(value) for name, value in row.items()}


def image_digest(image: Mapping[str, Any], columns: Iterable[str]) -> str:
    """SHA-256 of the canonical JSON of ``columns`` of a row image (missing ones as null)."""
    return hashlib.sha256(
        canonical_json({name: image.get(name) for name in columns}).encode()
    ).hexdigest()


def write_details(table: str, image: Mapping[str, Any]) -> dict[str, Any]:
    """The details of the ``ledger.write`` event that covers one row write."""
    return {"table": table, "id": image["id"], "rev": image["audit_rev"], "row": dict(image)}


def seal_details(
    table: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The details of a ``ledger.seal`` event: a digest per row that predates the coverage."""
    return {
        "table": table,
        "columns": list(columns),
        "rows": {str(r["id"]): [r["audit_rev"], image_digest(r, columns)] for r in rows},
    }


@dataclass(frozen=True, slots=True)
class Cover:
    """The newest chained statement about one ledger row."""

    rev: int
    columns: tuple[str, ...]
    digest: str
    chain_id: str
    seq: int
    sealed: bool


@dataclass(slots=True)
class CoverCollector:
    """Fed every event (in any order): keeps, per ledger row, the cover with the highest rev."""

    covers: dict[tuple[str, int], Cover] = field(default_factory=dict)
    _columns: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)

    def _keep(self, table: str, row_id: int, cover: Cover) -> None:
        held = self.covers.get((table, row_id))
        if held is None or cover.rev >= held.rev:
            self.covers[(table, row_id)] = cover

    def _shared(self, columns: Iterable[str]) -> tuple[str, ...]:
        key = tuple(sorted(columns))
        return self._columns.setdefault(key, key)  # one tuple per column set, not per row

    def feed(self, event: StoredEvent) -> None:
        if event.action not in (LEDGER_WRITE, LEDGER_SEAL):
            return
        try:
            details = json.loads(event.details_json)
            table = str(details["table"])
            if event.action == LEDGER_WRITE:
                image = details["row"]
                columns = self._shared(image)
                self._keep(
                    table,
                    int(details["id"]),
                    Cover(
                        int(details["rev"]),
                        columns,
                        image_digest(image, columns),
                        event.chain_id,
                        event.seq,
                        False,
                    ),
                )
            else:
                columns = self._shared(details["columns"])
                for row_id, (rev, digest) in details["rows"].items():
                    cover = Cover(int(rev), columns, str(digest), event.chain_id, event.seq, True)
                    self._keep(table, int(row_id), cover)
        except (ValueError, KeyError, TypeError):
            return  # an edited event: its chain reports it


def _number(value: Any) -> Any:
    """A whole float as the int it equals: SQLite hands a REAL column's whole value back as an
    int from ``RETURNING`` (what the ``ledger.write`` event carries) and as a float from a
    ``SELECT`` (what ``verify`` reads), e.g. a remote mtime of 1733222222.0; the JSON of the
    two differs, the value does not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _same_values(row: Mapping[str, Any], written: Mapping[str, Any]) -> bool:
    """The row holds what the trail wrote (every written column; numbers by value)."""
    return all(
        name in row and canonical_json(_number(row[name])) == canonical_json(_number(value))
        for name, value in written.items()
    )


def _differences(row: Mapping[str, Any], written: Mapping[str, Any]) -> str:
    changed = [name for name in sorted(written) if row.get(name) != written[name]]
    parts = [f"{name} is {row.get(name)!r}, the trail has {written[name]!r}" for name in changed]
    return "; ".join(parts) if parts else "the row differs from the trail"


def check_ledger(
    table: str,
    rows: Iterable[Mapping[str, Any]],
    covers: Mapping[tuple[str, int], Cover],
    written_image: Callable[[Cover], Mapping[str, Any] | None],
) -> list[AuditProblem]:
    """Compare every row of one ledger table with its cover; one problem per row at most.

    ``written_image(cover)``: the row image its ``ledger.write`` event carried (to name the
    fields that differ).
    """
    problems: list[AuditProblem] = []
    seen: set[int] = set()

    def fail(row_id: int, cover: Cover | None, kind: str, message: str) -> None:
        problems.append(
            AuditProblem(
                chain_id=cover.chain_id if cover else "",
                seq=cover.seq if cover else None,
                kind=kind,
                message=message,
                table=table,
                row=row_id,
            )
        )

    for row in rows:
        image = row_image(row)
        row_id = int(image["id"])
        seen.add(row_id)
        cover = covers.get((table, row_id))
        if cover is None:
            fail(row_id, None, "uncovered", "row has no audit event (added outside the store)")
            continue
        if image.get("audit_rev") != cover.rev:
            fail(
                row_id,
                cover,
                "rolled_back",
                f"row is at audit_rev {image.get('audit_rev')}, the trail's last write of it is "
                f"rev {cover.rev} (rolled back, or rewritten outside the store)",
            )
            continue
        if image_digest(image, cover.columns) == cover.digest:
            continue
        if cover.sealed:
            fail(row_id, cover, "edited", "row differs from its digest sealed at migration 0005")
            continue
        written = written_image(cover)
        if written is not None and _same_values(image, written):
            continue
        detail = _differences(image, written) if written is not None else "row differs"
        fail(row_id, cover, "edited", f"row differs from the trail: {detail}")
    for (cover_table, row_id), cover in sorted(covers.items()):
        if cover_table == table and row_id not in seen:
            fail(row_id, cover, "deleted", f"row (rev {cover.rev}) is on the trail but gone")
    return problems


# --- the registry: a hash chain of chains ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    seq: int
    chain_id: str
    ts: datetime
    writer: str
    alg: str
    details_json: str
    prev_hash: str
    hash: str


def registry_hash(
    *,
    prev_hash: str,
    seq: int,
    chain_id: str,
    ts: datetime,
    writer: str,
    alg: str,
    details_json: str,
    key: bytes | None,
) -> str:
    payload = canonical_json(
        [REGISTRY, seq, chain_id, ts_text(ts), writer, alg, json.loads(details_json)]
    )
    return link_hash(prev_hash, payload, key if alg == ALG_KEYED else None)


@dataclass(slots=True)
class RegistryChecked:
    problems: list[AuditProblem] = field(default_factory=list)
    registered: dict[str, RegistryEntry] = field(default_factory=dict)
    recorded: dict[str, tuple[int, int]] = field(default_factory=dict)  # chain: (seq, at entry)
    first_keyed: int | None = None

    @property
    def keyed_chains(self) -> set[str]:
        return {c for c, e in self.registered.items() if e.alg == ALG_KEYED}


def check_registry(entries: Iterable[RegistryEntry], key: bytes | None) -> RegistryChecked:
    """Check the chain of chains (entries in seq order); collect what it registered."""
    out = RegistryChecked()
    last_seq, last_hash = 0, GENESIS

    def fail(seq: int, kind: str, message: str) -> None:
        if not out.problems:  # the first break only: what follows cannot be trusted either
            out.problems.append(
                AuditProblem(chain_id="", seq=seq, kind=kind, message=message, table=REGISTRY)
            )

    for entry in entries:
        out.registered[entry.chain_id] = entry
        if entry.alg == ALG_KEYED and out.first_keyed is None:
            out.first_keyed = entry.seq
        try:
            heads = json.loads(entry.details_json).get("heads", {})
            for chain_id, seq in heads.items():
                if int(seq) > out.recorded.get(chain_id, (0, 0))[0]:
                    out.recorded[chain_id] = (int(seq), entry.seq)
        except (ValueError, AttributeError, TypeError):
            fail(entry.seq, "edited", "entry no longer decodes")
        if entry.seq != last_seq + 1:
            fail(entry.seq, "missing", f"entries {last_seq + 1}..{entry.seq - 1} deleted")
        elif entry.alg == ALG_KEYED and key is None:
            fail(entry.seq, "key_needed", "keyed entry: give the audit key ([audit] key)")
        elif (
            registry_hash(
                prev_hash=entry.prev_hash,
                seq=entry.seq,
                chain_id=entry.chain_id,
                ts=entry.ts,
                writer=entry.writer,
                alg=entry.alg,
                details_json=entry.details_json,
                key=key,
            )
            != entry.hash
        ):
            fail(entry.seq, "edited", f"entry for chain {entry.chain_id} does not match its hash")
        elif entry.prev_hash != last_hash:
            fail(entry.seq, "reordered", "entry does not follow the previous one")
        last_seq, last_hash = entry.seq, entry.hash
    return out


def check_chains_registered(
    registry: RegistryChecked,
    last_seq: Mapping[str, int],
    heads: Mapping[str, int],
    *,
    broken: set[str],
    key: bytes | None,
) -> list[AuditProblem]:
    """Each chain registered, each registered chain present, none below a recorded head."""
    problems: list[AuditProblem] = []

    def fail(chain_id: str, kind: str, message: str) -> None:
        problems.append(AuditProblem(chain_id=chain_id, seq=None, kind=kind, message=message))

    present = set(last_seq) | set(heads)
    for chain_id in sorted(present - set(registry.registered)):
        fail(chain_id, "unregistered", "chain is not in audit_registry (added outside the store)")
    for chain_id, entry in sorted(registry.registered.items()):
        if chain_id not in present:
            problems.append(
                AuditProblem(
                    chain_id=chain_id,
                    seq=None,
                    kind="chain_deleted",
                    message=f"registered at audit_registry seq {entry.seq} (writer "
                    f"{entry.writer}, {ts_text(entry.ts)}), but its events and head are gone",
                    table=REGISTRY,
                )
            )
            continue
        recorded, at_entry = registry.recorded.get(chain_id, (0, 0))
        actual = max(last_seq.get(chain_id, 0), heads.get(chain_id, 0))
        if recorded > actual and chain_id not in broken:
            fail(
                chain_id,
                "truncated",
                f"audit_registry seq {at_entry} recorded this chain at seq {recorded}, it ends at "
                f"seq {actual} (seq {actual + 1}..{recorded} deleted)",
            )
        if (
            key is not None
            and registry.first_keyed is not None
            and entry.alg != ALG_KEYED
            and entry.seq > registry.first_keyed
        ):
            fail(chain_id, "unkeyed", "chain written without the audit key after keying began")
    if key is not None and registry.registered and registry.first_keyed is None:
        problems.append(
            AuditProblem(
                chain_id="",
                seq=None,
                kind="unkeyed",
                message="an audit key is given but no chain was written with it",
                table=REGISTRY,
            )
        )
    return problems
