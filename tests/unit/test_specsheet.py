"""The production spec sheet: JSON and PDF from a production run and its product."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pypdf import PdfReader

from consonance_sftp.config.profiles import preset
from consonance_sftp.errors import ValidationFailed
from consonance_sftp.formats.packaging import SourceAsset, plan_package
from consonance_sftp.formats.preflight import preflight
from consonance_sftp.formats.specsheet import (
    build_spec_sheet,
    spec_sheet_json,
    spec_sheet_pdf,
    write_spec_sheets,
)
from consonance_sftp.models import AssetKind, Extent, Imprint, Product, ProductionRun, Work

RUN = ProductionRun(
    id=7,
    name="First printing",
    product_ids=(11,),
    quantity=2500,
    delivery_date=date(2026, 5, 1),
    paper="80gsm Munken Premium Cream",
    text_colour="1/1 black",
    binding="Perfect bound",
    cover_type="Paperback, 4pp cover",
    cover_colours="4/0",
    finishes=("Matt lamination",),
    embellishments=("Spot UV on title",),
)
PRODUCT = Product(
    id=11,
    work_id=3,
    typename="PhysicalBookProduct",
    isbn13="9781234567897",
    title="Süßes Wasser — a novel",
    product_form="BC",
    height_mm=Decimal("198.0"),
    width_mm=Decimal("129"),
    thickness_mm=Decimal("21.5"),
    extents=(Extent(extent_type="00", value="352", unit="03"),),
)
WORK = Work(id=3, title="Süßes Wasser", imprint=Imprint(id=1, name="Harbour"), publisher_name="P")


def test_the_sheet_carries_the_run_and_product_fields() -> None:
    sheet = build_spec_sheet(RUN, PRODUCT, WORK)
    assert sheet.trim_size == "129 x 198 mm"
    assert sheet.spine_mm == "21.5"
    assert sheet.extent_pages == 352
    assert sheet.missing == ()
    doc = json.loads(spec_sheet_json(sheet))
    assert doc["quantity"] == 2500
    assert doc["paper"] == "80gsm Munken Premium Cream"
    assert doc["binding"] == "Perfect bound"
    assert doc["finishes"] == ["Matt lamination"]
    assert doc["imprint"] == "Harbour"
    assert doc["title"] == "Süßes Wasser — a novel"
    assert doc["delivery_date"] == "2026-05-01"


def test_the_pdf_is_one_readable_page_and_byte_stable() -> None:
    sheet = build_spec_sheet(RUN, PRODUCT, WORK)
    first, second = spec_sheet_pdf(sheet), spec_sheet_pdf(sheet)
    assert first == second
    reader = PdfReader(io.BytesIO(first))
    assert len(reader.pages) == 1
    text = reader.pages[0].extract_text()
    for expected in ("9781234567897", "129 x 198 mm", "2,500", "352 pages", "Perfect bound"):
        assert expected in text
    assert "Süßes Wasser" in text  # Latin-1 survives; the em dash becomes '?'


def test_an_incomplete_run_is_reported() -> None:
    bare = ProductionRun(id=8)
    sheet = build_spec_sheet(bare, PRODUCT)
    assert sheet.missing == ("quantity", "binding", "paper")
    with pytest.raises(ValidationFailed) as caught:
        sheet.require_complete()
    assert caught.value.reasons == [
        "quantity is not set in Consonance",
        "binding is not set in Consonance",
        "paper is not set in Consonance",
    ]
    text = PdfReader(io.BytesIO(spec_sheet_pdf(sheet))).pages[0].extract_text()
    assert "Not set in Consonance: quantity, binding, paper" in text


def test_written_sheets_plan_under_the_printer_names(tmp_path: Path) -> None:
    sheet = build_spec_sheet(RUN, PRODUCT, WORK)
    pdf_path, json_path = write_spec_sheets(sheet, tmp_path / "spec")
    assert json.loads(json_path.read_bytes())["isbn13"] == "9781234567897"
    assets = [
        SourceAsset(kind=AssetKind.SPEC_SHEET, path=pdf_path),
        SourceAsset(kind=AssetKind.SPEC_SHEET, path=json_path),
    ]
    assert all(preflight(a.path, a.kind).ok for a in assets)
    printer = preset("print_on_demand", required=[])
    plan = plan_package(printer, assets, values={"isbn13": sheet.isbn13}, now=datetime.now(UTC))
    assert [f.remote_path for f in plan.assets] == [
        "9781234567897_spec.pdf",
        "9781234567897_spec.json",
    ]
