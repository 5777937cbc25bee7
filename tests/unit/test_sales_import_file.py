"""Consonance's sales-import file and summary CSV: the template read back with openpyxl exactly
as the importer would see it (first sheet, headers, cells), written atomically, memory flat."""

from __future__ import annotations

import csv
import struct
import tracemalloc
import zipfile
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree
from openpyxl import load_workbook
from python_calamine import CalamineWorkbook

from consonance_sftp.formats.sales import consonance_import
from consonance_sftp.formats.sales.consonance_import import (
    ALL_CHANNELS,
    ALL_TITLES,
    IMPORT_HEADERS,
    SUMMARY_HEADERS,
    ImportFileError,
    import_row,
    write_import_file,
)
from consonance_sftp.formats.sales.lines import SalesLine

TEMPLATE_ORDER = [
    "Product ID type",
    "Product ID",
    "Channel ID",
    "Sales date",
    "List price",
    "Source",
    "Sales quantity",
    "Sales value",
    "Return quantity",
    "Return value",
    "Country code",
    "Original currency",
    "Original sales value",
    "Original return value",
]


def _line(n: int, **kw: object) -> SalesLine:
    fields: dict[str, object] = {
        "line": n,
        "isbn13": "9780306406157",
        "sales_date": date(2026, 10, 3),
        "quantity": 2,
        "value": Decimal("12.50"),
        "currency": "GBP",
        "channel": "Retail",
        "territory": "GB",
        "channel_id": "RET",
    }
    fields.update(kw)
    return SalesLine(**fields)  # type: ignore[arg-type]


def _sheet_rows(path: Path) -> list[tuple[object, ...]]:
    book = load_workbook(path, read_only=True)
    try:
        assert book.sheetnames[0] == book.worksheets[0].title
        return list(book.worksheets[0].iter_rows(values_only=True))
    finally:
        book.close()


def _cells(row: tuple[object, ...]) -> dict[str, object]:
    return {h: v for h, v in zip(IMPORT_HEADERS, row, strict=False) if v is not None}


def test_template_headers_and_rows_read_back(tmp_path: Path) -> None:
    lines = [
        _line(2, list_price=Decimal("9.99"), list_price_currency="GBP"),
        # Another currency: original-currency columns, Sales value left for Consonance.
        _line(
            3,
            isbn13="9781861972712",
            currency="USD",
            value=Decimal("20.00"),
            list_price=Decimal("14.99"),
            list_price_currency="USD",
            territory="US",
        ),
        # A pure return: no zero sale written next to it.
        _line(4, quantity=0, value=Decimal(0), return_quantity=1, return_value=Decimal("6.25")),
        # A sale and a return on one row, in another currency.
        _line(
            5,
            currency="EUR",
            quantity=3,
            value=Decimal("30.30"),
            return_quantity=1,
            return_value=Decimal("10.10"),
            territory="",
        ),
        # Free copies: quantity only; one value cell must still be filled.
        _line(6, quantity=4, value=Decimal(0), sales_date=date(2026, 10, 31)),
    ]
    out = tmp_path / "outbox" / "import.xlsx"
    result = write_import_file(iter(lines), out, house_currency="GBP", source="Ingram")

    rows = _sheet_rows(out)
    assert list(rows[0]) == TEMPLATE_ORDER
    assert result.rows == len(lines) == len(rows) - 1
    body = [_cells(r) for r in rows[1:]]
    assert body[0] == {
        "Product ID type": "ISBN",
        "Product ID": "9780306406157",
        "Channel ID": "RET",
        "Sales date": "2026-10-03",
        "List price": 9.99,
        "Source": "Ingram",
        "Sales quantity": 2,
        "Sales value": 12.5,
        "Country code": "GB",
    }
    assert body[1] == {
        "Product ID type": "ISBN",
        "Product ID": "9781861972712",
        "Channel ID": "RET",
        "Sales date": "2026-10-03",
        "Source": "Ingram",
        "Sales quantity": 2,
        "Country code": "US",
        "Original currency": "USD",
        "Original sales value": 20,
    }
    assert body[2] == {
        "Product ID type": "ISBN",
        "Product ID": "9780306406157",
        "Channel ID": "RET",
        "Sales date": "2026-10-03",
        "Source": "Ingram",
        "Return quantity": 1,
        "Return value": 6.25,
        "Country code": "GB",
    }
    assert body[3] == {
        "Product ID type": "ISBN",
        "Product ID": "9780306406157",
        "Channel ID": "RET",
        "Sales date": "2026-10-03",
        "Source": "Ingram",
        "Sales quantity": 3,
        "Return quantity": 1,
        "Original currency": "EUR",
        "Original sales value": 30.3,
        "Original return value": 10.1,
    }
    assert body[4]["Sales quantity"] == 4
    assert body[4]["Sales value"] == 0
    assert body[4]["Sales date"] == "2026-10-31"
    # The ISBN is text (an Excel number would lose nothing here but would on ISBN-10s with
    # leading zeros, and the template wants the identifier as written).
    assert all(isinstance(r[1], str) for r in rows[1:])

    gbp = [x for x in lines if x.currency == "GBP"]
    assert result.totals["GBP"]["lines"] == len(gbp) == 3
    assert result.totals["GBP"]["value"] == sum((x.value for x in gbp), Decimal(0))
    assert result.totals["GBP"]["return_value"] == sum((x.return_value for x in gbp), Decimal(0))
    assert result.totals["EUR"]["return_quantity"] == 1
    assert sorted(result.totals) == ["EUR", "GBP", "USD"]
    assert result.size == out.stat().st_size
    assert [p.name for p in out.parent.iterdir()] == ["import.xlsx"]
    # The file finance picks up has the folder's usual permissions, not a private temp file's.
    plain = tmp_path / "plain"
    plain.touch()
    assert out.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_summary_per_title_and_channel(tmp_path: Path) -> None:
    a, b = "9780306406157", "9781861972712"
    lines = [
        _line(2, isbn13=a, channel_id="RET", quantity=2, value=Decimal("10.00")),
        _line(3, isbn13=a, channel_id="RET", quantity=1, value=Decimal("5.05")),
        _line(4, isbn13=a, channel_id="LIB", quantity=1, value=Decimal("7.00")),
        _line(
            5,
            isbn13=b,
            channel_id="RET",
            quantity=0,
            value=Decimal(0),
            return_quantity=2,
            return_value=Decimal("3.30"),
        ),
        _line(6, isbn13=b, channel_id="RET", currency="USD", quantity=5, value=Decimal("50")),
    ]
    summary = tmp_path / "summary.csv"
    write_import_file(
        lines, tmp_path / "i.xlsx", house_currency="GBP", source="NBNi", summary_path=summary
    )
    with summary.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(SUMMARY_HEADERS)
    table = {(r[0], r[1], r[2]): r[3:] for r in rows[1:]}

    def expect(keep: list[SalesLine]) -> list[str]:
        q = sum(x.quantity for x in keep)
        v = sum((x.value for x in keep), Decimal(0))
        rq = sum(x.return_quantity for x in keep)
        rv = sum((x.return_value for x in keep), Decimal(0))
        return [str(len(keep)), str(q), str(v), str(rq), str(rv), str(q - rq), str(v - rv)]

    assert table[(a, "RET", "GBP")] == expect(lines[0:2])
    assert table[(a, "LIB", "GBP")] == expect(lines[2:3])
    assert table[(b, "RET", "GBP")] == expect(lines[3:4])
    assert table[(b, "RET", "USD")] == expect(lines[4:5])
    assert table[(ALL_TITLES, "RET", "GBP")] == expect([lines[0], lines[1], lines[3]])
    assert table[(ALL_TITLES, ALL_CHANNELS, "GBP")] == expect(lines[0:4])
    assert table[(ALL_TITLES, ALL_CHANNELS, "USD")] == expect(lines[4:5])
    assert len(table) == 4 + 3 + 2


def test_failure_mid_stream_leaves_the_previous_file_and_no_partial(tmp_path: Path) -> None:
    out = tmp_path / "import.xlsx"
    out.write_bytes(b"the earlier import file")

    def lines() -> Iterator[SalesLine]:
        yield _line(2)
        yield _line(3)
        raise RuntimeError("ledger went away")

    with pytest.raises(RuntimeError, match="ledger went away"):
        write_import_file(lines(), out, house_currency="GBP", source="X")
    assert out.read_bytes() == b"the earlier import file"
    assert [p.name for p in tmp_path.iterdir()] == ["import.xlsx"]


def test_line_without_channel_id_is_refused_by_line(tmp_path: Path) -> None:
    out = tmp_path / "import.xlsx"
    with pytest.raises(ImportFileError, match=r"line 7 .*channel ID") as caught:
        write_import_file(
            [_line(2), _line(7, channel_id="")], out, house_currency="GBP", source="X"
        )
    assert caught.value.hint
    assert list(tmp_path.iterdir()) == []


def test_more_lines_than_a_sheet_holds_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real limit is 1,048,575 data rows; a small one shows the same code path.
    monkeypatch.setattr(consonance_import, "MAX_LINES", 3)
    out = tmp_path / "import.xlsx"
    with pytest.raises(ImportFileError, match="more than 3 lines") as caught:
        write_import_file((_line(n) for n in range(2, 7)), out, house_currency="GBP", source="X")
    assert "per report" in (caught.value.hint or "")
    assert list(tmp_path.iterdir()) == []


def _peak_bytes(count: int, path: Path) -> int:
    def lines() -> Iterator[SalesLine]:
        for n in range(count):
            # A catalogue of 100 titles: the summary keeps one entry per title and channel.
            yield _line(n + 2, isbn13=f"978{n % 100:010d}", quantity=n % 7 + 1)

    tracemalloc.start()
    try:
        write_import_file(lines(), path, house_currency="GBP", source="X")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_in_the_number_of_lines(tmp_path: Path) -> None:
    small = _peak_bytes(2_000, tmp_path / "small.xlsx")
    large = _peak_bytes(20_000, tmp_path / "large.xlsx")
    # Ten times the lines: a writer that kept rows would need about ten times the memory.
    assert large < small * 1.5, (small, large)
    assert len(_sheet_rows(tmp_path / "large.xlsx")) == 20_001


def test_no_lines_gives_the_headers_alone(tmp_path: Path) -> None:
    out = tmp_path / "empty.xlsx"
    result = write_import_file(
        iter(()), out, house_currency="GBP", source="X", summary_path=tmp_path / "s.csv"
    )
    assert result.rows == 0 and result.totals == {}
    assert [list(r) for r in _sheet_rows(out)] == [TEMPLATE_ORDER]
    assert (tmp_path / "s.csv").read_text(encoding="utf-8").splitlines() == [
        ",".join(SUMMARY_HEADERS)
    ]


# --- the file read back by two readers, cell by cell ---------------------------------------


def _openpyxl_rows(path: Path) -> list[list[object]]:
    # Not read-only: the workbook as openpyxl builds it in full, a second way of reading it.
    book = load_workbook(path)
    try:
        return [list(r) for r in book.worksheets[0].iter_rows(values_only=True)]
    finally:
        book.close()


def _calamine_rows(path: Path) -> list[list[object]]:
    book = CalamineWorkbook.from_path(str(path))
    # calamine gives an empty cell as "" and every number as a float.
    return [[None if v == "" else v for v in row] for row in book.get_sheet_by_index(0).to_python()]


def _expected(lines: list[SalesLine], house: str, source: str) -> list[list[object]]:
    return [list(IMPORT_HEADERS)] + [
        import_row(x, house_currency=house, source=source) for x in lines
    ]


AWKWARD_TEXTS = [
    "R&D <Retail> \"quoted\" 'single' >",
    "Café crème, Zürich, Ærø, Łódź",
    "書店 📚😀",
    " padded ",
    "tab\tand\nnewline and\rcarriage return",
    "]]> <![CDATA[ &amp; literal",
]


def test_every_cell_reads_back_the_same_in_openpyxl_and_calamine(tmp_path: Path) -> None:
    lines = [
        _line(2, list_price=Decimal("9.99"), list_price_currency="GBP"),
        # Text that needs escaping, in every text column that takes the line's words.
        *(
            _line(3 + i, channel_id=text, territory=text[::-1])
            for i, text in enumerate(AWKWARD_TEXTS)
        ),
        # Money: large, many decimals, negative (a correction), zero, integral Decimals.
        _line(20, value=Decimal("12345678901.23"), quantity=999_999),
        _line(21, value=Decimal("0.0000001"), list_price=Decimal("1E+2")),
        _line(22, value=Decimal("-45.10"), quantity=-3),
        _line(23, value=Decimal("1000"), list_price=Decimal("19.990")),
        _line(
            24,
            currency="USD",
            value=Decimal("98765.4321"),
            return_value=Decimal("0.01"),
            return_quantity=1,
            territory="",
        ),
        _line(25, quantity=0, value=Decimal(0), return_quantity=2, return_value=Decimal("-7")),
        # Empty cells: no territory, no list price, list price in another currency.
        _line(26, territory="", list_price=Decimal("5"), list_price_currency="EUR"),
        _line(27, sales_date=date(1999, 1, 2)),
    ]
    source = "Gardners & Sons <UK> 😀"
    out = tmp_path / "import.xlsx"
    write_import_file(lines, out, house_currency="GBP", source=source)

    expected = _expected(lines, "GBP", source)
    for reader in (_openpyxl_rows, _calamine_rows):
        rows = reader(out)
        assert len(rows) == len(expected), reader
        for got, want in zip(rows, expected, strict=True):
            assert len(got) == len(want) == 14
            for column, (g, w) in enumerate(zip(got, want, strict=True)):
                assert g == w, (reader.__name__, IMPORT_HEADERS[column], g, w)
                # Text stays text, numbers stay numbers (an ISBN must not become a number).
                assert isinstance(g, str) == isinstance(w, str)
    # Money reads back as the double nearest the Decimal as given (what float() makes of it).
    assert _openpyxl_rows(out)[len(AWKWARD_TEXTS) + 2][7] == float(Decimal("12345678901.23"))


def test_sheet_states_its_size(tmp_path: Path) -> None:
    # Readers size the sheet by its <dimension> (openpyxl's read-only mode reads the whole
    # sheet without it, and cuts each row after its last filled cell).
    out = tmp_path / "import.xlsx"
    write_import_file([_line(n) for n in range(2, 9)], out, house_currency="GBP", source="X")
    book = load_workbook(out, read_only=True)
    try:
        sheet = book.worksheets[0]
        assert sheet.calculate_dimension() == "A1:N8"
        assert all(len(row) == 14 for row in sheet.iter_rows(values_only=True))
    finally:
        book.close()


def test_the_zip_is_plain_and_every_part_well_formed(tmp_path: Path) -> None:
    out = tmp_path / "import.xlsx"
    write_import_file([_line(n) for n in range(2, 9)], out, house_currency="GBP", source="X")
    with zipfile.ZipFile(out) as book:
        assert book.testzip() is None
        names = book.namelist()
        assert "xl/worksheets/sheet1.xml" in names and "[Content_Types].xml" in names
        types = etree.fromstring(book.read("[Content_Types].xml"))
        overrides = {e.get("PartName") for e in types if e.tag.endswith("Override")}
        for name in names:
            etree.fromstring(book.read(name))  # raises if not well-formed
            if name.startswith("xl/") and not name.endswith(".rels"):
                assert "/" + name in overrides, name
        sheet = book.getinfo("xl/worksheets/sheet1.xml")
        assert sheet.compress_type == zipfile.ZIP_DEFLATED
    # No zip64 extra field (id 1) in the sheet's local header: a small file is a plain zip.
    raw = out.read_bytes()[sheet.header_offset :]
    name_length, extra_length = struct.unpack("<HH", raw[26:30])
    extra = raw[30 + name_length : 30 + name_length + extra_length]
    ids = []
    while extra:
        field_id, length = struct.unpack("<HH", extra[:4])
        ids.append(field_id)
        extra = extra[4 + length :]
    assert 1 not in ids


def test_a_literal_escape_sequence_is_kept_literal(tmp_path: Path) -> None:
    # "_x0041_" is OOXML's escape for "A"; written literally, Excel and calamine would read "A".
    out = tmp_path / "import.xlsx"
    write_import_file([_line(2, channel_id="_x0041_")], out, house_currency="GBP", source="X")
    assert _calamine_rows(out)[1][2] == "_x0041_"


@pytest.mark.parametrize("bad", ["\x00", "\x01", "\x0b", "\x1f", "\ufffe"])
def test_text_xml_cannot_hold_is_refused_by_line(tmp_path: Path, bad: str) -> None:
    out = tmp_path / "import.xlsx"
    with pytest.raises(ImportFileError, match=r"line 3, column 'Country code'") as caught:
        write_import_file(
            [_line(2), _line(3, territory=f"G{bad}B")], out, house_currency="GBP", source="X"
        )
    assert caught.value.hint
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity", "1E+400"])
def test_amount_a_sheet_cannot_hold_is_refused(tmp_path: Path, amount: str) -> None:
    out = tmp_path / "import.xlsx"
    with pytest.raises(ImportFileError, match="line 2"):
        write_import_file([_line(2, value=Decimal(amount))], out, house_currency="GBP", source="")
    assert list(tmp_path.iterdir()) == []


def test_same_lines_give_the_same_bytes(tmp_path: Path) -> None:
    lines = [_line(n, quantity=n) for n in range(2, 50)]
    a = write_import_file(lines, tmp_path / "a.xlsx", house_currency="GBP", source="X")
    b = write_import_file(lines, tmp_path / "b.xlsx", house_currency="GBP", source="X")
    assert a.sha256 == b.sha256


def test_rows_added_in_batches_give_the_file_written_at_once(tmp_path: Path) -> None:
    """``ImportRows`` fed a batch at a time (as the flow feeds it while a report loads) makes
    the same bytes as the lines written at once; a line it cannot write is kept as its error,
    no later line is taken, and writing raises that error and leaves no file."""
    lines = [_line(n, quantity=n, currency="EUR" if n % 3 else "GBP") for n in range(2, 5000)]
    once = write_import_file(lines, tmp_path / "once.xlsx", house_currency="GBP", source="X")
    with consonance_import.ImportRows(tmp_path, house_currency="GBP", source="X") as rows:
        for start in range(0, len(lines), 700):
            rows.add(lines[start : start + 700])
        batched = rows.write(tmp_path / "batched.xlsx")
    assert (batched.rows, batched.sha256) == (once.rows, once.sha256)
    assert batched.totals == once.totals

    with consonance_import.ImportRows(tmp_path, house_currency="GBP", source="X") as rows:
        rows.add([_line(2), _line(7, channel_id="")])
        rows.add([_line(8)])
        assert rows.error is not None and "line 7" in str(rows.error)
        with pytest.raises(ImportFileError, match=r"line 7 .*channel ID"):
            rows.write(tmp_path / "refused.xlsx")
    assert not (tmp_path / "refused.xlsx").exists()


def test_empty_source_leaves_its_column_empty(tmp_path: Path) -> None:
    out = tmp_path / "import.xlsx"
    write_import_file([_line(2)], out, house_currency="GBP", source="")
    for reader in (_openpyxl_rows, _calamine_rows):
        assert reader(out)[1][5] is None
