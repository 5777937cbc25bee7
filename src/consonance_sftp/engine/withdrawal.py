"""The withdrawal workflow: remove from a partner the files it was sent, then record it.

A withdrawn title's files come off the partners whose profile says so (``flows.marketing``
plans it, ``app.dispatch`` builds the request: a ``DeliveryRequest`` whose ``action`` is
``withdraw``). It is a remote write like a delivery, so it goes the same way: held by a pause
or a closed delivery window before it is enqueued, on the partner's delivery queue (its
connection cap), through the same ``DeliveryTransport`` (a changed host key alerts and pauses
the partner), checking the executor's fence before each removal. One DBOS workflow per
(partner, files, generation withdrawn); its steps are safe to run twice:

* ``remove:<path>``, one per file: the transport's ``remove``, which answers "already gone"
  rather than failing when the file is not there (a re-run after a crash, or a removal whose
  answer was lost with the connection);
* ``record``: the ``WithdrawalLedger`` marks the ledger's ``sent`` rows of these files
  ``withdrawn`` and appends one ``package.withdrawn`` event (removed and already-gone paths);
  a replay of the step appends nothing.

Retryable errors are retried by DBOS with the engine's backoff inside the step, each attempt
logged as for deliveries. A failure for good raises one ``withdrawal_failed`` alert (not for a
changed host key: that has raised its own alert and paused the partner), records nothing in
the ledger (its rows still say ``sent``: the files not removed are still there), and ends the
workflow failed with a ``DeliveryFailed``; ``retry`` runs it again from the failed removal.
"""

from __future__ import annotations

import asyncio
from typing import Any

from dbos import DBOS

from consonance_sftp.errors import ConsonanceSftpError
from consonance_sftp.logs import get_logger, log_context
from consonance_sftp.models import Alert, AlertSeverity
from consonance_sftp.ports.delivery import DeliveryRequest, WithdrawalRecord

from .delivery import (
    MAX_RECOVERY_ATTEMPTS,
    _current,
    _reporting_attempts,
    fail_for_good,
    failure_reason,
    last_error,
    step_options,
)

log = get_logger(__name__)

WITHDRAW_WORKFLOW = "consonance.withdraw"


async def _remove(partner: str, remote_path: str) -> bool:
    """Remove one file; False: it was already gone."""
    deps = _current()
    deps.fence.check()
    return await deps.transport.remove(partner, remote_path, deps.fence)


async def _record(
    workflow_id: str, req: DeliveryRequest, removed: list[str], gone: list[str]
) -> None:
    deps = _current()
    if deps.withdrawals is None:
        raise ConsonanceSftpError("the engine has no withdrawal ledger in this process")
    record = WithdrawalRecord(
        workflow_id=workflow_id,
        request=req,
        removed=tuple(removed),
        already_gone=tuple(gone),
        executor_id=deps.executor_id,
    )
    await asyncio.to_thread(deps.withdrawals.withdrawn, record)


async def _alert_failure(workflow_id: str, req: DeliveryRequest, reason: str) -> None:
    """One alert for a withdrawal that failed for good, as its own step (raised once)."""
    deps = _current()
    alert = Alert(
        severity=AlertSeverity.WARNING,
        kind="withdrawal_failed",
        message=f"withdrawal of {req.package} from partner {req.partner!r} failed: {reason}",
        partner=req.partner,
        flow=req.flow,
        details={"workflow_id": workflow_id, "package": req.package, "reason": reason},
    )
    await asyncio.to_thread(deps.alerts.raise_alert, alert)


@DBOS.workflow(name=WITHDRAW_WORKFLOW, max_recovery_attempts=MAX_RECOVERY_ATTEMPTS)
async def withdraw(request: dict[str, Any]) -> dict[str, Any]:
    """Remove the request's files from its partner; returns what was removed and gone."""
    req = DeliveryRequest.from_dict(request)
    workflow_id = DBOS.workflow_id or ""
    retry = _current().retry
    removed: list[str] = []
    gone: list[str] = []
    with log_context(workflow=workflow_id, partner=req.partner, flow=req.flow):
        try:
            # One path once, whatever the request lists (two ledger rows, one file).
            for path in dict.fromkeys(f.remote_path for f in req.files):
                was_there = await DBOS.run_step_async(
                    step_options(f"remove:{path}", retry),
                    _reporting_attempts(f"removal of {path}", req, retry, _remove),
                    req.partner,
                    path,
                )
                (removed if was_there else gone).append(path)
            await DBOS.run_step_async(
                step_options("record", retry), _record, workflow_id, req, removed, gone
            )
        except Exception as exc:
            last = last_error(exc)
            reason = failure_reason(exc, req.partner)
            what = f"withdrawal of {req.package} from partner {req.partner!r}"
            await fail_for_good(what, last, reason, _alert_failure, workflow_id, req)
    return {"workflow_id": workflow_id, "removed": removed, "already_gone": gone}
