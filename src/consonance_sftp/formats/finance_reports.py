"""Finance out: the rights report and the contract data export, as rows and as CSV, XLSX and PDF.

Pure renderers: they take ``models.Contract`` and ``models.Work`` values (as the Consonance
client returns them) and the publisher's name, and return rows or bytes. Nothing here reads the
API or the config; the only files touched are the PDF font (see below) and the temporary file
openpyxl's write-only mode spools an XLSX sheet to.

What the API can show, and what it cannot:

* **Parties.** Consonance's ``Contract`` has no payee or party field (royalty rates, payees and
  their splits are not in the API). The parties a report can name are the publisher (the
  client, whose name the caller passes) and the work's contributors: each contact's name, its
  ONIX list-17 role and its Consonance contact ID, as ``"Name (author A01, contact 42)"``.
* **Territories and languages.** The API exposes no territory or language per licensed right:
  a right is ``rightType`` and ``authorCut`` only, and rights deals (language, licensee, deal
  stage) live in Consonance's user interface alone. The rights report therefore has no
  territory or language column; a right type's own name (``"World English"``,
  ``"Translation - German"``) is shown as Consonance stores it and says what it says.
* **Status** of a right is derived from its contract, as of a given date (``right_status``).

Columns: ``RIGHTS_COLUMNS`` and ``CONTRACT_COLUMNS`` give each report's column order and labels
(one constant per report, so the docs can print them); the CSV, XLSX and PDF writers all use
them. Same input, same bytes: the XLSX's document properties and zip timestamps and the PDF's
creation date are fixed (``EPOCH`` by default).

CSV is UTF-8 **with a byte-order mark** and CRLF line ends: Excel, opening a ``.csv`` by
double-click, reads it in the machine's legacy code page (Windows-1252 in western Europe), so
"Zażółć" would come out as mojibake; with the BOM it reads UTF-8. Python reads it back with
``encoding="utf-8-sig"``, LibreOffice and Google Sheets ignore the BOM. Dates are ISO 8601
(``2024-03-31``), numbers are plain (``1500``, ``12.5``). Text that a spreadsheet would run as
a formula (``=``, ``+``, ``-``, ``@``...) gets a leading apostrophe, in CSV and XLSX alike, as
in ``formats.spreadsheet``.

The PDF uses DejaVu Sans from Debian's ``fonts-dejavu-core`` package
(``/usr/share/fonts/truetype/dejavu``), so Polish, Greek or Cyrillic text is shown as written.
Without that file it falls back to fpdf2's built-in Helvetica (Latin-1, as the spec sheet
does): other characters become ``?`` in the PDF only; CSV and XLSX keep the exact text.
"""

from __future__ import annotations

import calendar
import csv
import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal

from fpdf import FPDF
from fpdf.fonts import FontFace
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.writer.excel import ExcelWriter

from ..models import Contract, Work
from .spreadsheet import formula_safe

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
"""The fixed creation date of every XLSX and PDF unless the caller passes another."""

DEJAVU_DIR = Path("/usr/share/fonts/truetype/dejavu")
"""Where Debian's ``fonts-dejavu-core`` installs DejaVu Sans (regular and bold)."""

RightStatus = Literal["held", "expired", "terminated", "unknown"]
"""``terminated``: the contract has a termination date on or before the as-of date (or a
termination reason with no date). ``expired``: signed date plus the term in months is on or
before the as-of date. ``held``: neither (no term given: held while not terminated).
``unknown``: a term is given but cannot be applied (no signed date, or the term is not a
whole number of months), so neither held nor expired can be claimed."""

Cell = str | int | float | date | tuple[str, ...] | None

# ONIX list 17 roles a contract's contributors most often have; other codes are shown bare.
ROLE_LABELS: dict[str, str] = {
    "A01": "author",
    "A02": "with",
    "A03": "screenplay",
    "A12": "illustrator",
    "A13": "photographer",
    "A15": "preface",
    "A23": "foreword",
    "A24": "introduction",
    "B01": "editor",
    "B06": "translator",
    "E07": "reader",
}


# --- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RightsRow:
    """One licensed right of one contract on one work. ``None``: not set in Consonance."""

    work_id: int | None
    title: str | None  # the work's title; None when the work was not given
    isbns: tuple[str, ...]  # the work's products' ISBN-13s, in product order
    contract_id: int
    contract_name: str
    right_id: int
    right_type: str | None
    author_cut: float | None  # percent of this right's income that goes to the author
    term: str | None  # months, as Consonance stores it
    signed_date: date | None
    expires: date | None  # signed date + term months, when both are known
    pub_before_date: date | None
    status: RightStatus
    terminated_date: date | None
    termination_reason: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractRow:
    """One contract with every field the API exposes. ``None``: not set in Consonance."""

    contract_id: int
    contract_name: str
    description: str | None
    work_id: int | None
    title: str | None
    isbns: tuple[str, ...]
    publisher: str
    contributors: tuple[str, ...]  # "Name (role, contact N)", by contribution sequence
    signed_date: date | None
    ms_delivery_date: date | None
    revised_ms_delivery_date: date | None
    actual_ms_delivery_date: date | None
    ms_proofs_date: date | None
    pub_before_date: date | None
    review_date: date | None
    terminated_date: date | None
    termination_reason: str | None
    term: str | None
    copyright_year: str | None
    flat_fee_value: float | None
    guaranteed_royalty_value: float | None  # the guaranteed sum (advance)
    author_discount: str | None
    remainder_rate: str | None
    remainder_rate_over_cost: float | None
    licensed_rights: tuple[str, ...]  # "Right type (author cut N%)", one per right


RIGHTS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("work_id", "Work ID"),
    ("title", "Title"),
    ("isbns", "ISBNs"),
    ("contract_id", "Contract ID"),
    ("contract_name", "Contract"),
    ("right_type", "Right type"),
    ("author_cut", "Author cut %"),
    ("term", "Term (months)"),
    ("signed_date", "Signed"),
    ("expires", "Expires"),
    ("pub_before_date", "Publish before"),
    ("status", "Status"),
    ("terminated_date", "Terminated"),
    ("termination_reason", "Termination reason"),
)
"""The rights report's columns, in order: (``RightsRow`` field, label)."""

CONTRACT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("contract_id", "Contract ID"),
    ("contract_name", "Contract"),
    ("description", "Description"),
    ("work_id", "Work ID"),
    ("title", "Title"),
    ("isbns", "ISBNs"),
    ("publisher", "Publisher"),
    ("contributors", "Contributors"),
    ("signed_date", "Signed"),
    ("ms_delivery_date", "Manuscript due"),
    ("revised_ms_delivery_date", "Manuscript due (revised)"),
    ("actual_ms_delivery_date", "Manuscript delivered"),
    ("ms_proofs_date", "Proofs"),
    ("pub_before_date", "Publish before"),
    ("review_date", "Review"),
    ("terminated_date", "Terminated"),
    ("termination_reason", "Termination reason"),
    ("term", "Term (months)"),
    ("copyright_year", "Copyright year"),
    ("flat_fee_value", "Flat fee"),
    ("guaranteed_royalty_value", "Advance (guaranteed royalty)"),
    ("author_discount", "Author discount"),
    ("remainder_rate", "Remainder rate"),
    ("remainder_rate_over_cost", "Remainder rate over cost"),
    ("licensed_rights", "Licensed rights"),
)
"""The contract data export's columns, in order: (``ContractRow`` field, label)."""

_MONEY_FIELDS = frozenset({"flat_fee_value", "guaranteed_royalty_value"})


def _paired(
    contracts: Iterable[Contract], works: Iterable[Work]
) -> list[tuple[Contract, Work | None]]:
    """Each contract with its work (by ``contract.work_id``, else the work whose
    ``contract_ids`` lists it; ``None`` when not given), ordered by work ID then contract ID
    (contracts with no work last)."""
    by_id: dict[int, Work] = {}
    by_contract: dict[int, Work] = {}
    for work in works:
        by_id.setdefault(work.id, work)
        for contract_id in work.contract_ids:
            by_contract.setdefault(contract_id, work)
    pairs = [
        (c, by_id.get(c.work_id) if c.work_id is not None else by_contract.get(c.id))
        for c in contracts
    ]

    def order(pair: tuple[Contract, Work | None]) -> tuple[bool, int, int]:
        contract, work = pair
        work_id = work.id if work else contract.work_id
        return (work_id is None, work_id or 0, contract.id)

    return sorted(pairs, key=order)


def _isbns(work: Work | None) -> tuple[str, ...]:
    if work is None:
        return ()
    return tuple(dict.fromkeys(p.isbn13 for p in work.products if p.isbn13))


def _contributors(work: Work | None) -> tuple[str, ...]:
    if work is None:
        return ()
    shown: dict[tuple[int, str], str] = {}
    for c in sorted(work.contributions, key=lambda c: c.sequence_number):
        label = ROLE_LABELS.get(c.role)
        role = f"{label} {c.role}" if label else c.role
        shown.setdefault(
            (c.contributor.id, c.role), f"{c.contributor.name} ({role}, contact {c.contributor.id})"
        )
    return tuple(shown.values())


def _number(value: float) -> str:
    """``1500.0`` -> ``"1500"``, ``12.5`` -> ``"12.5"``: exact (it reads back to the same float)."""
    return format(Decimal(repr(value)).normalize(), "f")


def _rights_summary(contract: Contract) -> tuple[str, ...]:
    out = []
    for right in contract.licensed_rights:
        name = right.right_type or f"right {right.id}"
        cut = f" (author cut {_number(right.author_cut)}%)" if right.author_cut is not None else ""
        out.append(name + cut)
    return tuple(out)


def term_months(term: str | None) -> int | None:
    """Consonance's ``term`` (a string of months) as a whole number, or ``None``."""
    if term is None:
        return None
    text = term.strip().lower().removesuffix("months").removesuffix("month").strip()
    return int(text) if text.isdigit() else None


def add_months(start: date, months: int) -> date:
    """``start`` plus ``months`` calendar months; the 31st becomes the month's last day."""
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def contract_expiry(contract: Contract) -> date | None:
    """Signed date plus the term, when both are known."""
    months = term_months(contract.term)
    if contract.signed_date is None or months is None:
        return None
    return add_months(contract.signed_date, months)


def right_status(contract: Contract, *, as_of: date) -> RightStatus:
    """Whether the rights of ``contract`` are held on ``as_of`` (see ``RightStatus``)."""
    if contract.terminated_date is not None:
        if contract.terminated_date <= as_of:
            return "terminated"
    elif contract.termination_reason:
        return "terminated"
    if contract.term is None or not contract.term.strip():
        return "held"
    expires = contract_expiry(contract)
    if expires is None:
        return "unknown"
    return "held" if expires > as_of else "expired"


def rights_rows(
    contracts: Iterable[Contract], works: Iterable[Work], *, as_of: date
) -> list[RightsRow]:
    """One row per licensed right of each contract (a contract with no licensed rights has no
    row: it holds nothing), ordered by work ID, contract ID, then the rights' own order."""
    rows: list[RightsRow] = []
    for contract, work in _paired(contracts, works):
        status = right_status(contract, as_of=as_of)
        expires = contract_expiry(contract)
        for right in contract.licensed_rights:
            rows.append(
                RightsRow(
                    work_id=work.id if work else contract.work_id,
                    title=work.title if work else None,
                    isbns=_isbns(work),
                    contract_id=contract.id,
                    contract_name=contract.contract_name,
                    right_id=right.id,
                    right_type=right.right_type,
                    author_cut=right.author_cut,
                    term=contract.term,
                    signed_date=contract.signed_date,
                    expires=expires,
                    pub_before_date=contract.pub_before_date,
                    status=status,
                    terminated_date=contract.terminated_date,
                    termination_reason=contract.termination_reason,
                )
            )
    return rows


def contract_rows(
    contracts: Iterable[Contract], works: Iterable[Work], *, publisher: str
) -> list[ContractRow]:
    """One row per contract, ordered by work ID then contract ID. ``publisher`` is the client
    (the publisher's name): the contract's one party the API does not name."""
    rows: list[ContractRow] = []
    for contract, work in _paired(contracts, works):
        rows.append(
            ContractRow(
                contract_id=contract.id,
                contract_name=contract.contract_name,
                description=contract.description,
                work_id=work.id if work else contract.work_id,
                title=work.title if work else None,
                isbns=_isbns(work),
                publisher=publisher,
                contributors=_contributors(work),
                signed_date=contract.signed_date,
                ms_delivery_date=contract.ms_delivery_date,
                revised_ms_delivery_date=contract.revised_ms_delivery_date,
                actual_ms_delivery_date=contract.actual_ms_delivery_date,
                ms_proofs_date=contract.ms_proofs_date,
                pub_before_date=contract.pub_before_date,
                review_date=contract.review_date,
                terminated_date=contract.terminated_date,
                termination_reason=contract.termination_reason,
                term=contract.term,
                copyright_year=contract.copyright_year,
                flat_fee_value=contract.flat_fee_value,
                guaranteed_royalty_value=contract.guaranteed_royalty_value,
                author_discount=contract.author_discount,
                remainder_rate=contract.remainder_rate,
                remainder_rate_over_cost=contract.remainder_rate_over_cost,
                licensed_rights=_rights_summary(contract),
            )
        )
    return rows


# --- cells -----------------------------------------------------------------------------------


def _xlsx_text(text: str) -> str:
    """Formula-safe text (``formats.spreadsheet.formula_safe``) without the control
    characters XML 1.0 cannot hold (openpyxl refuses them; CSV and PDF keep the text)."""
    return str(ILLEGAL_CHARACTERS_RE.sub("", str(formula_safe(text))))


def _cells(row: RightsRow | ContractRow, columns: Sequence[tuple[str, str]]) -> list[Cell]:
    return [getattr(row, name) for name, _ in columns]


def _text(value: Cell) -> str:
    """A cell as text: ``""`` for not set, ISO dates, exact plain numbers, lists joined."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        return "; ".join(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return _number(value)
    return str(value)


# --- CSV -------------------------------------------------------------------------------------


def _csv(rows: Sequence[RightsRow | ContractRow], columns: Sequence[tuple[str, str]]) -> bytes:
    sink = io.StringIO()
    writer = csv.writer(sink, lineterminator="\r\n")
    writer.writerow([label for _, label in columns])
    for row in rows:
        writer.writerow(
            [
                str(formula_safe(_text(v))) if isinstance(v, str | tuple) else _text(v)
                for v in _cells(row, columns)
            ]
        )
    return sink.getvalue().encode("utf-8-sig")


def rights_csv(rows: Sequence[RightsRow]) -> bytes:
    """The rights report as CSV: UTF-8 with a BOM, CRLF, a header row of ``RIGHTS_COLUMNS``."""
    return _csv(rows, RIGHTS_COLUMNS)


def contracts_csv(rows: Sequence[ContractRow]) -> bytes:
    """The contract export as CSV: UTF-8 with a BOM, CRLF, a header row of ``CONTRACT_COLUMNS``."""
    return _csv(rows, CONTRACT_COLUMNS)


# --- XLSX ------------------------------------------------------------------------------------

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry


def _xlsx(
    rows: Sequence[RightsRow | ContractRow],
    columns: Sequence[tuple[str, str]],
    *,
    sheet_name: str,
    title: str,
    generated_at: datetime,
) -> bytes:
    # Write-only (streaming) mode, as formats.spreadsheet: cells are not kept as objects, so
    # memory follows the rows, not the cells.
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=sheet_name)
    for index, (name, label) in enumerate(columns, start=1):
        widest = max([len(label)] + [len(_text(getattr(r, name))) for r in rows])
        sheet.column_dimensions[get_column_letter(index)].width = min(max(widest + 2, 10), 60)
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{len(rows) + 1}"
    bold = Font(bold=True)
    heading = []
    for _, label in columns:
        cell = WriteOnlyCell(sheet, value=label)
        cell.font = bold
        heading.append(cell)
    sheet.append(heading)
    for row in rows:
        values: list[object] = []
        for name, _ in columns:
            value = getattr(row, name)
            if isinstance(value, tuple):
                values.append(_xlsx_text("; ".join(value)) if value else None)
            elif isinstance(value, str):
                values.append(_xlsx_text(value))
            elif isinstance(value, date):  # a real date, shown as ISO
                cell = WriteOnlyCell(sheet, value=value)
                cell.number_format = "yyyy-mm-dd"
                values.append(cell)
            elif name in _MONEY_FIELDS and value is not None:  # a number, shown with cents
                cell = WriteOnlyCell(sheet, value=value)
                cell.number_format = "#,##0.00"
                values.append(cell)
            else:
                values.append(value)
        sheet.append(values)
    stamp = generated_at.astimezone(UTC).replace(tzinfo=None)
    workbook.properties.creator = "consonance-sftp"
    workbook.properties.title = title
    workbook.properties.created = stamp
    workbook.properties.modified = stamp
    raw = io.BytesIO()
    # ExcelWriter, not Workbook.save: save() stamps "modified" with the clock.
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(workbook, archive).write_data()
    # Same bytes for the same rows: every zip entry gets one fixed timestamp.
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=_ZIP_EPOCH)
            entry.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(entry, source.read(info.filename))
    return out.getvalue()


def rights_xlsx(
    rows: Sequence[RightsRow], *, publisher: str, as_of: date, generated_at: datetime = EPOCH
) -> bytes:
    """The rights report as an XLSX workbook (one sheet, ``Rights``): dates are dates, author
    cuts are numbers, lists (ISBNs) are joined with ``"; "``."""
    return _xlsx(
        rows,
        RIGHTS_COLUMNS,
        sheet_name="Rights",
        title=_rights_heading(publisher, as_of),
        generated_at=generated_at,
    )


def contracts_xlsx(
    rows: Sequence[ContractRow], *, publisher: str, as_of: date, generated_at: datetime = EPOCH
) -> bytes:
    """The contract export as an XLSX workbook (one sheet, ``Contracts``): dates are dates,
    money (flat fee, advance) is a number formatted ``#,##0.00``, lists are joined."""
    return _xlsx(
        rows,
        CONTRACT_COLUMNS,
        sheet_name="Contracts",
        title=_contracts_heading(publisher, as_of),
        generated_at=generated_at,
    )


# --- PDF -------------------------------------------------------------------------------------


def _rights_heading(publisher: str, as_of: date) -> str:
    return f"Rights report — {publisher} — as of {as_of.isoformat()}"


def _contracts_heading(publisher: str, as_of: date) -> str:
    return f"Contract data — {publisher} — as of {as_of.isoformat()}"


RIGHTS_NOTE = (
    "Consonance's API exposes no territory or language per licensed right (rights deals are "
    "kept in its user interface only): a right type's name says what it covers. Status as of "
    "the report date: held, expired (signed + term), terminated, or unknown (a term with no "
    "signed date)."
)
CONTRACTS_NOTE = (
    "Parties: the publisher and the work's contributors (contact IDs from Consonance). "
    "Consonance's API has no payee or party on a contract, nor royalty rates."
)

# Relative widths of the rights report's PDF columns (A4 landscape: 277 mm between margins).
_RIGHTS_WIDTHS = (11, 34, 25, 14, 28, 25, 12, 15, 17, 17, 17, 16, 19, 27)


class _ReportPDF(FPDF):
    def __init__(self, heading: str, font_dir: Path) -> None:
        super().__init__(orientation="landscape", unit="mm", format="A4")
        self.heading = heading
        regular, bold = font_dir / "DejaVuSans.ttf", font_dir / "DejaVuSans-Bold.ttf"
        self.unicode = regular.is_file() and bold.is_file()
        if self.unicode:
            self.add_font("DejaVu", "", str(regular))
            self.add_font("DejaVu", "B", str(bold))
            self.family = "DejaVu"
        else:
            self.family = "Helvetica"
        self.set_auto_page_break(auto=True, margin=14)
        self.set_margins(10, 10, 10)

    def show(self, text: str) -> str:
        """Text the current font can draw (Helvetica: Latin-1 only, others as ``?``)."""
        if self.unicode:
            return text
        return text.replace("—", "-").encode("latin-1", "replace").decode("latin-1")

    def header(self) -> None:
        self.set_font(self.family, "B", 11)
        self.cell(0, 7, self.show(self.heading), new_x="LMARGIN", new_y="NEXT")
        self.ln(1)

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font(self.family, "", 7)
        self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align="R")


def _new_pdf(heading: str, font_dir: Path, generated_at: datetime) -> _ReportPDF:
    pdf = _ReportPDF(heading, font_dir)
    pdf.set_creation_date(generated_at)
    pdf.set_producer("consonance-sftp")
    pdf.set_creator("consonance-sftp")
    pdf.set_title(heading)
    pdf.add_page()
    return pdf


def _note(pdf: _ReportPDF, text: str) -> None:
    pdf.set_font(pdf.family, "", 7)
    pdf.multi_cell(0, 3.5, pdf.show(text), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)


def _pdf_text(value: Cell, *, money: bool = False) -> str:
    if money and isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, tuple):
        return ", ".join(value)  # ISBNs wrap between numbers
    return _text(value) or "-"


def rights_pdf(
    rows: Sequence[RightsRow],
    *,
    publisher: str,
    as_of: date,
    generated_at: datetime = EPOCH,
    font_dir: Path = DEJAVU_DIR,
) -> bytes:
    """The rights report as an A4 landscape PDF: a table of ``RIGHTS_COLUMNS`` (long titles
    wrap, the heading row repeats on every page) under "Rights report — <publisher> — as of
    <date>", with page numbers."""
    pdf = _new_pdf(_rights_heading(publisher, as_of), font_dir, generated_at)
    _note(pdf, RIGHTS_NOTE)
    pdf.set_font(pdf.family, "", 7)
    headings = FontFace(emphasis="BOLD", fill_color=(225, 225, 225))
    with pdf.table(
        col_widths=_RIGHTS_WIDTHS,
        text_align="LEFT",
        headings_style=headings,
        line_height=3.5,
        repeat_headings=1,
    ) as table:
        heading = table.row()
        for _, label in RIGHTS_COLUMNS:
            heading.cell(pdf.show(label))
        for row in rows:
            cells = table.row()
            for value in _cells(row, RIGHTS_COLUMNS):
                cells.cell(pdf.show(_pdf_text(value)))
    if not rows:
        _note(pdf, "No licensed rights.")
    return bytes(pdf.output())


def contracts_pdf(
    rows: Sequence[ContractRow],
    *,
    publisher: str,
    as_of: date,
    generated_at: datetime = EPOCH,
    font_dir: Path = DEJAVU_DIR,
) -> bytes:
    """The contract export as an A4 landscape PDF: per contract, a heading ("Contract <ID> —
    <name>") and a label/value table of every other column of ``CONTRACT_COLUMNS``, two pairs
    a line, under "Contract data — <publisher> — as of <date>", with page numbers."""
    pdf = _new_pdf(_contracts_heading(publisher, as_of), font_dir, generated_at)
    _note(pdf, CONTRACTS_NOTE)
    shown = [
        (name, label)
        for name, label in CONTRACT_COLUMNS
        if name not in ("contract_id", "contract_name")
    ]
    label_style = FontFace(emphasis="BOLD")
    for row in rows:
        if pdf.get_y() > pdf.h * 0.62:
            pdf.add_page()
        pdf.set_font(pdf.family, "B", 9)
        pdf.cell(
            0,
            6,
            pdf.show(f"Contract {row.contract_id} — {row.contract_name}"),
            new_x="LMARGIN",
            new_y="NEXT",
        )
        pdf.set_font(pdf.family, "", 7)
        with pdf.table(
            col_widths=(30, 108.5, 30, 108.5),
            text_align="LEFT",
            first_row_as_headings=False,
            line_height=3.5,
        ) as table:
            for start in range(0, len(shown), 2):
                cells = table.row()
                for name, label in shown[start : start + 2]:
                    cells.cell(pdf.show(label), style=label_style)
                    cells.cell(pdf.show(_pdf_text(getattr(row, name), money=name in _MONEY_FIELDS)))
                if len(shown[start : start + 2]) == 1:
                    cells.cell("", colspan=2)
        pdf.ln(4)
    if not rows:
        _note(pdf, "No contracts.")
    return bytes(pdf.output())


def render(
    kind: Literal["rights", "contracts"],
    fmt: Literal["csv", "xlsx", "pdf"],
    contracts: Sequence[Contract],
    works: Sequence[Work],
    *,
    publisher: str,
    as_of: date,
    generated_at: datetime = EPOCH,
) -> bytes:
    """One report (``rights`` or ``contracts``) in one format, as bytes."""
    if kind == "rights":
        rights = rights_rows(contracts, works, as_of=as_of)
        if fmt == "csv":
            return rights_csv(rights)
        writer = rights_xlsx if fmt == "xlsx" else rights_pdf
        return writer(rights, publisher=publisher, as_of=as_of, generated_at=generated_at)
    terms = contract_rows(contracts, works, publisher=publisher)
    if fmt == "csv":
        return contracts_csv(terms)
    write = contracts_xlsx if fmt == "xlsx" else contracts_pdf
    return write(terms, publisher=publisher, as_of=as_of, generated_at=generated_at)
