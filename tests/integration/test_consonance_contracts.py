"""Contracts and contacts through the client, against the sandbox over real HTTP (issue 16)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from pypdf import PdfReader

from consonance_sftp.errors import ConsonanceQueryError
from consonance_sftp.models import Contract
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from consonance_sftp.sandbox.consonance.statements import statement_catalogue, write_statements
from tests.fixtures.consonance_sandbox import SandboxHandle

Factory = Callable[..., SandboxHandle]
TODAY = date(2026, 11, 24)


@pytest.fixture
def small(consonance_sandbox_factory: Factory) -> SandboxHandle:
    # 60 products over about 30 works; a page of 7 makes every list take several pages.
    return consonance_sandbox_factory(generate_catalogue(60, seed=21), page_size=7)


def _filled(contract: Contract) -> set[str]:
    return {f.name for f in dataclasses.fields(contract) if getattr(contract, f.name)}


async def test_a_contract_comes_back_equal_to_the_catalogues_field_by_field(small: SandboxHandle):
    expected = small.catalogue.contracts
    async with small.client() as api:
        got = {cid: await api.contract(cid) for cid in expected}
        missing = await api.contract(999_999)
    assert missing is None
    for cid, contract in expected.items():
        read = got[cid]
        assert read is not None
        for field in dataclasses.fields(Contract):
            assert getattr(read, field.name) == getattr(contract, field.name), (cid, field.name)
    # The generator fills every field somewhere in 30 contracts, so none was read as empty.
    seen = set().union(*(_filled(c) for c in expected.values()))
    assert seen >= {f.name for f in dataclasses.fields(Contract)} - {
        "terminated_date",
        "termination_reason",
        "flat_fee_value",
    }
    rights = {r.right_type for c in expected.values() for r in c.licensed_rights}
    assert rights >= {"World English", "Audio", "Translation", "Serial"}


async def test_iter_contracts_reads_every_works_contract_once(small: SandboxHandle):
    cat = small.catalogue
    small.reset_stats()
    async with small.client() as api:
        contracts = [c async for c in api.iter_contracts(concurrency=3)]
    expected = [cid for wid in cat.work_ids for cid in cat.works[wid].contract_ids]
    assert [c.id for c in contracts] == expected
    assert contracts == [cat.contracts[cid] for cid in expected]
    ops = small.stats()["operations"]
    pages = -(-len(cat.works) // 7) + 1
    assert ops == {"WorkContracts": pages, "Contract": len(expected)}


async def test_iter_contracts_stops_cleanly_when_the_caller_stops(small: SandboxHandle):
    async with small.client() as api:
        first = []
        async for contract in api.iter_contracts(concurrency=4):
            first.append(contract.id)
            if len(first) == 2:
                break
        # The client is still usable: nothing was left running against it.
        again = await api.contract(first[0])
    assert again is not None and again.id == first[0]


async def test_a_failing_contract_read_ends_iter_contracts_with_the_error(small: SandboxHandle):
    async with small.client() as api:
        gen = api.iter_contracts(concurrency=2)
        first = await anext(gen)
        small.inject("malformed", count=50)
        with pytest.raises(ConsonanceQueryError):
            async for _ in gen:
                pass
        small.clear_faults()
    assert first.id == small.catalogue.works[small.catalogue.work_ids[0]].contract_ids[0]


async def test_iter_contacts_pages_through_persons_and_organisations(small: SandboxHandle):
    cat = small.catalogue
    small.reset_stats()
    async with small.client() as api:
        contacts = [c async for c in api.iter_contacts()]
    assert [c.id for c in contacts] == sorted(cat.contacts)
    assert contacts == [cat.contacts[cid] for cid in sorted(cat.contacts)]
    assert {c.is_organisation for c in contacts} == {True, False}
    assert small.stats()["operations"] == {"Contacts": -(-len(cat.contacts) // 7) + 1}


async def test_a_statement_batch_names_contacts_and_contracts_the_client_reads(
    consonance_sandbox_factory: Factory, tmp_path: Path
):
    catalogue = statement_catalogue(30, seed=8, today=TODAY)
    written = write_statements(catalogue, tmp_path, payees=30)
    sandbox = consonance_sandbox_factory(catalogue, page_size=9)
    async with sandbox.client() as api:
        contacts = {c.id: c async for c in api.iter_contacts()}
        contracts = {c.id: c async for c in api.iter_contracts()}
    for name, payee in written.items():
        assert contacts[payee.contact_id].name == payee.name
        body = "\n".join(p.extract_text() for p in PdfReader(tmp_path / name).pages)
        named = re.findall(r"Contract ID: (\d+)", body)
        assert named and all(int(cid) in contracts for cid in named)
    co = [c for c in contracts.values() if " & " in c.contract_name]
    assert len(co) == 1 and co[0] == catalogue.contracts[co[0].id]
