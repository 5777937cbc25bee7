"""Every line checked (rejections name line, column and reason), channel mapping, and the
reports refused whole: a changed header with its difference, an unknown one, an empty one."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from consonance_sftp.formats.sales.table import ReportRefused
from tests.unit.sales_files import (
    A,
    B,
    C,
    layout,
    parse,
    text_file,
)

# --- validation ----------------------------------------------------------------------------


def _consonance_csv(tmp_path: Path, rows: list[list[str]]) -> Path:
    columns = [
        "Product ID type",
        "Product ID",
        "Channel ID",
        "Sales date",
        "Sales quantity",
        "Sales value",
        "Original currency",
        "Original sales value",
    ]
    return text_file(tmp_path / "sales_2026-10.csv", [columns, *rows])


def test_every_line_is_validated_and_rejections_name_line_column_reason(tmp_path: Path) -> None:
    path = _consonance_csv(
        tmp_path,
        [
            ["ISBN", A, "C1", "2026-10-01", "1", "1.00", "", ""],
            ["ISBN", B, "C1", "2026-10-01", "1", "1.00", "", ""],  # not known
            ["ISBN", A, "C1", "2026-11-01", "1", "1.00", "", ""],  # outside the period
            ["ISBN", A, "C1", "1 Oct", "1", "1.00", "", ""],  # not a date
            ["ISBN", A, "C1", "2026-10-02", "one", "1.00", "", ""],  # not a number
            ["ISBN", A, "C1", "2026-10-02", "1", "1.00", "XYZ", "1.00"],  # not ISO 4217
            ["ISBN", A, "", "2026-10-02", "1", "1.00", "", ""],  # no channel
            ["ISBN", C, "C1", "2026-10-31", "1", "2.00", "", ""],
        ],
    )
    report, lines, rejections = parse(
        path,
        house_currency="GBP",
        known_isbns={A, C},
        period=(dt.date(2026, 10, 1), dt.date(2026, 10, 31)),  # the operator's
    )
    assert [x.line for x in lines] == [2, 9]
    assert [(r.line, r.column) for r in rejections] == [
        (3, "Product ID"),
        (4, "Sales date"),
        (5, "Sales date"),
        (6, "Sales quantity"),
        (7, "Original currency"),
        (8, "Channel ID"),
    ]
    assert "not a product in Consonance" in rejections[0].reason
    assert "outside the report's period 2026-10-01 to 2026-10-31" in rejections[1].reason
    assert "ISO 4217" in rejections[4].reason
    assert report.lines_read == 8


def test_channel_map_miss_rejects_the_line(tmp_path: Path) -> None:
    columns = layout("coresource").columns
    rows = [
        list(columns),
        ["10/01/2026", "Kobo", "Agency", "US", A, "T", "USD", "1", "1", "0", "1", "1.00"],
        ["10/01/2026", "Nook", "Agency", "US", A, "T", "USD", "1", "1", "0", "1", "1.00"],
    ]
    path = text_file(tmp_path / "cs_2026-10.csv", rows)
    mapping = {("Kobo", "US"): "KOBO"}
    _, lines, rejections = parse(path, channel_for=lambda ch, terr: mapping.get((ch, terr)))
    assert [x.channel_id for x in lines] == ["KOBO"]
    assert rejections[0].line == 3
    assert rejections[0].column == "Retailer"
    assert "'Nook'" in rejections[0].reason
    assert "territory 'US'" in rejections[0].reason
    assert "map it under the flow's channels, or set channels.default" in rejections[0].reason


# --- refusals ------------------------------------------------------------------------------


def test_changed_header_is_refused_with_the_difference(tmp_path: Path) -> None:
    columns = [c if c != "Net Units" else "Net Unit Count" for c in layout("amazon-vendor").columns]
    path = text_file(tmp_path / "DigitalEBooksPaymentReport.csv", [[*columns, "Marketplace"]])
    with pytest.raises(ReportRefused) as caught:
        parse(path)
    assert caught.value.reason_code == "header-changed"
    message = str(caught.value)
    assert "'Net Units' -> 'Net Unit Count'" in message
    assert "added 'Marketplace'" in message


def test_named_layout_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    path = text_file(tmp_path / "x.csv", [list(layout("nbni").columns), [A, "1", "1", "1"]])
    with pytest.raises(ReportRefused) as caught:
        parse(path, layout="kobo")
    assert caught.value.reason_code in ("header-changed", "unknown-layout")
    with pytest.raises(ReportRefused) as caught:
        parse(path, layout="no-such-layout")
    assert caught.value.reason_code == "unknown-layout"


def test_unknown_header_is_refused_naming_it(tmp_path: Path) -> None:
    path = text_file(tmp_path / "x.csv", [["Name", "Address"], ["a", "b"]])
    with pytest.raises(ReportRefused) as caught:
        parse(path)
    assert caught.value.reason_code == "unknown-layout"
    assert "'Name', 'Address'" in str(caught.value)


def test_header_without_lines_is_an_empty_report(tmp_path: Path) -> None:
    path = text_file(tmp_path / "x_2026-10.csv", [list(layout("nbni").columns), ["", "", "0", "0"]])
    with pytest.raises(ReportRefused) as caught:
        parse(path)
    assert caught.value.reason_code == "empty-report"


def test_file_name_month_is_cross_checked_not_used_to_reject_dated_lines(tmp_path: Path) -> None:
    # named by the day it was made, the month after its sales
    path = text_file(
        tmp_path / "sales_2026-11-02.csv",
        [
            ["Product ID type", "Product ID", "Channel ID", "Sales date", "Sales value"],
            ["ISBN", A, "C1", "2026-10-03", "1.00"],
            ["ISBN", A, "C1", "2026-10-30", "1.00"],
        ],
    )
    report, lines, rejections = parse(path, house_currency="GBP")
    assert len(lines) == 2
    assert rejections == []
    assert (report.facts.period_from, report.facts.period_to) == (
        dt.date(2026, 10, 1),
        dt.date(2026, 10, 31),
    )
    assert "the file name names 2026-11, but its lines are dated 2026-10-01 to 2026-10-31" in (
        report.notes
    )


def _lsi(rows: list[dict[str, str]]) -> list[list[str]]:
    columns = layout("lightning-source", "sales_comp").columns
    return [list(columns), *[[row.get(c, "") for c in columns] for row in rows]]


def test_first_line_without_isbn_is_a_line_and_header_with_total_only_is_empty(
    tmp_path: Path,
) -> None:
    no_isbn = {"title": "x", "reporting_currency_code": "USD", "PTD_net_quantity": "1",
               "PTD_net_pub_comp": "2.00"}  # fmt: skip
    good = {**no_isbn, "parent_isbn": A}
    path = text_file(tmp_path / "lsi_2026-10.txt", _lsi([no_isbn, good]), delimiter="\t")
    report, lines, rejections = parse(path)
    assert [x.line for x in lines] == [3]
    assert [(r.line, r.reason) for r in rejections] == [(2, "no ISBN")]
    assert report.lines_read == 2
    total_only = text_file(tmp_path / "lsi_total_2026-10.txt", _lsi([no_isbn]), delimiter="\t")
    with pytest.raises(ReportRefused) as caught:
        parse(total_only)
    assert caught.value.reason_code == "empty-report"


def test_generic_mapping_that_is_wrong_is_refused_not_a_crash(tmp_path: Path) -> None:
    from consonance_sftp.formats.sales.layouts import GenericLayout

    path = text_file(tmp_path / "x.csv", [["EAN", "Units"], [A, "1"]])
    with pytest.raises(ReportRefused) as caught:
        parse(path, layout="generic", generic=GenericLayout(columns={"isbn": "EAN"}))
    assert caught.value.reason_code == "unknown-layout"
    assert "needs a column for 'quantity'" in str(caught.value)


def test_consonance_template_row_needs_a_value(tmp_path: Path) -> None:
    path = text_file(
        tmp_path / "import_2026-10.csv",
        [
            [
                "Product ID type",
                "Product ID",
                "Channel ID",
                "Sales date",
                "Sales quantity",
                "Sales value",
                "Return value",
            ],
            ["ISBN", A, "C1", "2026-10-03", "2", "", ""],
            ["ISBN", A, "C1", "2026-10-03", "", "", "3.00"],
        ],
    )
    _report, lines, rejections = parse(path, house_currency="GBP")
    assert [x.line for x in lines] == [3]
    assert [(r.line, r.column, r.reason) for r in rejections] == [
        (2, "Sales value", "no sales value and no return value")
    ]
