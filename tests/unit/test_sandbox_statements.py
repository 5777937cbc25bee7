"""The royalty-statement batch generator (issue 16): one PDF per payee, read back with pypdf."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from pypdf import PdfReader

from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from consonance_sftp.sandbox.consonance.statements import (
    UNKNOWN_NAME,
    Payee,
    ensure_payees,
    no_text_layer,
    statement_catalogue,
    statement_payees,
    two_payees,
    unknown_payee,
    write_statements,
)

TODAY = date(2026, 11, 24)
PAYEE = re.compile(r"^Payee: (.+)$", re.M)
CONTACT = re.compile(r"Contact ID: (\d+)")


def text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


@pytest.fixture(scope="module")
def catalogue():
    return statement_catalogue(50, seed=3, today=TODAY)


def test_a_batch_of_50_names_exactly_its_payee_in_each_file(catalogue, tmp_path: Path):
    written = write_statements(catalogue, tmp_path, payees=50, period="2026H1")
    assert len(written) == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(written)
    ids = [p.contact_id for p in written.values()]
    assert len(set(ids)) == 50
    assert all(catalogue.contacts[p.contact_id].name == p.name for p in written.values())
    for name, payee in written.items():
        assert name == f"statement_2026H1_{payee.contact_id}.pdf"
        body = text(tmp_path / name)
        assert PAYEE.findall(body) == [payee.name], name
        assert CONTACT.findall(body) == [str(payee.contact_id)], name
        assert "Royalty statement" in body
        assert "Period: 1 January 2026 to 30 June 2026 (2026H1)" in body
        assert "Payment due: " in body


def test_each_statement_lists_the_payees_contracts_with_isbns_and_money(catalogue, tmp_path: Path):
    written = write_statements(catalogue, tmp_path, payees=10)
    name, payee = next(iter(written.items()))
    body = text(tmp_path / name)
    works = [
        w
        for w in catalogue.works.values()
        if any(c.contributor.id == payee.contact_id and c.role == "A01" for c in w.contributions)
    ]
    assert works
    for work in works:
        contract = catalogue.contracts[work.contract_ids[0]]
        assert f"Contract: {contract.contract_name}" in body
        for product in work.products:
            assert product.isbn13 in body
        if contract.guaranteed_royalty_value is not None:
            assert "Advance (guaranteed royalty): £" in body
    assert "Balance: " in body


def test_the_same_seed_writes_the_same_bytes_and_another_seed_other_figures(
    catalogue, tmp_path: Path
):
    a = write_statements(catalogue, tmp_path / "a", payees=5, seed=1)
    write_statements(catalogue, tmp_path / "b", payees=5, seed=1)
    write_statements(catalogue, tmp_path / "c", payees=5, seed=2)
    for name in a:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert any((tmp_path / "a" / n).read_bytes() != (tmp_path / "c" / n).read_bytes() for n in a)


def test_a_co_authored_contract_is_on_both_statements_and_names_both(catalogue, tmp_path: Path):
    written = write_statements(catalogue, tmp_path, payees=50)
    co = [c for c in catalogue.contracts.values() if " & " in c.contract_name]
    assert len(co) == 1
    contract = co[0]
    work = catalogue.works[contract.work_id]
    authors = [c.contributor for c in work.contributions if c.role == "A01"]
    assert len(authors) == 2
    assert all(a.key_names in contract.contract_name for a in authors)  # "Doe & Roe: Title"
    by_id = {p.contact_id: n for n, p in written.items()}
    for author in authors:
        body = text(tmp_path / by_id[author.id])
        assert f"Contract: {contract.contract_name}" in body
        assert "Your share of this contract: 50.00%" in body
        # The other author is named (in the contract name), but never as the payee.
        assert PAYEE.findall(body) == [author.name]
        assert CONTACT.findall(body) == [str(author.id)]


def test_two_payees_is_one_file_with_two_payee_blocks(catalogue, tmp_path: Path):
    first, second = statement_payees(catalogue, 2)
    made = two_payees(catalogue, tmp_path)
    assert made == {f"statement_2026H1_{first.id}.pdf": Payee(first.id, first.name)}
    body = text(tmp_path / next(iter(made)))
    assert PAYEE.findall(body) == [first.name, second.name]
    assert CONTACT.findall(body) == [str(first.id), str(second.id)]


def test_unknown_payee_is_named_for_no_contact(catalogue, tmp_path: Path):
    made = unknown_payee(catalogue, tmp_path)
    ((name, payee),) = made.items()
    assert payee.contact_id not in catalogue.contacts
    assert UNKNOWN_NAME not in {c.name for c in catalogue.contacts.values()}
    assert name == f"statement_2026H1_{payee.contact_id}.pdf"
    body = text(tmp_path / name)
    assert PAYEE.findall(body) == [UNKNOWN_NAME]
    assert CONTACT.findall(body) == [str(payee.contact_id)]
    with pytest.raises(ValueError, match="exists"):
        unknown_payee(catalogue, tmp_path, contact_id=next(iter(catalogue.contacts)))


def test_no_text_layer_is_an_image_with_nothing_to_extract(catalogue, tmp_path: Path):
    made = no_text_layer(catalogue, tmp_path)
    ((name, payee),) = made.items()
    assert payee.contact_id in catalogue.contacts
    reader = PdfReader(tmp_path / name)
    assert len(reader.pages) == 1
    assert reader.pages[0].extract_text().strip() == ""
    assert len(reader.pages[0].images) == 1
    # The same statement with a text layer does name the payee: the image is the only cause.
    write_statements(catalogue, tmp_path / "good", payees=3)
    assert f"Payee: {payee.name}" in text(tmp_path / "good" / name)


def test_the_three_bad_files_of_one_batch_have_three_names(catalogue, tmp_path: Path):
    names = {
        *two_payees(catalogue, tmp_path),
        *unknown_payee(catalogue, tmp_path),
        *no_text_layer(catalogue, tmp_path),
    }
    assert len(names) == 3 == len(list(tmp_path.iterdir()))


def test_ensure_payees_adds_authors_works_and_contracts_and_keeps_the_rest():
    cat = generate_catalogue(seed=7, works=10, today=TODAY)
    before = dict(cat.works)
    have = len(statement_payees(cat))
    with pytest.raises(ValueError, match="ensure_payees"):
        statement_payees(cat, have + 1)
    added = ensure_payees(cat, have + 5, seed=7, today=TODAY)
    assert len(added) == 5
    assert len(statement_payees(cat)) == have + 5
    assert all(cat.works[w] == work for w, work in before.items())
    new = [w for w in cat.works.values() if w.id not in before]
    assert len(new) == 6  # one per new payee, and the co-authored one
    assert all(w.contract_ids and cat.contracts[w.contract_ids[0]].work_id == w.id for w in new)
    assert all(p.isbn13 and p.isbn13 in cat.isbn_index for w in new for p in w.products)
    # A second call finds enough payees and the co-authored contract: nothing more is added.
    assert ensure_payees(cat, have + 5, seed=7, today=TODAY) == []
    assert len(cat.works) == len(before) + 6


def test_a_catalogue_for_n_payees_is_deterministic():
    a = statement_catalogue(20, seed=4, today=TODAY)
    b = statement_catalogue(20, seed=4, today=TODAY)
    assert repr(a.works) == repr(b.works) and repr(a.contracts) == repr(b.contracts)
    assert len(statement_payees(a)) >= 20
