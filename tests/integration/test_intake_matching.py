"""Flow 3 end to end: partners upload revised files to a real OpenSSH server, the intake flow
takes them in, matches each to its title (a manifest, a partner's pattern, a bare ISBN),
versions it, attaches it in the Consonance sandbox over HTTP and completes the to-do; what
cannot be matched is quarantined with its reason.

Everything is read back the way an operator would: the sandbox through the Consonance client,
the intake ledger, the asset versions and the audit trail of the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_asyncio
import tomlkit

from consonance_sftp.app import App
from consonance_sftp.app.intake import poll_inbox
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.config import Settings
from consonance_sftp.config.flows import IntakeFlow
from consonance_sftp.models import IntakeOutcome, Work
from consonance_sftp.sandbox.consonance.files import make_pdf
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.cli import CLI
from tests.fixtures.consonance_sandbox import SandboxHandle
from tests.settings import openssh_partner

WORK = 1001
PRODUCT = 20001
ISBN = "9781900200011"
PRINT_FILES = 50004  # "Print files approved", open
COVER_BRIEF = 50001  # "Cover brief", reopened by the fixture
FLOW = "revisions"


@dataclass
class World:
    app: App
    runner: DeliveryRunner
    sandbox: SandboxHandle
    folders: dict[str, Path]
    config: Path

    async def poll(self) -> dict[str, dict[str, Any]]:
        """One poll of the flow; each file taken, by name, with its intake's result."""
        flow = self.app.settings.flows[FLOW]
        assert isinstance(flow, IntakeFlow)
        report = await poll_inbox(self.app, self.runner, FLOW, flow, trigger="test")
        assert not report.errors, report.errors
        out = {}
        for taken in report.taken:
            assert taken.workflow_id
            out[Path(taken.path).name] = await self.runner.wait(taken.workflow_id, 60)
        return out

    def row(self, partner: str, name: str) -> Any:
        [row] = [
            r
            for r in self.app.store.list_intakes(partner=partner)
            if Path(r.remote_path).name == name
        ]
        return row

    async def work(self) -> Work:
        async with self.sandbox.client() as api:
            work = await api.get_work(WORK)
        assert work is not None
        return work


def put(path: Path, data: bytes) -> bytes:
    path.write_bytes(data)
    then = time.time() - 60  # finished a minute ago: stable at once
    os.utime(path, (then, then))
    return data


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + os.urandom(200)


def settings(
    root: Path, openssh: OpenSshServer, sandbox: SandboxHandle, folders: dict[str, Path]
) -> dict[str, Any]:
    token = root / "token"
    token.write_text(sandbox.token)

    def partner(name: str) -> dict[str, Any]:
        return openssh_partner(
            openssh,
            {"receive": str(folders[name])},
            max_connections=2,
            transfer={"stable_interval": 0.2},
        )

    return {
        "state_dir": str(root / "var"),
        "consonance": {"base_url": sandbox.url, "token": {"file": str(token)}},
        "engine": {"retry_max_attempts": 3, "retry_initial_interval_s": 0.1},
        "partners": {name: partner(name) for name in folders},
        "flows": {
            FLOW: {
                "kind": "intake",
                "partners": sorted(folders),
                "poll_interval": 60,
                "subfolders": True,
                "match": {"rules": ["isbn"], "kind": "index", "todo_action": "note"},
                "partner_match": {
                    "typesetter": {"rules": ["manifest"], "todo": "Print files approved"},
                    "studio": {
                        "rules": ["pattern"],
                        "pattern": r"^(?P<isbn>97[89]\d{10})/(?P<kind>[a-z_]+)/",
                    },
                    "designer": {
                        "rules": ["pattern"],
                        "pattern": r"(?P<isbn>\d{13})_(?P<kind>[a-z]+)_v(?P<version>\d+)\.",
                        "todo": "Cover brief",
                    },
                },
            }
        },
    }


@pytest_asyncio.fixture
async def world(
    openssh: OpenSshServer,
    consonance_sandbox_factory: Callable[..., SandboxHandle],
    tmp_path: Path,
) -> AsyncIterator[World]:
    sandbox = consonance_sandbox_factory(generate_catalogue(50, seed=5))
    sandbox.catalogue.update_todo(COVER_BRIEF, completed=False)
    names = ("typesetter", "designer", "indexer", "studio")
    folders = {n: tmp_path / "sftp" / n for n in names}
    for folder in folders.values():
        folder.mkdir(parents=True)
    raw = settings(tmp_path, openssh, sandbox, folders)
    async with running(raw, tmp_path, sandbox, folders) as world:
        yield world


@contextlib.asynccontextmanager
async def running(
    raw: dict[str, Any], tmp_path: Path, sandbox: SandboxHandle, folders: dict[str, Path]
) -> AsyncIterator[World]:
    """The service as configured by ``raw`` (written to ``consonance-sftp.toml`` too, for the
    CLI), with a real executor, for one test."""
    config = tmp_path / "consonance-sftp.toml"
    config.write_text(tomlkit.dumps(raw))
    app = App(Settings.model_validate(raw), config)
    runner = DeliveryRunner(app, executor=True, quiet=True)
    await runner.__aenter__()
    try:
        yield World(app, runner, sandbox, folders, config)
    finally:
        await runner.__aexit__(None, None, None)
        app.store.close()


def manifest(folder: Path, name: str, **fields: str) -> None:
    put(folder / f"{name}.manifest.json", json.dumps({"isbn": ISBN, **fields}).encode())


async def test_revised_files_are_matched_versioned_attached_and_complete_their_todo(
    world: World,
) -> None:
    typesetter, designer, indexer = (
        world.folders[n] for n in ("typesetter", "designer", "indexer")
    )
    interior1 = put(typesetter / "proofs.pdf", make_pdf("interior, first pass", 12))
    manifest(typesetter, "proofs.pdf", kind="interior", version="1")
    cover1 = put(designer / f"{ISBN}_cover_v1.pdf", make_pdf("cover one"))
    index1 = put(indexer / f"Index {ISBN}.pdf", make_pdf("index one"))

    first = await world.poll()
    assert sorted(first) == sorted(["proofs.pdf", f"{ISBN}_cover_v1.pdf", f"Index {ISBN}.pdf"])
    assert {r["outcome"] for r in first.values()} == {"attached"}, first
    for partner, name, rule in (
        ("typesetter", "proofs.pdf", "manifest"),
        ("designer", f"{ISBN}_cover_v1.pdf", "pattern"),
        ("indexer", f"Index {ISBN}.pdf", "isbn"),
    ):
        row = world.row(partner, name)
        assert (row.outcome, row.work_id, row.product_id) == (
            IntakeOutcome.ATTACHED,
            WORK,
            PRODUCT,
        )
        assert row.reason.startswith("version 1 of the") and f"matched by {rule}" in row.reason

    # The second round: each file revised, each becomes version 2 and supersedes version 1.
    interior2 = put(typesetter / "proofs-2.pdf", make_pdf("interior, second pass", 12))
    manifest(typesetter, "proofs-2.pdf", kind="interior", version="2")
    cover2 = put(designer / f"{ISBN}_cover_v2.pdf", make_pdf("cover two"))
    index2 = put(indexer / f"{ISBN}-index-final.pdf", make_pdf("index two"))
    second = await world.poll()
    assert {r["outcome"] for r in second.values()} == {"attached"}, second

    store = world.app.store
    for kind, one, two in (
        ("interior_pdf", interior1, interior2),
        ("cover_pdf", cover1, cover2),
        ("index", index1, index2),
    ):
        versions = store.list_asset_versions(WORK, product_id=PRODUCT, kind=kind)
        assert [(v.version, v.sha256) for v in versions] == [(1, sha(one)), (2, sha(two))]
        assert versions[0].superseded_by == versions[1].id
        assert versions[1].superseded_by is None
        assert versions[1].source in {"intake:typesetter", "intake:designer", "intake:indexer"}
    assert "superseding version 1" in world.row("designer", f"{ISBN}_cover_v2.pdf").reason

    # In Consonance, read back through the client: every file attached once, bytes intact.
    work = await world.work()
    [product] = [p for p in work.products if p.id == PRODUCT]
    by_name = {f.filename: f for f in product.production_files}
    for name, data, variant in (
        ("proofs.pdf", interior1, "INTERIOR"),
        ("proofs-2.pdf", interior2, "INTERIOR"),
        (f"{ISBN}_cover_v1.pdf", cover1, "COVER"),
        (f"{ISBN}_cover_v2.pdf", cover2, "COVER"),
        (f"Index {ISBN}.pdf", index1, "OTHER"),
        (f"{ISBN}-index-final.pdf", index2, "OTHER"),
    ):
        record = by_name[name]
        assert (record.file_variant, record.file_size) == (variant, len(data))
        assert record.approval_status == "AWAITING_APPROVAL"  # a person approves revisions
        assert record.url
        async with world.sandbox.client() as api:
            size, digest = await api.download_file(record.url, world.app.state_dir / "check")
        assert (size, digest) == (len(data), sha(data))
    assert len(product.production_files) == 2 + 6  # the generated two, and ours
    todos = {t.id: t for t in work.todos}
    assert todos[PRINT_FILES].completed and todos[COVER_BRIEF].completed
    notes = world.sandbox.catalogue.notes_for(work_id=WORK)
    assert [n.text for n in notes if "index version 2" in n.text]  # the indexer's note

    # The same bytes again, under a new name: a duplicate, no new version, nothing attached.
    put(designer / f"{ISBN}_cover_v3.pdf", cover2)
    third = await world.poll()
    assert third[f"{ISBN}_cover_v3.pdf"]["outcome"] == "duplicate"
    row = world.row("designer", f"{ISBN}_cover_v3.pdf")
    assert row.outcome is IntakeOutcome.DUPLICATE
    assert row.reason.startswith("duplicate: the same bytes as version 2 of the cover")
    assert len(store.list_asset_versions(WORK, product_id=PRODUCT, kind="cover_pdf")) == 2
    work = await world.work()
    [product] = [p for p in work.products if p.id == PRODUCT]
    assert len(product.production_files) == 8
    events = store.list_audit(subject=f"designer:{designer}/{ISBN}_cover_v3.pdf")
    assert "intake.duplicate" in {e.action for e in events}


async def test_what_cannot_be_matched_is_quarantined_with_its_reason(world: World) -> None:
    designer, indexer = world.folders["designer"], world.folders["indexer"]
    put(designer / f"{ISBN}_cover_v7.pdf", PNG)  # a PNG named .pdf
    put(designer / "final artwork.pdf", make_pdf("no isbn"))
    put(indexer / "index 9781900200012.pdf", make_pdf("bad checksum"))
    put(indexer / f"index {ISBN} 9780306406157.pdf", make_pdf("two isbns"))
    put(indexer / "index 9780306406157.pdf", make_pdf("unknown product"))
    results = await world.poll()
    assert {r["outcome"] for r in results.values()} == {"quarantined"}, results
    reasons = {
        name: world.row(partner, name).reason
        for partner, name in (
            ("designer", f"{ISBN}_cover_v7.pdf"),
            ("designer", "final artwork.pdf"),
            ("indexer", "index 9781900200012.pdf"),
            ("indexer", f"index {ISBN} 9780306406157.pdf"),
            ("indexer", "index 9780306406157.pdf"),
        )
    }
    for name, reason in reasons.items():  # what `run` prints: the workflow's result says why
        assert results[name]["reason"] == reason
    assert reasons[f"{ISBN}_cover_v7.pdf"].startswith("content does not match the kind:")
    assert "PNG" in reasons[f"{ISBN}_cover_v7.pdf"]
    assert reasons["final artwork.pdf"].startswith("unmatched: pattern:")
    assert reasons["index 9781900200012.pdf"].startswith("bad checksum:")
    assert reasons[f"index {ISBN} 9780306406157.pdf"].startswith("ambiguous:")
    assert reasons["index 9780306406157.pdf"].startswith("unknown product:")
    # Nothing of it reached Consonance or the versions.
    work = await world.work()
    [product] = [p for p in work.products if p.id == PRODUCT]
    assert len(product.production_files) == 2
    assert world.app.store.list_asset_versions(WORK) == []


def cli(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--config", str(world.config), "quarantine", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "USER": "editor", "COLUMNS": "250"},
        check=False,
    )


async def test_a_quarantined_file_assigned_through_the_cli_lands_as_if_matched(
    world: World,
) -> None:
    designer = world.folders["designer"]
    artwork = put(designer / "final artwork.pdf", make_pdf("the cover, misnamed"))
    put(designer / f"{ISBN}_cover_v9.pdf", PNG)
    results = await world.poll()
    assert {r["outcome"] for r in results.values()} == {"quarantined"}
    unmatched = world.row("designer", "final artwork.pdf")
    png = world.row("designer", f"{ISBN}_cover_v9.pdf")

    listed = cli(world, "list")
    assert listed.returncode == 0, listed.stderr
    assert "final artwork.pdf" in listed.stdout and "unmatched" in listed.stdout
    assert f"{ISBN}_cover_v9.pdf" in listed.stdout and "content does not match" in listed.stdout
    shown = cli(world, "show", str(unmatched.id), "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert (data["original_name"], data["partner"], data["sha256"], data["label"]) == (
        "final artwork.pdf",
        "designer",
        sha(artwork),
        "unmatched",
    )

    assigned = cli(world, "assign", str(unmatched.id), "--isbn", ISBN, "--kind", "cover")
    assert assigned.returncode == 0, assigned.stdout + assigned.stderr
    assert "attached" in assigned.stdout
    row = world.row("designer", "final artwork.pdf")
    assert (row.outcome, row.work_id, row.product_id) == (IntakeOutcome.ATTACHED, WORK, PRODUCT)
    assert row.reason.startswith("assigned by editor: version 1 of the cover")
    [version] = world.app.store.list_asset_versions(WORK, product_id=PRODUCT, kind="cover_pdf")
    assert (version.version, version.sha256) == (1, sha(artwork))
    work = await world.work()
    [product] = [p for p in work.products if p.id == PRODUCT]
    [record] = [f for f in product.production_files if f.filename == "final artwork.pdf"]
    assert (record.file_variant, record.file_size) == ("COVER", len(artwork))
    assert {t.id: t for t in work.todos}[COVER_BRIEF].completed
    [event] = world.app.store.list_audit(action="intake.assigned")
    assert event.actor == "user:editor"
    assert (event.details["isbn"], event.details["kind"]) == (ISBN, "cover")

    # Assigned once: a second assign is refused, the row is no longer in quarantine.
    again = cli(world, "assign", str(unmatched.id), "--isbn", ISBN, "--kind", "cover")
    assert again.returncode == 1 and "not quarantined" in again.stderr

    rejected = cli(world, "reject", str(png.id), "--reason", "the designer sent a screenshot")
    assert rejected.returncode == 0, rejected.stderr
    row = world.row("designer", f"{ISBN}_cover_v9.pdf")
    assert row.outcome is IntakeOutcome.REJECTED
    assert row.reason == "rejected by editor: the designer sent a screenshot"
    assert Path(row.local_path).read_bytes() == PNG  # kept
    [event] = world.app.store.list_audit(action="intake.rejected")
    assert (event.actor, event.details["reason"]) == (
        "user:editor",
        "the designer sent a screenshot",
    )
    left = cli(world, "list")
    assert "the quarantine is empty" in left.stdout


async def test_consonance_failures_are_retried_or_leave_the_file_stored_and_the_row_failed(
    world: World,
) -> None:
    from consonance_sftp.app import quarantine

    indexer = world.folders["indexer"]
    # Six HTTP 500s: the client's own five attempts give up on the first five, and the
    # engine's retry of the hand-off step meets the sixth and then gets through.
    world.sandbox.reset_stats()
    world.sandbox.inject("server_error", 6)
    index = put(indexer / f"{ISBN} index.pdf", make_pdf("index through a flaky Consonance"))
    results = await world.poll()
    assert results[f"{ISBN} index.pdf"]["outcome"] == "attached", results
    assert world.sandbox.stats()["faults_served"] == 6
    row = world.row("indexer", f"{ISBN} index.pdf")
    assert row.outcome is IntakeOutcome.ATTACHED
    work = await world.work()
    [product] = [p for p in work.products if p.id == PRODUCT]
    assert [
        f.file_size
        for f in product.production_files
        if f.filename == row.remote_path.split("/")[-1]
    ] == [len(index)]

    # A refusal is terminal: the row fails with the reason, the bytes stay stored, and the
    # file can be taken up again once the cause is fixed.
    world.sandbox.inject("unauthorized", 1)
    refused = put(indexer / f"{ISBN} index-2.pdf", make_pdf("index, refused"))
    results = await world.poll()
    assert results[f"{ISBN} index-2.pdf"]["outcome"] == "failed", results
    row = world.row("indexer", f"{ISBN} index-2.pdf")
    assert row.outcome is IntakeOutcome.FAILED
    assert row.reason.startswith("Consonance refused it:")
    assert Path(row.local_path).read_bytes() == refused
    versions = world.app.store.list_asset_versions(WORK, product_id=PRODUCT, kind="index")
    assert [v.sha256 for v in versions] == [sha(index)]  # refused before any version
    [alert] = world.app.store.list_alerts(kind="intake_failed")
    assert "Consonance refused it" in alert.message
    assert row.id is not None
    result = await quarantine.assign(world.app, row.id, isbn=ISBN, kind="index", by="editor")
    assert result.outcome is IntakeOutcome.ATTACHED
    versions = world.app.store.list_asset_versions(WORK, product_id=PRODUCT, kind="index")
    assert [v.sha256 for v in versions] == [sha(index), sha(refused)]
    report = world.app.store.verify_audit()
    assert report.ok, [str(p) for p in report.problems]  # every row change is on the trail


async def test_folder_names_count_for_a_pattern_in_sub_folders(world: World) -> None:
    studio = world.folders["studio"]
    (studio / ISBN / "interior").mkdir(parents=True)
    (studio / ISBN / ".drafts").mkdir()
    book = put(studio / ISBN / "interior" / "book.pdf", make_pdf("the interior, in a folder"))
    put(studio / ISBN / ".drafts" / "draft.pdf", make_pdf("a draft, hidden"))
    flow = world.app.settings.flows[FLOW]
    assert isinstance(flow, IntakeFlow)
    report = await poll_inbox(world.app, world.runner, FLOW, flow, trigger="test")
    assert [Path(f.path).name for f in report.taken] == ["book.pdf"]
    assert [(Path(f.path).name, f.reason) for f in report.ignored] == [
        (".drafts", "a folder not entered (hidden, the processed or temporary folder, or too deep)")
    ]
    result = await world.runner.wait(report.taken[0].workflow_id or "", 60)
    assert result["outcome"] == "attached", result
    row = world.row("studio", "book.pdf")
    assert row.remote_path == f"{studio}/{ISBN}/interior/book.pdf"
    assert row.reason.startswith(f"version 1 of the interior of ISBN {ISBN}")
    assert "matched by pattern" in row.reason
    [version] = world.app.store.list_asset_versions(WORK, product_id=PRODUCT, kind="interior_pdf")
    assert version.sha256 == sha(book)
