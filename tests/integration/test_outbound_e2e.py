"""Issue 6 end to end: production, format and marketing packages from the Consonance sandbox
(real HTTP) through ``App.engine()`` (DBOS on SQLite) to a real OpenSSH sshd, with every
assertion made on the server's side of the connection.

One engine and one sandbox serve the whole module (DBOS is one per process). Partners are
different SFTP accounts: the ``chroot`` account (``internal-sftp`` jailed in its own folder,
as managed SFTP partners are) and the ``shell`` account, each in its own folder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from consonance_sftp.app import App
from consonance_sftp.app.dispatch import delivery_request, withdrawal_request
from consonance_sftp.config import FormatsFlow, MarketingFlow, ProductionFlow, Settings
from consonance_sftp.engine import Engine
from consonance_sftp.flows.base import Outbound, Withdrawal
from consonance_sftp.flows.format_packages import FormatPackages
from consonance_sftp.flows.marketing import MarketingRelease, withdrawn
from consonance_sftp.flows.production import ProductionHandoff
from consonance_sftp.formats.packaging import parse_manifest, sha256_file
from consonance_sftp.models import DeliveryOutcome, ProductionFile, SupportingResource, Work
from consonance_sftp.sandbox.consonance.catalogue import Catalogue
from consonance_sftp.sandbox.consonance.files import write_wav
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from consonance_sftp.sandbox.openssh import OpenSshServer, free_port
from tests.fixtures.consonance_sandbox import ManualClock, SandboxHandle, start_sandbox

pytestmark = pytest.mark.asyncio(loop_scope="module")

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PUBLICATION = date(2027, 3, 1)
BIG_TRACKS = 4
BIG_TRACK_BYTES = 2**29  # four tracks: just over 2 GiB of audio masters

SHELL_PARTNERS = ("printer", "audio-vendor", "retailer", "sales-team", "agency", "big-audio")
CHROOT_PARTNERS = ("epub-vendor",)

FLOWS: dict[str, Any] = {
    "print": {
        "kind": "production",
        "partners": ["printer"],
        "when": {"project_stage": "Production approval"},
        # The sandbox's PDFs are plain PDFs, not PDF/X.
        "profile": {"preset": "print_on_demand", "preflight": {"pdf_x": False}},
    },
    "formats": {
        "kind": "formats",
        "partners": ["epub-vendor", "audio-vendor"],
        "partner_profiles": {
            "epub-vendor": {
                "assets": ["epub", "accessibility"],
                "preflight": {"epubcheck": "off"},  # a JVM per file; covered by preflight tests
            },
            "audio-vendor": {"assets": ["audio"], "preflight": {"audio_min_sample_rate": 44100}},
        },
    },
    "big-formats": {
        "kind": "formats",
        "partners": ["big-audio"],
        "file_variants": ["AUDIO"],
        "profile": {"assets": ["audio"], "preflight": {"audio_min_bit_depth": 16}},
    },
    "marketing": {
        "kind": "marketing",
        "partners": ["retailer", "sales-team", "agency"],
        "release_days_before": 14,
        "partner_profiles": {
            "retailer": "titleleaf",
            "sales-team": {
                "assets": ["cover_image", "jacket_copy", "author_bio", "promo"],
                "withdraw": True,
            },
            "agency": {"assets": ["cover_image", "jacket_copy", "author_bio", "promo"]},
        },
    },
}


@dataclass
class World:
    app: App
    engine: Engine
    sandbox: SandboxHandle
    catalogue: Catalogue
    folders: dict[str, Path]  # partner -> its folder as seen on the server's disk
    format_work: int
    big_work: int
    big_sources: list[Path]

    @property
    def settings(self) -> Settings:
        return self.app.settings


def _approved(work: Work, variants: set[str]) -> bool:
    found = {
        f.file_variant
        for p in work.products
        for f in p.production_files
        if f.approval_status == "APPROVED"
    }
    return variants <= found


def _printable(work: Work) -> bool:
    return bool(work.production_runs) and any(
        p.typename == "PhysicalBookProduct"
        and {f.file_variant for f in p.production_files if f.approval_status == "APPROVED"}
        >= {"INTERIOR", "COVER"}
        for p in work.products
    )


def _big_audio(catalogue: Catalogue, work: Work, folder: Path, base_url: str) -> list[Path]:
    """Replace the work's audio masters with four streamed, sparse WAVs (> 2 GiB in all),
    served from ``base_url`` as storage links on another origin, as Consonance's are."""
    product = next(p for p in work.products if p.typename == "ElectronicAudioProduct")
    paths: list[Path] = []
    files: list[ProductionFile] = []
    for track in range(1, BIG_TRACKS + 1):
        path = folder / f"{product.id}_master_{track:02d}.wav"
        write_wav(path, BIG_TRACK_BYTES, comment=f"big master {track}")
        url = f"{base_url}/{path.name}"
        paths.append(path)
        files.append(
            ProductionFile(
                id=5_000_000 + track,
                file_variant="AUDIO",
                filename=path.name,
                approval_status="APPROVED",
                file_format="WAV",
                file_size=path.stat().st_size,
                url=url,
                product_ids=(product.id,),
                created_at=NOW,
            )
        )
    catalogue.update_product(product.id, production_files=tuple(files))
    return paths


def _partner(openssh: OpenSshServer, account: str, folder: str) -> dict[str, Any]:
    user = openssh.chroot_user if account == "chroot" else openssh.shell_user
    return {
        "host": openssh.host,
        "port": openssh.port,
        "user": user,
        "host_keys": [openssh.known_hosts_line],
        "auth": {"key": str(openssh.client_key_path)},
        "folders": {"send": folder},
        "max_connections": 4,
        # Retail and print partners take replaced files (a new cover, a re-approved interior).
        "transfer": {"overwrite": "replace", "allow_shell": account == "shell"},
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    openssh: OpenSshServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    if openssh.chroot_user is None or openssh.chroot_upload_dir is None:
        pytest.skip("the chroot partner account needs root to create")
    root = tmp_path_factory.mktemp("outbound-e2e")
    catalogue = generate_catalogue(120, seed=5)
    formats = [w for w in catalogue.works.values() if _approved(w, {"EPUB", "AUDIO"})]
    format_work, big_work = formats[0], formats[1]
    (root / "masters").mkdir()
    # A storage server in its own process (the sandbox's in-process server shares the GIL
    # with the client, which halves a 2 GiB download's speed).
    port = free_port()
    storage = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=root / "masters",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    big_sources = _big_audio(catalogue, big_work, root / "masters", f"http://127.0.0.1:{port}")
    _wait_for_port(port)
    sandbox = start_sandbox(catalogue)

    folders: dict[str, Path] = {}
    partners: dict[str, Any] = {}
    for name in SHELL_PARTNERS:
        folders[name] = root / "sftp" / name
        folders[name].mkdir(parents=True)
        partners[name] = _partner(openssh, "shell", str(folders[name]))
    # AES-GCM runs on the CPU's AES instructions: the cheapest cipher for 2 GiB on loopback.
    partners["big-audio"]["transfer"]["ciphers"] = ["aes128-gcm@openssh.com"]
    chroot_user = pwd.getpwnam(openssh.chroot_user)
    for name in CHROOT_PARTNERS:
        local = openssh.chroot_upload_dir / f"{name}-{root.name}"
        local.mkdir()
        os.chown(local, chroot_user.pw_uid, chroot_user.pw_gid)
        folders[name] = local
        partners[name] = _partner(openssh, "chroot", f"/upload/{local.name}")
    (root / "token").write_text(sandbox.token)
    settings = Settings.model_validate(
        {
            "state_dir": str(root / "var"),
            "consonance": {"base_url": sandbox.url, "token": {"file": str(root / "token")}},
            "partners": partners,
            "flows": FLOWS,
        }
    )
    app = App(settings)
    engine = app.engine()
    await asyncio.to_thread(engine.launch)
    try:
        yield World(
            app=app,
            engine=engine,
            sandbox=sandbox,
            catalogue=catalogue,
            folders=folders,
            format_work=format_work.id,
            big_work=big_work.id,
            big_sources=big_sources,
        )
    finally:
        await engine.aclose()
        app.store.close()
        sandbox.stop()
        storage.terminate()
        storage.wait(10)
        for name in CHROOT_PARTNERS:
            shutil.rmtree(folders[name], ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)  # GBs of audio: do not keep them around


def _wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


async def _deliver(world: World, packages: Sequence[Outbound], flow_name: str) -> list[Any]:
    flow = world.settings.flows[flow_name]
    ids = []
    for pkg in packages:
        partner = world.app.partner_config(pkg.partner)
        request = delivery_request(
            pkg,
            flow=flow_name,
            folder=partner.folders[flow.folder],
            trigger="test: e2e",
            generation=getattr(pkg, "generation", 0),
        )
        ids.append(
            await world.engine.enqueue_delivery(request, max_connections=partner.max_connections)
        )
    return [await world.engine.result(wid, timeout_s=300) for wid in ids]


async def _withdraw(world: World, withdrawals: Sequence[Withdrawal], flow_name: str) -> list[Any]:
    ids = []
    for w in withdrawals:
        request = withdrawal_request(w, flow=flow_name, trigger="test: e2e")
        cap = world.app.partner_config(w.partner).max_connections
        ids.append(await world.engine.enqueue_delivery(request, max_connections=cap))
    return [await world.engine.result(wid, timeout_s=300) for wid in ids]


def _on_server(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}


async def _work(world: World, work_id: int) -> Work:
    async with world.app.consonance() as api:
        work = await api.get_work(work_id)
    assert work is not None
    return work


# --- production (flow 1) ---------------------------------------------------------------------


async def test_production_handoff_and_a_re_approval_sends_a_new_version(world: World):
    flow = world.settings.flows["print"]
    assert isinstance(flow, ProductionFlow)
    work = next(w for w in world.catalogue.works.values() if _printable(w))
    store = world.app.store
    staging = world.app.state_dir / "packages"
    async with world.app.consonance() as api:
        first, _ = await ProductionHandoff(api, store, staging).prepare(
            flow, await _work(world, work.id), now=NOW
        )
    assert first
    results = await _deliver(world, first, "print")
    assert all(r["sent"] for r in results)
    printer = world.folders["printer"]
    pkg = first[0]
    isbn = pkg.product.isbn13
    interior = printer / f"{isbn}_text.pdf"
    before = sha256_file(interior)
    manifest = parse_manifest((printer / f"{isbn}_manifest.json").read_bytes())
    for name, (size, sha) in manifest.items():
        assert sha256_file(printer / name) == (size, sha)  # whole, as planned, on the server

    # The production editor replaces the approved interior in Consonance.
    product = world.catalogue.get_product(pkg.product.id)
    files = tuple(
        dataclasses.replace(
            f,
            id=f.id + 1_000_000,
            url=f"/files/generated/pf-{f.id + 1_000_000}-p{product.page_count}.pdf",
        )
        if f.file_variant == "INTERIOR"
        else f
        for f in product.production_files
    )
    world.catalogue.update_product(product.id, production_files=files)
    async with world.app.consonance() as api:
        second, _ = await ProductionHandoff(api, store, staging).prepare(
            flow, await _work(world, work.id), now=NOW + timedelta(hours=1)
        )
    again = next(p for p in second if p.product.id == product.id)
    results = await _deliver(world, [again], "print")

    after = sha256_file(interior)
    assert after != before  # the new interior replaced the old on the printer's server
    versions = store.list_asset_versions(work.id, product_id=product.id, kind="interior_pdf")
    assert [v.version for v in versions] == [1, 2]
    assert versions[0].superseded_by == versions[1].id  # the previous version is referenced
    assert versions[1].sha256 == after[1]
    rows = store.list_deliveries(partner="printer", isbn=isbn)
    interior_rows = [r for r in rows if r.remote_path.endswith("_text.pdf")]
    assert sorted(r.sha256 for r in interior_rows) == sorted([before[1], after[1]])
    assert all(r.outcome is DeliveryOutcome.SENT for r in interior_rows)
    # Only the changed file went again; the unchanged cover was already recorded.
    assert results[0]["already_recorded"]


# --- format packages (flow 6) ----------------------------------------------------------------


async def test_each_vendor_receives_only_its_own_package_over_its_own_account(world: World):
    flow = world.settings.flows["formats"]
    assert isinstance(flow, FormatsFlow)
    async with world.app.consonance() as api:
        packages, skipped = await FormatPackages(
            api, world.app.store, world.app.state_dir / "packages"
        ).prepare(flow, await _work(world, world.format_work), now=NOW)
    # A print product of the work is skipped, saying why; nothing else is.
    assert all(s.reason.startswith("no approved file of the package's kinds") for s in skipped)
    assert sorted(p.partner for p in packages) == ["audio-vendor", "epub-vendor"]
    await _deliver(world, packages, "formats")

    epub_side = _on_server(world.folders["epub-vendor"])  # inside the chroot account's jail
    audio_side = _on_server(world.folders["audio-vendor"])
    assert epub_side and audio_side
    assert {Path(n).suffix for n in epub_side} == {".epub", ".html", ".json", ".done"}
    assert {Path(n).suffix for n in audio_side} == {".wav", ".json", ".done"}
    # No byte of one vendor's package is on the other's server, under any name.
    epub_hashes = {sha256_file(p)[1] for p in epub_side.values()}
    audio_hashes = {sha256_file(p)[1] for p in audio_side.values()}
    assert not epub_hashes & audio_hashes
    # The chroot vendor's whole jail holds its own files only.
    jail = openssh_jail(world)
    assert not [p for p in jail.rglob("*.wav")]
    for pkg in packages:
        folder = world.folders[pkg.partner]
        for f in pkg.plan.files:
            assert sha256_file(folder / f.remote_path) == (f.size, f.sha256)
    rows = world.app.store.list_deliveries(flow="formats")
    assert {r.partner for r in rows if r.remote_path.endswith(".wav")} == {"audio-vendor"}
    assert {r.partner for r in rows if r.remote_path.endswith(".epub")} == {"epub-vendor"}
    # Each row says which approved version it sent and when its delivery started.
    versions = {v.id for pkg in packages for v in pkg.versions}
    media = [r for r in rows if r.remote_path.endswith((".wav", ".epub"))]
    assert media and {r.asset_version_id for r in media} <= versions
    assert all(r.asset_version_id is not None for r in media)
    for r in rows:
        assert r.started_at is not None and r.finished_at is not None
        assert r.started_at <= r.finished_at
    chroot = world.app.partner_config("epub-vendor")
    shell = world.app.partner_config("audio-vendor")
    assert chroot.user != shell.user
    # Over the EPUB vendor's own login, the audio vendor's files do not exist at all.
    audio_file = next(iter(audio_side.values()))
    fs = world.app.remote_fs("epub-vendor")
    try:
        assert await fs.stat(str(audio_file)) is None
        assert await fs.stat(chroot.folders["send"]) is not None  # its own folder is there
    finally:
        await fs.close()


def openssh_jail(world: World) -> Path:
    return world.folders["epub-vendor"].parent.parent  # <chroot>/upload/<folder>


@pytest.mark.slow
async def test_a_two_gib_audio_package_generated_as_a_stream_arrives_whole(world: World):
    flow = world.settings.flows["big-formats"]
    assert isinstance(flow, FormatsFlow)
    async with world.app.consonance() as api:
        packages, skipped = await FormatPackages(
            api, world.app.store, world.app.state_dir / "big"
        ).prepare(flow, await _work(world, world.big_work), now=NOW)
    assert all(s.reason.startswith("no approved file of the package's kinds") for s in skipped)
    assert len(packages) == 1
    pkg = packages[0]
    assert pkg.plan.total_bytes > 2 * 1024**3
    results = await _deliver(world, packages, "big-formats")
    assert len(results[0]["sent"]) == BIG_TRACKS + 2  # the masters, the manifest, the marker

    folder = world.folders["big-audio"]
    isbn = pkg.product.isbn13
    on_server = _on_server(folder)
    wavs = sorted(n for n in on_server if n.endswith(".wav"))
    assert wavs == [f"{isbn}/{isbn}_{t:03d}.wav" for t in range(1, BIG_TRACKS + 1)]
    manifest = parse_manifest((folder / isbn / f"{isbn}_manifest.json").read_bytes())
    versions = {v.sha256: v for v in world.app.store.list_asset_versions(world.big_work, kind=None)}
    for source, name in zip(world.big_sources, wavs, strict=True):
        landed = on_server[name]
        assert landed.stat().st_size == source.stat().st_size
        size, sha = manifest[name]
        assert size == source.stat().st_size
        assert versions[sha].size == size  # the version recorded when it was fetched
        with landed.open("rb") as got, source.open("rb") as want:
            assert got.read(4096) == want.read(4096)  # the WAV header, the track's own comment
    rows = world.app.store.list_deliveries(partner="big-audio")
    assert sum(r.size for r in rows if r.outcome is DeliveryOutcome.SENT) > 2 * 1024**3
    # Read one master back on the server's disk: the bytes hash to what the manifest says.
    digest = hashlib.sha256()
    with on_server[wavs[0]].open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == manifest[wavs[0]][1]


# --- marketing release (flow 5) --------------------------------------------------------------


async def test_marketing_waits_for_the_embargo_then_sends_supersedes_and_withdraws(world: World):
    flow = world.settings.flows["marketing"]
    assert isinstance(flow, MarketingFlow)
    work = next(
        w
        for w in world.catalogue.works.values()
        if w.contributions and w.id not in (world.big_work, world.format_work)
    )
    for product in work.products:
        world.catalogue.update_product(
            product.id, publication_date=PUBLICATION, publishing_status="02"
        )
    lifts = PUBLICATION - timedelta(days=14)
    clock = ManualClock(
        datetime(lifts.year, lifts.month, lifts.day, tzinfo=UTC) - timedelta(hours=1)
    )
    store = world.app.store
    partners = flow.partners

    async with world.app.consonance() as api:
        release = MarketingRelease(api, store, world.app.state_dir / "marketing", clock)
        held_packages, held = await release.prepare(flow, await _work(world, work.id))
        assert held_packages == [] and "embargoed until" in held[0].reason
        await _deliver(world, held_packages, "marketing")
        assert all(_on_server(world.folders[p]) == {} for p in partners)  # nothing before

        clock.current += timedelta(hours=1)  # the embargo lifts
        released, _ = await release.prepare(flow, await _work(world, work.id))
        await _deliver(world, released, "marketing")
        isbn = released[0].isbn13
        sent = {p: _on_server(world.folders[p]) for p in partners}
        assert sorted(sent["retailer"]) == [f"ingest/{isbn}_fc.jpg"]
        for p in ("sales-team", "agency"):
            assert f"{isbn}/{isbn}_jacket_copy.txt" in sent[p]
            assert f"{isbn}/{isbn}_promo_01.pdf" in sent[p]
            assert f"{isbn}/{isbn}_author_bio_01.txt" in sent[p]
        # The same approved set to every partner that takes it, byte for byte.
        same = {
            n: sha256_file(path) for n, path in sent["agency"].items() if not n.endswith(".done")
        }
        assert same == {n: sha256_file(path) for n, path in sent["sales-team"].items() if n in same}

        # The cover is replaced in Consonance: the new one supersedes the old at every partner.
        old_cover = sha256_file(world.folders["retailer"] / f"ingest/{isbn}_fc.jpg")
        current = world.catalogue.get_work(work.id)
        new_id = 7_000_000 + work.id
        world.catalogue.update_work(
            work.id,
            supporting_resources=(
                *current.supporting_resources,
                SupportingResource(
                    id=new_id,
                    variant="FRONT_COVER",
                    filename="replacement.jpg",
                    url=f"/files/generated/sr-{new_id}-90x135.jpg",
                    status="APPROVED",
                    content_type="image/jpeg",
                    created_at=datetime.now(UTC) + timedelta(minutes=1),
                ),
            ),
        )
        replaced, _ = await release.prepare(flow, await _work(world, work.id))
        await _deliver(world, replaced, "marketing")
        new_cover = sha256_file(world.folders["retailer"] / f"ingest/{isbn}_fc.jpg")
        assert new_cover != old_cover
        masters = store.list_asset_versions(work.id, kind="cover_image")
        assert masters[-2].superseded_by == masters[-1].id
        assert sha256_file(world.folders["agency"] / isbn / f"{isbn}_frontcover.jpg")[1] == (
            masters[-1].sha256
        )

        # The title is withdrawn: removed where the profile says so, kept elsewhere.
        for product in work.products:
            world.catalogue.update_product(product.id, publishing_status="11")
        gone = await _work(world, work.id)
        assert withdrawn(flow, gone)
        planned, kept = await release.withdrawals(
            flow,
            "marketing",
            gone,
            folder=lambda p: world.app.partner_config(p).folders["send"],
        )
        assert _on_server(world.folders["sales-team"])  # planning removes nothing
        # The engine removes them, like any other remote write.
        outcome = await _withdraw(world, planned, "marketing")
        by_partner = {w.partner: r for w, r in zip(planned, outcome, strict=True)}
        assert _on_server(world.folders["sales-team"]) == {}
        assert by_partner["sales-team"]["removed"]
        assert "agency" in kept and _on_server(world.folders["agency"])
        actions = {(e.action, e.subject) for e in store.list_audit(action="package.withdrawn")}
        assert ("package.withdrawn", f"sales-team:{isbn}") in actions
        rows = store.list_deliveries(partner="sales-team", isbn=isbn)
        assert rows and {r.outcome for r in rows} == {DeliveryOutcome.WITHDRAWN}

        # Back on sale: released again, the next generation goes out where it was withdrawn.
        for product in work.products:
            world.catalogue.update_product(product.id, publishing_status="04")
        again, _ = await release.prepare(flow, await _work(world, work.id))
        assert {p.partner: p.generation for p in again}["sales-team"] == 1
        await _deliver(world, again, "marketing")
    assert f"{isbn}/{isbn}_jacket_copy.txt" in _on_server(world.folders["sales-team"])
