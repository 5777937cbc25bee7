"""Production handoff preparation against the sandbox over HTTP and a real SQLite store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from consonance_sftp.adapters.store import open_store
from consonance_sftp.config import ProductionFlow
from consonance_sftp.flows.production import ProductionHandoff
from consonance_sftp.flows.triggers import triggered
from consonance_sftp.formats.packaging import sha256_file
from consonance_sftp.models import AssetKind, ChangeEvent, ChangeKind, Work
from tests.fixtures.consonance_sandbox import SandboxHandle

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
FLOW = ProductionFlow.model_validate(
    {
        "kind": "production",
        "partners": ["printer"],
        "when": {"project_stage": "Production approval"},
    }
)


def _approved(work: Work) -> bool:
    return any(
        p.typename == "PhysicalBookProduct"
        and {f.file_variant for f in p.production_files if f.approval_status == "APPROVED"}
        >= {"INTERIOR", "COVER"}
        for p in work.products
    )


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield s
    s.close()


async def _works(sandbox: SandboxHandle) -> list[Work]:
    async with sandbox.client() as api:
        return [w async for w in api.iter_works()]


def test_only_the_configured_stage_triggers_the_flow():
    entered = ChangeEvent(kind=ChangeKind.WORK_ENTERED_STAGE, work_id=1, new="Production approval")
    assert triggered(FLOW, entered)
    assert not triggered(
        FLOW, ChangeEvent(kind=ChangeKind.WORK_ENTERED_STAGE, work_id=1, new="Proofs")
    )
    assert not triggered(FLOW, ChangeEvent(kind=ChangeKind.PRICE_CHANGED, work_id=1, new="x"))


async def test_approved_print_files_become_a_checked_package_with_recorded_versions(
    consonance_sandbox: SandboxHandle, store, tmp_path: Path
):
    works = await _works(consonance_sandbox)
    work = next(w for w in works if _approved(w) and w.production_runs)
    async with consonance_sandbox.client() as api:
        handoff = ProductionHandoff(api, store, tmp_path / "staging")
        packages, _skipped = await handoff.prepare(FLOW, work, now=NOW)
        again, _ = await handoff.prepare(FLOW, work, now=NOW)

    assert packages, "an approved print product must give a package"
    pkg = packages[0]
    assert pkg.partner == "printer"
    kinds = {f.kind for f in pkg.plan.assets}
    assert {AssetKind.INTERIOR_PDF, AssetKind.COVER_PDF, AssetKind.SPEC_SHEET} <= kinds
    for f in pkg.plan.files:  # every planned file exists locally with the planned checksum
        assert f.source is not None
        assert sha256_file(f.source) == (f.size, f.sha256)
        assert pkg.product.isbn13 in f.remote_path
    versions = store.list_asset_versions(work.id, product_id=pkg.product.id)
    assert sorted(v.kind for v in versions) == ["cover_pdf", "interior_pdf"]
    # Same approved bytes the second time: the same versions, not new ones.
    assert [v.id for v in again[0].versions] == [v.id for v in pkg.versions]
    assert len(store.list_asset_versions(work.id, product_id=pkg.product.id)) == 2


async def test_products_without_approved_files_are_skipped_with_a_reason(
    consonance_sandbox: SandboxHandle, store, tmp_path: Path
):
    works = await _works(consonance_sandbox)
    work = next(
        w
        for w in works
        if any(p.typename == "PhysicalBookProduct" for p in w.products) and not _approved(w)
    )
    async with consonance_sandbox.client() as api:
        packages, skipped = await ProductionHandoff(api, store, tmp_path).prepare(
            FLOW, work, now=NOW
        )
    assert packages == []
    printed = [s for s in skipped if s.product.typename == "PhysicalBookProduct"]
    assert printed
    assert all("not approved in Consonance (it has: " in s.reason for s in printed)


async def test_an_ebook_in_a_print_flow_is_skipped_saying_what_files_it_has(
    consonance_sandbox: SandboxHandle, store, tmp_path: Path
):
    works = await _works(consonance_sandbox)
    work = next(w for w in works if _approved(w) and _ebook(w) is not None)
    ebook = _ebook(work)
    assert ebook is not None
    variants = ", ".join(dict.fromkeys(f.file_variant for f in ebook.production_files))
    async with consonance_sandbox.client() as api:
        _packages, skipped = await ProductionHandoff(api, store, tmp_path).prepare(
            FLOW, work, now=NOW
        )
    reasons = {s.product.isbn13: s.reason for s in skipped}
    assert reasons[ebook.isbn13] == (
        f"no print-ready interior PDF among its files (it has: {variants})"
    )


def _ebook(work: Work):  # type: ignore[no-untyped-def]
    """The work's ebook whose files are all approved (so the reason lists them plainly)."""
    return next(
        (
            p
            for p in work.products
            if p.typename == "ElectronicBookProduct"
            and p.production_files
            and all(f.approval_status == "APPROVED" for f in p.production_files)
        ),
        None,
    )


async def test_a_file_that_fails_preflight_blocks_its_package_on_the_record(
    consonance_sandbox_factory, store, tmp_path: Path
):
    import dataclasses

    from consonance_sftp.sandbox.consonance.generator import generate_catalogue

    catalogue = generate_catalogue(60, seed=5)
    work = next(w for w in catalogue.works.values() if _approved(w) and w.production_runs)
    product = next(p for p in work.products if p.typename == "PhysicalBookProduct")
    # The "interior PDF" the printer would get is really a JPEG.
    files = tuple(
        dataclasses.replace(f, url="/files/generated/sr-1-40x60.jpg")
        if f.file_variant == "INTERIOR"
        else f
        for f in product.production_files
    )
    catalogue.update_product(product.id, production_files=files)
    sandbox = consonance_sandbox_factory(catalogue)
    async with sandbox.client() as api:
        fresh = await api.get_work(work.id)
        assert fresh is not None
        packages, skipped = await ProductionHandoff(api, store, tmp_path).prepare(
            FLOW, fresh, now=NOW
        )

    assert all(p.product.id != product.id for p in packages)
    reasons = [s.reason for s in skipped if s.product.id == product.id]
    assert reasons and "preflight failed" in reasons[0]
    assert "interior_pdf" in reasons[0] and "JPEG" in reasons[0].upper()
    blocked = store.list_audit(action="package.blocked")
    assert [e.subject for e in blocked] == [f"printer:{product.isbn13}"]
    alerts = store.list_alerts()
    assert [a.kind for a in alerts] == ["preflight_failed"]


async def test_a_profile_that_sends_none_of_the_titles_files_says_which_it_has(
    consonance_sandbox: SandboxHandle, store, tmp_path: Path
):
    flow = ProductionFlow.model_validate(
        {
            "kind": "production",
            "partners": ["printer"],
            "when": {"project_stage": "Production approval"},
            "partner_profiles": {
                "printer": {"assets": ["epub"], "preflight": {"epubcheck": "off"}}
            },
        }
    )
    works = await _works(consonance_sandbox)
    work = next(w for w in works if _approved(w) and w.production_runs)
    async with consonance_sandbox.client() as api:
        packages, skipped = await ProductionHandoff(api, store, tmp_path).prepare(
            flow, work, now=NOW
        )
    assert packages == []
    empty = [s.reason for s in skipped if "package is empty" in s.reason]
    assert empty, [s.reason for s in skipped]
    assert "no file matches the package's kinds (epub); the title's approved files: " in empty[0]
    assert "interior_pdf, cover_pdf" in empty[0]
