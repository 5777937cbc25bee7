"""The Consonance client against the sandbox over real HTTP: paging, filters, faults, errors."""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from consonance_sftp.adapters.consonance import ConsonanceClient, RetryPolicy
from consonance_sftp.errors import ConsonanceAuthError, ConsonanceQueryError, ConsonanceUnavailable
from consonance_sftp.logs import JsonFormatter, redact
from consonance_sftp.models import ProductionFile, SupportingResource
from consonance_sftp.ports.consonance import AttachTarget
from consonance_sftp.sandbox.consonance.files import make_jpeg, make_pdf
from tests.fixtures.consonance_sandbox import SandboxHandle

QUERIES = Path(__file__).parent / "consonance_queries"


@pytest.fixture
def sandbox(consonance_sandbox: SandboxHandle):
    consonance_sandbox.clear_faults()
    yield consonance_sandbox
    consonance_sandbox.clear_faults()


async def test_paging_over_10000_products_returns_each_once_in_id_order(sandbox: SandboxHandle):
    sandbox.reset_stats()
    async with sandbox.client() as api:
        ids = [p.id async for p in api.iter_products()]
        requests = api.stats.requests
    assert len(sandbox.catalogue.products) == 10_000
    assert ids == sorted(sandbox.catalogue.products)
    page = sandbox.server.settings.page_size
    assert requests == -(-10_000 // page) + 1  # full pages, then the empty one that ends it
    assert sandbox.stats()["graphql_requests"] == requests


async def test_works_come_with_their_products_mapped(sandbox: SandboxHandle):
    work_id = sandbox.catalogue.work_ids[3]
    expected = sandbox.catalogue.works[work_id]
    async with sandbox.client() as api:
        work = await api.get_work(work_id)
    assert work is not None
    assert work.title == expected.title
    assert [p.isbn13 for p in work.products] == [p.isbn13 for p in expected.products]
    assert [p.prices for p in work.products] == [
        tuple(
            pr.__class__(
                id=pr.id,
                amount=pr.amount,
                currency=pr.currency,
                price_type=pr.price_type,
                qualifier=pr.qualifier,
                territories=pr.territories,
            )
            for pr in p.prices
        )
        for p in expected.products
    ]
    assert work.products[0].publishing_status == expected.products[0].publishing_status
    assert work.todos == expected.todos
    assert {s.code for s in work.subjects} == {s.code for s in expected.subjects}


async def test_an_ebooks_asin_comes_through_the_client(sandbox: SandboxHandle):
    products = sandbox.catalogue.products.values()
    ebook = next(p for p in products if p.asin)
    print_book = next(p for p in products if p.typename == "PhysicalBookProduct")
    assert ebook.typename == "ElectronicBookProduct" and re.fullmatch(r"B0[0-9A-F]{8}", ebook.asin)
    async with sandbox.client() as api:
        got = await api.get_product_by_isbn(ebook.isbn13 or "")
        other = await api.get_product_by_isbn(print_book.isbn13 or "")
    assert got is not None and got.asin == ebook.asin
    assert other is not None and other.asin is None


async def test_changed_since_returns_only_recent_changes(sandbox: SandboxHandle):
    work_id = sandbox.catalogue.work_ids[10]
    product = sandbox.catalogue.works[work_id].products[0]
    sandbox.set_product(product.id, title=f"Renamed {time.time()}")
    today = datetime.now(UTC).date()
    async with sandbox.client() as api:
        works = [w async for w in api.iter_works(changed_since=today)]
        products = [p async for p in api.iter_products(changed_since=today)]
    assert work_id in {w.id for w in works}
    assert product.id in {p.id for p in products}
    # Generated records are at least three days old: only what tests changed comes back.
    assert len(works) < 50
    yesterday = today - timedelta(days=1)
    assert all(w.updated_at is not None and w.updated_at.date() >= yesterday for w in works)


async def test_rate_limit_is_retried_after_retry_after(sandbox: SandboxHandle):
    sandbox.inject("rate_limit", count=2, retry_after=0.3)
    started = time.monotonic()
    async with sandbox.client() as api:
        work = await api.get_work(sandbox.catalogue.work_ids[0])
        retries = api.stats.retries
    assert work is not None
    assert retries == 2
    assert time.monotonic() - started >= 0.6  # honoured, not the 10 ms test backoff


async def test_server_error_then_success(sandbox: SandboxHandle):
    sandbox.inject("server_error", count=1)
    async with sandbox.client() as api:
        product = await api.get_product_by_isbn(sandbox.catalogue.products[20001].isbn13 or "")
        assert api.stats.requests == 2
    assert product is not None and product.id == 20001


async def test_persistent_server_errors_end_as_unavailable(sandbox: SandboxHandle):
    sandbox.inject("server_error", count=4)
    async with sandbox.client() as api:
        with pytest.raises(ConsonanceUnavailable) as info:
            await api.get_work(sandbox.catalogue.work_ids[0])
    assert info.value.retryable
    assert "HTTP 500" in str(info.value)


async def test_bad_token_is_a_terminal_auth_error_that_hides_the_token(sandbox: SandboxHandle):
    secret = "wrongtoken0000000000000000000042"
    async with ConsonanceClient(sandbox.url, secret, retry=RetryPolicy(max_attempts=3)) as api:
        with pytest.raises(ConsonanceAuthError) as info:
            await api.get_work(1001)
        assert api.stats.requests == 1  # not retried
    assert secret not in str(info.value)
    assert secret not in redact(f"Authorization: Bearer {secret}")


async def test_token_scheme_is_accepted_too(sandbox: SandboxHandle):
    async with sandbox.client(auth_scheme="Token") as api:
        assert await api.get_work(sandbox.catalogue.work_ids[0]) is not None


async def test_graphql_errors_name_the_query_and_the_field(sandbox: SandboxHandle):
    async with sandbox.client() as api:
        with pytest.raises(ConsonanceQueryError) as info:
            await api.execute("BrokenQuery", "query BrokenQuery { works { id noSuchField } }")
    message = str(info.value)
    assert "BrokenQuery" in message
    assert "noSuchField" in message
    assert not info.value.retryable


async def test_malformed_json_is_retried_then_reported(sandbox: SandboxHandle):
    sandbox.inject("malformed", count=1)
    async with sandbox.client() as api:
        assert await api.get_work(sandbox.catalogue.work_ids[0]) is not None
    sandbox.inject("malformed", count=4)
    async with sandbox.client() as api:
        with pytest.raises(ConsonanceQueryError, match="not JSON"):
            await api.get_work(sandbox.catalogue.work_ids[0])


async def test_token_never_reaches_the_logs(sandbox: SandboxHandle, caplog):
    sandbox.inject("server_error", count=1)
    sandbox.inject("rate_limit", count=1, retry_after=0.05)
    with caplog.at_level(logging.DEBUG, logger="consonance_sftp"):
        async with sandbox.client() as api:
            await api.get_work(sandbox.catalogue.work_ids[0])
    assert "retry" in caplog.text  # the retries were logged...
    assert sandbox.token not in caplog.text  # ...without the token
    assert sandbox.token not in JsonFormatter().format(
        logging.makeLogRecord({"msg": f"Authorization: Bearer {sandbox.token}"})
    )


async def test_timeout_becomes_unavailable(sandbox: SandboxHandle):
    sandbox.inject("slow", count=2, delay=1.5)
    retry = RetryPolicy(max_attempts=2, backoff_base=0.01)
    async with sandbox.client(timeout=0.3, retry=retry) as api:
        with pytest.raises(ConsonanceUnavailable, match="in time"):
            await api.get_work(sandbox.catalogue.work_ids[0])
        assert api.stats.requests == 2


@pytest.mark.parametrize("scheme", ["Bearer", "Token"])
def test_documented_example_queries_run_unchanged(sandbox: SandboxHandle, scheme: str):
    cat = sandbox.catalogue
    work_id = cat.work_ids[0]
    isbn = cat.works[work_id].products[0].isbn13
    contract_id = cat.works[work_id].contract_ids[0]
    variables = {
        "1_changed_print_products": {"since": "2000-01-01"},
        "2_print_spec": {"workId": work_id},
        "3_products_by_isbn": {"isbn": isbn},
        "4_contract_dates_and_rights": {"contractId": contract_id},
    }
    headers = {"Authorization": f"{scheme} {sandbox.token}"}
    results = {}
    for name, values in variables.items():
        query = (QUERIES / f"{name}.graphql").read_text()
        response = httpx.post(
            f"{sandbox.url}/graphql", json={"query": query, "variables": values}, headers=headers
        )
        assert response.status_code == 200
        body = response.json()
        assert "errors" not in body, (name, body.get("errors"))
        results[name] = body["data"]
    printed = results["1_changed_print_products"]["products"]
    assert printed and all(p["__typename"] == "PhysicalBookProduct" for p in printed)
    assert all(p["gbpRrp"][0]["currencyCode"] == "GBP" for p in printed)
    assert results["2_print_spec"]["work"]["id"] == work_id
    assert results["3_products_by_isbn"]["product"]["isbn"]["isbn13"] == isbn
    assert results["4_contract_dates_and_rights"]["contract"]["id"] == contract_id


async def test_attach_files_update_todo_and_add_note(sandbox: SandboxHandle, tmp_path: Path):
    work_id = sandbox.catalogue.work_ids[20]
    work = sandbox.catalogue.works[work_id]
    cover = make_jpeg(30, 45, "attached cover")
    interior = tmp_path / "interior.pdf"
    interior.write_bytes(make_pdf("Interior", 3))
    async with sandbox.client() as api:
        resource = await api.attach_file(
            work_id=work_id,
            source=cover,
            filename="cover.jpg",
            target=AttachTarget.SUPPORTING_RESOURCE,
            variant="FRONT_COVER",
        )
        pfile = await api.attach_file(
            work_id=work_id,
            source=interior,
            filename="interior.pdf",
            target=AttachTarget.PRODUCTION_FILE,
            variant="INTERIOR",
            product_ids=[work.products[0].id],
        )
        todo = await api.update_todo(work.todos[-1].id, completed=True)
        note_id = await api.add_note("Sent to printer", work_id=work_id)
        after = await api.get_work(work_id)
        notes = await api.execute(
            "Notes",
            "query Notes($id: Int!) { work(workSearch: {idEq: $id}) { notes { id noteText } } }",
            {"id": work_id},
        )
    assert isinstance(resource, SupportingResource) and isinstance(pfile, ProductionFile)
    assert after is not None
    stored = next(r for r in after.supporting_resources if r.id == resource.id)
    assert stored.url and stored.file_size == len(cover)
    assert httpx.get(stored.url).content == cover
    stored_pf = next(f for f in after.products[0].production_files if f.id == pfile.id)
    assert stored_pf.url and httpx.get(stored_pf.url).content == interior.read_bytes()
    assert todo.completed is True
    assert {"id": note_id, "noteText": "Sent to printer"} in notes["work"]["notes"]


async def test_mutation_user_errors_become_query_errors(sandbox: SandboxHandle):
    async with sandbox.client() as api:
        with pytest.raises(ConsonanceQueryError, match=r"UpdateTodo.*no to-do"):
            await api.update_todo(999_999_999, completed=True)


async def test_execution_errors_name_the_path(sandbox: SandboxHandle):
    query = """query OddDate($d: ISO8601Date) {
      product(productSearch: {publicationDateEq: $d}) { id }
    }"""
    async with sandbox.client() as api:
        with pytest.raises(ConsonanceQueryError) as info:
            await api.execute("OddDate", query, {"d": "not a date"})
    assert "OddDate" in str(info.value)
    assert "(at product)" in str(info.value)


async def test_organisations_and_contacts_resolve(sandbox: SandboxHandle):
    async with sandbox.client() as api:
        data = await api.execute(
            "Orgs",
            """query Orgs { organisation(organisationSearch: {nameEq: "Clays Ltd"}) {
                 id organisationName emails { email } }
               contacts(contactSearch: {personNameCont: "a"}) { __typename id name } }""",
        )
    assert data["organisation"]["organisationName"] == "Clays Ltd"
    assert data["contacts"] and {c["__typename"] for c in data["contacts"]} == {"Person"}


async def test_mutations_are_not_repeated_when_they_may_have_applied(sandbox: SandboxHandle):
    work_id = sandbox.catalogue.work_ids[30]
    sandbox.inject("server_error", count=1)
    async with sandbox.client() as api:
        with pytest.raises(ConsonanceUnavailable, match="may or may not have applied") as info:
            await api.add_note("once only", work_id=work_id)
        assert api.stats.requests == 1
        assert not info.value.retryable
        sandbox.inject("rate_limit", count=1, retry_after=0.05)  # refused: safe to repeat
        await api.add_note("after a 429", work_id=work_id)
        assert api.stats.requests == 3
    # The sandbox's injected 500 came before the note was stored; the client could not know.
    assert [n.text for n in sandbox.catalogue.notes_for(work_id=work_id)] == ["after a 429"]


async def test_introspection_query_in_the_docs_runs(sandbox: SandboxHandle):
    """The query docs/reference/consonance.md gives for settling the mutation shape."""
    doc = (Path(__file__).parents[2] / "docs/reference/consonance.md").read_text()
    query = re.search(r"```graphql\n\s*(query \{ __schema.*?)```", doc, re.S)
    assert query is not None
    async with sandbox.client() as api:
        data = await api.execute("Introspection", query.group(1))
    mutations = {f["name"]: f for f in data["__schema"]["mutationType"]["fields"]}
    assert {"createSupportingResource", "createProductionFile", "updateTodo", "createNote"} <= set(
        mutations
    )
    payload = mutations["createSupportingResource"]["type"]["fields"]
    assert {"supportingResource", "presignedUrl", "errors"} <= {f["name"] for f in payload}
