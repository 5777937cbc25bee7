"""The production spec sheet a printer receives with the files: JSON and a one-page PDF.

Built from Consonance's production run (quantity, paper, binding, colours, finishes) and the
product (ISBN, trim size, spine, extent). The same inputs give byte-identical output (the PDF's
dates come from ``generated_at``, a fixed epoch by default), so a re-planned package has the same
checksums and is not sent twice. The PDF uses fpdf2's built-in Helvetica, which covers Latin-1;
other characters are shown as ``?`` in the PDF only, the JSON keeps the exact text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from consonance_sftp.errors import ValidationFailed
from consonance_sftp.models import Product, ProductionRun, Work

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
REQUIRED = ("trim_size", "extent_pages", "quantity", "binding", "paper")
"""Fields a printer cannot quote or print without."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SpecSheet:
    """The printer's view of one print run of one product. ``None``: not set in Consonance."""

    isbn13: str | None
    title: str
    subtitle: str | None = None
    publisher: str | None = None
    imprint: str | None = None
    product_form: str | None = None
    run_id: int
    run_name: str | None = None
    quantity: int | None = None
    delivery_date: str | None = None
    trim_width_mm: str | None = None
    trim_height_mm: str | None = None
    spine_mm: str | None = None
    extent_pages: int | None = None
    paper: str | None = None
    binding: str | None = None
    text_colour: str | None = None
    cover_type: str | None = None
    cover_colours: str | None = None
    finishes: tuple[str, ...] = ()
    embellishments: tuple[str, ...] = ()
    missing: tuple[str, ...] = field(default=())

    @property
    def trim_size(self) -> str | None:
        if self.trim_width_mm and self.trim_height_mm:
            return f"{self.trim_width_mm} x {self.trim_height_mm} mm"
        return None

    def require_complete(self) -> None:
        """Raise ``ValidationFailed`` when a field the printer needs is not set."""
        if self.missing:
            raise ValidationFailed(
                f"spec sheet for {self.isbn13 or self.title} is incomplete (run {self.run_id})",
                [f"{name} is not set in Consonance" for name in self.missing],
            )


def _mm(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return format(value.normalize(), "f")


def _extent(product: Product) -> int | None:
    if product.page_count:
        return product.page_count
    for extent in product.extents:
        # ONIX list 23 "00" main content / "11" content page count, in pages (list 24 "03").
        if extent.extent_type in ("00", "11") and extent.unit == "03" and extent.value.isdigit():
            return int(extent.value)
    return None


def build_spec_sheet(run: ProductionRun, product: Product, work: Work | None = None) -> SpecSheet:
    """The spec sheet for ``run`` of ``product`` (``work`` adds the imprint and publisher)."""
    sheet = SpecSheet(
        isbn13=product.isbn13,
        title=product.title,
        subtitle=product.subtitle,
        publisher=work.publisher_name if work else None,
        imprint=work.imprint.name if work and work.imprint else None,
        product_form=product.product_form,
        run_id=run.id,
        run_name=run.name,
        quantity=run.quantity,
        delivery_date=run.delivery_date.isoformat() if run.delivery_date else None,
        trim_width_mm=_mm(product.width_mm),
        trim_height_mm=_mm(product.height_mm),
        spine_mm=_mm(product.thickness_mm),
        extent_pages=_extent(product),
        paper=run.paper,
        binding=run.binding,
        text_colour=run.text_colour,
        cover_type=run.cover_type,
        cover_colours=run.cover_colours,
        finishes=run.finishes,
        embellishments=run.embellishments,
    )
    values = {"trim_size": sheet.trim_size, **asdict(sheet)}
    missing = tuple(name for name in REQUIRED if values.get(name) in (None, ""))
    return SpecSheet(**{**asdict(sheet), "missing": missing})


def spec_sheet_json(sheet: SpecSheet) -> bytes:
    """The sheet as UTF-8 JSON with stable key order (same sheet, same bytes)."""
    doc = asdict(sheet)
    doc["trim_size"] = sheet.trim_size
    doc["finishes"] = list(sheet.finishes)
    doc["embellishments"] = list(sheet.embellishments)
    doc["missing"] = list(sheet.missing)
    return (json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()


def _rows(sheet: SpecSheet) -> Sequence[tuple[str, str]]:
    def show(value: object) -> str:
        if value is None or value == "" or value == ():
            return "-"
        if isinstance(value, tuple):
            return ", ".join(str(v) for v in value)
        return str(value)

    return [
        ("ISBN-13", show(sheet.isbn13)),
        ("Title", show(sheet.title)),
        ("Subtitle", show(sheet.subtitle)),
        ("Publisher / imprint", show(" / ".join(x for x in (sheet.publisher, sheet.imprint) if x))),
        ("Product form", show(sheet.product_form)),
        ("Print run", show(sheet.run_name or sheet.run_id)),
        ("Quantity", show(f"{sheet.quantity:,}" if sheet.quantity is not None else None)),
        ("Delivery date", show(sheet.delivery_date)),
        ("Trim size", show(sheet.trim_size)),
        ("Spine", show(f"{sheet.spine_mm} mm" if sheet.spine_mm else None)),
        ("Extent", show(f"{sheet.extent_pages} pages" if sheet.extent_pages else None)),
        ("Paper", show(sheet.paper)),
        ("Binding", show(sheet.binding)),
        ("Text colour", show(sheet.text_colour)),
        ("Cover", show(sheet.cover_type)),
        ("Cover colours", show(sheet.cover_colours)),
        ("Finishes", show(sheet.finishes)),
        ("Embellishments", show(sheet.embellishments)),
    ]


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def spec_sheet_pdf(sheet: SpecSheet, *, generated_at: datetime = EPOCH) -> bytes:
    """The sheet as a one-page A4 PDF: a heading and a two-column table."""
    pdf = FPDF(unit="mm", format="A4")
    pdf.set_creation_date(generated_at)
    pdf.set_producer("consonance-sftp")
    pdf.set_title(_latin1(f"Production spec sheet {sheet.isbn13 or ''}".strip()))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, "Production spec sheet", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", "", 11)
    pdf.cell(0, 7, _latin1(sheet.title), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)
    pdf.set_font("Helvetica", "", 10)
    with pdf.table(col_widths=(45, 135), text_align="LEFT", first_row_as_headings=False) as table:
        for label, value in _rows(sheet):
            row = table.row()
            row.cell(label)
            row.cell(_latin1(value))
    if sheet.missing:
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 10)
        pdf.multi_cell(0, 6, "Not set in Consonance: " + ", ".join(sheet.missing))
    return bytes(pdf.output())


def write_spec_sheets(
    sheet: SpecSheet, folder: Path, *, generated_at: datetime = EPOCH
) -> tuple[Path, Path]:
    """Write ``spec.pdf`` and ``spec.json`` into ``folder`` (the package's spec-sheet assets)."""
    folder.mkdir(parents=True, exist_ok=True)
    pdf_path, json_path = folder / "spec.pdf", folder / "spec.json"
    pdf_path.write_bytes(spec_sheet_pdf(sheet, generated_at=generated_at))
    json_path.write_bytes(spec_sheet_json(sheet))
    return pdf_path, json_path
