"""The demo's flow 3: a designer sends a revised cover and a misnamed file back.

After the production handoff the printer's proof shows a problem with the cover: the
production editor reopens the title's "Cover brief" to-do in Consonance, and the designer
uploads a revised cover named by the ISBN rule (``<ISBN>_cover_v2.pdf``) next to a file whose
name holds no ISBN. One poll of the starter's ``design-intake`` flow runs through the durable
engine, exactly as ``consonance-sftp run design-intake`` does; then the demo reads back what
happened: the cover as the next version of the title's cover (``assets ISBN``), the to-do
completed (through the Consonance client, from the sandbox), the other file in quarantine with
its reason (``quarantine list``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from consonance_sftp.errors import ConsonanceSftpError

if TYPE_CHECKING:
    from consonance_sftp.app import App
    from consonance_sftp.sandbox.services import RunningSandbox

TODO = "Cover brief"
MISNAMED = "final artwork.pdf"


def intake_flow(app: App) -> tuple[str, str, str]:
    """The starter's matching intake flow: (flow name, its partner, the partner's folder)."""
    from consonance_sftp.config import IntakeFlow

    for name, flow in app.settings.flows.items():
        if isinstance(flow, IntakeFlow) and flow.enabled:
            for partner in flow.partners:
                if flow.match_for(partner) is not None:
                    folder = app.partner_config(partner).folders[flow.folder]
                    return name, partner, folder
    raise ConsonanceSftpError("the config has no intake flow that matches files")


async def reopen_todo(app: App, sb: RunningSandbox, work_id: int) -> Any:
    """The title's "Cover brief" to-do, reopened in the sandbox as a production editor would in
    Consonance (the seed completes early to-dos of titles far along)."""
    from consonance_sftp.sandbox.consonance.control import SandboxControl

    async with app.consonance() as api:
        work = await api.get_work(work_id)
    todo = next((t for t in (work.todos if work else ()) if t.name == TODO), None)
    if todo is None:
        raise ConsonanceSftpError(f"work {work_id} has no {TODO!r} to-do")
    if todo.completed:
        with SandboxControl(sb.api_url) as control:
            # A thread: the sandbox is served by this very event loop.
            await asyncio.to_thread(control.complete_todo, todo.id, False)
    return todo


async def designer_sends(
    console: Console, app: App, sb: RunningSandbox, work: Any, isbn: str
) -> None:
    """Upload the revised cover and the misnamed file, poll once, say what became of them."""
    from consonance_sftp.app.intake import poll_inbox_now
    from consonance_sftp.sandbox.consonance.files import make_pdf

    name, partner, folder = intake_flow(app)
    todo = await reopen_todo(app, sb, work.id)
    console.print(f"to-do {TODO!r} (#{todo.id}) on work {work.id} is open: a new cover is due")
    inbox = sb.partner_folder(partner, folder)
    inbox.mkdir(parents=True, exist_ok=True)
    cover = f"{isbn}_cover_v2.pdf"
    (inbox / cover).write_bytes(make_pdf(f"{work.title}: cover, revised", 1))
    (inbox / MISNAMED).write_bytes(make_pdf("artwork without an ISBN", 1))
    console.print(f"the {partner} uploads {cover} and {MISNAMED!r} to {folder}")

    report, results = await poll_inbox_now(app, name)
    console.print(f"flow {name} polls {partner}'s {folder} once (as 'run {name}' does):")
    for taken in report.taken:
        result = results.get(taken.workflow_id or "", {})
        outcome = result.get("error") or result.get("outcome") or "taken"
        console.print(f"  {escape(taken.path)}: {outcome}: {escape(str(result.get('reason')))}")
    if report.errors:
        raise ConsonanceSftpError(f"the intake poll failed: {report.errors}")
    await _read_back(console, app, work.id, isbn)


async def _read_back(console: Console, app: App, work_id: int, isbn: str) -> None:
    from consonance_sftp.app.assets import asset_history
    from consonance_sftp.app.quarantine import label_of, quarantined

    found = await asset_history(app, isbn, offline=True)
    table = Table("assets " + isbn, "v", "current", "from", "original name", "supersedes")
    for line in found.lines:
        v = line.version
        if "cover" not in v.kind:
            continue
        table.add_row(
            v.kind,
            str(v.version),
            "yes" if line.current else "",
            v.partner or v.source or "",
            v.original_name or "",
            f"v{line.supersedes_version}" if line.supersedes_version else "",
        )
    console.print(table)

    async with app.consonance() as api:
        work = await api.get_work(work_id)
    todo = next((t for t in (work.todos if work else ()) if t.name == TODO), None)
    state = "completed" if todo is not None and todo.completed else "still open"
    console.print(f"read back from Consonance: to-do {TODO!r} {state}")

    rows = quarantined(app)
    console.print(f"quarantine ({len(rows)}):")
    for row in rows:
        where = f"#{row.id} {row.partner} {escape(row.remote_path)}"
        console.print(f"  {where}: {label_of(row.reason)}")
        console.print(f"    why: {escape(row.reason or '')}", soft_wrap=True)
    if state != "completed" or not rows:
        raise ConsonanceSftpError("the designer's files did not land as the demo expects")
