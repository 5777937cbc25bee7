"""Cron schedules stored in the DBOS system database, so each tick runs once across processes.

DBOS gives each tick the workflow ID ``sched-<name>-<tick time>``; a second process that fires
the same tick finds the ID taken and enqueues nothing (or attaches to the same workflow), so the
tick runs once however many executors run the schedule thread. ``ensure_schedule`` is
idempotent, so every process can declare the schedules it knows about at start-up.
"""

from __future__ import annotations

from typing import Any

from dbos import DBOS
from dbos._error import DBOSException

from consonance_sftp.errors import EngineError
from consonance_sftp.logs import get_logger

log = get_logger(__name__)


def ensure_schedule(
    name: str,
    workflow: Any,
    cron: str,
    *,
    timezone: str | None = None,
    context: Any = None,
    queue_name: str | None = None,
    backfill: bool = False,
) -> bool:
    """Create the schedule unless one with this name already has this definition; a changed
    definition replaces it. Returns True if it was created or replaced.

    ``backfill``: on start-up, run the ticks missed while no process was running (DBOS's
    ``automatic_backfill``); by default missed ticks are skipped and the next one runs.
    """
    existing = DBOS.get_schedule(name)
    if existing is not None:
        same = (
            existing["schedule"] == cron
            and existing.get("cron_timezone") == timezone
            and bool(existing.get("automatic_backfill")) == backfill
        )
        if same:
            return False
        DBOS.delete_schedule(name)
    try:
        DBOS.create_schedule(
            schedule_name=name,
            workflow_fn=workflow,
            schedule=cron,
            context=context,
            cron_timezone=timezone,
            queue_name=queue_name,
            automatic_backfill=backfill,
        )
    except DBOSException as exc:
        if "already exists" in str(exc):
            # Another process created it between our read and our write: same outcome.
            return False
        raise EngineError(f"schedule {name!r} ({cron!r}) could not be created: {exc}") from exc
    log.info("schedule created", extra={"schedule": name, "cron": cron})
    return True
