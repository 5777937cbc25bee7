"""The archive flow end to end: a run reads the Consonance sandbox over HTTP and the store, writes
one BagIt bag (zstd, age-encrypted) with its sidecar, and delivers both through the engine to a
partner on a real OpenSSH server. The partner's copy is then verified and restored with the
CLI, and damage to it (a flipped byte, a truncation) is named with exit code 1."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pyrage
import pytest
import pytest_asyncio

from consonance_sftp.app.dispatch import run_flow
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.archive_project import add_interior, archive_project
from tests.cli import CLI
from tests.fixtures.consonance_sandbox import SandboxHandle

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.sshd]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "archive", *args], capture_output=True, text=True, timeout=120, env=os.environ
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def archived(
    openssh: OpenSshServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Path, Path, SandboxHandle, bytes, Path]]:
    project = archive_project(tmp_path_factory.mktemp("archive"), openssh, titles=60, seed=9)
    sandbox, partner, key, config = project.sandbox, project.partner, project.key, project.config
    app = project.app()
    asset = add_interior(app, project, 300_000)
    async with DeliveryRunner(app, executor=True, quiet=True) as runner:
        outcome = await run_flow(app, "nightly", trigger="test", runner=runner)
    assert outcome.results and not [r for r in outcome.results.values() if "error" in r]
    app.store.close()
    try:
        yield partner, key, sandbox, asset, config
    finally:
        sandbox.stop()


def _copy(partner: Path) -> Path:
    (archive,) = sorted(partner.glob("nightly-*.tar.zst.age"))
    assert (partner / f"{archive.name}.sha256").exists()
    return archive


async def test_the_partners_copy_verifies_and_restores_to_the_catalogue(
    archived: tuple[Path, Path, SandboxHandle, bytes, Path], tmp_path: Path
) -> None:
    partner, key, sandbox, asset, _ = archived
    archive = _copy(partner)
    refused = _cli("verify", str(archive))
    assert refused.returncode != 0 and "--identity" in refused.stderr
    done = _cli("verify", str(archive), "--identity", str(key), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["sidecar"] == "ok" and report["files_verified"] >= 9

    restored = tmp_path / "restored"
    done = _cli("restore", str(archive), "--to", str(restored), "--identity", str(key))
    assert done.returncode == 0, done.stdout + done.stderr
    works = json.loads((restored / "data/metadata/works.json").read_text())
    async with sandbox.client() as api:
        read = [w async for w in api.iter_works()]
    assert [(w["id"], w["title"]) for w in works] == [(w.id, w.title) for w in read]
    assert sum(len(w["products"]) for w in works) == 60
    isbns = {p["isbn13"] for w in works for p in w["products"] if p["isbn13"]}
    onix = (restored / "data/metadata/onix.xml").read_text()
    assert all(isbn in onix for isbn in isbns)
    (kept,) = (restored / "data/assets").rglob("*.pdf")
    assert kept.read_bytes() == asset
    info = (restored / "bag-info.txt").read_text()
    assert "Source-Organization: Meridian Press" in info and "Consonance-Products: 60" in info
    for name in ("deliveries", "intakes", "asset_versions", "sales_reports", "audit"):
        assert (restored / f"data/history/{name}.jsonl").exists()
    versions = (restored / "data/history/asset_versions.jsonl").read_text().splitlines()
    assert [json.loads(v)["kind"] for v in versions] == ["INTERIOR"]


async def test_damage_on_the_partner_is_named_and_exits_non_zero(
    archived: tuple[Path, Path, SandboxHandle, bytes, Path], tmp_path: Path
) -> None:
    partner, key, _, _, _ = archived
    archive = _copy(partner)
    plain = tmp_path / "plain.tar.zst"
    with archive.open("rb") as source, plain.open("wb") as out:
        pyrage.decrypt_io(source, out, [pyrage.x25519.Identity.from_str(key.read_text().strip())])
    data = bytearray(plain.read_bytes())
    flipped = tmp_path / "flipped.tar.zst"
    data[len(data) // 3] ^= 0xFF
    flipped.write_bytes(bytes(data))
    done = _cli("verify", str(flipped))
    assert done.returncode == 1
    assert "PROBLEMS FOUND" in done.stdout
    cut = tmp_path / "cut.tar.zst"
    cut.write_bytes(plain.read_bytes()[: len(data) // 2])
    done = _cli("verify", str(cut), "--json")
    assert done.returncode == 1
    problems = json.loads(done.stdout)["problems"]
    assert any(p["kind"] == "truncated" for p in problems), problems
    # The partner's copy itself, one byte changed: the sidecar says so before anything else.
    damaged = tmp_path / archive.name
    damaged.write_bytes(archive.read_bytes()[:-1] + b"\x00")
    (tmp_path / f"{archive.name}.sha256").write_bytes(
        (partner / f"{archive.name}.sha256").read_bytes()
    )
    done = await asyncio.to_thread(_cli, "verify", str(damaged), "--identity", str(key))
    assert done.returncode == 1 and "is not its sidecar's" in done.stdout + done.stderr


async def test_archive_list_shows_each_archive_and_its_last_verification(
    archived: tuple[Path, Path, SandboxHandle, bytes, Path],
) -> None:
    partner, key, _, _, config = archived
    (listed,) = json.loads(_cli_with(config, "list", "--json").stdout)
    assert listed["flow"] == "nightly" and listed["verified_at"] is None
    assert listed["path"].endswith(_copy(partner).name) and listed["size"] > 0
    done = _cli_with(config, "verify", str(_copy(partner)), "--identity", str(key), "--by", "eve")
    assert done.returncode == 0, done.stdout + done.stderr
    (listed,) = json.loads(_cli_with(config, "list", "--json").stdout)
    assert listed["verified_by"] == "user:eve" and listed["verified_ok"] is True
    table = _cli_with(config, "list")
    assert "by user:eve: ok" in " ".join(table.stdout.split())


def _cli_with(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run(
        [*CLI, "--config", str(config), "archive", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
