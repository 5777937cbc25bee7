"""The archive flow's ``[flows.<name>.drill]`` table: durations, defaults, refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from consonance_sftp.config.archive import parse_duration
from consonance_sftp.config.flows import ArchiveFlow


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("2w", timedelta(weeks=2)),
        (" 90 s ", timedelta(seconds=90)),
        ("off", None),
        ("Never", None),
    ],
)
def test_durations_are_a_number_and_a_unit_or_off(text: str, expected: timedelta | None) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["7", "0d", "1y", "-1d", "weekly", ""])
def test_other_durations_are_refused_saying_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="a number and a unit"):
        parse_duration(text)


def test_the_drill_defaults_to_weekly_one_archive_all_files_overdue_after_two_weeks() -> None:
    drill = ArchiveFlow.model_validate({"kind": "archive"}).drill
    assert drill.interval == timedelta(days=7) and drill.overdue == timedelta(days=14)
    assert drill.sample_archives == 1 and drill.sample_percent == 100
    assert drill.identity_file is None


def test_overdue_follows_every_unless_set_and_off_means_never() -> None:
    def drill(**table: object) -> ArchiveFlow:
        return ArchiveFlow.model_validate({"kind": "archive", "drill": table})

    assert drill(every="1d").drill.overdue == timedelta(days=2)
    assert drill(every="1d", overdue_after="3d").drill.overdue == timedelta(days=3)
    assert drill(every="off").drill.interval is None and drill(every="off").drill.overdue is None
    assert drill(every="off", overdue_after="30d").drill.overdue == timedelta(days=30)


@pytest.mark.parametrize(
    "table",
    [{"every": "weekly"}, {"sample_percent": 0}, {"sample_archives": 0}, {"sample": 10}],
)
def test_a_bad_drill_table_is_refused(table: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ArchiveFlow.model_validate({"kind": "archive", "drill": table})
