"""Finance out: the rights report and the contract export, row by row and read back from CSV,
XLSX and PDF."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import fields, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from consonance_sftp.formats.finance_reports import (
    CONTRACT_COLUMNS,
    DEJAVU_DIR,
    RIGHTS_COLUMNS,
    ContractRow,
    RightsRow,
    add_months,
    contract_rows,
    contracts_csv,
    contracts_pdf,
    contracts_xlsx,
    right_status,
    rights_csv,
    rights_pdf,
    rights_rows,
    rights_xlsx,
)
from consonance_sftp.models import Contact, Contract, Contribution, LicensedRight, Product, Work

POLISH = "Zażółć gęślą jaźń"
GREEK = "Ἡ Ὀδύσσεια καὶ ἡ Ἰλιάς"
TITLE = f"{POLISH}: {GREEK}, a title long enough to wrap in its column of the rights report"
PUBLISHER = "Wydawnictwo Ćma"
AS_OF = date(2024, 6, 1)

JAN = Contact(id=42, name="Jan Łoś")
ANNA = Contact(id=43, name="Άννα Παπαδοπούλου")
WORK = Work(
    id=7,
    title=TITLE,
    products=(
        Product(id=71, work_id=7, typename="PhysicalBook", isbn13="9781234567897", title="x"),
        Product(id=72, work_id=7, typename="ElectronicBook", isbn13=None, title="x"),
        Product(id=73, work_id=7, typename="ElectronicBook", isbn13="9781234567880", title="x"),
    ),
    contributions=(
        Contribution(id=2, contributor=ANNA, role="B06", sequence_number=2),
        Contribution(id=1, contributor=JAN, role="A01", sequence_number=1, product_ids=(71,)),
        # The same author again for the ebook: one party, not two.
        Contribution(id=3, contributor=JAN, role="A01", sequence_number=1, product_ids=(73,)),
        Contribution(id=4, contributor=Contact(id=44, name="Ola"), role="Z99", sequence_number=3),
    ),
)
FULL = Contract(
    id=12,
    contract_name="Łoś — main agreement",
    work_id=7,
    description="World rights, all formats",
    signed_date=date(2020, 1, 31),
    ms_delivery_date=date(2020, 6, 30),
    revised_ms_delivery_date=date(2020, 9, 30),
    actual_ms_delivery_date=date(2020, 10, 2),
    ms_proofs_date=date(2021, 1, 15),
    pub_before_date=date(2021, 12, 31),
    review_date=date(2025, 1, 31),
    terminated_date=date(2026, 3, 1),
    termination_reason="Out of print",
    term="60",
    copyright_year="2021",
    flat_fee_value=1500.0,
    guaranteed_royalty_value=2500.5,
    author_discount="35%",
    remainder_rate="10%",
    remainder_rate_over_cost=12.5,
    licensed_rights=(
        LicensedRight(id=101, right_type="Translation - German", author_cut=50.0),
        LicensedRight(id=102, right_type="Audio", author_cut=25.5),
    ),
)
BARE_WORK = Work(id=8, title="Plain", contract_ids=(13,))
BARE = Contract(id=13, contract_name="Bare")  # its work is found by Work.contract_ids
ORPHAN = Contract(id=14, contract_name="Orphan", licensed_rights=(LicensedRight(id=105),))
WORKS = [BARE_WORK, WORK]


# --- rows ------------------------------------------------------------------------------------


def test_rights_rows_carry_every_field_of_the_contract_and_work() -> None:
    rows = rights_rows([FULL], WORKS, as_of=AS_OF)
    assert [r.right_id for r in rows] == [101, 102]
    for row, right in zip(rows, FULL.licensed_rights, strict=True):
        expected = {
            "work_id": 7,
            "title": TITLE,
            "isbns": ("9781234567897", "9781234567880"),
            "contract_id": 12,
            "contract_name": "Łoś — main agreement",
            "right_id": right.id,
            "right_type": right.right_type,
            "author_cut": right.author_cut,
            "term": "60",
            "signed_date": date(2020, 1, 31),
            "expires": date(2025, 1, 31),
            "pub_before_date": date(2021, 12, 31),
            "status": "held",  # as of 2024-06-01: expires 2025, terminated only in 2026
            "terminated_date": date(2026, 3, 1),
            "termination_reason": "Out of print",
        }
        assert {f.name for f in fields(RightsRow)} == set(expected)
        assert {name: getattr(row, name) for name in expected} == expected
    assert (rows[0].right_type, rows[0].author_cut) == ("Translation - German", 50.0)
    assert (rows[1].right_type, rows[1].author_cut) == ("Audio", 25.5)


def test_rights_rows_with_nothing_set() -> None:
    # BARE holds no right: no row. ORPHAN's right has no type, no cut and no work.
    (row,) = rights_rows([BARE, ORPHAN], WORKS, as_of=AS_OF)
    assert row == RightsRow(
        work_id=None,
        title=None,
        isbns=(),
        contract_id=14,
        contract_name="Orphan",
        right_id=105,
        right_type=None,
        author_cut=None,
        term=None,
        signed_date=None,
        expires=None,
        pub_before_date=None,
        status="held",
        terminated_date=None,
        termination_reason=None,
    )


@pytest.mark.parametrize(
    ("changes", "as_of", "status"),
    [
        ({}, date(2025, 1, 30), "held"),
        ({}, date(2025, 1, 31), "expired"),  # signed 2020-01-31 + 60 months: ends that day
        ({"term": "49"}, date(2024, 2, 28), "held"),  # 2020-01-31 + 49 months = 2024-02-29
        ({"term": "49"}, date(2024, 2, 29), "expired"),
        ({"term": "24 months"}, date(2021, 6, 1), "held"),
        ({"term": None}, date(2099, 1, 1), "held"),
        ({"term": " "}, date(2099, 1, 1), "held"),
        ({"signed_date": None}, date(2021, 1, 1), "unknown"),
        ({"term": "life of copyright"}, date(2021, 1, 1), "unknown"),
        ({"terminated_date": date(2022, 5, 1)}, date(2022, 5, 1), "terminated"),
        ({"terminated_date": date(2022, 5, 1)}, date(2022, 4, 30), "held"),
        ({"terminated_date": None, "termination_reason": "Rights reverted"}, AS_OF, "terminated"),
    ],
)
def test_right_status(changes: dict[str, Any], as_of: date, status: str) -> None:
    base = Contract(id=1, contract_name="c", signed_date=date(2020, 1, 31), term="60")
    contract = replace(base, **changes)
    assert right_status(contract, as_of=as_of) == status


def test_add_months_keeps_the_day_or_takes_the_month_end() -> None:
    assert add_months(date(2020, 1, 31), 1) == date(2020, 2, 29)
    assert add_months(date(2021, 1, 31), 1) == date(2021, 2, 28)
    assert add_months(date(2020, 11, 15), 14) == date(2022, 1, 15)
    assert add_months(date(2020, 3, 31), 0) == date(2020, 3, 31)


def test_contract_rows_carry_every_field_of_the_contract_and_work() -> None:
    (row,) = contract_rows([FULL], WORKS, publisher=PUBLISHER)
    same_as_contract = [
        f.name for f in fields(Contract) if f.name not in ("id", "work_id", "licensed_rights")
    ]
    expected: dict[str, object] = {name: getattr(FULL, name) for name in same_as_contract}
    expected |= {
        "contract_id": 12,
        "work_id": 7,
        "title": TITLE,
        "isbns": ("9781234567897", "9781234567880"),
        "publisher": PUBLISHER,
        "contributors": (
            "Jan Łoś (author A01, contact 42)",
            "Άννα Παπαδοπούλου (translator B06, contact 43)",
            "Ola (Z99, contact 44)",
        ),
        "licensed_rights": (
            "Translation - German (author cut 50%)",
            "Audio (author cut 25.5%)",
        ),
    }
    assert {f.name for f in fields(ContractRow)} == set(expected)
    assert {name: getattr(row, name) for name in expected} == expected
    # The money terms really are the source numbers, not the defaults.
    assert (row.flat_fee_value, row.guaranteed_royalty_value) == (1500.0, 2500.5)
    assert row.remainder_rate_over_cost == 12.5
    assert (row.signed_date, row.review_date) == (date(2020, 1, 31), date(2025, 1, 31))


def test_contract_rows_with_nothing_set() -> None:
    (bare,) = contract_rows([BARE], WORKS, publisher=PUBLISHER)
    assert (bare.work_id, bare.title, bare.isbns, bare.contributors) == (8, "Plain", (), ())
    unset = [f.name for f in fields(ContractRow)]
    for name in ("contract_id", "contract_name", "work_id", "title", "publisher"):
        unset.remove(name)
    assert {name: getattr(bare, name) for name in unset} == {
        name: () if name in ("isbns", "contributors", "licensed_rights") else None for name in unset
    }
    (orphan,) = contract_rows([ORPHAN], WORKS, publisher=PUBLISHER)
    assert (orphan.work_id, orphan.title, orphan.licensed_rights) == (None, None, ("right 105",))


def test_rows_are_ordered_by_work_then_contract_whatever_the_input_order() -> None:
    later = Contract(id=9, contract_name="2nd", work_id=7, licensed_rights=(LicensedRight(id=1),))
    contracts = [ORPHAN, FULL, BARE, later]
    by_contract = contract_rows(contracts, WORKS, publisher="P")
    assert [r.contract_id for r in by_contract] == [9, 12, 13, 14]
    assert [r.contract_id for r in rights_rows(contracts, WORKS, as_of=AS_OF)] == [9, 12, 12, 14]


def test_columns_name_real_fields_and_the_contract_export_has_them_all() -> None:
    for columns, row_type in ((RIGHTS_COLUMNS, RightsRow), (CONTRACT_COLUMNS, ContractRow)):
        names = [name for name, _ in columns]
        labels = [label for _, label in columns]
        assert set(names) <= {f.name for f in fields(row_type)}
        assert len(set(names)) == len(names) and len(set(labels)) == len(labels)
    assert [name for name, _ in CONTRACT_COLUMNS] == [f.name for f in fields(ContractRow)]
    assert {f.name for f in fields(RightsRow)} - {n for n, _ in RIGHTS_COLUMNS} == {"right_id"}
    # Honest columns: nothing the API does not have.
    every = " ".join(label.lower() for _, label in RIGHTS_COLUMNS + CONTRACT_COLUMNS)
    assert "territor" not in every and "language" not in every


# --- CSV and XLSX read back ------------------------------------------------------------------

DATE_FIELDS = {f.name for f in fields(ContractRow) if "date" in f.name} | {"expires"}
INT_FIELDS = {"work_id", "contract_id"}
FLOAT_FIELDS = {
    "author_cut",
    "flat_fee_value",
    "guaranteed_royalty_value",
    "remainder_rate_over_cost",
}
LIST_FIELDS = {"isbns", "contributors", "licensed_rights"}


def _from_csv(name: str, text: str) -> object:
    if text == "":
        return () if name in LIST_FIELDS else None
    if name in DATE_FIELDS:
        return date.fromisoformat(text)
    if name in INT_FIELDS:
        return int(text)
    if name in FLOAT_FIELDS:
        return float(text)
    if name in LIST_FIELDS:
        return tuple(text.split("; "))
    return text


def _from_xlsx(name: str, value: object) -> object:
    if value is None:
        return () if name in LIST_FIELDS else None
    if isinstance(value, datetime):
        assert name in DATE_FIELDS
        return value.date()
    if name in LIST_FIELDS:
        assert isinstance(value, str)
        return tuple(value.split("; "))
    return value


def _expected(row: Any, columns: tuple[tuple[str, str], ...]) -> list[object]:
    return [getattr(row, name) for name, _ in columns]


def _all_rows() -> tuple[list[RightsRow], list[ContractRow]]:
    contracts = [FULL, BARE, ORPHAN]
    return (
        rights_rows(contracts, WORKS, as_of=AS_OF),
        contract_rows(contracts, WORKS, publisher=PUBLISHER),
    )


def test_csv_reads_back_to_the_rows() -> None:
    rights, contracts = _all_rows()
    for data, rows, columns in (
        (rights_csv(rights), rights, RIGHTS_COLUMNS),
        (contracts_csv(contracts), contracts, CONTRACT_COLUMNS),
    ):
        assert data.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads the file as UTF-8
        assert b"\r\n" in data
        header, *body = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
        assert header == [label for _, label in columns]
        assert len(body) == len(rows)
        for cells, row in zip(body, rows, strict=True):
            back = [_from_csv(name, text) for (name, _), text in zip(columns, cells, strict=True)]
            assert back == _expected(row, columns)
    assert POLISH in contracts_csv(contracts).decode("utf-8-sig")
    assert "1500," in contracts_csv(contracts).decode("utf-8-sig")  # 1500.0 -> plain 1500


def test_xlsx_reads_back_to_the_rows_with_real_dates_and_numbers() -> None:
    rights, contracts = _all_rows()
    for data, rows, columns in (
        (rights_xlsx(rights, publisher=PUBLISHER, as_of=AS_OF), rights, RIGHTS_COLUMNS),
        (contracts_xlsx(contracts, publisher=PUBLISHER, as_of=AS_OF), contracts, CONTRACT_COLUMNS),
    ):
        sheet = load_workbook(io.BytesIO(data)).active
        header, *body = list(sheet.iter_rows(values_only=True))
        assert list(header) == [label for _, label in columns]
        assert len(body) == len(rows)
        for values, row in zip(body, rows, strict=True):
            back = [_from_xlsx(name, v) for (name, _), v in zip(columns, values, strict=True)]
            assert back == _expected(row, columns)
    sheet = load_workbook(io.BytesIO(contracts_xlsx(contracts, publisher="P", as_of=AS_OF))).active
    labels = [label for _, label in CONTRACT_COLUMNS]
    signed = sheet.cell(row=2, column=labels.index("Signed") + 1)
    fee = sheet.cell(row=2, column=labels.index("Flat fee") + 1)
    assert signed.is_date and signed.number_format == "yyyy-mm-dd"
    assert fee.data_type == "n" and fee.value == 1500 and fee.number_format == "#,##0.00"
    assert sheet.cell(row=2, column=labels.index("Title") + 1).value == TITLE
    assert sheet.cell(row=1, column=1).font.b  # a bold heading row, frozen, with filters
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == f"A1:Y{len(contracts) + 1}"


def test_formula_like_text_is_defused_in_csv_and_xlsx() -> None:
    hostile = Work(id=7, title='=HYPERLINK("http://x")')
    rows = rights_rows([FULL], [hostile], as_of=AS_OF)
    text = rights_csv(rows).decode("utf-8-sig")
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text
    sheet = load_workbook(io.BytesIO(rights_xlsx(rows, publisher="P", as_of=AS_OF))).active
    assert sheet.cell(row=2, column=2).value == '\'=HYPERLINK("http://x")'


def test_xlsx_drops_control_characters_xml_cannot_hold() -> None:
    rows = rights_rows([FULL], [Work(id=7, title="Bell\x07 and\x0b tab")], as_of=AS_OF)
    sheet = load_workbook(io.BytesIO(rights_xlsx(rows, publisher="P", as_of=AS_OF))).active
    assert sheet.cell(row=2, column=2).value == "Bell and tab"
    assert "Bell\x07 and\x0b tab" in rights_csv(rows).decode("utf-8-sig")


def test_xlsx_is_the_same_bytes_for_the_same_rows() -> None:
    _, contracts = _all_rows()
    first = contracts_xlsx(contracts, publisher=PUBLISHER, as_of=AS_OF)
    assert first == contracts_xlsx(contracts, publisher=PUBLISHER, as_of=AS_OF)
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        core = archive.read("docProps/core.xml").decode()
    assert core.count("2000-01-01T00:00:00Z") == 2  # created and modified: the fixed epoch


# --- PDF -------------------------------------------------------------------------------------

needs_dejavu = pytest.mark.skipif(
    not (DEJAVU_DIR / "DejaVuSans.ttf").is_file(), reason="fonts-dejavu-core is not installed"
)


def _pdf_text(data: bytes) -> tuple[int, str]:
    reader = PdfReader(io.BytesIO(data))
    text = "".join(page.extract_text() for page in reader.pages)
    return len(reader.pages), text


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


@needs_dejavu
def test_rights_pdf_names_every_contract_and_right_in_unicode() -> None:
    many = [
        Contract(
            id=500 + n,
            contract_name=f"Umowa {n} — Łódź",
            work_id=7,
            licensed_rights=(LicensedRight(id=n, right_type=f"Right type {n}", author_cut=10.0),),
        )
        for n in range(40)
    ]
    rows = rights_rows([FULL, ORPHAN, *many], WORKS, as_of=AS_OF)
    data = rights_pdf(rows, publisher=PUBLISHER, as_of=AS_OF)
    assert data.startswith(b"%PDF")
    pages, text = _pdf_text(data)
    assert pages > 1
    flat = _squeeze(text)
    for contract in (FULL, ORPHAN, *many):
        assert _squeeze(contract.contract_name) in flat
        for right in contract.licensed_rights:
            assert _squeeze(right.right_type or "-") in flat
    assert _squeeze(TITLE) in flat  # wrapped over lines, every character kept
    assert text.count("Rights report — Wydawnictwo Ćma — as of 2024-06-01") == pages
    assert f"Page {pages} of {pages}" in text
    assert "territory or language" in text
    metadata = PdfReader(io.BytesIO(data)).metadata
    assert metadata is not None and metadata.creation_date is not None
    assert metadata.creation_date.year == 2000
    assert data == rights_pdf(rows, publisher=PUBLISHER, as_of=AS_OF)


@needs_dejavu
def test_contracts_pdf_shows_every_contract_and_field_in_unicode() -> None:
    _, contracts = _all_rows()
    data = contracts_pdf(contracts, publisher=PUBLISHER, as_of=AS_OF)
    pages, text = _pdf_text(data)
    flat = _squeeze(text)
    for row in contracts:
        assert _squeeze(f"Contract {row.contract_id} — {row.contract_name}") in flat
    for expected in (
        TITLE,
        "Jan Łoś (author A01, contact 42)",
        "Άννα Παπαδοπούλου (translator B06, contact 43)",
        "1,500.00",
        "2,500.50",
        "Translation - German (author cut 50%)",
        "Out of print",
        "2020-10-02",
    ):
        assert _squeeze(expected) in flat
    assert text.count("Contract data — Wydawnictwo Ćma — as of 2024-06-01") == pages
    assert data == contracts_pdf(contracts, publisher=PUBLISHER, as_of=AS_OF)


def test_pdf_without_the_dejavu_font_falls_back_to_latin1(tmp_path: Path) -> None:
    rows = rights_rows([FULL], WORKS, as_of=AS_OF)
    data = rights_pdf(rows, publisher=PUBLISHER, as_of=AS_OF, font_dir=tmp_path)
    _, text = _pdf_text(data)
    assert "Translation - German" in text
    assert "Za?" in text and POLISH not in text  # "ż" is not Latin-1: shown as "?"
