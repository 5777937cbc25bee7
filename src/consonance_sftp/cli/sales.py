"""``sales check|list|show|export|release``: distributor sales reports by hand and in the
sales ledger. ``check`` reads a file and writes nothing (no config needed); the others read
or act on the ledger through the App (``app.sales_handler``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from consonance_sftp.cli.main import acting_user, emit_json, load_app
from consonance_sftp.errors import ConsonanceSftpError

if TYPE_CHECKING:
    from consonance_sftp.app.sales_handler import SalesImportRecord, SalesReportRecord

sales_app = typer.Typer(
    help="Sales reports: check a file by hand; list, show, export and release what was loaded.",
    no_args_is_help=True,
)
console = Console(highlight=False, emoji=False, soft_wrap=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(sales_app, name="sales")


@sales_app.command("check")
def check_cmd(
    file: Annotated[Path, typer.Argument(help="The report file.", exists=True, dir_okay=False)],
    layout: Annotated[
        str, typer.Option(help="The layout to read it as (default: recognised by its header).")
    ] = "auto",
    period: Annotated[
        str | None,
        typer.Option(help="The report's month (YYYY-MM) when neither the file nor its name says."),
    ] = None,
    currency: Annotated[
        str | None,
        typer.Option(help="The house currency of Consonance-template values (default: none)."),
    ] = None,
    flow: Annotated[
        str | None,
        typer.Option(help="A sales_in flow whose `generic` mapping reads it (--layout generic)."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Read a report as the sales_in flow would: layout, encoding, period, currency, totals
    (and whether they match the file's own), lines accepted and rejected. Writes nothing."""
    from consonance_sftp.app.sales_handler import check_file

    app = load_app() if layout == "generic" or flow is not None else None
    result = check_file(
        file, layout=layout, period=period, house_currency=currency, app=app, flow=flow
    )
    if as_json:
        emit_json(result)
    elif result["layout"] is not None:
        _print_check(file, result)
        if result["layout"] == "consonance" and currency is None and _no_currency(result):
            console.print(
                "  hint: the template's values are in the house currency: give it, e.g. "
                "--currency GBP (a flow uses its house_currency)"
            )
    if result["layout"] is None:
        if not as_json:
            raise ConsonanceSftpError(_refusal_words(file, result), hint=_refusal_hint(result))
        raise typer.Exit(1)


def _no_currency(result: dict[str, Any]) -> bool:
    return any(rej["column"] == "currency" for rej in result["rejections"])


def _refusal_words(file: Path, result: dict[str, Any]) -> str:
    """The refusal, naming the file once (the reason often starts with its name)."""
    reason = str(result["reason"])
    return reason if reason.startswith(f"{file.name}:") else f"{file.name}: {reason}"


def _refusal_hint(result: dict[str, Any]) -> str | None:
    """What to do next, in ``sales check``'s own options: a file no layout fits can be read
    as a named layout (the names listed) or through a flow's generic column mapping."""
    from consonance_sftp.app.sales_handler import layout_names

    hint = result.get("hint")
    if result.get("refused") not in ("unknown-layout", "header-changed"):
        return hint
    reason = str(result["reason"])
    generic = (
        "map the partner's columns in the config (flows.NAME.generic), "
        "then --layout generic --flow NAME"
    )
    if reason.startswith("no layout named"):
        return f"--layout NAME, {hint}" if hint else None  # hint: "one of: ..." (the names)
    if "'generic' needs a column mapping" in reason:
        return generic
    names = ", ".join(n for n in layout_names() if n not in ("auto", "generic"))
    return f"read it as a given layout: --layout NAME (one of: {names}); or {generic}"


def _print_check(file: Path, r: dict[str, Any]) -> None:
    console.print(f"[bold]{file.name}[/bold]: {r['title']} ({r['layout']} {r['layout_version']})")
    read = f"{r['container']}"
    if r["encoding"]:
        read += f", {r['encoding']}"
    if r["delimiter"]:
        read += f", delimiter {r['delimiter']!r}"
    if r["sheet"]:
        read += f", sheet {r['sheet']!r}"
    console.print(f"  read as: {read}; header on line {r['header_line']}")
    for note in r["notes"]:
        console.print(f"  note: {note}")
    console.print(f"  kind: {r['kind']}")
    if r["period_from"] or r["period_to"]:
        console.print(f"  period: {r['period_from'] or '?'} to {r['period_to'] or '?'}")
    else:
        console.print("  period: not known (no dates in the file or its name: --period YYYY-MM)")
    console.print(f"  currency: {r['currency'] or '?'}")
    console.print(
        f"  lines: {r['lines']:,}, accepted {r['accepted']:,}, rejected {r['rejected']:,}"
    )
    for cur, sums in sorted(r["totals"].items()):
        shown = ", ".join(f"{k} {v}" for k, v in sums.items())
        console.print(f"  totals {cur}: {shown}")
    console.print("  reconciled: " + reconciled_words(r["reconciled"], r["mismatches"]))
    for rej in r["rejections"][:200]:
        column = f" ({rej['column']})" if rej["column"] else ""
        console.print(f"  rejected line {rej['line']}{column}: {rej['reason']}")
    if len(r["rejections"]) > 200:
        console.print(f"  ... and {len(r['rejections']) - 200:,} more (--json lists them all)")


def reconciled_words(reconciled: bool | None, mismatches: list[str] | None = None) -> str:
    """Whether a report's totals matched the file's own, in words (``check``/``show``)."""
    match reconciled:
        case None:
            return "the file states no totals"
        case True:
            return "[green]yes[/green], to the cent"
        case _:
            return "[red]no[/red]" + (": " + "; ".join(mismatches) if mismatches else "")


def _report_dict(r: SalesReportRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "flow": r.flow,
        "partner": r.partner,
        "name": r.name,
        "original_path": r.original_path,
        "intake_id": r.intake_id,
        "sha256": r.sha256,
        "layout": r.layout,
        "layout_version": r.layout_version,
        "kind": r.kind,
        "period_from": r.period_from.isoformat() if r.period_from else None,
        "period_to": r.period_to.isoformat() if r.period_to else None,
        "business_model": r.business_model,
        "currencies": list(r.currencies),
        "status": r.status,
        "reason": r.reason,
        "lines": r.lines_read,
        "accepted": r.accepted,
        "rejected": r.rejected,
        "duplicate_lines": r.duplicate_lines,
        "duplicate_of": r.duplicate_of,
        "totals": r.totals,
        "stated_totals": r.stated_totals,
        "reconciled": r.reconciled,
        "created_at": r.created_at.isoformat(),
    }


def _import_dict(i: SalesImportRecord) -> dict[str, Any]:
    return {
        "id": i.id,
        "flow": i.flow,
        "scope": i.scope,
        "lines": i.lines,
        "path": i.path,
        "sha256": i.sha256,
        "created_at": i.created_at.isoformat(),
    }


def duplicated_words(r: SalesReportRecord) -> str:
    """What a report duplicated, in words (``sales list``/``show``)."""
    if r.status == "duplicate":
        return f"the same file as report {r.duplicate_of}"
    if r.duplicate_lines:
        return f"{r.duplicate_lines:,} lines already loaded by report {r.duplicate_of}"
    return ""


@sales_app.command("list")
def list_cmd(
    partner: Annotated[str | None, typer.Option(help="Only this partner's reports.")] = None,
    period: Annotated[
        str | None, typer.Option(help="Only reports whose period overlaps this month (YYYY-MM).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, one per report.")] = False,
) -> None:
    """The sales reports taken in, newest first: status, lines, and what each duplicated."""
    reports = load_app().store.list_sales_reports(partner=partner, period=period, limit=limit)
    if as_json:
        for r in reports:
            emit_json(_report_dict(r))
        return
    if not reports:
        console.print("no sales reports")
        return
    table = Table(box=None)
    for column in ("id", "partner", "file", "layout", "period", "status", "lines", "note"):
        table.add_column(column, overflow="fold")  # a narrow terminal wraps, never cuts
    for r in reports:
        when = f"{r.period_from or '?'}..{r.period_to or '?'}"
        note = duplicated_words(r) or (r.reason or "")
        lines = f"{r.accepted:,} ok, {r.rejected:,} rejected"
        table.add_row(str(r.id), r.partner, r.name, r.layout, when, r.status, lines, note)
    console.print(table)


@sales_app.command("show")
def show_cmd(
    report: Annotated[int, typer.Argument(help="The report's id (sales list).")],
    lines: Annotated[int, typer.Option(help="Show at most this many lines.")] = 50,
    as_json: AsJson = False,
) -> None:
    """One report: its facts, totals, lines (each marked when an earlier report brought it),
    rejections, and the import files made from it."""
    app = load_app()
    store = app.store
    r = store.get_sales_report(report)
    if r is None:
        raise ConsonanceSftpError(
            f"no sales report {report}", hint="'consonance-sftp sales list' shows their ids"
        )
    shown: list[dict[str, Any]] = []
    for n, stored in enumerate(store.sales_report_lines(report)):
        if n >= lines:
            break
        ln = stored.line
        shown.append(
            {
                "line": ln.line,
                "isbn13": ln.isbn13,
                "sales_date": ln.sales_date.isoformat(),
                "quantity": ln.quantity,
                "value": str(ln.value),
                "return_quantity": ln.return_quantity,
                "return_value": str(ln.return_value),
                "currency": ln.currency,
                "channel_id": ln.channel_id,
                "duplicate_of_report": stored.duplicate_of_report,
                "import_id": stored.import_id,
            }
        )
    rejections = [
        {"line": j.line, "column": j.column, "reason": j.reason}
        for j in store.sales_report_rejections(report)
    ]
    imports = [_import_dict(i) for i in store.list_sales_imports(report_id=report)]
    if as_json:
        emit_json(
            {
                **_report_dict(r),
                "duplicated": duplicated_words(r),
                "lines_shown": shown,
                "rejections": rejections,
                "imports": imports,
            }
        )
        return
    console.print(f"[bold]report {r.id}[/bold]: {r.name} from {r.partner} (flow {r.flow})")
    console.print(f"  layout: {r.layout} {r.layout_version} ({r.kind})")
    console.print(f"  period: {r.period_from or '?'} to {r.period_to or '?'}")
    console.print(f"  status: {r.status}" + (f": {r.reason}" if r.reason else ""))
    if r.released_at is not None:
        when = r.released_at.isoformat(timespec="seconds")
        console.print(f"  released: by {r.released_by} at {when}")
    if words := duplicated_words(r):
        console.print(f"  duplicated: {words}")
    console.print(
        f"  lines: {r.lines_read:,} read, {r.accepted:,} accepted, {r.rejected:,} rejected, "
        f"{r.duplicate_lines:,} already loaded"
    )
    for cur, sums in sorted(r.totals.items()):
        console.print(f"  totals {cur}: " + ", ".join(f"{k} {v}" for k, v in sums.items()))
    console.print(f"  reconciled: {reconciled_words(r.reconciled)}")
    console.print(f"  original: {r.original_path} (sha256 {r.sha256})")
    for i in imports:
        console.print(f"  import {i['id']}: {i['lines']:,} lines, {i['path'] or 'not written'}")
    if shown:
        table = Table(box=None)
        for column in ("line", "isbn", "date", "qty", "value", "ret qty", "ret value", "cur"):
            table.add_column(column)
        table.add_column("note")
        for s in shown:
            note = (
                f"duplicate of report {s['duplicate_of_report']}"
                if s["duplicate_of_report"] is not None
                else ""
            )
            table.add_row(
                str(s["line"]),
                s["isbn13"],
                s["sales_date"],
                str(s["quantity"]),
                s["value"],
                str(s["return_quantity"]),
                s["return_value"],
                s["currency"],
                note,
            )
        console.print(table)
    for j in rejections:
        column = f" ({j['column']})" if j["column"] else ""
        console.print(f"  rejected line {j['line']}{column}: {j['reason']}")


@sales_app.command("export")
def export_cmd(
    period: Annotated[str, typer.Option(help="The month, YYYY-MM.")],
    flow: Annotated[
        str | None, typer.Option(help="The sales_in flow (when there are more).")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """One import file for every loaded report of a month: the lines in no import file yet."""
    from consonance_sftp.app.sales_handler import export

    made = export(load_app(), flow, period)
    if as_json:
        emit_json(_import_dict(made))
    elif made.lines:
        console.print(f"import {made.id}: {made.lines:,} lines written to {made.path}")
    else:
        console.print(f"import {made.id}: no lines of {period} are waiting for an import file")


@sales_app.command("release")
def release_cmd(
    report: Annotated[int, typer.Argument(help="The held report's id.")],
    by: Annotated[
        str | None, typer.Option("--by", help="Who releases it (default: the login name).")
    ] = None,
) -> None:
    """Release a held report: its new lines go into its import file, written now."""
    from consonance_sftp.app.sales_handler import release

    who = acting_user(by)
    app = load_app()
    before = app.store.get_sales_report(report)
    if before is None:
        raise ConsonanceSftpError(
            f"no sales report {report}", hint="'consonance-sftp sales list' shows their ids"
        )
    r, made = release(app, report, who)
    if before.released_at is not None:
        when = before.released_at.isoformat(timespec="seconds")
        console.print(f"report {r.id} was released already, by {before.released_by} at {when}")
    else:
        console.print(f"report {r.id} released by {who}: {r.status}")
    if made is None:
        period = r.period_from.strftime("%Y-%m") if r.period_from else "YYYY-MM"
        console.print(f"its lines wait for the month's export: sales export --period {period}")
    elif made.path:
        console.print(f"import {made.id}: {made.lines:,} lines written to {made.path}")
    else:
        console.print("no import file: none of its lines is new (none accepted, or all loaded)")


@sales_app.command("reread")
def reread_cmd(
    report: Annotated[int, typer.Argument(help="The held report's id.")],
    by: Annotated[
        str | None, typer.Option("--by", help="Who reads it again (default: the login name).")
    ] = None,
) -> None:
    """Read a held report again from its kept original, with the config as it is now (after
    fixing a channel map or adding a product): a new report takes its place; the held one is
    withdrawn. Only a held report: its lines went into no import file."""
    from consonance_sftp.app.sales_handler import reread

    who = acting_user(by)
    r, made = reread(load_app(), report, who)
    console.print(
        f"report {report} read again by {who} as report {r.id}: {r.status}, "
        f"{r.accepted:,} accepted, {r.rejected:,} rejected" + (f" ({r.reason})" if r.reason else "")
    )
    if made is not None and made.path:
        console.print(f"import {made.id}: {made.lines:,} lines written to {made.path}")
    elif r.status == "loaded" and made is None:
        period = r.period_from.strftime("%Y-%m") if r.period_from else "YYYY-MM"
        console.print(f"its lines wait for the month's export: sales export --period {period}")
