"""Retention of DBOS's workflow history: finished workflows are deleted after a while.

DBOS keeps every workflow's status, inputs, outputs and step checkpoints forever; on a busy
service that grows without bound (reference/engine-dbos.md §5, guardrail 6). The business record
(who got which file when, the audit trail) lives in our own store and is never pruned here.

What is pruned: workflows that ended successfully or were cancelled, older than the retention.
What is kept: anything pending, enqueued or failed (a failure stays visible until someone acts
on it). Deleting a finished delivery's workflow does not make it sendable again by accident: its
ID would be free, but the delivery's plan step asks the ledger first, which still has the rows.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from dbos import DBOS

from consonance_sftp.logs import get_logger

log = get_logger(__name__)

PRUNED_STATUSES = ["SUCCESS", "CANCELLED"]
BATCH = 500


def prune_history(older_than: timedelta, *, now: datetime | None = None) -> int:
    """Delete finished workflows completed more than ``older_than`` ago; return how many."""
    cutoff = (now or datetime.now(UTC)) - older_than
    deleted = 0
    while True:
        found = DBOS.list_workflows(
            status=PRUNED_STATUSES,
            completed_before=cutoff.isoformat(),
            limit=BATCH,
            load_input=False,
            load_output=False,
        )
        if not found:
            break
        DBOS.delete_workflows([w.workflow_id for w in found])
        deleted += len(found)
        if len(found) < BATCH:
            break
    if deleted:
        log.info("pruned %d finished workflows completed before %s", deleted, cutoff.isoformat())
    return deleted


class HistoryPruner:
    """A background thread that prunes once at start and then every ``every_s`` seconds.
    Several executors pruning at once is harmless: deleting twice deletes nothing more."""

    def __init__(self, older_than: timedelta, every_s: float = 3600.0) -> None:
        self.older_than = older_than
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="dbos-history-pruner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                prune_history(self.older_than)
            except Exception:
                # Retention is housekeeping: a failed round must not stop the process.
                log.exception("pruning DBOS workflow history failed")
            self._stop.wait(self.every_s)
