"""Archives in the intake flow: a zip a partner uploads to a flow that accepts archives
(``screening.allow_archives``) is unpacked under the state dir and each entry matched,
checked, versioned and attached on its own, against a real OpenSSH server and the Consonance
sandbox over HTTP; one intake row says what became of the whole archive.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from consonance_sftp.app.intake_handler import intake_processor
from consonance_sftp.models import IntakeOutcome
from consonance_sftp.ports.intake import FetchedFile, HandOffResult, IntakeRequest
from consonance_sftp.sandbox.consonance.files import make_pdf
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.fixtures.consonance_sandbox import SandboxHandle
from tests.integration.test_intake_matching import (
    COVER_BRIEF,
    FLOW,
    ISBN,
    PRODUCT,
    WORK,
    World,
    put,
    running,
    settings,
    sha,
)


@pytest_asyncio.fixture
async def world(
    openssh: OpenSshServer,
    consonance_sandbox_factory: Callable[..., SandboxHandle],
    tmp_path: Path,
) -> AsyncIterator[World]:
    sandbox = consonance_sandbox_factory(generate_catalogue(50, seed=5))
    sandbox.catalogue.update_todo(COVER_BRIEF, completed=False)
    folders = {"indexer": tmp_path / "sftp" / "indexer"}
    folders["indexer"].mkdir(parents=True)
    raw = settings(tmp_path, openssh, sandbox, folders)
    flow = raw["flows"][FLOW]
    flow["partner_match"] = {}
    flow["match"] = {"rules": ["manifest", "isbn"], "todo_action": "none"}
    flow["screening"] = {"allow_archives": True}
    async with running(raw, tmp_path, sandbox, folders) as world:
        yield world


def zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


async def attached(world: World) -> dict[str, tuple[str, int, int]]:
    """The product's production files by name: (variant, size, how many of that name)."""
    work = await world.work()
    [product] = [p for p in work.products if p.id == PRODUCT]
    names = [f.filename for f in product.production_files]
    return {
        f.filename: (f.file_variant or "", f.file_size or 0, names.count(f.filename))
        for f in product.production_files
    }


COVER = f"{ISBN}_cover.pdf"
INTERIOR = f"interior/{ISBN}.pdf"


async def test_each_entry_of_a_zip_is_matched_versioned_and_attached(world: World) -> None:
    cover = make_pdf("the cover, in a zip")
    interior = make_pdf("the interior, in a zip", 8)
    put(world.folders["indexer"] / "batch.zip", zipped({COVER: cover, INTERIOR: interior}))
    results = await world.poll()
    assert results["batch.zip"]["outcome"] == "attached", results

    [row] = world.app.store.list_intakes(partner="indexer")  # one row for the archive
    assert (row.outcome, row.work_id, row.product_id) == (IntakeOutcome.ATTACHED, WORK, PRODUCT)
    assert row.reason.startswith("2 entries of batch.zip:")
    assert f"{COVER} (version 1 of the cover of ISBN {ISBN}" in row.reason
    assert f"{INTERIOR} (version 1 of the interior of ISBN {ISBN}" in row.reason

    store = world.app.store
    for kind, data, entry in (("cover_pdf", cover, COVER), ("interior_pdf", interior, INTERIOR)):
        [version] = store.list_asset_versions(WORK, product_id=PRODUCT, kind=kind)
        assert (version.version, version.sha256, version.size) == (1, sha(data), len(data))
        assert (version.original_name, version.partner, version.intake_id) == (
            f"batch.zip/{entry}",
            "indexer",
            row.id,
        )
        # Unpacked under the state dir, in the archive's own folder.
        unpacked = world.app.state_dir / "unpacked" / FLOW / "indexer" / str(row.id)
        assert version.local_path == str(unpacked / "files" / entry)
        assert Path(version.local_path).read_bytes() == data

    files = await attached(world)
    assert files[COVER] == ("COVER", len(cover), 1)
    assert files[f"{ISBN}.pdf"] == ("INTERIOR", len(interior), 1)
    events = store.list_audit(action="intake.entry")
    assert sorted((e.details["entry"], e.details["outcome"]) for e in events) == [
        (COVER, "attached"),
        (INTERIOR, "attached"),
    ]
    assert {e.subject for e in events} == {f"indexer:{row.remote_path}"}


async def test_an_entry_that_cannot_be_matched_is_named_and_the_others_land(
    world: World,
) -> None:
    cover = make_pdf("the cover, matched")
    put(
        world.folders["indexer"] / "mixed.zip",
        zipped(
            {
                COVER: cover,
                "notes.pdf": make_pdf("no ISBN in this name"),
                f"{ISBN}_index.zip": zipped({"index.pdf": make_pdf("nested")}),
            }
        ),
    )
    results = await world.poll()
    assert results["mixed.zip"]["outcome"] == "quarantined", results
    [row] = world.app.store.list_intakes(partner="indexer")
    assert row.outcome is IntakeOutcome.QUARANTINED
    assert row.reason.startswith("archive entries not landed: 2 of 3 entries of mixed.zip")
    assert "notes.pdf (unmatched:" in row.reason
    assert f"{ISBN}_index.zip (nested-archive:" in row.reason
    assert f"landed: {COVER} (version 1 of the cover" in row.reason
    assert (row.work_id, row.product_id) == (WORK, PRODUCT)  # the entry that landed

    [version] = world.app.store.list_asset_versions(WORK, product_id=PRODUCT)
    assert (version.kind, version.sha256) == ("cover_pdf", sha(cover))
    files = await attached(world)
    assert files[COVER] == ("COVER", len(cover), 1)
    assert "notes.pdf" not in files and f"{ISBN}_index.zip" not in files
    outcomes = {
        e.details["entry"]: e.details["outcome"]
        for e in world.app.store.list_audit(action="intake.entry")
    }
    assert outcomes == {
        COVER: "attached",
        "notes.pdf": "quarantined",
        f"{ISBN}_index.zip": "quarantined",
    }


async def test_a_rerun_or_a_reupload_attaches_nothing_twice(world: World) -> None:
    cover = make_pdf("the cover, once")
    interior = make_pdf("the interior, once", 4)
    data = zipped({COVER: cover, INTERIOR: interior})
    put(world.folders["indexer"] / "batch.zip", data)
    first = await world.poll()
    assert first["batch.zip"]["outcome"] == "attached", first
    [row] = world.app.store.list_intakes(partner="indexer")
    assert row.local_path and row.sha256 and row.id is not None

    # The hand-off run again for the same row (a crash after the entries were attached, and
    # the step replayed): each entry finds its own version by its unpacked path.
    request = IntakeRequest(
        flow=FLOW,
        kind="intake",
        partner="indexer",
        remote_path=row.remote_path,
        size=row.size,
        mtime=row.remote_mtime,
    )
    fetched = FetchedFile(local_path=row.local_path, size=row.size, sha256=row.sha256)
    again = await intake_processor(world.app).process(request, fetched)
    assert again.outcome is IntakeOutcome.ATTACHED, again
    assert "version 1 of the cover" in (again.reason or "")
    store = world.app.store
    assert len(store.list_asset_versions(WORK, product_id=PRODUCT)) == 2
    files = await attached(world)
    assert (files[COVER][2], files[f"{ISBN}.pdf"][2]) == (1, 1)
    assert len(store.list_audit(action="intake.entry")) == 2  # one per entry, not per run

    # The same zip uploaded again, under a new name: a new row, every entry a duplicate.
    put(world.folders["indexer"] / "batch-again.zip", data)
    second = await world.poll()
    assert second["batch-again.zip"]["outcome"] == "duplicate", second
    row2 = world.row("indexer", "batch-again.zip")
    assert row2.outcome is IntakeOutcome.DUPLICATE
    assert row2.reason.startswith("duplicate: 2 entries of batch-again.zip:")
    assert len(store.list_asset_versions(WORK, product_id=PRODUCT)) == 2
    files = await attached(world)
    assert (files[COVER][2], files[f"{ISBN}.pdf"][2]) == (1, 1)
    work = await world.work()
    [product] = [p for p in work.products if p.id == PRODUCT]
    assert len(product.production_files) == 2 + 2  # the generated two, and ours


async def test_a_manifest_inside_the_zip_and_assign_for_the_entries_no_rule_matched(
    world: World,
) -> None:
    from consonance_sftp.app import quarantine

    index = make_pdf("the index, described by a manifest")
    jacket = make_pdf("the jacket copy, misnamed")
    manifest = f'{{"isbn": "{ISBN}", "kind": "index"}}'.encode()
    put(
        world.folders["indexer"] / "delivery.zip",
        zipped(
            {
                "final/index.pdf": index,
                "final/index.pdf.manifest.json": manifest,
                "blurb final.pdf": jacket,
            }
        ),
    )
    results = await world.poll()
    assert results["delivery.zip"]["outcome"] == "quarantined", results
    row = world.row("indexer", "delivery.zip")
    assert row.reason.startswith("archive entries not landed: 1 of 2 entries of delivery.zip")
    assert "blurb final.pdf (unmatched:" in row.reason
    assert "landed: final/index.pdf (version 1 of the index" in row.reason
    assert "matched by manifest" in row.reason
    files = await attached(world)
    assert files["index.pdf"] == ("OTHER", len(index), 1)

    # A person says what the unmatched entry is: it lands; the index is not attached again.
    assert row.id is not None
    result = await quarantine.assign(world.app, row.id, isbn=ISBN, kind="jacket_copy", by="ed")
    assert result.outcome is IntakeOutcome.ATTACHED, result
    assert "blurb final.pdf (version 1 of the jacket copy" in (result.reason or "")
    row = world.row("indexer", "delivery.zip")
    assert row.outcome is IntakeOutcome.ATTACHED
    store = world.app.store
    [version] = store.list_asset_versions(WORK, product_id=PRODUCT, kind="jacket_copy")
    assert (version.sha256, version.original_name) == (sha(jacket), "delivery.zip/blurb final.pdf")
    assert len(store.list_asset_versions(WORK, product_id=PRODUCT, kind="index")) == 1
    files = await attached(world)
    assert files["index.pdf"][2] == 1
    work = await world.work()
    [resource] = [r for r in work.supporting_resources if r.filename == "blurb final.pdf"]
    assert resource.file_size == len(jacket)


async def test_a_crash_mid_archive_and_the_hand_off_run_again_attach_each_entry_once(
    world: World,
) -> None:
    """The hand-off stops right after the first entry is attached (an error the engine
    retries: the step is run again from the start); the second run lands the rest."""
    from consonance_sftp.errors import ConsonanceSftpError
    from consonance_sftp.flows.intake import IntakeProcessor

    class StopsAfterTheFirstEntry(IntakeProcessor):
        stopped = False

        async def _one(self, *args: Any, **kwargs: Any) -> HandOffResult:
            result = await super()._one(*args, **kwargs)
            if result.outcome is IntakeOutcome.ATTACHED and not self.stopped:
                self.stopped = True
                raise ConsonanceSftpError("the executor died here", retryable=True)
            return result

    cover = make_pdf("the cover, crash")
    interior = make_pdf("the interior, crash", 3)
    data = zipped({COVER: cover, INTERIOR: interior})
    stored = world.app.state_dir / "inbox" / "crash.zip"
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(data)
    request = IntakeRequest(
        flow=FLOW,
        kind="intake",
        partner="indexer",
        remote_path=str(world.folders["indexer"] / "crash.zip"),
        size=len(data),
        mtime=1.0,
    )
    fetched = FetchedFile(local_path=str(stored), size=len(data), sha256=sha(data))
    real = intake_processor(world.app)
    crashing = StopsAfterTheFirstEntry(
        consonance=real.consonance,
        store=real.store,
        context=real.context,
        read_manifest=real.read_manifest,
        unpack_root=real.unpack_root,
    )
    with pytest.raises(ConsonanceSftpError, match="died here"):
        await crashing.process(request, fetched)
    files = await attached(world)
    assert files[COVER][2] == 1 and f"{ISBN}.pdf" not in files  # stopped in the middle

    result = await intake_processor(world.app).process(request, fetched)
    assert result.outcome is IntakeOutcome.ATTACHED, result
    # The cover's own version, found by its unpacked path (not a duplicate of itself).
    assert f"{COVER} (version 1 of the cover of ISBN {ISBN}" in (result.reason or "")
    files = await attached(world)
    assert (files[COVER][2], files[f"{ISBN}.pdf"][2]) == (1, 1)
    versions = world.app.store.list_asset_versions(WORK, product_id=PRODUCT)
    assert sorted((v.kind, v.version) for v in versions) == [
        ("cover_pdf", 1),
        ("interior_pdf", 1),
    ]
    # Nothing was unpacked outside the state dir's `unpacked` folder, and only once.
    unpacked = world.app.state_dir / "unpacked" / FLOW / "indexer"
    [folder] = list(unpacked.iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["entries.json", "files"]


async def test_zip_based_documents_are_documents_not_archives(world: World) -> None:
    """An EPUB uploaded alone is attached as one file (never unpacked); a DOCX inside a zip
    is one entry, attached as a document (not refused as a nested archive)."""
    epub = zipped({"mimetype": b"application/epub+zip", "OEBPS/content.opf": b"<package/>"})
    docx = zipped({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>"})
    put(world.folders["indexer"] / f"{ISBN}.epub", epub)
    put(world.folders["indexer"] / "copy.zip", zipped({f"{ISBN} jacket copy.docx": docx}))
    results = await world.poll()
    assert results[f"{ISBN}.epub"]["outcome"] == "attached", results
    assert results["copy.zip"]["outcome"] == "attached", results
    [version] = world.app.store.list_asset_versions(WORK, product_id=PRODUCT, kind="epub")
    assert (version.sha256, version.original_name) == (sha(epub), f"{ISBN}.epub")
    assert version.local_path == world.row("indexer", f"{ISBN}.epub").local_path
    [jacket] = world.app.store.list_asset_versions(WORK, product_id=PRODUCT, kind="jacket_copy")
    assert (jacket.sha256, jacket.original_name) == (sha(docx), f"copy.zip/{ISBN} jacket copy.docx")
    files = await attached(world)
    assert files[f"{ISBN}.epub"] == ("EPUB", len(epub), 1)
    work = await world.work()
    assert [r.file_size for r in work.supporting_resources if r.filename.endswith(".docx")] == [
        len(docx)
    ]
    # Only the zip was unpacked.
    [folder] = list((world.app.state_dir / "unpacked" / FLOW / "indexer").iterdir())
    assert folder.name == str(world.row("indexer", "copy.zip").id)
