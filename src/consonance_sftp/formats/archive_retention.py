"""Which archives a retention policy keeps and which it removes (issue 17), with the reasons.

Pure rules over a list of archives (no I/O, no clock unless ``now`` is left out): the archive
flow lists what it has, asks ``plan_retention`` and removes what the plan says, writing each
removal to the audit trail.

The policy follows restic's ``forget`` semantics:

* ``keep_last N`` keeps the N newest archives.
* ``keep_daily``/``keep_weekly``/``keep_monthly``/``keep_yearly N``: archives are put in
  calendar buckets by their creation time *in the given time zone* (default UTC): the local
  day; the ISO week (Monday to Sunday, numbered by ISO 8601, so 2027-01-01 belongs to
  week 53 of 2026); the month; the year. Walking from the newest archive to the oldest, the
  newest archive of each bucket is kept, for the N newest buckets **that hold an archive**: a
  day without an archive does not use up a daily slot.
* When a kind still has slots left once every bucket is counted, the oldest archive is kept
  too (restic does so since its 0.16 release: it keeps the longest history the slots allow; a
  year of nightly archives with ``keep_yearly 3`` keeps the first one as well as the last).
* ``keep_within`` keeps every archive created less than that long before the newest archive
  that is not in the future (relative to ``now``); archives in the future are kept by it.
* An archive is kept when any rule keeps it; its reasons say which (``"daily 3"`` is the third
  daily slot counted from the newest, ``"yearly 2 (oldest)"`` the oldest-archive rule).

This project adds two rules on top:

* The last verified archive (the newest one whose verification passed) is never removed, even
  when no rule keeps it: its reasons end with ``"last verified"``.
* An archive a kept incremental archive refers to (its ``bases``: fetch.txt points into it) is
  kept too, with the reason ``"base of <id>"``, and so, in turn, are that base's own bases:
  removing it would leave the kept archive impossible to restore whole.
* While no archive has been verified, nothing is removed: a backup nobody has restored may not
  be the one to delete the others for. The plan keeps them all and says why in ``note``.

A policy that keeps nothing (every count zero, no ``keep_within``) is refused: it would delete
every archive.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

NO_RULE = "matched no rule"
"""The reason for an archive the plan removes (for the audit trail)."""

LAST_VERIFIED = "last verified"
NOTHING_VERIFIED = "no archive verified yet"


@dataclass(frozen=True)
class Policy:
    """How many archives to keep of each kind (0: none of that kind)."""

    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    keep_within: timedelta | None = None

    def __post_init__(self) -> None:
        for name, count in self._counts():
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"{name} must be a whole number of 0 or more, not {count!r}")
        if self.keep_within is not None and self.keep_within <= timedelta(0):
            raise ValueError(f"keep_within must be longer than zero, not {self.keep_within}")

    def _counts(self) -> tuple[tuple[str, int], ...]:
        return (
            ("keep_last", self.keep_last),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
            ("keep_monthly", self.keep_monthly),
            ("keep_yearly", self.keep_yearly),
        )

    @property
    def keeps_nothing(self) -> bool:
        return self.keep_within is None and all(count == 0 for _, count in self._counts())


@dataclass(frozen=True)
class ArchiveRef:
    """One archive as retention sees it: its id, when it was created (time-zone aware),
    whether its last verification passed, and the ids of the archives it refers to (an
    incremental archive's bases)."""

    id: str
    created: datetime
    verified: bool
    bases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """The plan: archives kept (newest first, each with its reasons), archives removed (newest
    first; the reason for each is ``NO_RULE``), and a note when a project rule held back."""

    keep: list[tuple[ArchiveRef, list[str]]]
    remove: list[ArchiveRef]
    note: str | None


# A bucket key for an archive, from its local creation time and its rank (0 = newest).
_Bucketer = Callable[[datetime, int], Hashable]


def _by_rank(_local: datetime, rank: int) -> Hashable:
    return rank


def _by_day(local: datetime, _rank: int) -> Hashable:
    return local.date()


def _by_iso_week(local: datetime, _rank: int) -> Hashable:
    iso = local.isocalendar()
    return (iso.year, iso.week)


def _by_month(local: datetime, _rank: int) -> Hashable:
    return (local.year, local.month)


def _by_year(local: datetime, _rank: int) -> Hashable:
    return local.year


def plan_retention(
    archives: Sequence[ArchiveRef], policy: Policy, *, tz: str = "UTC", now: datetime | None = None
) -> Decision:
    """Apply ``policy`` to ``archives``: which to keep (and why) and which to remove.

    ``tz`` is the IANA time zone whose calendar makes the day, week, month and year buckets.
    ``now`` (default: the current time) only tells ``keep_within`` which archives lie in the
    future. Raises ``ValueError`` for a policy that keeps nothing, an unknown time zone, a
    creation time without a time zone, or two archives with the same id.
    """
    if policy.keeps_nothing:
        raise ValueError(
            "the retention policy keeps nothing: it would delete every archive "
            "(set at least one of keep_last, keep_daily, keep_weekly, keep_monthly, "
            "keep_yearly, keep_within)"
        )
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc
    if now is None:
        now = datetime.now(UTC)
    elif now.utcoffset() is None:
        raise ValueError("now must carry a time zone")
    seen: set[str] = set()
    for archive in archives:
        if archive.created.utcoffset() is None:
            raise ValueError(f"archive {archive.id}: its creation time has no time zone")
        if archive.id in seen:
            raise ValueError(f"archive {archive.id} is listed twice")
        seen.add(archive.id)

    # Newest first; two archives created at the same instant are ordered by id, so the plan
    # does not depend on the order of the list.
    ordered = sorted(archives, key=lambda a: (a.created, a.id), reverse=True)
    if not ordered:
        return Decision(keep=[], remove=[], note=None)
    local = [archive.created.astimezone(zone) for archive in ordered]
    reasons: list[list[str]] = [[] for _ in ordered]

    if policy.keep_within is not None:
        _keep_within(ordered, policy.keep_within, now, reasons)

    kinds: tuple[tuple[str, int, _Bucketer], ...] = (
        ("last", policy.keep_last, _by_rank),
        ("daily", policy.keep_daily, _by_day),
        ("weekly", policy.keep_weekly, _by_iso_week),
        ("monthly", policy.keep_monthly, _by_month),
        ("yearly", policy.keep_yearly, _by_year),
    )
    oldest = len(ordered) - 1
    for kind, slots, bucket_of in kinds:
        used = 0
        previous: Hashable = None
        for rank, when in enumerate(local):
            if used == slots:
                break
            bucket = bucket_of(when, rank)
            if rank > 0 and bucket == previous and rank != oldest:
                continue
            used += 1
            same_bucket = rank > 0 and bucket == previous
            reasons[rank].append(f"{kind} {used}" + (" (oldest)" if same_bucket else ""))
            previous = bucket

    verified = next((rank for rank, a in enumerate(ordered) if a.verified), None)
    if verified is None:
        # Nothing verified: hold every archive back, each with the reason the policy gave it,
        # or with why it is kept anyway.
        would_remove = sum(1 for why in reasons if not why)
        held = [
            (archive, why or [NO_RULE, NOTHING_VERIFIED])
            for archive, why in zip(ordered, reasons, strict=True)
        ]
        return Decision(keep=held, remove=[], note=_nothing_verified(would_remove))
    reasons[verified].append(LAST_VERIFIED)
    _keep_bases(ordered, reasons)
    keep = [(archive, why) for archive, why in zip(ordered, reasons, strict=True) if why]
    remove = [archive for archive, why in zip(ordered, reasons, strict=True) if not why]
    return Decision(keep=keep, remove=remove, note=None)


def base_of(archive_id: str) -> str:
    """The reason an archive is kept because a kept incremental archive refers to it."""
    return f"base of {archive_id}"


def _keep_bases(ordered: list[ArchiveRef], reasons: list[list[str]]) -> None:
    """Keep every base of a kept archive, and their bases in turn."""
    rank = {archive.id: n for n, archive in enumerate(ordered)}
    pending = [n for n, why in enumerate(reasons) if why]
    while pending:
        kept = ordered[pending.pop()]
        for base in kept.bases:
            n = rank.get(base)
            if n is None or base_of(kept.id) in reasons[n]:
                continue
            if not reasons[n]:
                pending.append(n)
            reasons[n].append(base_of(kept.id))


def _keep_within(
    ordered: list[ArchiveRef], span: timedelta, now: datetime, reasons: list[list[str]]
) -> None:
    """Keep what was created less than ``span`` before the newest archive not in the future."""
    latest = next((a.created for a in ordered if a.created <= now), None)
    reason = f"within {_format_span(span)}"
    for archive, why in zip(ordered, reasons, strict=True):
        # With every archive in the future there is no newest one to count back from: restic
        # then keeps them all, and so does this.
        if latest is None or archive.created > latest - span:
            why.append(reason)


def _format_span(span: timedelta) -> str:
    """``7d``, ``1d12h``, ``90m``: a span as a person would write it."""
    if span.microseconds:
        return str(span)
    seconds = int(span.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _nothing_verified(would_remove: int) -> str:
    verify = "verify one ('consonance-sftp archive verify' or a restore drill)"
    if not would_remove:
        return f"no archive has been verified yet (the policy removes none now): {verify}"
    return (
        f"no archive has been verified yet, so none is removed (the policy would remove "
        f"{would_remove}): {verify}, then apply the retention again"
    )
