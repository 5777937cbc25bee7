"""Archive retention (issue 17): restic's forget semantics plus "never delete the last verified".

The expected sets are written out as dates, worked out by hand from the calendar, not by a
second copy of the algorithm.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consonance_sftp.formats.archive_retention import (
    NO_RULE,
    ArchiveRef,
    Decision,
    Policy,
    plan_retention,
)

NOW = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)


def at(year: int, month: int, day: int, hour: int = 2, minute: int = 30) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def ref(created: datetime, *, verified: bool = False, name: str | None = None) -> ArchiveRef:
    return ArchiveRef(
        id=name or created.strftime("%Y%m%dT%H%M"), created=created, verified=verified
    )


def kept_ids(decision: Decision) -> list[str]:
    return [archive.id for archive, _ in decision.keep]


def reasons_of(decision: Decision, archive_id: str) -> list[str]:
    return next(why for archive, why in decision.keep if archive.id == archive_id)


def nightly_year(verified_days: set[date]) -> list[ArchiveRef]:
    """One archive a night at 02:30 UTC from 2026-01-01 to 2026-12-31 (365 archives)."""
    days = [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]
    assert days[-1] == date(2026, 12, 31)
    return [
        ref(datetime(d.year, d.month, d.day, 2, 30, tzinfo=UTC), verified=d in verified_days)
        for d in days
    ]


GFS = Policy(keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=3)


def test_a_year_of_nightly_archives_keeps_exactly_the_expected_set() -> None:
    # Drills verified the archives of 10 June and 17 November; 17 November is the last one
    # verified and no calendar rule keeps it (a Tuesday, mid-month).
    archives = nightly_year({date(2026, 6, 10), date(2026, 11, 17)})

    decision = plan_retention(archives, GFS, now=NOW)

    # 2026-12-31 is a Thursday. Daily: the last 7 days. Weekly (ISO weeks, Monday to Sunday):
    # the newest archive of the week of 28 Dec (the 31st), then the Sundays 27, 20 and 13 Dec.
    # Monthly: the last day of each month of 2026. Yearly: 2026 (the 31st); two yearly slots
    # are left with no older year, so the oldest archive (1 January) is kept as well.
    daily = [date(2026, 12, d) for d in (31, 30, 29, 28, 27, 26, 25)]
    weekly = [date(2026, 12, 20), date(2026, 12, 13)]
    monthly = [
        date(2026, 11, 30),
        date(2026, 10, 31),
        date(2026, 9, 30),
        date(2026, 8, 31),
        date(2026, 7, 31),
        date(2026, 6, 30),
        date(2026, 5, 31),
        date(2026, 4, 30),
        date(2026, 3, 31),
        date(2026, 2, 28),
        date(2026, 1, 31),
    ]
    expected = {*daily, *weekly, *monthly, date(2026, 11, 17), date(2026, 1, 1)}
    assert len(expected) == 22
    kept_dates = [archive.created.date() for archive, _ in decision.keep]
    assert set(kept_dates) == expected
    assert len(kept_dates) == 22
    assert len(decision.remove) == 365 - 22
    assert decision.note is None
    # Newest first, each with its reasons.
    assert kept_dates == sorted(expected, reverse=True)
    assert reasons_of(decision, "20261231T0230") == ["daily 1", "weekly 1", "monthly 1", "yearly 1"]
    assert reasons_of(decision, "20261227T0230") == ["daily 5", "weekly 2"]
    assert reasons_of(decision, "20261213T0230") == ["weekly 4"]
    assert reasons_of(decision, "20260131T0230") == ["monthly 12"]
    assert reasons_of(decision, "20260101T0230") == ["yearly 2 (oldest)"]
    assert reasons_of(decision, "20261117T0230") == ["last verified"]
    # An older verified archive is not protected: only the last one is.
    assert "20260610T0230" in {archive.id for archive in decision.remove}


def test_a_year_whose_last_archive_is_verified_needs_no_extra_keep() -> None:
    archives = nightly_year({date(2026, 12, 31)})

    decision = plan_retention(archives, GFS, now=NOW)

    assert len(decision.keep) == 21
    assert date(2026, 11, 17) not in {archive.created.date() for archive, _ in decision.keep}
    assert reasons_of(decision, "20261231T0230")[-1] == "last verified"


def test_missing_days_do_not_use_up_daily_slots() -> None:
    # No archive on 4, 7 and 8 March.
    days = [1, 2, 3, 5, 6, 9]
    archives = [ref(at(2026, 3, d), verified=True) for d in days]

    decision = plan_retention(archives, Policy(keep_daily=4), now=NOW)

    assert kept_ids(decision) == [
        "20260309T0230",
        "20260306T0230",
        "20260305T0230",
        "20260303T0230",
    ]
    assert [a.id for a in decision.remove] == ["20260302T0230", "20260301T0230"]
    assert reasons_of(decision, "20260303T0230") == ["daily 4"]


def test_missing_weeks_and_months_do_not_use_up_slots() -> None:
    # Archives in January, March and June only: three monthly slots reach back to January.
    archives = [ref(at(2026, m, 15), verified=True) for m in (1, 3, 6)] + [
        ref(at(2025, 12, 15), verified=True)
    ]

    decision = plan_retention(archives, Policy(keep_monthly=3), now=NOW)

    assert kept_ids(decision) == ["20260615T0230", "20260315T0230", "20260115T0230"]
    assert [a.id for a in decision.remove] == ["20251215T0230"]


def test_several_archives_on_one_day_keep_the_newest() -> None:
    archives = [
        ref(at(2026, 3, 5, 1, 0)),
        ref(at(2026, 3, 5, 23, 0), verified=True),
        ref(at(2026, 3, 5, 12, 0)),
        ref(at(2026, 3, 4, 23, 0)),
        ref(at(2026, 3, 3, 23, 0)),
    ]

    decision = plan_retention(archives, Policy(keep_daily=2), now=NOW)

    assert kept_ids(decision) == ["20260305T2300", "20260304T2300"]
    assert [a.id for a in decision.remove] == ["20260305T1200", "20260305T0100", "20260303T2300"]


def test_keep_last_counts_archives_not_days() -> None:
    archives = [
        ref(at(2026, 3, 5, 23, 0), verified=True),
        ref(at(2026, 3, 5, 12, 0)),
        ref(at(2026, 3, 5, 1, 0)),
        ref(at(2026, 3, 4, 23, 0)),
        ref(at(2026, 3, 3, 23, 0)),
    ]

    decision = plan_retention(archives, Policy(keep_last=2, keep_daily=2), now=NOW)

    assert kept_ids(decision) == ["20260305T2300", "20260305T1200", "20260304T2300"]
    assert reasons_of(decision, "20260305T2300") == ["last 1", "daily 1", "last verified"]
    assert reasons_of(decision, "20260305T1200") == ["last 2"]
    assert reasons_of(decision, "20260304T2300") == ["daily 2"]


def test_slots_left_over_keep_the_oldest_archive() -> None:
    # Three daily slots, two days with archives: the oldest archive is kept as well.
    archives = [
        ref(at(2026, 3, 5, 23, 0), verified=True),
        ref(at(2026, 3, 4, 23, 0)),
        ref(at(2026, 3, 4, 12, 0)),
        ref(at(2026, 3, 4, 1, 0)),
    ]

    decision = plan_retention(archives, Policy(keep_daily=3), now=NOW)

    assert kept_ids(decision) == ["20260305T2300", "20260304T2300", "20260304T0100"]
    assert reasons_of(decision, "20260304T0100") == ["daily 3 (oldest)"]
    assert [a.id for a in decision.remove] == ["20260304T1200"]


def test_the_last_verified_archive_is_kept_when_no_rule_keeps_it() -> None:
    archives = [
        ref(at(2026, 3, 9)),
        ref(at(2026, 3, 8)),
        ref(at(2026, 3, 7), verified=True),
        ref(at(2026, 3, 6), verified=True),
        ref(at(2026, 3, 5)),
    ]

    decision = plan_retention(archives, Policy(keep_last=1), now=NOW)

    assert kept_ids(decision) == ["20260309T0230", "20260307T0230"]
    assert reasons_of(decision, "20260307T0230") == ["last verified"]
    assert [a.id for a in decision.remove] == ["20260308T0230", "20260306T0230", "20260305T0230"]


def test_nothing_verified_removes_nothing_and_says_why() -> None:
    archives = [ref(at(2026, 3, d)) for d in (9, 8, 7)]

    decision = plan_retention(archives, Policy(keep_last=1), now=NOW)

    assert decision.remove == []
    assert kept_ids(decision) == ["20260309T0230", "20260308T0230", "20260307T0230"]
    assert reasons_of(decision, "20260309T0230") == ["last 1"]
    assert reasons_of(decision, "20260308T0230")[0] == NO_RULE
    assert decision.note is not None
    assert "verified" in decision.note
    assert "would remove 2" in decision.note


def test_an_archive_late_in_the_utc_day_is_the_next_day_in_helsinki() -> None:
    # 2026-03-10 23:30 UTC is 2026-03-11 01:30 in Helsinki (EET, UTC+2 until 29 March).
    late = ref(at(2026, 3, 10, 23, 30), verified=True, name="late")
    noon = ref(at(2026, 3, 10, 12, 0), name="noon")
    day_before = ref(at(2026, 3, 9, 12, 0), name="day-before")
    two_before = ref(at(2026, 3, 8, 12, 0), name="two-before")
    archives = [late, noon, day_before, two_before]
    policy = Policy(keep_daily=2)

    in_utc = plan_retention(archives, policy, now=NOW)
    in_helsinki = plan_retention(archives, policy, tz="Europe/Helsinki", now=NOW)

    assert kept_ids(in_utc) == ["late", "day-before"]
    assert kept_ids(in_helsinki) == ["late", "noon"]


def test_the_year_and_the_iso_week_follow_the_time_zone_too() -> None:
    # 2026-12-31 23:30 UTC is already 2027 in Helsinki.
    new_year = ref(at(2026, 12, 31, 23, 30), verified=True, name="new-year")
    evening = ref(at(2026, 12, 31, 20, 0), name="evening")
    last_year = ref(at(2025, 12, 31, 12, 0), name="2025")
    yearly = Policy(keep_yearly=2)
    assert kept_ids(plan_retention([new_year, evening, last_year], yearly, now=NOW)) == [
        "new-year",
        "2025",
    ]
    assert kept_ids(
        plan_retention([new_year, evening, last_year], yearly, tz="Europe/Helsinki", now=NOW)
    ) == ["new-year", "evening"]

    # Sunday 2026-03-08 22:30 UTC is Monday 00:30 in Helsinki: the next ISO week.
    monday = ref(at(2026, 3, 8, 22, 30), verified=True, name="monday")
    sunday = ref(at(2026, 3, 8, 12, 0), name="sunday")
    week_before = ref(at(2026, 3, 1, 12, 0), name="week-before")
    weekly = Policy(keep_weekly=2)
    assert kept_ids(plan_retention([monday, sunday, week_before], weekly, now=NOW)) == [
        "monday",
        "week-before",
    ]
    assert kept_ids(
        plan_retention([monday, sunday, week_before], weekly, tz="Europe/Helsinki", now=NOW)
    ) == ["monday", "sunday"]


def test_keep_within_counts_back_from_the_newest_archive_not_in_the_future() -> None:
    archives = [ref(at(2026, 3, d), verified=True) for d in range(1, 11)]
    future = ref(at(2026, 3, 20), name="future")

    decision = plan_retention(
        [*archives, future], Policy(keep_within=timedelta(days=3)), now=at(2026, 3, 15)
    )

    # Newest archive not in the future: 10 March 02:30; kept: created after 7 March 02:30.
    assert kept_ids(decision) == ["future", "20260310T0230", "20260309T0230", "20260308T0230"]
    assert reasons_of(decision, "20260308T0230") == ["within 3d"]
    assert "20260307T0230" in {a.id for a in decision.remove}


def test_a_policy_that_keeps_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="delete every archive"):
        plan_retention([ref(at(2026, 3, 1), verified=True)], Policy(), now=NOW)


@pytest.mark.parametrize(
    "fields",
    [{"keep_daily": -1}, {"keep_last": True}, {"keep_within": timedelta(0)}],
)
def test_invalid_policy_values_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Policy(**fields)  # type: ignore[arg-type]


def test_bad_inputs_are_refused() -> None:
    one = ref(at(2026, 3, 1), verified=True)
    with pytest.raises(ValueError, match="time zone"):
        plan_retention([one], Policy(keep_last=1), tz="Mars/Olympus", now=NOW)
    with pytest.raises(ValueError, match="time zone"):
        plan_retention([ArchiveRef("naive", datetime(2026, 3, 1), True)], Policy(keep_last=1))
    with pytest.raises(ValueError, match="twice"):
        plan_retention([one, one], Policy(keep_last=1), now=NOW)


def test_no_archives_plan_nothing() -> None:
    assert plan_retention([], Policy(keep_last=1), now=NOW) == Decision([], [], None)


# --- properties ---------------------------------------------------------------------------

_ZONES = ["UTC", "Europe/Helsinki", "America/New_York", "Asia/Kolkata", "Pacific/Auckland"]
_START = datetime(2024, 1, 1, tzinfo=UTC)


@st.composite
def archive_lists(draw: st.DrawFn) -> list[ArchiveRef]:
    # Minutes over about three years, with repeats likely (several archives a day, same instant).
    minutes = draw(st.lists(st.integers(0, 3 * 365 * 24 * 60), max_size=60))
    if draw(st.booleans()):  # bunch them up: many on the same days
        minutes = [m // 500 * 500 for m in minutes]
    return [
        ArchiveRef(
            id=f"a{index:03d}",
            created=_START + timedelta(minutes=m),
            verified=draw(st.booleans()),
        )
        for index, m in enumerate(minutes)
    ]


policies = st.builds(
    Policy,
    keep_last=st.integers(0, 4),
    keep_daily=st.integers(0, 8),
    keep_weekly=st.integers(0, 5),
    keep_monthly=st.integers(0, 13),
    keep_yearly=st.integers(0, 3),
    keep_within=st.none() | st.integers(1, 24 * 400).map(lambda h: timedelta(hours=h)),
).filter(lambda p: not p.keeps_nothing)


@settings(max_examples=300, deadline=None)
@given(
    archives=archive_lists(),
    policy=policies,
    tz=st.sampled_from(_ZONES),
    now_minutes=st.integers(0, 4 * 365 * 24 * 60),
)
def test_plan_properties(
    archives: list[ArchiveRef], policy: Policy, tz: str, now_minutes: int
) -> None:
    now = _START + timedelta(minutes=now_minutes)
    decision = plan_retention(archives, policy, tz=tz, now=now)

    kept = [archive for archive, _ in decision.keep]
    kept_set = {a.id for a in kept}
    removed_set = {a.id for a in decision.remove}
    # Every archive is either kept or removed, once.
    assert kept_set | removed_set == {a.id for a in archives}
    assert not kept_set & removed_set
    assert len(kept) + len(decision.remove) == len(archives)
    # Every kept archive says why.
    assert all(why for _, why in decision.keep)
    if archives:
        newest = max(archives, key=lambda a: (a.created, a.id))
        assert newest.id in kept_set
    verified = [a for a in archives if a.verified]
    if verified:
        last_verified = max(verified, key=lambda a: (a.created, a.id))
        assert last_verified.id in kept_set
        assert "last verified" in dict((a.id, w) for a, w in decision.keep)[last_verified.id]
    elif archives:
        assert decision.remove == []
        assert decision.note is not None
    # Applying the plan again to what it kept removes nothing.
    again = plan_retention(kept, policy, tz=tz, now=now)
    assert again.remove == []
    assert {a.id for a, _ in again.keep} == kept_set
    # The order of the list does not matter.
    shuffled = plan_retention(list(reversed(archives)), policy, tz=tz, now=now)
    assert shuffled == decision


def test_the_bases_of_a_kept_incremental_archive_are_kept() -> None:
    # Sunday full archives, incrementals on the other days referring to that week's full one
    # (and Wednesday's to Tuesday's, which carried a new asset). keep_daily 2 keeps Friday and
    # Saturday, whose base is Sunday the 1st: kept with the reason, and nothing else.
    full = ref(at(2026, 3, 1), name="full-01")
    tue = ArchiveRef("inc-03", at(2026, 3, 3), False, ("full-01",))
    wed = ArchiveRef("inc-04", at(2026, 3, 4), False, ("full-01", "inc-03"))
    fri = ArchiveRef("inc-06", at(2026, 3, 6), True, ("full-01", "inc-04"))
    sat = ArchiveRef("inc-07", at(2026, 3, 7), False, ("full-01",))

    decision = plan_retention([full, tue, wed, fri, sat], Policy(keep_daily=2), now=NOW)

    assert kept_ids(decision) == ["inc-07", "inc-06", "inc-04", "inc-03", "full-01"]
    assert decision.remove == []
    assert reasons_of(decision, "inc-04") == ["base of inc-06"]
    # A base's own base is kept too (inc-04 refers to inc-03).
    assert reasons_of(decision, "inc-03") == ["base of inc-04"]
    assert sorted(reasons_of(decision, "full-01")) == [
        "base of inc-03",
        "base of inc-04",
        "base of inc-06",
        "base of inc-07",
    ]


def test_an_archive_no_kept_archive_refers_to_is_still_removed() -> None:
    old_full = ref(at(2026, 2, 22), name="full-22")
    old_inc = ArchiveRef("inc-23", at(2026, 2, 23), False, ("full-22",))
    full = ref(at(2026, 3, 1), verified=True, name="full-01")
    inc = ArchiveRef("inc-02", at(2026, 3, 2), False, ("full-01",))

    decision = plan_retention([old_full, old_inc, full, inc], Policy(keep_last=1), now=NOW)

    assert kept_ids(decision) == ["inc-02", "full-01"]
    assert [a.id for a in decision.remove] == ["inc-23", "full-22"]
    assert reasons_of(decision, "full-01") == ["last verified", "base of inc-02"]
