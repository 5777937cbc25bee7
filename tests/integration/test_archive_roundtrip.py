"""Issue 17's round trip: a 200-title sandbox catalogue with its production files is archived
(zstd, age) to a real OpenSSH partner; the local state is wiped (state dir, database, local
archive copy, the assets themselves); the archive is restored from the partner by
``consonance-sftp archive restore NAME --partner vault --seed-sandbox`` (downloaded over SFTP)
into a fresh sandbox. Then everything is compared with what was kept before
the wipe: the works and products read through the client, every asset byte for byte (by
SHA-256), the keyed audit chain verifying on the restored copy (and failing, naming the event,
once one line of it is changed). The same archive is also read by hand with ``sha256sum``,
``age`` and ``tar`` only."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.adapters.store.sql_store import open_store
from consonance_sftp.app import App
from consonance_sftp.app.archive_history import archived_store, restore_history
from consonance_sftp.app.archive_seed import compare, read_back
from consonance_sftp.app.dispatch import run_flow
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.config import Settings
from consonance_sftp.flows.archive import _history
from consonance_sftp.models import DeliveryOutcome
from consonance_sftp.ports.store import AssetVersion, DeliveryRecord, IntakeRecord
from consonance_sftp.sandbox.consonance.catalogue import Catalogue
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from consonance_sftp.sandbox.consonance.runner import SandboxThread
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.cli import CLI
from tests.fixtures.consonance_sandbox import start_sandbox
from tests.fixtures.sshd import shell_endpoint
from tests.settings import openssh_partner

WORKS = 200
KINDS = ("INTERIOR", "COVER", "EPUB")


def _cli(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    pre = ["--config", str(config)] if config else []
    return subprocess.run(
        [*CLI, *pre, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "250"},
    )


def _run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=120)
    assert done.returncode == 0, f"{' '.join(cmd)}: {done.stdout}{done.stderr}"
    return done


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _production_files(app: App, catalogue: Catalogue, folder: Path) -> dict[str, str]:
    """One to three real files per work in the asset versions store (some with an older,
    superseded version); the archive path of each current one and its SHA-256."""
    kept: dict[str, str] = {}
    for n, work in enumerate(catalogue.works.values()):
        product = work.products[0]
        for kind in KINDS[: 1 + n % 3]:
            for version in range(1 + (n % 5 == 0)):
                data = os.urandom(2_000 + (n * 977 + version * 131) % 30_000)
                local = folder / f"w{work.id}" / f"{kind.lower()}-v{version + 1}.bin"
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(data)
                added = app.store.add_asset_version(
                    AssetVersion(
                        work_id=work.id,
                        product_id=product.id,
                        kind=kind,
                        sha256=hashlib.sha256(data).hexdigest(),
                        size=len(data),
                        local_path=str(local),
                    )
                )
            kept[f"assets/{work.id}/{product.id}/{kind}/v{added.version}-{local.name}"] = (
                hashlib.sha256(data).hexdigest()
            )
    return kept


@pytest.mark.slow
@pytest.mark.sshd
@pytest.mark.asyncio
async def test_archive_wipe_fetch_restore_into_a_fresh_sandbox(
    openssh: OpenSshServer, tmp_path: Path
) -> None:
    # --- a publisher's catalogue, production files and history ------------------------------
    state = tmp_path / "var"
    partner = tmp_path / "vault-folder"
    partner.mkdir()
    key = tmp_path / "offsite" / "publisher.agekey"
    key.parent.mkdir()
    _run("age-keygen", "-o", str(key))
    recipient = _run("age-keygen", "-y", str(key)).stdout.strip()
    audit_key = tmp_path / "offsite" / "audit.key"
    audit_key.write_text(secrets.token_hex(32) + "\n")
    sandbox = start_sandbox(generate_catalogue(seed=17, works=WORKS))
    token = tmp_path / "offsite" / "token"
    token.write_text(sandbox.token)
    raw: dict[str, Any] = {
        "state_dir": str(state),
        "consonance": {"base_url": sandbox.url, "token": {"file": str(token)}},
        "audit": {"key": {"file": str(audit_key)}},
        "partners": {"vault": openssh_partner(openssh, {"send": str(partner)})},
        "flows": {
            "nightly": {
                "kind": "archive",
                "partners": ["vault"],
                "organisation": "Meridian Press",
                "age_recipients": [recipient],
            }
        },
    }
    config = tmp_path / "offsite" / "consonance-sftp.toml"
    config.write_text(tomlkit.dumps(raw))
    app = App(Settings.model_validate(raw), config)
    try:
        assets = _production_files(app, sandbox.catalogue, state / "assets")
        # Two nightly runs: the second archive holds the first one's deliveries (ledger rows
        # and the events that cover them).
        async with DeliveryRunner(app, executor=True, quiet=True) as runner:
            for _ in range(2):
                outcome = await run_flow(app, "nightly", trigger="test", runner=runner)
                assert outcome.results
                assert not [r for r in outcome.results.values() if "error" in r], outcome
                await asyncio.sleep(1.1)  # one archive name per second
        assert app.store.verify_audit().ok
        before = await read_back(sandbox.url, sandbox.token)
    finally:
        app.store.close()
        sandbox.stop()
    assert len(before["works"]) == WORKS and len(assets) >= WORKS

    # --- the local state is lost ------------------------------------------------------------
    assert list((state / "archive" / "nightly").glob("nightly-*.tar.zst.age"))
    shutil.rmtree(state)
    assert not state.exists()

    # --- what the partner holds (listed over SFTP) ----------------------------------------
    async with SftpRemoteFS(shell_endpoint(openssh), state_dir=tmp_path / "sftp-state") as fs:
        names = sorted([e.name async for e in fs.list(str(partner), pattern="nightly-*")])
    archives = [n for n in names if n.endswith(".tar.zst.age")]
    assert len(archives) == 2 and f"{archives[-1]}.sha256" in names

    # --- restored from the partner by the tool, proven through a fresh sandbox --------------
    # `archive restore --partner`, with nothing but the config: no ledger, no audit trail,
    # no local copy. The archive is downloaded through the partner's pinned SFTP connection.
    restored = tmp_path / "restored"
    done = await asyncio.to_thread(
        _cli,
        "archive",
        "restore",
        archives[-1],
        "--partner",
        "vault",
        "--to",
        str(restored),
        "--identity",
        str(key),
        "--seed-sandbox",
        "--json",
        config=config,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    bag_line, seed_line = (json.loads(line) for line in done.stdout.splitlines())
    assert bag_line["ok"] and bag_line["sidecar"] == "ok"
    assert bag_line["source"] == "partner:vault" and bag_line["archive"] == archives[-1]
    # The downloaded copy is gone once restored.
    assert list((state / "archive-readback").iterdir()) == []
    seeded = seed_line["seed_sandbox"]
    assert seeded["ok"] and seeded["differences"] == []
    assert seeded["kinds"]["works"]["matched"] == WORKS
    assert seeded["serve"].endswith(str(restored / "sandbox"))

    # The seeded sandbox, served again and read by the client: the catalogue as it was.
    catalogue = Catalogue.load(restored / "sandbox" / "consonance")
    with SandboxThread(catalogue) as server:
        after = await read_back(server.url, server.token)
    check = compare(before, after)
    assert check.ok, [str(d) for d in check.differences[:10]]
    assert check.kinds["works"].matched == WORKS
    products = sum(len(w["products"]) for w in after["works"])
    assert products == sum(len(w["products"]) for w in before["works"]) > WORKS

    # Every production file, byte for byte.
    payload = restored / "data"
    got = {
        str(p.relative_to(payload)): _sha(p) for p in (payload / "assets").rglob("*") if p.is_file()
    }
    assert got == assets

    # --- the audit trail verifies on the restored copy (keyed: with the key only) -----------
    events = len((payload / "history" / "audit.jsonl").read_text().splitlines())
    done = _cli("audit", "verify", "--archive", str(restored))
    assert done.returncode == 1 and "key_needed" in done.stdout + done.stderr
    done = _cli("audit", "verify", "--archive", str(restored), "--key-file", str(audit_key))
    assert done.returncode == 0, done.stdout + done.stderr
    summary = " ".join(done.stdout.split())
    assert f"ok: {events} events" in summary and "0 ledger rows" not in summary

    # One line changed: the event is named (its line, action and subject), exit 1.
    lines = (payload / "history" / "audit.jsonl").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if '"archive.written"' in line)
    event = json.loads(lines[at])
    event["details"]["size"] += 1
    lines[at] = json.dumps(event, sort_keys=True)
    (payload / "history" / "audit.jsonl").write_text("\n".join(lines) + "\n")
    done = _cli("audit", "verify", "--archive", str(restored), "--key-file", str(audit_key))
    out = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1
    assert f"history/audit.jsonl line {at + 1}: archive.written {event['subject']}" in out
    assert f"seq {event['seq']}: edited" in out

    # --- the same archive by hand: sha256sum, age, tar (the partner's copy, on its disk) --
    archive = partner / archives[-1]
    _run("sha256sum", "-c", f"{archive.name}.sha256", cwd=partner)
    plain = tmp_path / "by-hand.tar.zst"
    _run("age", "-d", "-i", str(key), "-o", str(plain), str(archive))
    by_hand = tmp_path / "by-hand"
    by_hand.mkdir()
    _run("tar", "--zstd", "-xf", str(plain), "-C", str(by_hand))
    (bag,) = by_hand.iterdir()
    checked = _run("sha256sum", "-c", "manifest-sha256.txt", cwd=bag).stdout.splitlines()
    manifest = (bag / "manifest-sha256.txt").read_text().splitlines()
    assert len(checked) == len(manifest) > len(assets)
    assert all(line.endswith(": OK") for line in checked)
    works = json.loads((bag / "data" / "metadata" / "works.json").read_text())
    assert works == before["works"]


def _bag(
    folder: Path, works: list[dict[str, Any]], contacts: list[Any], contracts: list[Any]
) -> Path:
    meta = folder / "data" / "metadata"
    meta.mkdir(parents=True)
    for name, rows in (("works", works), ("contacts", contacts), ("contracts", contracts)):
        (meta / f"{name}.json").write_text(json.dumps(rows))
    return folder


@pytest.mark.asyncio
async def test_what_the_sandbox_cannot_carry_is_named_and_exits_1(tmp_path: Path) -> None:
    """A field the restoring version does not know (an archive from a newer one) is not in
    what the client reads back: named, by record and path, and the command exits 1."""
    source = start_sandbox(generate_catalogue(seed=5, works=3))
    try:
        read = await read_back(source.url, source.token)
    finally:
        source.stop()
    read["works"][1]["products"][0]["shelf_mark"] = "B-12"
    work_id, product_id = read["works"][1]["id"], read["works"][1]["products"][0]["id"]
    bag = _bag(tmp_path / "bag", read["works"], read["contacts"], read["contracts"])
    done = await asyncio.to_thread(_seed_cli, bag)
    assert done.returncode == 1, done.stdout + done.stderr
    out = " ".join(done.stdout.split())
    assert (
        f"DIFFERENT works id {work_id} products[id={product_id}].shelf_mark: "
        'archived "B-12", read back "(absent)"'
    ) in out
    assert "works: 3 archived, 3 read back, 2 identical in every field" in out
    assert "DIFFERENCES FOUND: 1 difference" in out
    # The sandbox is new each time: a second seeding into the same folder is refused.
    again = await asyncio.to_thread(_seed_cli, bag)
    assert again.returncode != 0 and "already holds a sandbox catalogue" in again.stderr


def _seed_cli(bag: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from pathlib import Path; "
        "from consonance_sftp.cli.archive_seed import seed_sandbox_from; "
        "seed_sandbox_from(Path(sys.argv[1]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(bag)], capture_output=True, text=True, timeout=60
    )


def test_compare_names_each_difference_by_record_and_path() -> None:
    archived = {
        "works": [
            {"id": 1, "title": "A", "products": [{"id": 7, "prices": [{"amount": "9.99"}]}]},
            {"id": 2, "title": "B", "products": []},
        ],
        "contacts": [{"id": 5, "name": "Ann"}],
        "contracts": [],
    }
    read = json.loads(json.dumps(archived))
    read["works"][0]["products"][0]["prices"][0]["amount"] = "9.90"
    read["works"][1]["products"].append({"id": 8})
    read["contacts"] = []
    read["contracts"] = [{"id": 9}]
    check = compare(archived, read)
    assert [str(d) for d in check.differences] == [
        'works id 1 products[id=7].prices[0].amount: archived "9.99", read back "9.90"',
        'works id 2 products[id=8]: archived "(absent)", read back {"id": 8}',
        'contacts id 5: archived "present", read back "(absent)"',
        'contracts id 9: archived "(absent)", read back "present"',
    ]
    assert check.kinds["works"].matched == 0 and not check.ok
    assert compare(archived, json.loads(json.dumps(archived))).ok


def test_the_archived_trail_of_either_database_verifies_on_its_copy(
    store_url: str, tmp_path: Path
) -> None:
    """What the archive writes (``_history``) loads into a new SQLite database where the
    store's own verify passes with the same counts; a ledger row changed in the copy is named."""
    source = open_store(store_url)
    other = open_store(store_url)  # a second writer: a second chain
    try:
        first = source.add_asset_version(
            AssetVersion(work_id=1, product_id=2, kind="EPUB", sha256="a" * 64, size=5)
        )
        second = other.add_asset_version(
            AssetVersion(work_id=1, product_id=2, kind="EPUB", sha256="b" * 64, size=6)
        )
        sent = source.record_delivery(
            DeliveryRecord(
                flow="f",
                partner="p",
                remote_path="x.epub",
                sha256="b" * 64,
                size=6,
                asset_version_id=second.id,
            )
        )
        source.update_delivery(sent.id, outcome=DeliveryOutcome.SENT, attempts=1)
        other.record_intake(
            IntakeRecord(partner="p", remote_path="in/é.csv", size=9, remote_mtime=1.25e9 + 0.5)
        )
        source.append_audit("user:ann", "test.note", "work:1", {"x": 1.5, "s": "ü", "n": None})
        versions = source.list_asset_versions(1)
        assert {v.id for v in versions} == {first.id, second.id}
        files = _history(source, versions)
        expected = source.verify_audit()
    finally:
        source.close()
        other.close()
    assert expected.ok and expected.chains == 2 and expected.ledger_rows == 2
    bag = tmp_path / "bag"
    for path, data in files:
        (bag / "data" / path).parent.mkdir(parents=True, exist_ok=True)
        (bag / "data" / path).write_bytes(data)
    counts = restore_history(bag, tmp_path / "copy.db")
    assert counts["audit_events"] == expected.events and counts["asset_versions"] == 2
    copy = open_store(f"sqlite:///{tmp_path / 'copy.db'}", migrate=False)
    try:
        report = copy.verify_audit()
    finally:
        copy.close()
    assert report.ok, report.problems
    assert (report.events, report.chains, report.ledger_rows) == (
        expected.events,
        expected.chains,
        expected.ledger_rows,
    )
    ledger = bag / "data" / "history" / "tables" / "delivery_ledger.jsonl"
    row = json.loads(ledger.read_text())
    row["sha256"] = "c" * 64
    ledger.write_text(json.dumps(row) + "\n")
    with archived_store(bag) as (store, _):
        problems = store.verify_audit().problems
    assert [(p.table, p.row, p.kind) for p in problems] == [("delivery_ledger", sent.id, "edited")]
