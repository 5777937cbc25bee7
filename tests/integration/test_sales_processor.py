"""The sales_in hand-off (``SalesProcessor``) on a real SQLite store, without SFTP: a report
whose totals do not match its own trailer is held with the difference; one that matches is
loaded; a rejected line holds or not as ``on_rejected`` says; a layout name the service does
not know quarantines the report naming the known ones; a hand-off run again (the engine's
step is at-least-once) finds its report and import, and adds nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from consonance_sftp.adapters.store import SqlStore, open_store
from consonance_sftp.config.flows import SalesInFlow
from consonance_sftp.flows import sales_in
from consonance_sftp.flows.changes import product_snapshot
from consonance_sftp.formats.sales.layouts import LAYOUTS
from consonance_sftp.models import IntakeOutcome, Product
from consonance_sftp.ports.intake import FetchedFile, IntakeRequest
from consonance_sftp.ports.store import IntakeRecord
from tests.sales_reports import isbn13

HEADER = "EAN,Date,Units,Net"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    yield s
    s.close()


def _flow(**extra: Any) -> SalesInFlow:
    return SalesInFlow.model_validate(
        {
            "kind": "sales_in",
            "partners": ["shop"],
            "layout": "generic",
            "generic": {
                "columns": {
                    "isbn": "EAN",
                    "sales_date": "Date",
                    "quantity": "Units",
                    "value": "Net",
                },
                "currency": "EUR",
            },
            "channels": {"default": "SHOP"},
            **extra,
        }
    )


def _processor(store: SqlStore, flow: SalesInFlow, outbox: Path) -> sales_in.SalesProcessor:
    def settings(request: IntakeRequest) -> sales_in.SalesSettings:
        return sales_in.settings_of(
            "sales", flow, request.partner, default_outbox=outbox, isbns=lambda: None
        )

    def intake_id(request: IntakeRequest) -> int | None:
        row = store.find_intake(request.partner, request.remote_path, request.size, request.mtime)
        return None if row is None else row.id

    return sales_in.SalesProcessor(ledger=store, settings=settings, intake_id=intake_id)


def _drop(
    store: SqlStore, tmp_path: Path, name: str, text: str
) -> tuple[IntakeRequest, FetchedFile]:
    """A report as the intake workflow leaves it: stored locally, one intake row."""
    local = tmp_path / "inbox" / name
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(text)
    data = local.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    request = IntakeRequest(
        flow="sales", kind="sales_in", partner="shop", remote_path=f"/out/{name}",
        size=len(data), mtime=1.0,
    )  # fmt: skip
    store.record_intake(
        IntakeRecord(
            partner="shop", remote_path=request.remote_path, size=len(data), remote_mtime=1.0,
            flow="sales", sha256=sha, local_path=str(local),
        )
    )  # fmt: skip
    return request, FetchedFile(local_path=str(local), size=len(data), sha256=sha)


def _report(lines: list[tuple[int, str]], total: str | None) -> str:
    body = [HEADER] + [f"{isbn13(n)},2026-10-{n % 28 + 1:02d},1,{value}" for n, value in lines]
    if total is not None:
        body.append(f"Total,,{len(lines)},{total}")
    return "\n".join(body) + "\n"


def test_totals_that_do_not_match_the_trailer_hold_the_report(
    store: SqlStore, tmp_path: Path
) -> None:
    processor = _processor(store, _flow(), tmp_path / "outbox")
    lines = [(1, "2.50"), (2, "3.10")]
    bad = processor.process(*_drop(store, tmp_path, "shop_2026-10_a.csv", _report(lines, "5.61")))
    good = processor.process(
        *_drop(store, tmp_path, "shop_2026-10_b.csv", _report([(3, "1.00")], "1.00"))
    )
    assert bad.outcome is IntakeOutcome.STORED and good.outcome is IntakeOutcome.STORED
    held, loaded = sorted(store.list_sales_reports(), key=lambda r: r.id)
    assert (held.status, held.reconciled) == ("held", False)
    assert held.reason is not None and "EUR net value" in held.reason and "5.61" in held.reason
    assert store.list_sales_imports(report_id=held.id) == []
    assert (loaded.status, loaded.reconciled) == ("loaded", True)
    [imp] = store.list_sales_imports(report_id=loaded.id)
    assert imp.lines == 1 and imp.path is not None and Path(imp.path).exists()


@pytest.mark.parametrize(
    ("policy", "status", "import_lines"), [("hold", "held", None), ("load_valid", "loaded", 1)]
)
def test_a_rejected_line_holds_or_not_as_on_rejected_says(
    store: SqlStore, tmp_path: Path, policy: str, status: str, import_lines: int | None
) -> None:
    processor = _processor(store, _flow(on_rejected=policy), tmp_path / "outbox")
    text = _report([(1, "2.50"), (2, "3.10")], None).replace(isbn13(2), "9781000000000")
    result = processor.process(*_drop(store, tmp_path, "shop_2026-10.csv", text))
    [report] = store.list_sales_reports()
    assert (report.status, report.accepted, report.rejected) == (status, 1, 1)
    assert result.reason is not None and f"{status}" in result.reason
    made = store.list_sales_imports(report_id=report.id)
    assert [i.lines for i in made] == ([] if import_lines is None else [import_lines])


def test_a_layout_the_service_does_not_know_quarantines_the_report(
    store: SqlStore, tmp_path: Path
) -> None:
    processor = _processor(store, _flow(layout="amazon-vendr"), tmp_path / "outbox")
    result = processor.process(*_drop(store, tmp_path, "x_2026-10.csv", _report([(1, "1")], None)))
    assert result.outcome is IntakeOutcome.QUARANTINED
    assert result.reason is not None and result.reason.startswith("unknown-layout")
    assert "amazon-vendr" in result.reason
    assert store.list_sales_reports() == []


def test_a_hand_off_run_again_finds_its_report_and_import(store: SqlStore, tmp_path: Path) -> None:
    processor = _processor(store, _flow(), tmp_path / "outbox")
    dropped = _drop(store, tmp_path, "shop_2026-10.csv", _report([(1, "2.50"), (2, "1")], "3.50"))
    first = processor.process(*dropped)
    [imp] = store.list_sales_imports()
    assert imp.path is not None
    Path(imp.path).unlink()  # the file lost (a crash before it was durable, a person)
    again = processor.process(*dropped)
    assert again.reason == first.reason
    assert len(store.list_sales_reports()) == 1
    assert [i.id for i in store.list_sales_imports()] == [imp.id]  # no second import
    assert Path(imp.path).exists()  # written again, from the same lines
    assert sum(1 for _ in store.sales_import_lines(imp.id)) == 2


def test_the_import_file_made_as_the_report_loads_is_the_one_the_ledger_gives(
    store: SqlStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new report's import file is made from its lines as they load, not read back from the
    ledger; written again from the ledger, it is the same file, byte for byte. A report some
    of whose lines an earlier one brought gets its file from the ledger, without those."""
    flow = _flow()
    processor = _processor(store, flow, tmp_path / "outbox")
    read_back: list[int] = []
    from_ledger = store.sales_import_lines

    def counted(import_id: int) -> Iterator[Any]:
        read_back.append(import_id)
        return from_ledger(import_id)

    monkeypatch.setattr(store, "sales_import_lines", counted)
    lines = [(n, f"{n}.{n % 100:02d}") for n in range(1, 3001)]
    total = str(sum(Decimal(v) for _, v in lines))
    processor.process(*_drop(store, tmp_path, "shop_2026-10.csv", _report(lines, total)))
    [report] = store.list_sales_reports()
    [imp] = store.list_sales_imports(report_id=report.id)
    assert (report.status, imp.lines, read_back) == ("loaded", 3000, [])
    assert imp.path is not None
    made = Path(imp.path)
    made_bytes = made.read_bytes()
    summary = sales_in.summary_path(made)
    summary_bytes = summary.read_bytes()
    assert imp.sha256 == hashlib.sha256(made_bytes).hexdigest()

    made.unlink()
    summary.unlink()
    again = sales_in.emit_report_import(store, report, tmp_path / "outbox", flow.house_currency)
    assert again is not None and again.path == imp.path and read_back == [imp.id]
    assert made.read_bytes() == made_bytes and summary.read_bytes() == summary_bytes

    overlapping = lines[2990:] + [(n, "1.00") for n in range(5001, 5006)]  # 10 already loaded
    total = str(sum(Decimal(v) for _, v in overlapping))
    text = _report(overlapping, total)
    processor.process(*_drop(store, tmp_path, "shop_2026-10_late.csv", text))
    second = max(store.list_sales_reports(), key=lambda r: r.id)
    [imp2] = store.list_sales_imports(report_id=second.id)
    assert (second.accepted, second.duplicate_lines, imp2.lines) == (15, 10, 5)
    assert read_back == [imp.id, imp2.id]
    assert imp2.path is not None
    book = load_workbook(imp2.path, read_only=True)
    isbns = [row[1] for row in book.worksheets[0].iter_rows(min_row=2, values_only=True)]
    book.close()
    assert isbns == [isbn13(n) for n in range(5001, 5006)]


def test_a_kdp_ebook_named_by_its_asin_is_loaded_as_the_products_isbn(
    store: SqlStore, tmp_path: Path
) -> None:
    # The change detector's product snapshots, as a poll saves them (one ebook with an ASIN).
    ebook = Product(
        id=5, work_id=1, typename="ElectronicBookProduct", isbn13=isbn13(5), title="T",
        asin="B0ABCDE123",
    )  # fmt: skip
    store.save_snapshots("product", {5: product_snapshot(ebook)})
    flow = SalesInFlow.model_validate(
        {
            "kind": "sales_in",
            "partners": ["shop"],
            "layout": "amazon-kdp",
            "channels": {"default": "KDP"},
            "check_products": True,
            "on_rejected": "load_valid",
        }
    )

    def settings(request: IntakeRequest) -> sales_in.SalesSettings:
        return sales_in.settings_of(
            "sales",
            flow,
            request.partner,
            default_outbox=tmp_path / "outbox",
            isbns=lambda: sales_in.known_isbns(store.load_snapshots("product")),
            asins=lambda: sales_in.known_asins(store.load_snapshots("product")),
        )

    processor = sales_in.SalesProcessor(ledger=store, settings=settings, intake_id=lambda _: None)
    kdp = next(x for x in LAYOUTS if x.name == "amazon-kdp")
    rows = []
    for asin in ("B0ABCDE123", "B0ZZZZZZZZ"):
        row = dict.fromkeys(kdp.columns, "")
        row.update(
            {"Royalty Date": "2026-10-31", "ASIN": asin, "Marketplace": "Amazon.com",
             "Units Sold": "1", "Units Refunded": "0", "Royalty": "2.10", "Currency": "USD"}
        )  # fmt: skip
        rows.append(",".join(row[c] for c in kdp.columns))
    text = "\n".join([",".join(kdp.columns), *rows]) + "\n"
    result = processor.process(*_drop(store, tmp_path, "kdp_2026-10.csv", text))
    assert result.outcome is IntakeOutcome.STORED
    [report] = store.list_sales_reports()
    assert (report.status, report.accepted, report.rejected) == ("loaded", 1, 1)
    assert [x.line.isbn13 for x in store.sales_report_lines(report.id)] == [isbn13(5)]
    [rejected] = store.sales_report_rejections(report.id)
    assert rejected.reason == "ASIN B0ZZZZZZZZ is no product in Consonance (its asin field)"
