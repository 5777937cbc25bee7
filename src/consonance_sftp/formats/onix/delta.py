"""Delta feeds: which products to send again, which to delete, from per-product content hashes.

The hash of a product is the SHA-256 of its serialised ``Product`` element as the recipient
would receive it (version, tag style, trimmed prices included; header and sent time excluded),
so a product is resent exactly when something the recipient would see has changed. The ledger
keeps, per recipient, ``record reference -> hash`` of the last successful send; these functions
are pure and never touch it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class Decision(enum.StrEnum):
    NEW = "new"
    CHANGED = "changed"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class DeltaPlan:
    """What a delta message holds: products to (re)send and references to send as 05."""

    send: tuple[str, ...]
    delete: tuple[str, ...]
    unchanged: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.send and not self.delete


def compute_delta(
    previous: Mapping[str, str],
    current: Mapping[str, str],
    *,
    full: bool = False,
    send_deletions: bool = True,
) -> DeltaPlan:
    """Compare hashes of the last successful send with the current ones.

    ``current`` holds the products the recipient should have now (already filtered); anything
    in ``previous`` but not in ``current`` was deleted, withdrawn or left the filter. A forced
    full resend sends every current product whatever its hash.
    """
    send = tuple(ref for ref, digest in current.items() if full or previous.get(ref) != digest)
    unchanged = tuple(ref for ref in current if ref not in set(send))
    delete = tuple(ref for ref in previous if ref not in current) if send_deletions else ()
    return DeltaPlan(send=send, delete=delete, unchanged=unchanged)


@dataclass(slots=True)
class DeltaTracker:
    """The streaming form of ``compute_delta``: decide product by product while writing.

    ``state`` ends as the hashes the recipient holds once this message is delivered; store it
    in the ledger only after the send succeeded.
    """

    previous: Mapping[str, str]
    full: bool = False
    seen: set[str] = field(default_factory=set)
    state: dict[str, str] = field(default_factory=dict)
    counts: dict[Decision, int] = field(default_factory=lambda: dict.fromkeys(Decision, 0))

    def decide(self, reference: str, digest: str) -> Decision:
        """Record the product's current hash; say whether it must be sent."""
        self.seen.add(reference)
        self.state[reference] = digest
        before = self.previous.get(reference)
        if before is None:
            decision = Decision.NEW
        elif before != digest or self.full:
            decision = Decision.CHANGED
        else:
            decision = Decision.UNCHANGED
        self.counts[decision] += 1
        return decision

    def withdraw(self, reference: str) -> bool:
        """A product that is deleted/withdrawn now: True if the recipient has it (send a 05)."""
        self.seen.add(reference)
        return reference in self.previous

    def gone(self) -> list[str]:
        """References the recipient holds that this run never saw: send them as 05."""
        return [ref for ref in self.previous if ref not in self.seen]

    def forget(self, references: Iterable[str]) -> None:
        """Deleted records leave the recipient's state."""
        for ref in references:
            self.state.pop(ref, None)
