"""The intake flow's processor (``flows.intake.IntakeProcessor``) on a fake Consonance and a real
SQLite store: the to-do rules (by a pattern's id, by name, a note, none), the approval status,
a kind nothing names, and a flow without ``match``."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from consonance_sftp.adapters.store import SqlStore, open_store
from consonance_sftp.config.flows import IntakeMatching
from consonance_sftp.errors import ConsonanceQueryError
from consonance_sftp.flows.intake import IntakeContext, IntakeProcessor
from consonance_sftp.models import IntakeOutcome, Product, ProductionFile, Todo, Work
from consonance_sftp.ports.consonance import AttachTarget
from consonance_sftp.ports.intake import FetchedFile, IntakeRequest
from consonance_sftp.ports.store import IntakeRecord
from consonance_sftp.sandbox.consonance.files import make_pdf

ISBN = "9781900200011"


class FakeConsonance:
    """Just what the processor calls; records each write."""

    def __init__(self) -> None:
        self.product = Product(
            id=20, work_id=10, typename="PhysicalBookProduct", isbn13=ISBN, title="T"
        )
        self.work = Work(
            id=10,
            title="T",
            products=(self.product,),
            todos=(Todo(id=501, name="Index received"), Todo(id=502, name="Proofs back")),
        )
        self.attached: list[dict[str, Any]] = []
        self.todos: list[int] = []
        self.notes: list[str] = []

    async def get_product_by_isbn(self, isbn13: str) -> Product | None:
        return self.product if isbn13 == ISBN else None

    async def get_work(self, work_id: int) -> Work | None:
        return self.work

    async def attach_file(
        self,
        *,
        work_id: int,
        source: Path | bytes,
        filename: str,
        target: AttachTarget,
        variant: str,
        product_ids: Sequence[int] = (),
        status: str | None = None,
    ) -> ProductionFile:
        self.attached.append({"filename": filename, "variant": variant, "status": status})
        record = ProductionFile(
            id=900 + len(self.attached),
            file_variant=variant,
            filename=filename,
            approval_status=status or "",
            product_ids=tuple(product_ids),
        )
        product = dataclasses.replace(
            self.product, production_files=(*self.product.production_files, record)
        )
        self.product = product
        self.work = dataclasses.replace(self.work, products=(product,))
        return record

    async def download_file(self, url: str, dest: Path) -> tuple[int, str]:
        raise AssertionError("nothing to download: no earlier attachment of these bytes")

    async def update_todo(self, todo_id: int, *, completed: bool) -> Todo:
        self.todos.append(todo_id)
        return Todo(id=todo_id, name="", completed=completed)

    async def add_note(
        self, text: str, *, work_id: int | None = None, product_id: int | None = None
    ) -> int:
        self.notes.append(text)
        return 77


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as s:
        yield s


def processor(
    api: FakeConsonance, store: SqlStore, matching: IntakeMatching | None
) -> IntakeProcessor:
    @contextlib.asynccontextmanager
    async def consonance() -> AsyncIterator[Any]:
        yield api

    async def no_manifest(request: IntakeRequest, names: list[str]) -> None:
        return None

    return IntakeProcessor(
        consonance=consonance,
        store=store,
        context=lambda request: IntakeContext(matching=matching, folder="/in"),
        read_manifest=no_manifest,
    )


def stored(tmp_path: Path, name: str, data: bytes) -> tuple[IntakeRequest, FetchedFile]:
    local = tmp_path / "inbox" / name
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)
    request = IntakeRequest(
        flow="revisions",
        kind="intake",
        partner="indexer",
        remote_path=f"/in/{name}",
        size=len(data),
        mtime=1.0,
    )
    fetched = FetchedFile(
        local_path=str(local), size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    return request, fetched


async def test_a_patterns_todo_id_is_completed_and_files_await_approval(
    store: SqlStore, tmp_path: Path
) -> None:
    api = FakeConsonance()
    matching = IntakeMatching(
        rules=["pattern"], pattern=r"(?P<isbn>\d{13})_(?P<kind>[a-z]+)_todo(?P<todo>\d+)"
    )
    request, file = stored(tmp_path, f"{ISBN}_index_todo501.pdf", make_pdf("index"))
    result = await processor(api, store, matching).handle(request, file)
    assert result.outcome is IntakeOutcome.ATTACHED, result.reason
    assert api.todos == [501]
    assert api.attached == [
        {"filename": f"{ISBN}_index_todo501.pdf", "variant": "OTHER", "status": "AWAITING_APPROVAL"}
    ]
    assert "to-do 'Index received' completed" in (result.reason or "")


async def test_a_todo_by_name_a_missing_one_a_note_and_approve(
    store: SqlStore, tmp_path: Path
) -> None:
    api = FakeConsonance()
    named = IntakeMatching(todo="proofs BACK", approve=True)
    request, file = stored(tmp_path, f"{ISBN}_interior.pdf", make_pdf("one"))
    result = await processor(api, store, named).handle(request, file)
    assert (api.todos, api.attached[-1]["status"]) == ([502], "APPROVED")

    missing = IntakeMatching(todo="Revised {kind} received")
    request, file = stored(tmp_path, f"{ISBN}_interior-2.pdf", make_pdf("two"))
    result = await processor(api, store, missing).handle(request, file)
    assert result.outcome is IntakeOutcome.ATTACHED
    assert "no to-do 'Revised interior received' on the work" in (result.reason or "")
    assert api.todos == [502]

    noted = IntakeMatching(todo_action="note")
    request, file = stored(tmp_path, f"{ISBN}_interior-3.pdf", make_pdf("three"))
    result = await processor(api, store, noted).handle(request, file)
    [note] = api.notes
    assert note.startswith("Received interior version 3 from indexer")
    assert file.sha256 in note
    assert "note #77 added to the work" in (result.reason or "")


async def test_a_kind_nothing_names_is_quarantined_unless_the_flow_has_a_default(
    store: SqlStore, tmp_path: Path
) -> None:
    api = FakeConsonance()
    request, file = stored(tmp_path, f"{ISBN}.pdf", make_pdf("what is it"))
    result = await processor(api, store, IntakeMatching()).handle(request, file)
    assert result.outcome is IntakeOutcome.QUARANTINED
    assert (result.reason or "").startswith("unknown kind:")
    assert api.attached == []
    result = await processor(api, store, IntakeMatching(kind="index")).handle(request, file)
    assert result.outcome is IntakeOutcome.ATTACHED


async def test_without_match_the_file_stays_stored(store: SqlStore, tmp_path: Path) -> None:
    api = FakeConsonance()
    handler = processor(api, store, None)
    request, file = stored(tmp_path, f"{ISBN}_cover.pdf", make_pdf("cover"))
    assert not handler.applies(request)
    result = await handler.handle(request, file)
    assert (result.outcome, api.attached) == (IntakeOutcome.STORED, [])


def record_row(store: SqlStore, request: IntakeRequest, file: FetchedFile, outcome: str) -> None:
    """The intake row the engine writes with the hand-off's outcome."""
    store.record_intake(
        IntakeRecord(
            partner=request.partner,
            remote_path=request.remote_path,
            size=request.size,
            remote_mtime=request.mtime,
            flow=request.flow,
            sha256=file.sha256,
            local_path=file.local_path,
            outcome=IntakeOutcome(outcome),
            work_id=10 if outcome == "attached" else None,
            product_id=20 if outcome == "attached" else None,
        )
    )


async def test_the_same_bytes_after_a_failed_attachment_are_attached_not_a_duplicate(
    store: SqlStore, tmp_path: Path
) -> None:
    api = FakeConsonance()
    matching = IntakeMatching(kind="index")
    data = make_pdf("an index Consonance refused once")
    refusing = api.attach_file

    async def refuse(**kwargs: Any) -> ProductionFile:
        raise ConsonanceQueryError("createProductionFile: fileVariant is not allowed")

    api.attach_file = refuse  # type: ignore[method-assign]
    request, file = stored(tmp_path, f"{ISBN}-a.pdf", data)
    result = await processor(api, store, matching).handle(request, file)
    assert result.outcome is IntakeOutcome.FAILED
    assert (result.reason or "").startswith("Consonance refused it:")
    record_row(store, request, file, "failed")

    api.attach_file = refusing  # type: ignore[method-assign]
    request, file = stored(tmp_path, f"{ISBN}-b.pdf", data)
    result = await processor(api, store, matching).handle(request, file)
    assert result.outcome is IntakeOutcome.ATTACHED, result.reason
    assert [a["filename"] for a in api.attached] == [f"{ISBN}-b.pdf"]
    record_row(store, request, file, "attached")
    assert len(store.list_asset_versions(10, product_id=20, kind="index")) == 1

    request, file = stored(tmp_path, f"{ISBN}-c.pdf", data)
    result = await processor(api, store, matching).handle(request, file)
    assert result.outcome is IntakeOutcome.DUPLICATE
    assert len(api.attached) == 1
