"""Sandbox pieces without a server: generator, tiny files, persistence, client helpers."""

from __future__ import annotations

import re
import struct
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from stdnum import isbn

from consonance_sftp.adapters.consonance.documents import load
from consonance_sftp.adapters.consonance.mapping import onix_code, onix_enum
from consonance_sftp.adapters.consonance.transport import RetryPolicy
from consonance_sftp.sandbox.consonance.catalogue import Catalogue, CatalogueError
from consonance_sftp.sandbox.consonance.files import generated_file, make_jpeg, make_pdf
from consonance_sftp.sandbox.consonance.generator import generate_catalogue

TODAY = date(2026, 11, 24)


def test_generator_is_deterministic_and_exact():
    a = generate_catalogue(500, seed=4, today=TODAY)
    b = generate_catalogue(500, seed=4, today=TODAY)
    c = generate_catalogue(500, seed=5, today=TODAY)
    assert len(a.products) == 500
    assert repr(a.works) == repr(b.works)
    assert repr(a.works) != repr(c.works)


def test_generated_catalogue_is_realistic():
    cat = generate_catalogue(400, seed=9, today=TODAY)
    products = list(cat.products.values())
    assert all(p.isbn13 and isbn.is_valid(p.isbn13) for p in products)
    assert len({p.isbn13 for p in products}) == len(products)
    assert {p.typename for p in products} == {
        "PhysicalBookProduct",
        "ElectronicBookProduct",
        "ElectronicAudioProduct",
    }
    assert {pr.currency for p in products for pr in p.prices} >= {"GBP", "USD", "EUR", "AUD"}
    schemes = {s.scheme.value for w in cat.works.values() for s in w.subjects}
    assert schemes == {"THEMA", "BISAC"}
    assert all(w.todos and w.contract_ids and w.supporting_resources for w in cat.works.values())
    assert all(
        w.production_runs
        for w in cat.works.values()
        if any(p.typename == "PhysicalBookProduct" for p in w.products)
    )
    # Everything is at least three days old, so a poll right after seeding sees no changes.
    assert max(w.updated_at for w in cat.works.values() if w.updated_at).date() <= date(
        2026, 11, 21
    )


def test_generate_by_work_count():
    assert len(generate_catalogue(seed=2, works=24, today=TODAY).works) == 24


@pytest.mark.parametrize(("width", "height"), [(1, 1), (40, 60), (13, 21)])
def test_jpeg_is_well_formed(width: int, height: int):
    data = make_jpeg(width, height, "id 7")
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    sof = data.index(b"\xff\xc0")
    _, _, precision, h, w = struct.unpack(">BBxxBHH", data[sof : sof + 9])
    assert (precision, w, h) == (8, width, height)
    assert b"id 7" in data
    assert make_jpeg(width, height, "id 8") != data


def test_pdf_cross_reference_points_at_objects():
    data = make_pdf("A (title)", pages=3)
    assert data.startswith(b"%PDF-1.4") and data.rstrip().endswith(b"%%EOF")
    startxref = int(re.search(rb"startxref\n(\d+)", data).group(1))  # type: ignore[union-attr]
    assert data[startxref:].startswith(b"xref")
    offsets = [int(m) for m in re.findall(rb"(\d{10}) 00000 n", data)]
    for number, offset in enumerate(offsets, start=1):
        assert data[offset:].startswith(f"{number} 0 obj".encode())
    assert b"/Count 3" in data


def test_generated_file_names():
    jpeg = generated_file("sr-12-40x60.jpg")
    pdf = generated_file("pf-9.pdf")
    assert jpeg is not None and jpeg[1] == "image/jpeg"
    assert pdf is not None and pdf[0].startswith(b"%PDF")
    assert generated_file("../../etc/passwd") is None


def test_catalogue_persists_changes(tmp_path: Path):
    cat = generate_catalogue(60, seed=3, today=TODAY)
    work_id = cat.work_ids[2]
    product_id = cat.works[work_id].products[0].id
    before = cat.works[work_id].updated_at
    cat.set_project_stage(work_id, "Printing")
    cat.set_price(
        product_id, currency="GBP", price_type="02", qualifier="05", amount=Decimal("3.5")
    )
    note = cat.add_note("hello", work_id=work_id, product_id=None)
    cat.save(tmp_path)
    again = Catalogue.load(tmp_path)
    work = again.works[work_id]
    assert work.project_stage == "Printing"
    assert work.updated_at is not None and before is not None and work.updated_at > before
    gbp = next(p for p in again.products[product_id].prices if p.slot == "GBP-02-05")
    assert gbp.amount == Decimal("3.5")
    assert again.notes_for(work_id=work_id)[0].id == note.id
    assert again.product_ids == sorted(again.products)


def test_catalogue_errors_name_the_record(tmp_path: Path):
    cat = generate_catalogue(10, seed=3, today=TODAY)
    with pytest.raises(CatalogueError, match="no work with id 42"):
        cat.set_project_stage(42, "x")
    with pytest.raises(CatalogueError, match="seed"):
        Catalogue.load(tmp_path)


def test_onix_codes_lose_and_regain_their_underscore():
    assert onix_code("_02") == "02" and onix_code("BC") == "BC" and onix_code(None) is None
    assert onix_enum("05") == "_05" and onix_enum("A01") == "A01"
    assert onix_code(onix_enum("17")) == "17"


def test_documents_carry_the_fragments_they_spread():
    works = load("works.graphql")
    assert "fragment WorkFields on Work" in works
    assert "fragment ProductFields on Product" in works  # spread inside WorkFields
    assert "fragment ContactFields on Contact" in works
    assert "fragment WorkFields" not in load("products.graphql")


def test_retry_after_is_honoured_and_capped():
    policy = RetryPolicy(backoff_base=1, backoff_cap=4, max_retry_after=10)
    assert policy.delay(1, 3.0) == 3.0
    assert policy.delay(1, 600.0) == 10
    assert 2 <= policy.delay(3, None) <= 4  # 4 s backoff with jitter in [50%, 100%]
    assert policy.delay(9, None) <= 4


@pytest.mark.slow
def test_fifty_thousand_products_generate():
    # No time limit here: speed is for benchmarks, not tests (a loaded CI machine is no
    # measure); bench/consonance_poll.py generates and reads large catalogues.
    cat = generate_catalogue(50_000, seed=1, today=datetime.now(UTC).date())
    assert len(cat.products) == 50_000
    assert len({p.isbn13 for p in cat.products.values()}) == 50_000
