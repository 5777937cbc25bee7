"""The sales_in flow end to end: reports dropped on a real OpenSSH partner, taken in by a real
engine (SQLite), read, validated, loaded into the sales ledger and written as Consonance
import files; what the CLI says about them.

* the same report dropped twice under two names, and a second report overlapping the first:
  every line goes into exactly one import file, and ``sales list``/``sales show`` say which
  report duplicated which;
* a report no layout fits goes to quarantine with the reason and the header it saw.

``sales check`` by hand (no server) is ``test_sales_check_cli.py``.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import tomlkit
from openpyxl import Workbook, load_workbook

from consonance_sftp.app import App
from consonance_sftp.app.intake import poll_inbox
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.app.sales_handler import check_calendar
from consonance_sftp.app.serving import run_tick
from consonance_sftp.config import Settings
from consonance_sftp.config.flows import SalesInFlow
from consonance_sftp.models import IntakeOutcome
from consonance_sftp.ports.snapshots import Snapshot
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.cli import CLI
from tests.sales_reports import Row, aged, isbn13, write_vendor_report
from tests.settings import offline_settings, openssh_partner
from tests.unit.sales_files import layout

pytestmark = pytest.mark.asyncio(loop_scope="module")

UNKNOWN_ISBN = isbn13(5000)  # a valid checksum, but no product in the snapshots


@dataclass
class World:
    app: App
    runner: DeliveryRunner
    inbox: Path
    outbox: Path
    config: Path
    monthly_inbox: Path
    finance: Path

    async def take(self, name: str = "sales") -> dict[str, dict[str, Any]]:
        """One poll of a flow; each file taken, by name, with its workflow's result."""
        flow = self.app.settings.flows[name]
        assert isinstance(flow, SalesInFlow)
        report = await poll_inbox(self.app, self.runner, name, flow, trigger="test")
        out = {}
        for f in report.taken:
            out[Path(f.path).name] = await self.runner.wait(f.workflow_id or "", timeout_s=120)
        return out

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, "--config", str(self.config), "sales", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "250"},  # a table row on one line
        )

    def cli_json(self, *args: str) -> Any:
        done = self.cli(*args, "--json")
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    openssh: OpenSshServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    root = tmp_path_factory.mktemp("sales")
    inbox = root / "sftp" / "amazon"
    inbox.mkdir(parents=True)
    monthly_inbox = root / "sftp" / "vendor"
    monthly_inbox.mkdir(parents=True)
    finance = root / "sftp" / "finance"
    finance.mkdir(parents=True)
    outbox = root / "finance"
    raw = offline_settings(
        root,
        partners={
            "amazon": openssh_partner(
                openssh, {"receive": str(inbox)}, transfer={"stable_interval": 0.2}
            ),
            "vendor": openssh_partner(
                openssh, {"receive": str(monthly_inbox)}, transfer={"stable_interval": 0.2}
            ),
            "finance": openssh_partner(openssh, {"imports": str(finance)}),
        },
        flows={
            "sales": {
                "kind": "sales_in",
                "partners": ["amazon"],
                "patterns": ["*.csv"],
                "outbox": str(outbox),
                "house_currency": "GBP",
                "on_rejected": "load_valid",
                "channels": {"map": {"Amazon": "AMZ"}},
                "deliver_to": "finance",
                "deliver_folder": "imports",
            },
            # Held on a rejected line; import files only per month, on request; a calendar.
            "monthly": {
                "kind": "sales_in",
                "partners": ["vendor"],
                "outbox": str(outbox),
                "import_per_report": False,
                "channels": {"default": "AMZ"},
                "calendar": [{"partner": "vendor", "layout": "amazon-vendor", "due_day": 10}],
            },
        },
    )
    config = root / "consonance-sftp.toml"
    config.write_text(tomlkit.dumps(raw))
    app = App(Settings.model_validate(raw), config)
    # The change detector's snapshots: every synthetic title is a known product but one.
    known = {n: isbn13(n) for n in range(997)}
    app.store.save_snapshots(
        "product",
        {n: Snapshot(content_hash=str(n), fields={"isbn": isbn}) for n, isbn in known.items()},
    )
    runner = DeliveryRunner(app, executor=True, quiet=True)
    await runner.__aenter__()
    try:
        yield World(app, runner, inbox, outbox, config, monthly_inbox, finance)
    finally:
        await runner.__aexit__(None, None, None)
        app.store.close()


def _rows_of(path: str) -> list[tuple[Any, ...]]:
    """The data rows of an import file (headers checked), as Consonance would read them."""
    book = load_workbook(path, read_only=True)
    sheet = book.worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    book.close()
    header, *data = rows
    assert header[:4] == ("Product ID type", "Product ID", "Channel ID", "Sales date")
    return [tuple(r) for r in data]


def _key(row: tuple[Any, ...]) -> tuple[str, str, int]:
    """A row's (ISBN, date, quantity): what makes each synthetic sale distinct."""
    return (str(row[1]), str(row[3]), int(row[6]))


def _expected(rows: list[Row]) -> Counter[tuple[str, str, int]]:
    return Counter((r.isbn, f"2026-10-{r.day:02d}", r.units) for r in rows)


async def test_a_report_twice_under_two_names_and_an_overlapping_one_emit_each_line_once(
    world: World,
) -> None:
    first = [Row(n) for n in range(0, 60)]
    second = [Row(n) for n in range(40, 100)]  # 20 lines overlap the first report
    data = write_vendor_report(world.inbox / "vendor-2026-10.csv", first).read_bytes()
    (world.inbox / "vendor-2026-10-resent.csv").write_bytes(data)  # the same bytes, renamed
    aged(world.inbox / "vendor-2026-10-resent.csv")

    taken = await world.take()
    assert sorted(taken) == ["vendor-2026-10-resent.csv", "vendor-2026-10.csv"]
    assert {r["outcome"] for r in taken.values()} == {"stored"}, taken
    reports = {r.name: r for r in world.app.store.list_sales_reports(partner="amazon")}
    one, two = sorted(reports.values(), key=lambda r: r.id)  # whichever was loaded first
    assert (one.status, one.accepted, one.rejected, one.duplicate_lines) == ("loaded", 60, 0, 0)
    assert (two.status, two.duplicate_of) == ("duplicate", one.id)

    write_vendor_report(world.inbox / "vendor-2026-10-b.csv", second)
    taken = await world.take()
    assert list(taken) == ["vendor-2026-10-b.csv"]
    [three] = [
        r for r in world.app.store.list_sales_reports(partner="amazon") if r.name.endswith("-b.csv")
    ]
    assert (three.status, three.accepted, three.duplicate_lines, three.duplicate_of) == (
        "loaded",
        60,
        20,
        one.id,
    )

    # Each line in exactly one import file: the first report's 60, the second's 40 new ones.
    imports = {r.id: world.app.store.list_sales_imports(report_id=r.id) for r in (one, two, three)}
    assert imports[two.id] == []  # a duplicate file makes no import
    [imp_one], [imp_three] = imports[one.id], imports[three.id]
    assert (imp_one.lines, imp_three.lines) == (60, 40)
    assert imp_one.path is not None and imp_three.path is not None
    assert Path(imp_one.path).is_relative_to(world.outbox)
    emitted = [_key(r) for p in (imp_one.path, imp_three.path) for r in _rows_of(p)]
    assert Counter(emitted) == _expected([Row(n) for n in range(100)])  # each once, none lost
    assert Path(imp_one.path.removesuffix(".xlsx") + ".summary.csv").exists()

    # The CLI says which report duplicated which.
    listed = {r["id"]: r for r in world.cli_json("list", "--partner", "amazon")}
    assert listed[two.id]["status"] == "duplicate" and listed[two.id]["duplicate_of"] == one.id
    assert listed[three.id]["duplicate_lines"] == 20
    assert listed[three.id]["duplicate_of"] == one.id
    table = world.cli("list", "--period", "2026-10")
    assert table.returncode == 0, table.stderr
    assert f"the same file as report {one.id}" in table.stdout
    assert f"20 lines already loaded by report {one.id}" in table.stdout
    [shown] = world.cli_json("show", str(three.id), "--lines", "100")
    assert shown["duplicated"] == f"20 lines already loaded by report {one.id}"
    marked = [ln["line"] for ln in shown["lines_shown"] if ln["duplicate_of_report"] == one.id]
    assert marked == list(range(2, 22))  # file lines 2..21: the overlapping rows
    assert [i["id"] for i in shown["imports"]] == [imp_three.id]

    # A period's export finds nothing left to emit: every line is in an import already.
    [exported] = world.cli_json("export", "--period", "2026-10", "--flow", "sales")
    assert exported["lines"] == 0 and exported["path"] is None


async def test_a_report_with_an_unknown_product_is_loaded_with_the_line_rejected(
    world: World,
) -> None:
    rows = [Row(n) for n in range(200, 205)]
    path = write_vendor_report(world.inbox / "vendor-2026-10-c.csv", rows)
    path.write_text(path.read_text().replace(rows[2].isbn, UNKNOWN_ISBN))
    aged(path)
    await world.take()
    [report] = [
        r for r in world.app.store.list_sales_reports(partner="amazon") if r.name.endswith("-c.csv")
    ]
    assert (report.status, report.accepted, report.rejected) == ("loaded", 4, 1)
    [rejection] = world.app.store.sales_report_rejections(report.id)
    assert rejection.line == 4 and UNKNOWN_ISBN in rejection.reason


async def test_a_report_no_layout_fits_is_quarantined_with_the_header_seen(world: World) -> None:
    bad = world.inbox / "vendor-statement.csv"
    header = "Book Number,When,How Many,Money"
    bad.write_text(header + "\n9781000000002,2026-10-01,1,2.00\n")
    aged(bad)
    taken = await world.take()
    assert taken["vendor-statement.csv"]["outcome"] == "quarantined", taken
    [row] = [r for r in world.app.store.list_intakes(partner="amazon") if r.remote_path == str(bad)]
    assert row.outcome is IntakeOutcome.QUARANTINED
    assert row.reason is not None and row.reason.startswith("unknown-layout")
    assert "Book Number" in row.reason and "Money" in row.reason
    assert not [r for r in world.app.store.list_sales_reports() if r.name == bad.name]
    listed = subprocess.run(
        [*CLI, "--config", str(world.config), "quarantine", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "vendor-statement.csv" in listed.stdout and "unknown-layout" in listed.stdout


async def test_a_held_report_is_released_and_a_month_exported_once(world: World) -> None:
    rows = [Row(n) for n in range(300, 310)]
    path = write_vendor_report(world.monthly_inbox / "vendor-2026-10-a.csv", rows)
    bad_isbn = rows[3].isbn[:-1] + str((int(rows[3].isbn[-1]) + 1) % 10)  # checksum broken
    path.write_text(path.read_text().replace(rows[3].isbn, bad_isbn))
    aged(path)
    write_vendor_report(
        world.monthly_inbox / "vendor-2026-10-b.csv", [Row(n) for n in range(310, 315)]
    )
    taken = await world.take("monthly")
    assert {r["outcome"] for r in taken.values()} == {"stored"}, taken
    store = world.app.store
    by_name = {r.name: r for r in store.list_sales_reports(partner="vendor")}
    held, fine = by_name["vendor-2026-10-a.csv"], by_name["vendor-2026-10-b.csv"]
    assert (held.status, held.accepted, held.rejected) == ("held", 9, 1)
    assert held.reason is not None and "1 line rejected" in held.reason
    assert fine.status == "loaded"
    assert store.list_sales_imports(report_id=fine.id) == []  # waits for the month's export
    [rejection] = store.sales_report_rejections(held.id)
    assert rejection.line == 5 and bad_isbn in rejection.reason

    # The month's export takes the loaded report's lines, not the held one's.
    [first] = world.cli_json("export", "--period", "2026-10", "--flow", "monthly")
    assert first["lines"] == 5
    # Released: its 9 valid lines wait for the next export, which has only them.
    released = world.cli("release", str(held.id), "--by", "finance")
    assert released.returncode == 0, released.stderr
    assert f"report {held.id} released by finance: loaded" in released.stdout
    assert "its lines wait for the month's export: sales export --period 2026-10" in (
        released.stdout
    )
    # Released again (a replayed command): said so, with who and when, not a second release.
    again = world.cli("release", str(held.id), "--by", "someone-else")
    assert again.returncode == 0, again.stderr
    assert f"report {held.id} was released already, by finance at " in again.stdout
    assert "someone-else" not in again.stdout
    shown = world.cli("show", str(held.id), "--lines", "0")
    assert "released: by finance at " in shown.stdout
    assert "reconciled: the file states no totals" in shown.stdout  # words, not None
    [second] = world.cli_json("export", "--period", "2026-10", "--flow", "monthly")
    assert second["lines"] == 9
    [third] = world.cli_json("export", "--period", "2026-10", "--flow", "monthly")
    assert third["lines"] == 0 and third["path"] is None  # nothing twice
    emitted = [_key(r) for e in (first, second) for r in _rows_of(e["path"])]
    assert Counter(emitted) == _expected(
        [r for r in rows if r.n != 303] + [Row(n) for n in range(310, 315)]
    )


async def test_a_missing_report_raises_one_expected_report_missing_alert(world: World) -> None:
    store = world.app.store
    # October's report from vendor is in (the test above); November's is missing from Dec 11.
    assert check_calendar(world.app, "monthly", datetime(2026, 11, 11, tzinfo=UTC)) == []
    assert check_calendar(world.app, "monthly", datetime(2026, 12, 10, tzinfo=UTC)) == []
    [message] = check_calendar(world.app, "monthly", datetime(2026, 12, 11, tzinfo=UTC))
    assert "no amazon-vendor report from partner 'vendor' for 2026-11" in message
    assert check_calendar(world.app, "monthly", datetime(2026, 12, 12, tzinfo=UTC)) == []
    [alert] = store.list_alerts(kind="expected_report_missing")
    assert (alert.partner, alert.flow, alert.details["period"]) == ("vendor", "monthly", "2026-11")


async def test_import_files_are_delivered_to_the_finance_partner_once(world: World) -> None:
    write_vendor_report(world.inbox / "vendor-2026-11.csv", [Row(n) for n in range(400, 410)])
    assert list(await world.take()) == ["vendor-2026-11.csv"]
    done = await run_tick(world.app, "sales", datetime.now(UTC), runner=world.runner)
    sent = done["import_deliveries"]
    results = [await world.runner.wait(wid) for wid in sent]
    assert all("error" not in r for r in results), results
    written = [i for i in world.app.store.list_sales_imports() if i.flow == "sales" and i.path]
    assert len(written) == len(sent) >= 3  # every import file of the flow, the new one too
    for imp in written:
        assert imp.path is not None
        local = Path(imp.path)
        summary = local.with_name(local.name.removesuffix(".xlsx") + ".summary.csv")
        assert (world.finance / local.name).read_bytes() == local.read_bytes()
        assert (world.finance / summary.name).read_bytes() == summary.read_bytes()
    # The next tick sends nothing again.
    again = await run_tick(world.app, "sales", datetime.now(UTC), runner=world.runner)
    assert "import_deliveries" not in again, again


async def test_a_usage_report_goes_to_the_usage_ledger_and_a_csv_never_an_import(
    world: World,
) -> None:
    header = "book_id,isbn,title,year,month,type,usage,country_id,country"
    lines = [
        f"{i},{isbn13(i)},Title {i},2026,10,Chapter,{i + 3},GB,United Kingdom" for i in range(5)
    ]
    path = world.inbox / "muse-usage-2026-10.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    aged(path)
    taken = await world.take()
    assert taken["muse-usage-2026-10.csv"]["outcome"] == "stored", taken
    [report] = [r for r in world.app.store.list_sales_reports() if r.name == path.name]
    assert (report.kind, report.status) == ("usage", "usage")
    assert world.app.store.list_sales_imports(report_id=report.id) == []
    usage = [(u.isbn13, u.count) for u in world.app.store.usage_lines(report.id)]
    assert usage == [(isbn13(i), i + 3) for i in range(5)]
    written = world.outbox / "sales" / "amazon" / f"muse-usage-2026-10.usage-{report.id}.csv"
    with written.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["ISBN"], int(r["Count"]), r["Country"]) for r in rows] == [
        (isbn13(i), i + 3, "GB") for i in range(5)
    ]


async def test_an_xlsx_report_is_taken_in_and_loaded_not_quarantined(world: World) -> None:
    """A real xlsx (every one holds ``_rels/.rels``) passes the intake's screening as one
    document and is loaded (Amazon KDP's report, as the reader's own KDP test builds it)."""
    kdp = layout("amazon-kdp")
    row = dict.fromkeys(kdp.columns, "")
    row.update(
        {
            "Royalty Date": "2026-10-31",
            "Title": "T",
            "Marketplace": "Amazon.co.uk",
            "Currency": "GBP",
            "ASIN": isbn13(320),
            "Units Sold": "2",
            "Units Refunded": "0",
            "Net Units Sold": "2",
            "Royalty": "4.20",
        }
    )
    book = Workbook()  # one sheet, as KDP's download has
    book.active.append(list(kdp.columns))
    book.active.append([row[c] for c in kdp.columns])
    path = world.monthly_inbox / "KDP_Royalties_2026-10.xlsx"
    book.save(path)
    aged(path)
    taken = await world.take("monthly")
    assert taken["KDP_Royalties_2026-10.xlsx"]["outcome"] == "stored", taken
    reports = world.app.store.list_sales_reports(partner="vendor")
    [report] = [r for r in reports if r.name == path.name]
    assert (report.layout, report.status, report.accepted, report.rejected) == (
        "amazon-kdp",
        "loaded",
        1,
        0,
    )


async def test_a_held_report_is_read_again_after_its_product_is_added(world: World) -> None:
    """Held for a product Consonance did not have; the product added, ``sales reread`` loads
    the kept original again as a new report (the held one withdrawn), and the same file
    dropped again is still a duplicate, never a second load."""
    rows = [Row(n) for n in range(400, 404)]
    path = write_vendor_report(world.monthly_inbox / "vendor-2026-09.csv", rows)
    path.write_text(path.read_text().replace(rows[1].isbn, UNKNOWN_ISBN))
    aged(path)
    await world.take("monthly")
    store = world.app.store
    [held] = [r for r in store.list_sales_reports(partner="vendor") if r.name == path.name]
    assert (held.status, held.accepted, held.rejected) == ("held", 3, 1)

    store.save_snapshots(
        "product", {5000: Snapshot(content_hash="5000", fields={"isbn": UNKNOWN_ISBN})}
    )
    done = world.cli("reread", str(held.id), "--by", "finance")
    assert done.returncode == 0, done.stderr
    [again] = [
        r
        for r in store.list_sales_reports(partner="vendor")
        if r.name == path.name and r.status != "withdrawn"
    ]
    assert f"report {held.id} read again by finance as report {again.id}: loaded" in done.stdout
    assert (again.status, again.accepted, again.rejected) == ("loaded", 4, 0)
    assert "its lines wait for the month's export: sales export --period 2026-10" in done.stdout
    old = store.get_sales_report(held.id)
    assert old is not None and old.status == "withdrawn"
    assert old.reason == f"read again by finance as report {again.id}"
    refused = world.cli("reread", str(held.id))
    assert refused.returncode != 0 and "only a held report can be read again" in refused.stderr
    copy = world.monthly_inbox / "vendor-2026-09-copy.csv"
    copy.write_bytes(path.read_bytes())
    aged(copy)
    await world.take("monthly")
    [dup] = [r for r in store.list_sales_reports(partner="vendor") if r.name == copy.name]
    assert (dup.status, dup.duplicate_of) == ("duplicate", again.id)
