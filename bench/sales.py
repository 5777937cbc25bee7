"""A 1,000,000-line sales report taken in end to end, against a bare stdlib baseline measured in
the same run; and the xlsx writers for Consonance's import file compared (``--writers``).

The report is generated (seeded, synthetic titles with valid ISBN-13s, a total row at the end)
in a known layout: Ingram Lightning Source's ``sales_comp`` view as it really arrives (CP1252
tab-separated text with ``\\r`` line ends, named ``.xls``; the default) or Consonance's own
sales-import template as CSV (``--layout consonance``). Each side runs in a process of its own,
so each peak RSS is its own:

* **bare**: stdlib ``csv`` parse of the same file, an ISBN-13 check-digit test of every line
  (plain Python arithmetic; ``--bare-isbn stdnum``: python-stdnum's ``isbn.is_valid``, as a
  first version would call it), and a SQLite insert of every line (``executemany``, one
  transaction, WAL, ``synchronous=NORMAL`` as the store sets it);
* **ours**: what the ``sales_in`` flow does with a report: SHA-256 of the bytes (the report's
  identity), sniffed (``read.open_table``), parsed and validated line by line against the
  catalogue (``parse.parse_report``), loaded into the sales ledger in one transaction with
  its line keys (de-duplication; ``SqlStore.load_sales_report`` on SQLite) while the same
  lines are made into the import file's rows (``consonance_import.ImportRows``), the import
  made (``create_sales_import``) and written as Consonance's import file and summary CSV,
  checked against the generator's totals.

RSS of "ours" is sampled every ``--rss-every`` lines while the ledger reads the lines, so the
run shows it stays flat (100,000 and 1,000,000 lines by default).

    .venv/bin/python bench/sales.py                       # 1,000,000 lines (a few minutes)
    .venv/bin/python bench/sales.py --lines 100000        # quicker
    .venv/bin/python bench/sales.py --layout consonance
    .venv/bin/python bench/sales.py --writers 100000 --reps 3   # xlsx writers, 100,000 rows

The last line is one JSON object with ``seconds`` (ours), ``bare_seconds``, ``ratio_to_bare``
(ours / bare; lower is better; the issue's target is <= 1.5) and ``peak_rss_mb`` (ours), plus
each side's figures: ``cpu_seconds`` / ``bare_cpu_seconds`` / ``cpu_ratio_to_bare`` (process
CPU time, which other work on a shared machine disturbs far less than wall time) and
``steps`` / ``cpu_steps`` (ours, per step, wall and CPU). ``--writers N`` instead writes N
import rows with every xlsx writer installed (``ours``: the module's own streamed writer;
openpyxl write-only, XlsxWriter ``constant_memory``, PyExcelerate, rustpy-xlsxwriter), each
in its own process, and prints
seconds and peak RSS of each; ``shipped`` is ``write_import_file`` whole (summary, read-back,
fsync, SHA-256 included).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

PERIOD = (date(2026, 10, 1), date(2026, 10, 31))
CURRENCY = "USD"
CHANNEL_ID = "LSI"
MARKETS = ("US", "GB", "AU", "CA", "DE", "FR")
LSI_COLUMNS = (
    "parent_isbn",
    "isbn",
    "title",
    "author",
    "list_price",
    "reporting_currency_code",
    "PTD_net_quantity",
    "PTD_net_pub_comp",
    "market",
)


# --- the report ----------------------------------------------------------------------------


def isbn13(stem: str) -> str:
    """An ISBN-13 from its first 12 digits, with its check digit."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(stem))
    return stem + str((10 - total % 10) % 10)


def catalogue(titles: int) -> list[str]:
    return [isbn13(f"978{100_000_000 + n}") for n in range(titles)]


def generate(path: Path, lines: int, *, layout: str, titles: int, seed: int) -> dict[str, Any]:
    """Write the report; return what it holds (lines, quantity and value sums, as strings)."""
    rnd = random.Random(seed)
    isbns = catalogue(titles)
    cent = Decimal("0.01")
    prices = [(Decimal(rnd.randint(599, 4999)) / 100).quantize(cent) for _ in isbns]
    quantity, value = 0, Decimal(0)
    sold_qty, sold_value, ret_qty, ret_value = 0, Decimal(0), 0, Decimal(0)
    if layout == "lightning-source":
        out = path.open("w", encoding="cp1252", newline="")
        writer = csv.writer(out, delimiter="\t", lineterminator="\r")
        writer.writerow(LSI_COLUMNS)
    else:
        from consonance_sftp.formats.sales.consonance_import import IMPORT_HEADERS

        out = path.open("w", encoding="utf-8", newline="")
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(IMPORT_HEADERS)
    with out:
        for n in range(lines):
            t = rnd.randrange(titles)
            qty = rnd.randint(1, 12)
            cents = int(prices[t] * 100) * qty * rnd.randint(30, 55) // 100
            amount = (Decimal(cents) / 100).quantize(cent)
            if rnd.random() < 0.04:  # a return
                qty, amount = -qty, -amount
                ret_qty, ret_value = ret_qty - qty, ret_value - amount
            else:
                sold_qty, sold_value = sold_qty + qty, sold_value + amount
            quantity += qty
            value += amount
            market = MARKETS[n % len(MARKETS)]
            if layout == "lightning-source":
                writer.writerow(
                    (
                        isbns[t],
                        isbns[t],
                        f"Café Society, volume {t}",  # CP1252 bytes in every file
                        f"Author {t % 997}",
                        prices[t],
                        CURRENCY,
                        qty,
                        amount,
                        market,
                    )
                )
            else:
                day = date(2026, 10, 1 + n % 31).isoformat()
                sale = ("", "") if qty < 0 else (qty, amount)
                ret = (-qty, -amount) if qty < 0 else ("", "")
                fixed = ("ISBN", isbns[t], CHANNEL_ID, day, prices[t], "Ingram")
                writer.writerow((*fixed, *sale, *ret, market, "", "", ""))
        if layout == "lightning-source":
            # LSI's own total row: no ISBN, the sums in the money columns.
            writer.writerow(("Total", "", "", "", "", CURRENCY, quantity, value, ""))
    return {
        "lines": lines,
        "quantity": quantity,
        "value": str(value),
        "sold_quantity": sold_qty,
        "sold_value": str(sold_value),
        "return_quantity": ret_qty,
        "return_value": str(ret_value),
    }


# --- bare: stdlib csv + check digit + sqlite3 ----------------------------------------------


def check_digit_ok(code: str) -> bool:
    if len(code) != 13 or not code.isdigit():
        return False
    total = sum(map(int, code[0:12:2])) + 3 * sum(map(int, code[1:12:2]))
    return (10 - total % 10) % 10 == int(code[12])


def bare(path: Path, db: Path, layout: str, isbn_check: str) -> dict[str, Any]:
    valid = check_digit_ok
    if isbn_check == "stdnum":
        from stdnum import isbn

        valid = isbn.is_valid
    started = time.perf_counter()
    cpu_started = time.process_time()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE line (line INTEGER PRIMARY KEY, isbn TEXT, quantity INTEGER,"
        " value TEXT, currency TEXT, territory TEXT)"
    )
    lsi = layout == "lightning-source"
    encoding, delimiter = ("cp1252", "\t") if lsi else ("utf-8", ",")
    loaded = rejected = 0
    batch: list[tuple[int, str, int, str, str, str]] = []
    with path.open(encoding=encoding, newline="") as handle, conn:
        rows = csv.reader(handle, delimiter=delimiter)
        next(rows)
        for number, row in enumerate(rows, 2):
            if lsi:
                isbn, qty, amount, currency, market = row[0], row[6], row[7], row[5], row[8]
                if isbn == "Total":
                    break
            else:
                isbn, currency, market = row[1], CURRENCY, row[10]
                qty, amount = (row[6], row[7]) if row[6] else ("-" + row[8], "-" + row[9])
            if not valid(isbn):
                rejected += 1
                continue
            batch.append((number, isbn, int(qty), amount, currency, market))
            if len(batch) == 10_000:
                conn.executemany("INSERT INTO line VALUES (?, ?, ?, ?, ?, ?)", batch)
                loaded += len(batch)
                batch.clear()
        conn.executemany("INSERT INTO line VALUES (?, ?, ?, ?, ?, ?)", batch)
        loaded += len(batch)
    conn.close()
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "cpu_seconds": round(time.process_time() - cpu_started, 3),
        "loaded": loaded,
        "rejected": rejected,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


# --- ours: the sales_in pipeline -----------------------------------------------------------


def rss_mb() -> float:
    """Resident memory now (Linux ``/proc``; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def sampled(items: Iterable[Any], every: int, samples: dict[int, float]) -> Iterator[Any]:
    """``items`` unchanged, with the RSS noted every ``every`` items (and at the end)."""
    count = 0
    for count, item in enumerate(items, 1):
        if count % every == 0:
            samples[count] = round(rss_mb(), 1)
        yield item
    samples[count] = round(rss_mb(), 1)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def ours(path: Path, work: Path, layout: str, titles: int, rss_every: int) -> dict[str, Any]:
    from consonance_sftp.adapters.store import open_store
    from consonance_sftp.flows.sales_in import Counts, into_rows, report_tail
    from consonance_sftp.formats.sales.consonance_import import ImportRows
    from consonance_sftp.formats.sales.parse import parse_report
    from consonance_sftp.formats.sales.read import open_table
    from consonance_sftp.ports.sales import ReportHead, ReportTail

    known = frozenset(catalogue(titles))
    store = open_store(f"sqlite:///{work / 'ledger.db'}")  # migrated outside the clock
    samples: dict[int, float] = {}
    steps: dict[str, float] = {}
    cpu: dict[str, float] = {}  # CPU seconds of this process per step (load disturbs it less)
    started = time.perf_counter()
    cpu_mark = cpu_started = time.process_time()
    digest = sha256_of(path)
    with open_table(path) as table:
        parsed = parse_report(
            table,
            file_name=path.name,
            layout="auto",
            known_isbns=known,
            channel_for=lambda _channel, _territory: CHANNEL_ID,
            period=PERIOD,
            house_currency=CURRENCY,
        )
        head = ReportHead(
            flow="sales",
            partner="lsi",
            name=path.name,
            original_path=str(path),
            intake_id=None,
            sha256=digest,
            layout=parsed.layout.name,
            layout_version=parsed.layout.version,
            kind=parsed.layout.kind,
        )

        counts = Counts()

        def finish() -> ReportTail:  # what the flow decides once the whole file is read
            return report_tail(parsed, counts, "hold")

        # As the flow does: the import file's rows made as the lines pass into the ledger.
        rows = ImportRows(work / "outbox", house_currency=CURRENCY, source="Lightning Source")
        items = counts.wrap(sampled(parsed.items, rss_every, samples))
        record = store.load_sales_report(head, into_rows(rows, items), finish)
    steps["sniff_parse_validate_load"] = time.perf_counter() - started
    cpu["sniff_parse_validate_load"], cpu_mark = time.process_time() - cpu_mark, time.process_time()
    mark = time.perf_counter()
    made = store.create_sales_import(flow="sales", report_id=record.id)
    steps["create_import"] = time.perf_counter() - mark
    cpu["create_import"], cpu_mark = time.process_time() - cpu_mark, time.process_time()
    mark = time.perf_counter()
    with rows:  # the flow writes these rows when the import holds every one of them
        assert made.lines == rows.count == record.accepted, (made.lines, rows.count)
        written = rows.write(
            work / "outbox" / f"{path.stem}.xlsx",
            summary_path=work / "outbox" / f"{path.stem}.summary.csv",
        )
    store.set_sales_import_file(made.id, str(written.path), written.sha256)
    steps["write_import_file"] = time.perf_counter() - mark
    cpu["write_import_file"] = time.process_time() - cpu_mark
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    store.close()
    sums = written.totals.get(CURRENCY, {})
    return {
        "seconds": round(seconds, 3),
        "steps": {k: round(v, 3) for k, v in steps.items()},
        "cpu_seconds": round(cpu_seconds, 3),
        "cpu_steps": {k: round(v, 3) for k, v in cpu.items()},
        "status": record.status,
        "reason": record.reason,
        "reconciled": record.reconciled,
        "accepted": record.accepted,
        "rejected": record.rejected,
        "import_rows": written.rows,
        "import_bytes": written.size,
        "quantity": int(sums.get("quantity", 0)),
        "return_quantity": int(sums.get("return_quantity", 0)),
        "value": str(sums.get("value", 0)),
        "return_value": str(sums.get("return_value", 0)),
        "rss_mb_at": samples,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


# --- the xlsx writers ----------------------------------------------------------------------


def sales_lines(count: int) -> Iterator[Any]:
    """``count`` sales lines as the ledger hands them to the writer (a third not in the house
    currency, so the original-currency columns are written too)."""
    from consonance_sftp.formats.sales.lines import SalesLine

    rnd = random.Random(1)
    isbns = catalogue(5000)
    for n in range(count):
        yield SalesLine(
            line=n + 2,
            isbn13=isbns[n % 5000],
            sales_date=date(2026, 10, 1 + n % 31),
            quantity=rnd.randint(1, 12),
            value=Decimal(rnd.randint(100, 99999)) / 100,
            currency="USD" if n % 3 == 0 else "GBP",
            list_price=Decimal("12.99"),
            list_price_currency="GBP",
            territory=MARKETS[n % len(MARKETS)],
            channel_id=CHANNEL_ID,
        )


def import_rows(count: int) -> Iterator[list[Any]]:
    from consonance_sftp.formats.sales.consonance_import import import_row

    for line in sales_lines(count):
        yield import_row(line, house_currency="GBP", source="Lightning Source")


def one_writer(name: str, count: int, out: Path) -> dict[str, Any]:
    from consonance_sftp.formats.sales.consonance_import import (
        IMPORT_HEADERS,
        SHEET_NAME,
        write_import_file,
    )

    started = time.perf_counter()
    if name == "rows-only":  # making the rows alone, without any writer
        for _ in import_rows(count):
            pass
    elif name == "shipped":  # the module as shipped: + summary, read-back, fsync, SHA-256
        write_import_file(
            sales_lines(count),
            out,
            house_currency="GBP",
            source="Lightning Source",
            summary_path=out.with_suffix(".csv"),
        )
    elif name == "ours":  # the module's own streamed writer alone (no summary, no read-back)
        from consonance_sftp.formats.sales import consonance_import

        with consonance_import.ImportRows(
            out.parent, house_currency="GBP", source="Lightning Source"
        ) as rows:
            rows.add(sales_lines(count))
            rows._write_xlsx(out)
    elif name == "openpyxl":
        from openpyxl import Workbook

        book = Workbook(write_only=True)
        sheet = book.create_sheet(SHEET_NAME)
        sheet.append(IMPORT_HEADERS)
        for row in import_rows(count):
            sheet.append(row)
        book.save(out)
    elif name == "xlsxwriter":
        import xlsxwriter

        book = xlsxwriter.Workbook(str(out), {"constant_memory": True, "tmpdir": str(out.parent)})
        sheet = book.add_worksheet(SHEET_NAME)
        sheet.write_row(0, 0, IMPORT_HEADERS)
        for r, row in enumerate(import_rows(count), 1):
            for c, cell in enumerate(row):
                if cell is None:
                    continue
                if type(cell) is str:
                    sheet.write_string(r, c, cell)
                else:
                    sheet.write_number(r, c, cell)
        book.close()
    elif name == "pyexcelerate":
        from pyexcelerate import Workbook as FastBook

        data = [list(IMPORT_HEADERS)]
        data += [["" if c is None else c for c in row] for row in import_rows(count)]
        fast = FastBook()
        fast.new_sheet(SHEET_NAME, data=data)
        fast.save(str(out))
    elif name == "rustpy-xlsxwriter":
        from rustpy_xlsxwriter import FastExcel

        records = (dict(zip(IMPORT_HEADERS, row, strict=True)) for row in import_rows(count))
        FastExcel(str(out), columns=list(IMPORT_HEADERS)).sheet(SHEET_NAME, records).save()
    seconds = time.perf_counter() - started
    size = out.stat().st_size if out.exists() else 0
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak_rss_mb(), 1), "bytes": size}


WRITERS = {
    "rows-only": None,
    "shipped": None,
    "ours": None,
    "openpyxl": "openpyxl",
    "xlsxwriter": "xlsxwriter",
    "pyexcelerate": "pyexcelerate",
    "rustpy-xlsxwriter": "rustpy_xlsxwriter",
}


def compare_writers(count: int, work: Path, reps: int) -> dict[str, Any]:
    """Each installed writer in its own process, ``reps`` rounds, the order rotated each round
    so that load on a shared machine hits all alike; medians (and the range) reported."""
    import importlib.util
    import statistics

    names = []
    for name, module in WRITERS.items():
        if module and importlib.util.find_spec(module) is None:
            print(f"{name:>18}: not installed (pip install {name} to include it)", flush=True)
        else:
            names.append(name)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_ in range(reps):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            out = work / f"{name}.xlsx"
            args = ["--one-writer", name, "--lines", str(count), "--out", str(out)]
            runs[name].append(child(args))
            out.unlink(missing_ok=True)
            out.with_suffix(".csv").unlink(missing_ok=True)
    figures: dict[str, Any] = {"rows": count, "reps": reps}
    for name in names:
        seconds = [r["seconds"] for r in runs[name]]
        figure = {
            "seconds": round(statistics.median(seconds), 2),
            "seconds_min": min(seconds),
            "seconds_max": max(seconds),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs[name]),
            "bytes": runs[name][-1]["bytes"],
        }
        spread = f" [{min(seconds)}-{max(seconds)}]" if reps > 1 else ""
        print(
            f"{name:>18}: {figure['seconds']:>7} s{spread}, "
            f"peak RSS {figure['peak_rss_mb']:>6} MB, {figure['bytes'] / 1e6:.1f} MB written",
            flush=True,
        )
        figures[name] = figure
    return figures


# --- the driver ----------------------------------------------------------------------------


def child(args: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"bench step {args[:2]} failed:\n{done.stderr.strip()[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--layout", choices=("lightning-source", "consonance"))
    parser.add_argument("--titles", type=int, default=5_000, help="catalogue size")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--rss-every", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, help="keep the report and outputs here")
    parser.add_argument(
        "--bare-isbn",
        choices=("digit", "stdnum"),
        default="digit",
        help="the bare side's ISBN check: plain check-digit arithmetic (default, the cheapest) "
        "or python-stdnum's isbn.is_valid per line",
    )
    parser.add_argument("--writers", type=int, metavar="ROWS", help="compare the xlsx writers")
    parser.add_argument("--reps", type=int, default=1, help="rounds of --writers (medians)")
    parser.add_argument("--one-writer", help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=("bare", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    layout = args.layout or "lightning-source"

    if args.one_writer:
        print(json.dumps(one_writer(args.one_writer, args.lines, args.out)))
        return
    if args.side == "bare":
        print(json.dumps(bare(args.path, args.out, layout, args.bare_isbn)))
        return
    if args.side == "ours":
        print(json.dumps(ours(args.path, args.out, layout, args.titles, args.rss_every)))
        return

    with tempfile.TemporaryDirectory(prefix="sales-bench-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.writers:
            print(json.dumps(compare_writers(args.writers, work, args.reps)))
            return
        suffix = ".xls" if layout == "lightning-source" else ".csv"
        report = work / f"sales_comp_{args.lines}_202610US{suffix}"
        started = time.perf_counter()
        facts = generate(report, args.lines, layout=layout, titles=args.titles, seed=args.seed)
        print(
            f"generated {args.lines:,} lines ({layout}, {report.stat().st_size / 1e6:.1f} MB) "
            f"in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        load_start = os.getloadavg()
        bare_dir, ours_dir = work / "bare", work / "ours"
        for folder in (bare_dir, ours_dir):
            folder.mkdir(exist_ok=True)
        common = ["--layout", layout, "--path", str(report)]
        bare_args = ["--bare-isbn", args.bare_isbn, "--out", str(bare_dir / "bare.db")]
        theirs = child(["--side", "bare", *common, *bare_args])
        print(
            f"bare (csv + {args.bare_isbn} ISBN check + sqlite3): {theirs['seconds']} s "
            f"({theirs['cpu_seconds']} s CPU), "
            f"{theirs['loaded']:,} lines loaded, peak RSS {theirs['peak_rss_mb']} MB",
            flush=True,
        )
        mine = child(
            [
                "--side",
                "ours",
                *common,
                "--out",
                str(ours_dir),
                "--titles",
                str(args.titles),
                "--rss-every",
                str(args.rss_every),
            ]
        )
        print(
            f"ours (sniff, parse, validate, de-duplicate, load, import file): {mine['seconds']} s"
            f" {mine['steps']} ({mine['cpu_seconds']} s CPU: {mine['cpu_steps']}), "
            f"{mine['accepted']:,} accepted, {mine['rejected']:,} rejected, "
            f"status {mine['status']}, reconciled {mine['reconciled']}, "
            f"{mine['import_rows']:,} import rows",
            flush=True,
        )
        for at, mb in mine["rss_mb_at"].items():
            print(f"  RSS at {int(at):,} lines: {mb} MB", flush=True)
        print(f"  peak RSS: {mine['peak_rss_mb']} MB", flush=True)
        problems = check(facts, mine)
        for problem in problems:
            print(f"MISMATCH: {problem}", flush=True)
        ratio = mine["seconds"] / theirs["seconds"]
        cpu_ratio = mine["cpu_seconds"] / theirs["cpu_seconds"]
        print(
            f"ratio ours / bare: {ratio:.2f} (target <= 1.5); in CPU seconds {cpu_ratio:.2f}",
            flush=True,
        )
        figures = {
            "lines": args.lines,
            "layout": layout,
            "seconds": mine["seconds"],
            "bare_seconds": theirs["seconds"],
            "ratio_to_bare": round(ratio, 2),
            "cpu_seconds": mine["cpu_seconds"],
            "bare_cpu_seconds": theirs["cpu_seconds"],
            "cpu_ratio_to_bare": round(cpu_ratio, 2),
            "cpu_steps": mine["cpu_steps"],
            "peak_rss_mb": mine["peak_rss_mb"],
            "bare_peak_rss_mb": theirs["peak_rss_mb"],
            "bare_isbn_check": args.bare_isbn,
            "rss_mb_at": mine["rss_mb_at"],
            "steps": mine["steps"],
            "import_rows": mine["import_rows"],
            "checked": not problems,
            "load_avg_start": load_start,
            "load_avg_end": os.getloadavg(),
        }
        print(json.dumps(figures))
        if problems:
            raise SystemExit(1)


def check(facts: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    """What ours produced against what the generator wrote: every line in the import file, the
    sums to the cent, nothing held."""
    expected = {
        "accepted": facts["lines"],
        "rejected": 0,
        "import_rows": facts["lines"],
        "quantity": facts["sold_quantity"],
        "return_quantity": facts["return_quantity"],
        "value": Decimal(facts["sold_value"]),
        "return_value": Decimal(facts["return_value"]),
        "status": "loaded",
    }
    problems = []
    for key, want in expected.items():
        got = Decimal(mine[key]) if isinstance(want, Decimal) else mine[key]
        if got != want:
            problems.append(f"{key}: {got} (expected {want})")
    return problems


if __name__ == "__main__":
    main()
