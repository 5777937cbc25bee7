"""Layout recognition: each built-in layout version is recognised by its exact header set, and
a changed header is named as a difference (added, missing, renamed) to the nearest layout."""

from __future__ import annotations

import pytest

from consonance_sftp.formats.sales.layouts import (
    LAYOUTS,
    GenericLayout,
    Layout,
    layout_names,
    nearest,
    normalise_header,
    recognise,
)


def _header(layout: Layout) -> list[str]:
    cells = list(layout.columns)
    if layout.month_columns:
        cells.insert(-1, "Oct-2026")
    return cells


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.key)
def test_each_layout_is_recognised_by_its_own_header(layout: Layout) -> None:
    assert recognise(_header(layout)) is layout
    # with its optional columns too
    assert recognise(_header(layout) + list(layout.optional)) is layout


def test_headers_are_unique_across_layouts() -> None:
    for layout in LAYOUTS:
        fits = [other.key for other in LAYOUTS if other.fits(_header(layout))]
        assert fits == [layout.key]


def test_roles_name_columns_of_their_layout() -> None:
    for layout in LAYOUTS:
        allowed = set(layout.columns) | set(layout.optional)
        assert set(layout.roles.values()) <= allowed, layout.key


def test_padded_header_cells_are_normalised() -> None:
    kobo_plus = next(layout for layout in LAYOUTS if layout.name == "kobo-plus")
    padded = [f"  {c} " for c in kobo_plus.columns]
    padded[0] = "\ufeff" + padded[0]
    assert recognise(padded) is None
    assert recognise(normalise_header(padded)) is kobo_plus


def test_a_changed_header_is_described_as_a_difference() -> None:
    google = next(layout for layout in LAYOUTS if layout.name == "google-play")
    header = [c for c in google.columns if c != "Preorder"]
    header[header.index("Primary ISBN")] = "Primary ISBN13"
    header.append("Sales Channel")
    assert recognise(header) is None
    diff = nearest(header)
    assert diff is not None
    assert diff.layout is google
    assert diff.missing == ("Preorder",)
    assert diff.renamed == (("Primary ISBN", "Primary ISBN13"),)
    assert diff.added == ("Sales Channel",)
    text = diff.describe()
    assert "'Primary ISBN' -> 'Primary ISBN13'" in text
    assert "missing 'Preorder'" in text
    assert "added 'Sales Channel'" in text


def test_an_unrelated_header_has_no_nearest_layout() -> None:
    assert nearest(["Name", "Address", "Phone"]) is None


def test_layout_names() -> None:
    names = layout_names()
    assert names[:2] == ["auto", "generic"]
    for expected in (
        "consonance", "google-play", "amazon-kdp", "amazon-vendor", "lightning-source",
        "coresource", "nbni", "apple-books", "kobo", "kobo-plus", "bisg", "jstor", "muse",
        "irus-counter", "bookscan",
    ):  # fmt: skip
        assert expected in names
    assert len(names) == len(set(names))


def test_generic_layout_checks_its_mapping() -> None:
    layout = GenericLayout(
        columns={"isbn": "EAN", "quantity": "Units", "value": "Net", "date": "Day"},
        currency="EUR",
    ).layout()
    assert layout.fits(["EAN", "Units", "Net", "Day"])
    with pytest.raises(ValueError, match="currency"):
        GenericLayout(columns={"isbn": "EAN", "quantity": "Units", "value": "Net"}).layout()
    with pytest.raises(ValueError, match="unknown column roles: colour"):
        GenericLayout(
            columns={"isbn": "EAN", "quantity": "U", "value": "N", "colour": "C"}, currency="EUR"
        ).layout()


def test_the_layouts_reference_lists_every_layout_version() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs/reference/sales-layouts.md").read_text()
    for layout in LAYOUTS:
        assert f"| `{layout.name}` | `{layout.version}` | {layout.kind} |" in doc, layout.key
