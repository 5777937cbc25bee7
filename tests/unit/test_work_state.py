"""The engine's states reach the app and the CLI as ``WorkState``, never as DBOS strings."""

from __future__ import annotations

from dbos._sys_db import WorkflowStatusString

from consonance_sftp.engine import work_state
from consonance_sftp.engine.runtime import _WORK_STATES
from consonance_sftp.models import WorkState


def test_every_dbos_status_has_a_work_state() -> None:
    """A status DBOS adds in an upgrade must be mapped on purpose, not read as running."""
    assert sorted(s.value for s in WorkflowStatusString) == sorted(_WORK_STATES)


def test_the_words_status_prints() -> None:
    assert work_state("PENDING") is WorkState.RUNNING
    assert work_state("ENQUEUED") is WorkState.QUEUED
    assert work_state("SUCCESS") is WorkState.DONE
    assert work_state("ERROR") is WorkState.FAILED
    assert work_state("MAX_RECOVERY_ATTEMPTS_EXCEEDED").value == "max_recovery_attempts_exceeded"


def test_retry_runs_again_what_ended_failed() -> None:
    failed = {s for s in WorkState if s.ended_failed}
    assert failed == {WorkState.FAILED, WorkState.GAVE_UP}
    assert all(s.finished for s in failed) and not WorkState.QUEUED.finished


def test_counts_keep_the_order_status_has_always_printed() -> None:
    """``status`` sorted its counts by the DBOS names; the enum is declared in that order."""
    by_dbos_name = [work_state(name) for name in sorted(_WORK_STATES)]
    assert by_dbos_name == list(WorkState)
