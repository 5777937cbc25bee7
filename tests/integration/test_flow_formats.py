"""Format packages (flow 6) prepared against the sandbox over HTTP and a real SQLite store:
each vendor's plan holds only the kinds its own profile names."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consonance_sftp.adapters.store import open_store
from consonance_sftp.config import FormatsFlow
from consonance_sftp.flows.format_packages import FormatPackages
from consonance_sftp.flows.triggers import triggered
from consonance_sftp.formats.packaging import sha256_file
from consonance_sftp.models import AssetKind, ChangeEvent, ChangeKind, Work
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from tests.fixtures.consonance_sandbox import SandboxHandle

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
FLOW = FormatsFlow.model_validate(
    {
        "kind": "formats",
        "partners": ["epub-vendor", "audio-vendor", "a11y-vendor"],
        "when": {"project_stage": "Production approval"},
        "partner_profiles": {
            # EPUBCheck (a JVM start per file) is covered by the preflight tests.
            "epub-vendor": {
                "assets": ["epub"],
                "manifest": "none",
                "done_marker": None,
                "preflight": {"epubcheck": "off"},
            },
            "audio-vendor": {
                "assets": ["audio"],
                "preflight": {"audio_min_sample_rate": 44100, "audio_min_bit_depth": 16},
            },
            "a11y-vendor": {
                "assets": ["epub", "accessibility"],
                "packaging": "zip",
                "preflight": {"epubcheck": "off"},
            },
        },
    }
)


def _has_formats(work: Work) -> bool:
    variants = {
        f.file_variant
        for p in work.products
        for f in p.production_files
        if f.approval_status == "APPROVED"
    }
    return {"EPUB", "AUDIO", "ACCESSIBILITY"} <= variants


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield s
    s.close()


async def _work(sandbox: SandboxHandle) -> Work:
    async with sandbox.client() as api:
        async for work in api.iter_works():
            if _has_formats(work):
                return work
    raise AssertionError("the sandbox catalogue has no title with approved EPUB and audio")


def test_the_configured_stage_triggers_the_flow():
    assert triggered(
        FLOW, ChangeEvent(kind=ChangeKind.WORK_ENTERED_STAGE, work_id=1, new="Production approval")
    )
    assert not triggered(FLOW, ChangeEvent(kind=ChangeKind.WORK_ENTERED_STAGE, work_id=1, new="X"))


async def test_each_vendor_gets_only_the_kinds_its_profile_names(
    consonance_sandbox: SandboxHandle, store, tmp_path: Path
):
    work = await _work(consonance_sandbox)
    async with consonance_sandbox.client() as api:
        flows = FormatPackages(api, store, tmp_path / "staging")
        packages, skipped = await flows.prepare(FLOW, work, now=NOW)
        again, _ = await flows.prepare(FLOW, work, now=NOW)

    # Only the print products are skipped, each saying which files it has instead.
    assert skipped
    for s in skipped:
        assert s.product.typename == "PhysicalBookProduct"
        assert s.reason.startswith(
            "no approved file of the package's kinds (ACCESSIBILITY, AUDIO, EPUB); it has: "
        )
        assert "INTERIOR" in s.reason
    by_partner: dict[str, set[AssetKind | None]] = {}
    for pkg in packages:
        by_partner.setdefault(pkg.partner, set()).update(f.kind for f in pkg.plan.assets)
        for f in pkg.plan.files:  # every planned file exists locally with its checksum
            assert f.source is not None and sha256_file(f.source) == (f.size, f.sha256)
    assert by_partner == {
        "epub-vendor": {AssetKind.EPUB},
        "audio-vendor": {AssetKind.AUDIO},
        "a11y-vendor": {AssetKind.EPUB, AssetKind.ACCESSIBILITY},
    }
    audio = next(p for p in packages if p.partner == "audio-vendor")
    names = sorted(f.remote_path for f in audio.plan.assets)
    isbn = audio.product.isbn13
    assert names == [f"{isbn}/{isbn}_{t:03d}.wav" for t in (1, 2, 3)]
    assert any(f.role == "manifest" for f in audio.plan.files)
    zipped = next(p for p in packages if p.partner == "a11y-vendor")
    assert [f.role for f in zipped.plan.files] == ["zip", "done_marker"]
    # One version per track and file; the same bytes again are the same versions.
    kinds = sorted(v.kind for v in store.list_asset_versions(work.id))
    assert kinds == ["accessibility:01", "audio:001", "audio:002", "audio:003", "epub"]
    assert {v.id for p in again for v in p.versions} == {v.id for p in packages for v in p.versions}


async def test_file_variants_limit_what_is_fetched_and_a_bad_epub_blocks_only_its_package(
    consonance_sandbox_factory, store, tmp_path: Path
):
    catalogue = generate_catalogue(80, seed=5)
    work = next(w for w in catalogue.works.values() if _has_formats(w))
    ebook = next(p for p in work.products if p.typename == "ElectronicBookProduct")
    # The "EPUB" the vendor would get is really a PDF.
    files = tuple(
        dataclasses.replace(f, url="/files/generated/pf-1-p3.pdf")
        if f.file_variant == "EPUB"
        else f
        for f in ebook.production_files
    )
    catalogue.update_product(ebook.id, production_files=files)
    sandbox = consonance_sandbox_factory(catalogue)
    flow = FLOW.model_copy(update={"file_variants": ["EPUB", "AUDIO"]})
    async with sandbox.client() as api:
        fresh = await api.get_work(work.id)
        assert fresh is not None
        packages, skipped = await FormatPackages(api, store, tmp_path).prepare(flow, fresh, now=NOW)

    assert [p.partner for p in packages] == ["audio-vendor"]
    failed = [s for s in skipped if "preflight failed" in s.reason]
    assert len(failed) == 2  # the EPUB vendor and the EPUB+accessibility vendor
    assert all("epub" in s.reason for s in failed)
    blocked = sorted(e.subject for e in store.list_audit(action="package.blocked"))
    assert blocked == [f"a11y-vendor:{ebook.isbn13}", f"epub-vendor:{ebook.isbn13}"]
    # ACCESSIBILITY is not among file_variants: never fetched, never versioned.
    assert not [v for v in store.list_asset_versions(work.id) if v.kind.startswith("access")]
