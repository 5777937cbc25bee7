"""The audit trail's hash chains: how an event is hashed, and how a chain is checked.

Each writer (one ``SqlStore``, i.e. one process or executor) appends to a chain of its own, so
concurrent writers never wait on a shared head. Within a chain, event ``seq`` n carries the hash
of event n-1 (``prev_hash``; the first event carries ``GENESIS``) and its own hash::

    hash = SHA-256( prev_hash + "\\n" + canonical JSON of
                    [chain_id, seq, ts (UTC ISO 8601, microseconds), actor, action, subject,
                     details] )

Canonical JSON: sorted keys, no spaces, UTF-8, no NaN. The ``audit_chains`` table keeps each
chain's last seq and hash, so removing the newest events (a truncated tail) is found too.

A keyed chain (``[audit] key`` in the config) uses HMAC-SHA256 with that key in place of
SHA-256 over the same bytes: without the key, nobody can recompute a valid chain after an edit.

What the chain proves: a row edited, removed, inserted or moved after the fact breaks it,
unless the person doing so also recomputes every later hash and the head. That needs write
access past the triggers and knowledge of this scheme; anchoring the heads elsewhere (printed by
``audit verify``) closes that gap too.

This module is pure: no database access, so it is tested on its own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Container, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from consonance_sftp.errors import StoreError
from consonance_sftp.ports.store import AuditProblem

GENESIS = "0" * 64
ALG_PLAIN = "sha256"
ALG_KEYED = "hmac-sha256"


def link_hash(prev_hash: str, payload: str, key: bytes | None = None) -> str:
    """SHA-256 (or, with a key, HMAC-SHA256) of ``prev_hash + "\\n" + payload``, hex."""
    data = f"{prev_hash}\n{payload}".encode()
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def canonical_json(value: Any) -> str:
    """The one byte-exact JSON encoding of ``value`` that the hashes are computed over."""
    _reject_non_finite(value)
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise StoreError(f"audit details must be plain JSON values: {exc}") from exc


def _reject_non_finite(value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise StoreError("audit details must not contain NaN or infinity")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise StoreError(f"audit details keys must be strings, not {key!r}")
            _reject_non_finite(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _reject_non_finite(item)


def ts_text(ts: datetime) -> str:
    """A timestamp as hashed: UTC, ISO 8601 with microseconds (naive means UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def event_hash(
    *,
    prev_hash: str,
    chain_id: str,
    seq: int,
    ts: datetime,
    actor: str,
    action: str,
    subject: str,
    details_json: str,
    key: bytes | None = None,
) -> str:
    """SHA-256 (hex) of one event, chained to the previous one by ``prev_hash`` (HMAC: keyed)."""
    # details go in already canonical (as stored), decoded so the list below nests them as JSON.
    payload = canonical_json(
        [chain_id, seq, ts_text(ts), actor, action, subject, json.loads(details_json)]
    )
    return link_hash(prev_hash, payload, key)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An audit row as read back, for checking."""

    chain_id: str
    seq: int
    ts: datetime
    actor: str
    action: str
    subject: str
    details_json: str
    prev_hash: str
    hash: str

    def recomputed_hash(self, key: bytes | None = None) -> str:
        return event_hash(
            prev_hash=self.prev_hash,
            chain_id=self.chain_id,
            seq=self.seq,
            ts=self.ts,
            actor=self.actor,
            action=self.action,
            subject=self.subject,
            details_json=self.details_json,
            key=key,
        )


@dataclass(frozen=True, slots=True)
class ChainHead:
    chain_id: str
    seq: int
    hash: str


class ChainChecker:
    """Checks one chain's events, fed in ascending ``seq`` order; keeps only the first problem."""

    def __init__(self, chain_id: str, *, keyed: bool = False, key: bytes | None = None) -> None:
        self.chain_id = chain_id
        self.keyed = keyed
        self.key = key if keyed else None
        self.events = 0
        self.max_seq = 0  # the highest seq seen, intact or not
        self.problem: AuditProblem | None = None
        self._last_seq = 0
        self._last_hash = GENESIS

    def _fail(self, seq: int | None, kind: str, message: str) -> None:
        if self.problem is None:
            self.problem = AuditProblem(chain_id=self.chain_id, seq=seq, kind=kind, message=message)

    def feed(self, event: StoredEvent) -> None:
        self.events += 1
        self.max_seq = max(self.max_seq, event.seq)
        if self.problem is not None:
            return
        if self.keyed and self.key is None:
            self._fail(
                None,
                "key_needed",
                "the chain is keyed (HMAC): give the audit key ([audit] key) to check it",
            )
            return
        expected_seq = self._last_seq + 1
        if event.seq != expected_seq:
            missing = (
                f"seq {expected_seq}"
                if event.seq == expected_seq + 1
                else f"seq {expected_seq}..{event.seq - 1}"
            )
            self._fail(event.seq, "missing", f"{missing} missing before this row (deleted)")
            return
        try:
            recomputed = event.recomputed_hash(self.key)
        except (StoreError, ValueError) as exc:
            self._fail(event.seq, "edited", f"row no longer decodes: {exc}")
            return
        if recomputed != event.hash:
            suffix = ", or a different audit key" if self.keyed else ""
            self._fail(event.seq, "edited", f"row content does not match its hash (edited{suffix})")
            return
        if event.prev_hash != self._last_hash:
            self._fail(
                event.seq,
                "reordered",
                "row is intact but does not follow the previous row "
                "(rows inserted, replaced or reordered)",
            )
            return
        self._last_seq = event.seq
        self._last_hash = event.hash

    def finish(self, head: ChainHead | None) -> AuditProblem | None:
        """Compare the end of the chain with its recorded head."""
        if self.problem is not None:
            return self.problem
        if head is None:
            if self.events:
                self._fail(None, "head_missing", "events exist but the chain head row is gone")
            return self.problem
        if head.seq > self._last_seq:
            self._fail(
                self._last_seq + 1,
                "truncated",
                f"head says {head.seq} events, rows end at seq {self._last_seq} "
                f"(seq {self._last_seq + 1}..{head.seq} deleted)",
            )
        elif head.seq < self._last_seq:
            self._fail(
                head.seq + 1,
                "head_mismatch",
                f"head says {head.seq} events but rows go on to seq {self._last_seq}",
            )
        elif head.hash != self._last_hash:
            self._fail(head.seq, "head_mismatch", "last row's hash differs from the chain head")
        return self.problem


@dataclass(slots=True)
class ChainsChecked:
    """What ``check_chains`` found: counts, problems, and each chain's highest seq seen."""

    events: int
    chains: int
    problems: list[AuditProblem]
    last_seq: dict[str, int]

    def __iter__(self) -> Iterator[Any]:
        # ``events, chains, problems = check_chains(...)`` reads as before.
        return iter((self.events, self.chains, self.problems))


def check_chains(
    events: Iterable[StoredEvent],
    heads: Mapping[str, ChainHead],
    *,
    keyed: Container[str] = (),
    key: bytes | None = None,
) -> ChainsChecked:
    """Check events sorted by (chain_id, seq) against the heads.

    ``keyed``: the chains hashed with HMAC (checked with ``key``; without one, reported).
    """
    total = 0
    problems: list[AuditProblem] = []
    seen: set[str] = set()
    last_seq: dict[str, int] = {}
    checker: ChainChecker | None = None

    def close(c: ChainChecker) -> None:
        last_seq[c.chain_id] = c.max_seq
        problem = c.finish(heads.get(c.chain_id))
        if problem is not None:
            problems.append(problem)

    for event in events:
        total += 1
        if checker is None or checker.chain_id != event.chain_id:
            if checker is not None:
                close(checker)
            checker = ChainChecker(event.chain_id, keyed=event.chain_id in keyed, key=key)
            seen.add(event.chain_id)
        checker.feed(event)
    if checker is not None:
        close(checker)
    for chain_id, head in sorted(heads.items()):
        if chain_id not in seen and head.seq > 0:
            empty = ChainChecker(chain_id)
            problem = empty.finish(head)
            if problem is not None:
                problems.append(problem)
    return ChainsChecked(total, len(seen | set(heads)), problems, last_seq)
