"""Sales-ledger load benchmark: ``SqlStore.load_sales_report`` against a bare ``sqlite3``
``executemany`` of the same rows, on SQLite, measured in the same run.

Both sides write the same rows into the same tables (made by our migrations, so the same
indexes: the primary key and the unique line key), with the same connection settings (WAL,
``synchronous=NORMAL``, foreign keys on), in one transaction. The bare side's rows are built
beforehand (tuples, keys already hashed) and not timed; ours starts from ``SalesLine`` records
and pays for everything: the line keys, the conversions, SQLAlchemy, the duplicate check. The
lines are built before either side runs, so neither pays for making them.

    .venv/bin/python bench/sales_ledger.py [--lines 1000000] [--reps 3]

The sides alternate, ``--reps`` times each; the last line is one JSON object with the best
time of each side and their ratio (``ratio_to_bare``), wall clock and CPU (the CPU figures
are the steadier ones on a shared machine).
"""

from __future__ import annotations

import argparse
import gc
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from consonance_sftp.adapters.store import open_store  # noqa: E402
from consonance_sftp.adapters.store.sales import line_key, line_key_prefix  # noqa: E402
from consonance_sftp.formats.sales.lines import SalesLine  # noqa: E402
from consonance_sftp.ports.sales import ReportHead, ReportTail  # noqa: E402

COLUMNS = (
    "report_id, seq, line_key, occurrence, line, isbn13, quantity, return_quantity, currency, "
    "list_price_currency, channel, territory, transaction_id, channel_id, sales_date, value, "
    "return_value, list_price"
)
HEAD = ReportHead(
    flow="sales",
    partner="lightning",
    name="bench.tsv",
    original_path="/bench.tsv",
    intake_id=None,
    sha256="b" * 64,
    layout="lightning_source",
    layout_version="2024",
    kind="sales",
)
TAIL = ReportTail(
    period_from=date(2026, 10, 1),
    period_to=date(2026, 10, 31),
    business_model="wholesale",
    currencies=("USD",),
    lines_read=0,
    totals={},
    stated_totals={},
    reconciled=None,
    hold_reason=None,
)


def make_lines(count: int) -> list[SalesLine]:
    """Distinct sales (ISBN x day), values from a small pool as a real report repeats them."""
    isbns = [f"97800{n:07d}1" for n in range(100_000)]
    days = [date(2026, 10, d) for d in range(1, 29)]
    values = [Decimal(n) / 100 for n in range(1, 5000)]
    return [
        SalesLine(
            line=n + 2,
            isbn13=isbns[n % 100_000],
            sales_date=days[n // 100_000 % 28],
            quantity=1 + n % 5,
            value=values[n % 4999],
            return_quantity=0,
            return_value=Decimal(0),
            currency="USD",
            list_price=values[(n * 7) % 4999],
            list_price_currency="USD",
            channel="Amazon US",
            territory="US",
            channel_id="AMZ",
        )
        for n in range(count)
    ]


def bare_rows(lines: list[SalesLine]) -> list[tuple[Any, ...]]:
    prefix = line_key_prefix(HEAD.partner, HEAD.layout)
    return [
        (
            1,
            seq,
            line_key(prefix, s),
            0,
            s.line,
            s.isbn13,
            s.quantity,
            s.return_quantity,
            s.currency,
            s.list_price_currency,
            s.channel,
            s.territory,
            s.transaction_id,
            s.channel_id,
            s.sales_date.isoformat(),
            str(s.value),
            str(s.return_value),
            None if s.list_price is None else str(s.list_price),
        )
        for seq, s in enumerate(lines)
    ]


def fresh_db(folder: Path, name: str) -> Path:
    path = folder / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    open_store(f"sqlite:///{path}").close()  # our schema, by our migrations
    return path


def run_bare(path: Path, rows: list[tuple[Any, ...]]) -> tuple[float, float]:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        conn.execute(f"PRAGMA {pragma}")
    marks = ", ".join("?" * 18)
    started, cpu = time.perf_counter(), time.process_time()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT INTO sales_reports (id, flow, partner, name, original_path, sha256, layout, "
        "layout_version, kind, business_model, currencies, status, lines_read, accepted, "
        "rejected, duplicate_lines, totals, stated_totals, created_at, details) VALUES "
        "(1, 'sales', 'lightning', 'bench.tsv', '/bench.tsv', 'b', 'l', 'v', 'sales', '', "
        "'USD', 'loaded', 0, 0, 0, 0, '{}', '{}', '2026-12-03', '{}')"
    )
    conn.executemany(f"INSERT INTO sales_lines ({COLUMNS}) VALUES ({marks})", rows)  # noqa: S608
    conn.execute("COMMIT")
    elapsed = (time.perf_counter() - started, time.process_time() - cpu)
    conn.close()
    return elapsed


def run_ours(path: Path, lines: list[SalesLine]) -> tuple[float, float]:
    with open_store(f"sqlite:///{path}") as store:
        started, cpu = time.perf_counter(), time.process_time()
        record = store.load_sales_report(HEAD, iter(lines), lambda: TAIL)
        elapsed = (time.perf_counter() - started, time.process_time() - cpu)
    assert record.accepted == len(lines) and record.duplicate_lines == 0, record
    return elapsed


def timed(label: str, fn: Callable[[], tuple[float, float]]) -> tuple[float, float]:
    gc.collect()
    wall, cpu = fn()
    print(f"{label}: {wall:.2f} s ({cpu:.2f} s CPU)", flush=True)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    lines = make_lines(args.lines)
    rows = bare_rows(lines)
    # The bench holds every line in memory (a real load streams them from the parser): keep
    # the garbage collector from walking these million objects again on each full collection.
    gc.collect()
    gc.freeze()
    bare: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="sales-ledger-bench-") as tmp:
        folder = Path(tmp)
        for rep in range(args.reps):
            bare.append(timed(f"bare {rep}", lambda: run_bare(fresh_db(folder, "bare"), rows)))
            ours.append(timed(f"ours {rep}", lambda: run_ours(fresh_db(folder, "ours"), lines)))
    wall, bare_wall = min(t[0] for t in ours), min(t[0] for t in bare)
    cpu, bare_cpu = min(t[1] for t in ours), min(t[1] for t in bare)
    result = {
        "lines": args.lines,
        "seconds": round(wall, 3),
        "bare_seconds": round(bare_wall, 3),
        "ratio_to_bare": round(wall / bare_wall, 3),
        "cpu_seconds": round(cpu, 3),
        "bare_cpu_seconds": round(bare_cpu, 3),
        "cpu_ratio_to_bare": round(cpu / bare_cpu, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
