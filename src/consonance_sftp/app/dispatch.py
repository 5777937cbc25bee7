"""Dispatch: the one place that turns planned work into the engine's delivery requests.

A flow plans ``Outbound`` packages (``flows/``); the engine delivers ``DeliveryRequest``s
(``engine/``). Everything in between is here: where a package lands on a partner
(``folder_of``), the request for one package (``delivery_request``) or a planned run
(``requests``), what a dry run shows (``remote_files``), the request of an explicit resend
(``resend_request``: a recorded delivery's files again, one generation up) and the request
removing a withdrawn title's files from a partner (``withdrawal_request``, and
``withdrawal_requests`` for a planned run: submitted like deliveries, so a pause or a closed
delivery window holds them too). The service's runs, the event and tick workflows, ``resend``
and the demo all build their requests here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from consonance_sftp.errors import ConfigError, ConfigProblem, ConsonanceSftpError
from consonance_sftp.flows.base import Outbound, PlannedRun, Withdrawal
from consonance_sftp.formats.packaging import join_remote
from consonance_sftp.ports.delivery import DeliveryRequest, FileToSend, RequestAction

if TYPE_CHECKING:
    from consonance_sftp.app import App
    from consonance_sftp.config.flows import FlowBase


def folder_of(app: App, flow: FlowBase, partner: str) -> str:
    """The remote path of the flow's folder on that partner (e.g. ``/in``)."""
    folders = app.partner_config(partner).folders
    if flow.folder not in folders:
        raise ConfigError(
            f"partner {partner!r} has no {flow.folder!r} folder",
            [ConfigProblem(f"partners.{partner}.folders", f"add {flow.folder} = '/path'")],
        )
    return folders[flow.folder]


def delivery_request(
    outbound: Outbound,
    *,
    flow: str,
    folder: str,
    trigger: str,
    generation: int | None = None,
) -> DeliveryRequest:
    """The engine's request for a planned package: every file, under the partner's folder
    (``folder`` is the remote path of the flow's folder on that partner, e.g. ``/in``).
    The generation is the outbound's own when it has one (a marketing package released again
    after a withdrawal), so it is a new workflow rather than the old one's result."""
    if generation is None:
        generation = int(getattr(outbound, "generation", 0))
    files = []
    for f in outbound.plan.files:
        if f.source is None:
            raise ValueError(f"{f.remote_path}: the plan must be materialized before delivery")
        files.append(
            FileToSend(
                source=str(f.source),
                remote_path=join_remote(folder, f.remote_path),
                sha256=f.sha256,
                size=f.size,
                upload_path=join_remote(folder, f.upload_path) if f.upload_path else None,
                asset_version_id=f.version_id,
            )
        )
    return DeliveryRequest(
        flow=flow,
        partner=outbound.partner,
        package=outbound.label,
        files=tuple(files),
        generation=generation,
        trigger=trigger,
        isbn=outbound.isbn,
    )


def request_for(app: App, flow: str, outbound: Outbound, *, trigger: str) -> DeliveryRequest:
    """The request for one package of the named flow, in that partner's folder of the flow."""
    config = app.settings.flow(flow)  # a typo is answered with the closest name
    folder = folder_of(app, config, outbound.partner)
    return delivery_request(outbound, flow=flow, folder=folder, trigger=trigger)


def requests(
    app: App, flow: str, outbounds: Iterable[Outbound], *, trigger: str
) -> list[DeliveryRequest]:
    """The requests of a planned run: one per package, in the plan's order."""
    return [request_for(app, flow, o, trigger=trigger) for o in outbounds]


def withdrawal_request(withdrawal: Withdrawal, *, flow: str, trigger: str) -> DeliveryRequest:
    """The engine's request removing a withdrawn title's files from one partner: each file
    as the ledger recorded it (full remote path, SHA-256, size; no local copy is needed), the
    generation withdrawn (so the same withdrawal planned again attaches to its workflow)."""
    files = tuple(
        FileToSend(source="", remote_path=f.remote_path, sha256=f.sha256, size=f.size)
        for f in withdrawal.files
    )
    return DeliveryRequest(
        flow=flow,
        partner=withdrawal.partner,
        package=withdrawal.label,
        files=files,
        generation=withdrawal.generation,
        trigger=trigger,
        isbn=withdrawal.isbn,
        action=RequestAction.WITHDRAW,
        work_id=withdrawal.work_id,
    )


def withdrawal_requests(planned: PlannedRun, *, trigger: str) -> list[DeliveryRequest]:
    """The withdrawal requests of a planned run, in the plan's order."""
    return [withdrawal_request(w, flow=planned.flow, trigger=trigger) for w in planned.withdrawals]


def remote_files(app: App, flow: FlowBase, outbound: Outbound) -> list[FileToSend]:
    """The files of a package as they will land on the partner's server (for dry runs)."""
    request = delivery_request(
        outbound, flow="-", folder=folder_of(app, flow, outbound.partner), trigger="-"
    )
    return list(request.files)


def workflow_owner(workflow_id: str) -> str:
    """The partner of ``dlv-<partner>-<hash>-g<n>`` / ``wdr-<partner>-<hash>-g<n>`` /
    ``ing-<partner>-<hash>``, or the flow of
    ``sched-flow:<flow>-<tick time>`` / ``evt-<flow>-<hash>``; partner and flow names may
    hold '-'."""
    if workflow_id.startswith("sched-flow:"):
        return workflow_id.removeprefix("sched-flow:").rsplit("-", 3)[0]
    if workflow_id.startswith("evt-"):
        return workflow_id.removeprefix("evt-").rsplit("-", 1)[0]
    parts = workflow_id.split("-")
    if workflow_id.startswith("ing-"):
        return "-".join(parts[1:-1])
    return "-".join(parts[1:-2]) if len(parts) >= 4 else ""


def resend_request(app: App, workflow_id: str, *, by: str, reason: str) -> DeliveryRequest:
    """The request for a new generation of a recorded delivery (same files, same places)."""
    rows = [
        r
        for r in app.store.list_deliveries(partner=workflow_owner(workflow_id) or None)
        if r.workflow_id == workflow_id
    ]
    if not rows:
        raise ConsonanceSftpError(
            f"no delivery {workflow_id!r} in the ledger",
            hint="Find it with 'consonance-sftp history --isbn ... --partner ...'.",
        )
    first = rows[0]
    newest = max(
        (app.store.find_delivery(r.key) for r in rows),
        key=lambda r: r.generation if r is not None else -1,
    )
    generation = (newest.generation if newest is not None else first.generation) + 1
    files = []
    for r in sorted(rows, key=lambda r: r.id or 0):
        if not r.source or not os.path.exists(r.source):
            raise ConsonanceSftpError(
                f"the local copy of {r.remote_path} is gone ({r.source or 'no source recorded'})",
                hint="Run the flow again for the title: 'consonance-sftp run FLOW --isbn ...'.",
            )
        files.append(
            FileToSend(
                source=r.source,
                remote_path=r.remote_path,
                sha256=r.sha256,
                size=r.size,
                asset_version_id=r.asset_version_id,
            )
        )
    return DeliveryRequest(
        flow=first.flow,
        partner=first.partner,
        package=first.package or workflow_id,
        files=tuple(files),
        generation=generation,
        trigger=f"resend:{by}: {reason}",
        isbn=first.isbn,
    )
