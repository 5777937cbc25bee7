"""Incremental archives end to end (issue 17): a sandbox catalogue with real-size production
files, archived by an `incremental` flow to a partner on a real OpenSSH server.

The first run is full. The second, of the unchanged catalogue, carries no asset: each is listed
in the manifest and referenced in fetch.txt (RFC 8493 §2.2.3), and the archive sent is under 1 %
of the full one's bytes. A third run carries only the asset added since. The `full_every`-th run
is full again. The partner's copy of the third run verifies (its referenced files reported, not
missing), and `archive restore` rebuilds the whole tree from it and the archives beside it, each
fetched file re-hashed: every asset byte-identical."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from consonance_sftp.app import App
from consonance_sftp.app.dispatch import run_flow
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.models import AuditAction
from consonance_sftp.ports.store import AssetVersion
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.archive_project import archive_project
from tests.cli import CLI

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.sshd, pytest.mark.slow]

START = datetime(2027, 3, 1, 2, 30, tzinfo=UTC)
ASSETS = 16  # 1 to 4 MiB each, random (incompressible): about 40 MiB


@dataclass
class Runs:
    app: App
    config: Path
    partner: Path
    key: Path
    assets: dict[str, bytes]  # file name: content
    archives: list[Path]  # on the partner, per run
    written: list[dict[str, Any]]  # archive.written details, per run


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--config", str(config), "archive", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ,
    )


async def _run(runner: DeliveryRunner, app: App, when: datetime) -> None:
    outcome = await run_flow(app, "nightly", trigger="test", runner=runner, now=when)
    assert outcome.results and not [r for r in outcome.results.values() if "error" in r]


def _add_asset(app: App, root: Path, work_id: int, product_id: int, n: int, size: int) -> bytes:
    data = os.urandom(size)
    local = root / f"asset-{n:02d}.pdf"
    local.write_bytes(data)
    app.store.add_asset_version(
        AssetVersion(
            work_id=work_id,
            product_id=product_id,
            kind="INTERIOR" if n % 2 else "COVER",
            sha256=hashlib.sha256(data).hexdigest(),
            size=size,
            local_path=str(local),
        )
    )
    return data


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runs(
    openssh: OpenSshServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Runs]:
    project = archive_project(
        tmp_path_factory.mktemp("incremental"),
        openssh,
        titles=60,
        seed=21,
        mode="incremental",
        full_every=3,
    )
    root, sandbox, partner, key, config = (
        project.root,
        project.sandbox,
        project.partner,
        project.key,
        project.config,
    )
    app = project.app()
    works = [sandbox.catalogue.works[k] for k in sorted(sandbox.catalogue.works)]
    assets: dict[str, bytes] = {}
    sizes = [1 << 20, 2 << 20, 3 << 20, 4 << 20]
    for n in range(ASSETS):
        work = works[n]
        data = _add_asset(app, root, work.id, work.products[0].id, n, sizes[n % 4] + n)
        assets[f"asset-{n:02d}.pdf"] = data
    archives: list[Path] = []
    written: list[dict[str, Any]] = []

    def newest() -> tuple[Path, dict[str, Any]]:
        (event, *_) = app.store.list_audit(action=AuditAction.ARCHIVE_WRITTEN, limit=1)
        return partner / event.subject.removeprefix("archive:"), dict(event.details)

    try:
        async with DeliveryRunner(app, executor=True, quiet=True) as runner:
            for day in range(4):
                if day == 2:  # one new production file before the third run
                    work = works[ASSETS]
                    data = _add_asset(app, root, work.id, work.products[0].id, ASSETS, 2 << 20)
                    assets[f"asset-{ASSETS:02d}.pdf"] = data
                await _run(runner, app, START + timedelta(days=day))
                path, details = newest()
                archives.append(path)
                written.append(details)
        yield Runs(app, config, partner, key, assets, archives, written)
    finally:
        app.store.close()
        sandbox.stop()


async def test_an_unchanged_catalogue_sends_under_one_percent_of_the_full_archive(
    runs: Runs,
) -> None:
    full, unchanged = (p.stat().st_size for p in runs.archives[:2])
    ratio = unchanged / full
    print(
        f"full archive {full:,} B, incremental of the unchanged catalogue {unchanged:,} B, "
        f"ratio {ratio:.4%}"
    )
    assert full > 30 * 2**20  # the production files are in the full one
    assert ratio < 0.01
    first, second = runs.written[:2]
    assert first["mode"] == "full" and len(first["assets"]) == ASSETS
    assert first["referenced"] == 0 and first["bases"] == []
    assert second["mode"] == "incremental" and second["assets"] == {}
    assert second["referenced"] == ASSETS and second["bases"] == [first["bag"]]
    assert second["referenced_bytes"] == sum(
        len(v) for k, v in runs.assets.items() if k < "asset-16"
    )


async def test_a_new_asset_is_carried_the_others_referenced(runs: Runs) -> None:
    third = runs.written[2]
    assert third["mode"] == "incremental"
    new = hashlib.sha256(runs.assets[f"asset-{ASSETS:02d}.pdf"]).hexdigest()
    assert list(third["assets"]) == [new]
    assert third["referenced"] == ASSETS and third["bases"] == [runs.written[0]["bag"]]
    size = runs.archives[2].stat().st_size
    assert 2 << 20 < size < (2 << 20) + 200_000


async def test_the_full_every_th_run_is_full_again(runs: Runs) -> None:
    fourth = runs.written[3]
    assert fourth["mode"] == "full" and fourth["referenced"] == 0
    assert len(fourth["assets"]) == ASSETS + 1
    assert runs.archives[3].stat().st_size > runs.archives[0].stat().st_size


async def test_the_partners_incremental_copy_verifies_with_its_references(runs: Runs) -> None:
    done = _cli(runs.config, "verify", str(runs.archives[2]), "--identity", str(runs.key), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["referenced"] == ASSETS and report["sidecar"] == "ok"


async def test_restore_rebuilds_the_whole_tree_from_the_incremental_and_its_base(
    runs: Runs, tmp_path: Path
) -> None:
    out = tmp_path / "restored"
    done = _cli(
        runs.config,
        "restore",
        str(runs.archives[2]),
        "--to",
        str(out),
        "--identity",
        str(runs.key),
        "--json",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["files_fetched"] == ASSETS
    restored = {
        p.name.split("-", 1)[1]: p.read_bytes() for p in (out / "data/assets").rglob("*.pdf")
    }
    assert restored == runs.assets  # every asset, byte-identical
    info = (out / "bag-info.txt").read_text()
    assert f"Consonance-Base-Archives: {runs.written[0]['bag']}\n" in info
    assert "Consonance-Archive-Mode: incremental\n" in info


async def test_restore_without_the_base_names_every_referenced_file(
    runs: Runs, tmp_path: Path
) -> None:
    alone = tmp_path / "alone"
    alone.mkdir()
    copy = alone / runs.archives[1].name
    copy.write_bytes(runs.archives[1].read_bytes())
    done = _cli(
        runs.config,
        "restore",
        str(copy),
        "--to",
        str(tmp_path / "out"),
        "--identity",
        str(runs.key),
        "--json",
    )
    assert done.returncode == 1
    missing = [p["path"] for p in json.loads(done.stdout)["problems"] if p["kind"] == "missing"]
    assert len(missing) == ASSETS and all(p.startswith("data/assets/") for p in missing)
