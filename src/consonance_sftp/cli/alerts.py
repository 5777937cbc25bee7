"""``alerts list|ack``: what the service raised for a person to look at (a changed host key, a
delivery that failed for good, a sales report that did not arrive, a failed restore drill...),
and saying "seen, handled". ``status`` shows how many are waiting.

Acknowledging records who and why on the alert and on the audit trail (``alert.acknowledged``).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from consonance_sftp.cli.main import acting_user, emit_json, load_app
from consonance_sftp.formats.wording import counted

if TYPE_CHECKING:
    from consonance_sftp.app.alerts import AlertRecord

alerts_app = typer.Typer(
    help="Alerts raised for a person: list them, acknowledge them.", no_args_is_help=True
)
console = Console(highlight=False, emoji=False, soft_wrap=True)

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": ""}


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(alerts_app, name="alerts")


def alerts_table(rows: list[AlertRecord], *, title: str | None = None) -> Table:
    """Alerts as a table, newest first (also printed by ``status``)."""
    table = Table(
        "id",
        "raised",
        "severity",
        "kind",
        "partner",
        "flow",
        Column("message", overflow="fold"),
        "acknowledged",
        title=title,
        title_justify="left",
    )
    for a in rows:
        style = SEVERITY_STYLE.get(a.severity.value, "")
        seen = (
            f"{a.acknowledged_at.astimezone(UTC):%Y-%m-%d %H:%M} by {a.acknowledged_by}"
            if a.acknowledged_at
            else ""
        )
        table.add_row(
            str(a.id),
            f"{a.ts.astimezone(UTC):%Y-%m-%d %H:%M}",
            f"[{style}]{a.severity.value}[/{style}]" if style else a.severity.value,
            escape(a.kind),
            escape(a.partner or ""),
            escape(a.flow or ""),
            escape(a.message),
            escape(seen),
        )
    return table


@alerts_app.command("list")
def list_cmd(
    show_all: Annotated[
        bool, typer.Option("--all", help="Acknowledged alerts too (default: only open ones).")
    ] = False,
    partner: Annotated[str | None, typer.Option(help="Only this partner's.")] = None,
    kind: Annotated[
        str | None, typer.Option(help="Only this kind, e.g. host_key_mismatch.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
) -> None:
    """Alerts newest first: by default those nobody has acknowledged yet."""
    rows = load_app().store.list_alerts(
        unacknowledged=not show_all, partner=partner, kind=kind, limit=limit
    )
    if as_json:
        emit_json([asdict(a) for a in rows])
        return
    if not rows:
        console.print("no alerts" if show_all else "no open alerts")
        return
    console.print(alerts_table(rows))
    console.print(
        counted(len(rows), "alert")
        + ("" if show_all else " open; acknowledge with: consonance-sftp alerts ack ID"),
        markup=False,
    )


@alerts_app.command("ack")
def ack_cmd(
    ids: Annotated[list[int], typer.Argument(help="The alert IDs (see 'alerts list').")],
    reason: Annotated[
        str | None, typer.Option(help="What was done about it (on the audit trail).")
    ] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Who acknowledges (default: the login name).")
    ] = None,
) -> None:
    """Mark alerts as seen and handled; who and why go on the audit trail."""
    from consonance_sftp.app.alerts import acknowledge

    done, missing = acknowledge(load_app().store, ids, by=acting_user(by), reason=reason)
    for alert in done:
        console.print(f"alert {alert.id} acknowledged ({alert.kind})", markup=False)
    if missing:
        console.print(
            f"no alert {', '.join(map(str, missing))} (see 'consonance-sftp alerts list --all')",
            markup=False,
        )
        raise typer.Exit(1)


@alerts_app.command("notify")
def notify_cmd(
    test: Annotated[
        bool, typer.Option("--test", help="Send a test notification instead of the alerts.")
    ] = False,
    target: Annotated[
        str | None, typer.Option(help="Only this notification target (its name).")
    ] = None,
    digest: Annotated[
        bool,
        typer.Option(
            "--digest",
            help="Send each daily-digest target its digest now: the alerts since its last one.",
        ),
    ] = False,
) -> None:
    """Send open alerts that no target has been told about yet, and daily digests whose hour
    has come (``serve`` does this by itself every few seconds); with --digest, each digest
    target's digest at once; with --test, a test notification to each target. Exit 1 when a
    send failed."""
    import asyncio

    from consonance_sftp.app.notify import Notifier

    app = load_app()
    targets = app.settings.sent_targets()
    if target is not None:
        targets = [(n, t) for n, t in targets if n == target]
        if not targets:
            known = ", ".join(n for n, _ in app.settings.sent_targets()) or "none"
            console.print(f"no notification target named {target} (targets: {known})")
            raise typer.Exit(1)
    if not targets:
        console.print(
            "no e-mail, webhook or Apprise notification targets in the config "
            "(see docs/how-to/operate.md, 'Alerts by e-mail and webhook')",
            markup=False,
        )
        return
    notifier = Notifier(app.store, targets)
    if digest and not any(t.digest != "off" for _, t in targets):
        console.print('no notification target with digest = "daily" in the config', markup=False)
        raise typer.Exit(1)
    if test:
        sent = asyncio.run(notifier.send_test())
    elif digest:
        sent = asyncio.run(notifier.send_digests(now=True))
    else:
        sent = asyncio.run(notifier.send_due())
    if not sent:
        console.print(
            "nothing to send: no alert since the last digest"
            if digest
            else "nothing to send: every open alert was sent to its targets"
        )
    for s in sent:
        if s.subject == "test":
            what = "test notification"
        elif s.subject.startswith("digest:"):
            what = f"digest of {counted(s.alerts, 'alert')}"
        else:
            what = s.subject.replace(":", " ")
        console.print(
            f"{s.target}: {what} sent" if s.ok else f"{s.target}: {what} FAILED: {s.error}",
            markup=False,
        )
    if any(not s.ok for s in sent):
        raise typer.Exit(1)
