"""Archives read back from the partner that holds them, and restore drills (issue 17).

An archive flow writes an age-encrypted bag and delivers it to a partner on a real OpenSSH
server. ``archive verify|restore --partner`` download that copy through the partner's pinned
SFTP connection and read it; damage made on the partner's server (a changed byte inside a
file of the bag, a file left out of the bag, a truncated archive, one byte of the encrypted
file) is named, exit 1. A drill reads a sample back, records its duration, bytes and outcome
on the audit trail; a failed drill and an overdue one each raise an alert."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyrage
import pytest
import pytest_asyncio
import zstandard

from consonance_sftp.app import App
from consonance_sftp.app.archive_drill import (
    ALERT_FAILED,
    ALERT_OVERDUE,
    check_all,
    check_flow,
    drill_loop,
    drills,
    overdue_alert,
    run_drill,
)
from consonance_sftp.app.archive_handler import list_archives, readback_dir
from consonance_sftp.app.dispatch import run_flow
from consonance_sftp.app.runner import DeliveryRunner, flow_lock
from consonance_sftp.app.serving import ServeLoop
from consonance_sftp.config import Settings
from consonance_sftp.config.flows import ArchiveFlow
from consonance_sftp.formats.archive import sidecar_line
from consonance_sftp.models import AuditAction
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.archive_project import add_interior, archive_project
from tests.cli import CLI

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.sshd, pytest.mark.slow]


@dataclass(frozen=True)
class Archived:
    """One archive written and delivered: the partner's folder, the key, the config."""

    root: Path
    partner: Path
    key: Path
    recipient: str
    config: Path
    raw: dict[str, Any]
    asset: bytes

    @property
    def archive(self) -> Path:
        (found,) = sorted(self.partner.glob("nightly-*.tar.zst.age"))
        return found

    def app(self, **drill: Any) -> App:
        raw = json.loads(json.dumps(self.raw))
        raw["flows"]["nightly"]["drill"].update(drill)
        return App(Settings.model_validate(raw), self.config)


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--config", str(config), "archive", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250"},
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def archived(
    openssh: OpenSshServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Archived]:
    root = tmp_path_factory.mktemp("readback")
    project = archive_project(
        root,
        openssh,
        titles=30,
        seed=17,
        drill={"every": "7d", "identity_file": str(root / "publisher.key")},
    )
    assert project.key == root / "publisher.key"
    partner, key, recipient = project.partner, project.key, project.recipient
    sandbox, config, raw = project.sandbox, project.config, project.raw
    app = project.app()
    asset = add_interior(app, project, 200_000)
    async with DeliveryRunner(app, executor=True, quiet=True) as runner:
        outcome = await run_flow(app, "nightly", trigger="test", runner=runner)
    assert outcome.results and not [r for r in outcome.results.values() if "error" in r]
    # Not due on the first run: a drill is due `every` after the flow's first archive.
    assert drills(app.store, "nightly") == []
    app.store.close()
    try:
        yield Archived(root, partner, key, recipient, config, raw, asset)
    finally:
        sandbox.stop()


# --- damage made on the partner's server ------------------------------------------------------


def _plain_tar(a: Archived) -> bytes:
    """The partner's archive decrypted and decompressed: the tar."""
    ident = pyrage.x25519.Identity.from_str(a.key.read_text().strip())
    sealed = pyrage.decrypt(a.archive.read_bytes(), [ident])
    return zstandard.ZstdDecompressor().decompressobj().decompress(sealed)


def _reseal(a: Archived, tar: bytes) -> bytes:
    """A tar compressed and encrypted again as the flow would (to the same recipient)."""
    packed = zstandard.ZstdCompressor().compress(tar)
    return pyrage.encrypt(packed, [pyrage.x25519.Recipient.from_str(a.recipient)])


def _rewrite(tar: bytes, change: Callable[[str, bytes], bytes | None]) -> bytes:
    """The tar with each member's bytes through ``change`` (None leaves the member out)."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as source,
        tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as dest,
    ):
        for member in source.getmembers():
            if not member.isfile():
                dest.addfile(member)
                continue
            extracted = source.extractfile(member)
            assert extracted is not None
            data = change(member.name, extracted.read())
            if data is None:
                continue
            member.size = len(data)
            dest.addfile(member, io.BytesIO(data))
    return out.getvalue()


@contextmanager
def _damaged(a: Archived, data: bytes, *, sidecar: bool) -> Iterator[None]:
    """The partner's copy replaced by ``data`` (its sidecar made to match when ``sidecar``),
    put back afterwards."""
    archive = a.archive
    side = archive.with_name(archive.name + ".sha256")
    original, original_side = archive.read_bytes(), side.read_bytes()
    try:
        archive.write_bytes(data)
        if sidecar:
            side.write_text(sidecar_line(hashlib.sha256(data).hexdigest(), archive.name))
        yield
    finally:
        archive.write_bytes(original)
        side.write_bytes(original_side)


def _verify(a: Archived, *extra: str) -> subprocess.CompletedProcess[str]:
    return _cli(
        a.config,
        "verify",
        a.archive.name,
        "--partner",
        "vault",
        "--identity",
        str(a.key),
        *extra,
    )


# --- the tests ----------------------------------------------------------------------------------


async def test_verify_and_restore_from_the_partner_round_trip(
    archived: Archived, tmp_path: Path
) -> None:
    a = archived
    (listed,) = json.loads(_cli(a.config, "list", "--json").stdout)
    assert listed["partners"] == ["vault"] and listed["local"] is True
    assert listed["name"] == a.archive.name and listed["verified_at"] is None
    assert json.loads(_cli(a.config, "list", "--partner", "elsewhere", "--json").stdout) == []

    done = await asyncio.to_thread(_verify, a, "--json", "--by", "eve")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["sidecar"] == "ok" and report["source"] == "partner:vault"
    assert report["files_verified"] >= 9 and report["bytes_verified"] >= len(a.asset)
    # The downloaded copy is gone once read.
    staged = readback_dir(a.root / "var")
    assert staged.is_dir() and list(staged.iterdir()) == []
    (listed,) = json.loads(_cli(a.config, "list", "--json").stdout)
    assert listed["verified_by"] == "user:eve" and listed["verified_from"] == "partner:vault"
    assert listed["verified_ok"] is True
    table = " ".join(_cli(a.config, "list").stdout.split())
    assert "partner:vault" in table and "by user:eve from partner:vault: ok" in table

    restored = tmp_path / "restored"
    done = await asyncio.to_thread(
        _cli,
        a.config,
        "restore",
        a.archive.name,
        "--partner",
        "vault",
        "--to",
        str(restored),
        "--identity",
        str(a.key),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (kept,) = (restored / "data/assets").rglob("*.pdf")
    assert kept.read_bytes() == a.asset
    works = json.loads((restored / "data/metadata/works.json").read_text())
    assert sum(len(w["products"]) for w in works) == 30
    assert list(staged.iterdir()) == []


async def test_a_missing_archive_on_the_partner_names_the_partner_and_the_path(
    archived: Archived,
) -> None:
    a = archived
    archive = a.archive
    aside = archive.with_name("aside")
    archive.rename(aside)
    try:
        done = await asyncio.to_thread(
            _cli, a.config, "verify", archive.name, "--partner", "vault", "--identity", str(a.key)
        )
    finally:
        aside.rename(archive)
    assert done.returncode == 1
    said = " ".join(done.stderr.split())
    assert "not on partner 'vault'" in said and str(archive) in said, said


async def test_a_changed_byte_inside_a_file_of_the_bag_is_named(archived: Archived) -> None:
    a = archived

    def flip(name: str, data: bytes) -> bytes:
        if name.endswith("data/metadata/contacts.json"):
            return data[:10] + bytes([data[10] ^ 0x01]) + data[11:]
        return data

    with _damaged(a, _reseal(a, _rewrite(_plain_tar(a), flip)), sidecar=True):
        done = await asyncio.to_thread(_verify, a, "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    problems = json.loads(done.stdout)["problems"]
    assert [p["path"] for p in problems if p["kind"] != "sidecar"] == [
        "data/metadata/contacts.json"
    ], problems
    # The ledger's hash of the archive (as written) no longer matches either.
    assert any("recorded when it was written" in p["message"] for p in problems), problems


async def test_a_file_left_out_of_the_bag_is_named(archived: Archived) -> None:
    a = archived

    def drop(name: str, data: bytes) -> bytes | None:
        return None if name.endswith("data/metadata/onix.xml") else data

    with _damaged(a, _reseal(a, _rewrite(_plain_tar(a), drop)), sidecar=True):
        done = await asyncio.to_thread(_verify, a)
    assert done.returncode == 1
    assert "data/metadata/onix.xml" in done.stdout and "PROBLEMS FOUND" in done.stdout


async def test_a_truncated_archive_is_named(archived: Archived) -> None:
    a = archived
    sealed = a.archive.read_bytes()
    # The encrypted file cut short: its sidecar names it, and it cannot be decrypted.
    with _damaged(a, sealed[: len(sealed) // 2], sidecar=False):
        done = await asyncio.to_thread(_verify, a)
    assert done.returncode == 1
    said = " ".join((done.stdout + done.stderr).split())
    assert f"{a.archive.name}: SHA-256" in said and "is not its sidecar's" in said, said
    # The tar inside cut short (and sealed again, its sidecar matching): named as truncated.
    tar = _plain_tar(a)
    with _damaged(a, _reseal(a, tar[: len(tar) // 2]), sidecar=True):
        done = await asyncio.to_thread(_verify, a, "--json")
    assert done.returncode == 1
    problems = json.loads(done.stdout)["problems"]
    assert any(p["kind"] == "truncated" for p in problems), problems


async def test_one_byte_of_the_encrypted_file_changed_is_named(archived: Archived) -> None:
    a = archived
    sealed = bytearray(a.archive.read_bytes())
    sealed[len(sealed) // 2] ^= 0xFF
    with _damaged(a, bytes(sealed), sidecar=False):
        done = await asyncio.to_thread(_verify, a)
    assert done.returncode == 1
    said = " ".join((done.stdout + done.stderr).split())
    assert f"{a.archive.name}: SHA-256" in said and "cannot be decrypted" in said, said


async def test_a_drill_reads_the_partners_copy_and_is_recorded(archived: Archived) -> None:
    a = archived
    done = await asyncio.to_thread(_cli, a.config, "drill", "--flow", "nightly", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    (report,) = json.loads(done.stdout)
    assert report["outcome"] == "ok" and report["archives"] == [a.archive.name]
    (copy,) = report["copies"]
    assert copy["source"] == "partner:vault" and copy["mode"] == "full"
    assert report["bytes_verified"] >= len(a.asset) and report["seconds"] > 0
    assert report["archive_bytes"] == a.archive.stat().st_size
    app = a.app()
    try:
        (event,) = drills(app.store, "nightly")
        assert event.actor == "drill:nightly"
        assert event.details["outcome"] == "ok" and event.details["ok"] is True
        assert event.details["bytes_verified"] == report["bytes_verified"]
        assert event.details["seconds"] == report["seconds"]
        assert event.details["archive_bytes"] == report["archive_bytes"]
        assert event.details["archives"] == [a.archive.name]
        assert not app.store.list_alerts(kind=ALERT_FAILED)
    finally:
        app.store.close()
    (listed,) = json.loads(_cli(a.config, "list", "--json").stdout)
    assert listed["verified_by"] == "drill:nightly" and listed["verified_from"] == "partner:vault"


async def test_a_failing_drill_raises_an_alert_naming_the_file(archived: Archived) -> None:
    a = archived

    def flip(name: str, data: bytes) -> bytes:
        if name.endswith("data/metadata/works.json"):
            return data[:-2] + bytes([data[-2] ^ 0x01]) + data[-1:]
        return data

    with _damaged(a, _reseal(a, _rewrite(_plain_tar(a), flip)), sidecar=True):
        done = await asyncio.to_thread(_cli, a.config, "drill", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    (report,) = json.loads(done.stdout)
    assert report["outcome"] == "failed"
    assert any("data/metadata/works.json" in p for p in report["problems"]), report
    app = a.app()
    try:
        (alert,) = app.store.list_alerts(kind=ALERT_FAILED)
        assert alert.flow == "nightly" and "data/metadata/works.json" in alert.message
        assert drills(app.store, "nightly")[0].details["outcome"] == "failed"
    finally:
        app.store.close()


async def test_an_encrypted_archive_without_identity_is_checked_by_sidecar_only(
    archived: Archived,
) -> None:
    app = archived.app(identity_file=None)
    try:
        report = await run_drill(app, "nightly", trigger="test")
        assert report.ok and [c.mode for c in report.copies] == ["sidecar only"]
        assert any("identity_file" in n for n in report.notes)
        assert report.bytes_verified == archived.archive.stat().st_size
    finally:
        app.store.close()


async def test_the_flows_run_drills_when_due_and_an_overdue_drill_alerts(
    archived: Archived,
) -> None:
    a = archived
    app = a.app(every="1s")
    try:
        before = len(drills(app.store, "nightly"))
        time.sleep(1.1)  # the last drill is now older than `every`
        async with DeliveryRunner(app, executor=True, quiet=True) as runner:
            outcome = await run_flow(app, "nightly", trigger="test", runner=runner)
        assert not [r for r in outcome.results.values() if "error" in r]
        ran = drills(app.store, "nightly")
        assert len(ran) == before + 1 and ran[0].details["trigger"] == "schedule"
        assert ran[0].details["outcome"] == "ok", ran[0].details

        # Overdue: no successful drill within `overdue_after` (twice `every` = 7 days).
        weekly = a.app().settings.flow("nightly")
        assert isinstance(weekly, ArchiveFlow)
        last_ok = ran[0].ts
        assert overdue_alert(app.store, "nightly", weekly, last_ok + timedelta(days=13)) is None
        assert not app.store.list_alerts(kind=ALERT_OVERDUE)
        later = last_ok + timedelta(days=15)
        raised = overdue_alert(app.store, "nightly", weekly, later)
        assert raised is not None and "overdue" in raised.message
        (stored,) = app.store.list_alerts(kind=ALERT_OVERDUE)
        assert stored.flow == "nightly" and stored.message == raised.message
        # Once per overdue spell: not again while it stands unacknowledged.
        assert overdue_alert(app.store, "nightly", weekly, later + timedelta(days=1)) is None
        assert len(app.store.list_alerts(kind=ALERT_OVERDUE)) == 1
    finally:
        app.store.close()


# --- the periodic check (serve's drill_loop): no run of the flow needed -------------------------


async def test_serves_periodic_check_alerts_an_overdue_drill_without_any_archive_run(
    archived: Archived,
) -> None:
    a = archived
    # Drills not due for a week, but overdue after a second without a success: the flow's
    # schedule is stopped (nothing runs it), serve's check alone must notice.
    app = a.app(every="7d", overdue_after="1s")
    try:
        for old in app.store.list_alerts(kind=ALERT_OVERDUE, unacknowledged=True):
            app.store.acknowledge_alert(old.id, "test")
        runs = len(app.store.list_audit(action=AuditAction.ARCHIVE_WRITTEN, limit=None))
        ran = len(drills(app.store, "nightly"))
        time.sleep(1.1)  # the last successful drill is now older than `overdue_after`
        stop = asyncio.Event()
        loop = asyncio.create_task(drill_loop(stop, app, interval_s=0.05))
        try:
            deadline = time.monotonic() + 20
            while not app.store.list_alerts(kind=ALERT_OVERDUE, unacknowledged=True):
                assert time.monotonic() < deadline, "no overdue alert from the periodic check"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # several more rounds: the alert is not raised again
        finally:
            stop.set()
            await loop
        (alert,) = app.store.list_alerts(kind=ALERT_OVERDUE, unacknowledged=True)
        assert alert.flow == "nightly" and "overdue" in alert.message
        # Only the check ran: no archive run, no drill (none was due).
        assert len(app.store.list_audit(action=AuditAction.ARCHIVE_WRITTEN, limit=None)) == runs
        assert len(drills(app.store, "nightly")) == ran
        app.store.acknowledge_alert(alert.id, "test")
    finally:
        app.store.close()


async def test_a_due_drill_is_run_by_the_periodic_check_never_beside_a_run(
    archived: Archived,
) -> None:
    a = archived
    app = a.app(every="1s")
    config = app.settings.flow("nightly")
    assert isinstance(config, ArchiveFlow)
    try:
        runs = len(app.store.list_audit(action=AuditAction.ARCHIVE_WRITTEN, limit=None))
        before = len(drills(app.store, "nightly"))
        time.sleep(1.1)  # a drill is due: the last one is older than `every`
        # A run of the flow holds its lock (as run_flow does): the check leaves the drill to it.
        async with flow_lock(app, "nightly"):
            busy = await check_flow(app, "nightly", config)
        assert busy.report is None and f"pid {os.getpid()}" in busy.busy, busy
        assert len(drills(app.store, "nightly")) == before
        # The lock free: the check runs the drill itself, from where the archive lives.
        (checked,) = await check_all(app)
        assert checked.flow == "nightly" and not checked.busy
        report = checked.report
        assert report is not None and report.outcome == "ok", report and report.as_json()
        assert [c.source for c in report.copies] == ["partner:vault"]
        ran = drills(app.store, "nightly")
        assert len(ran) == before + 1 and ran[0].details["trigger"] == "schedule"
        # One archive (drill.sample_archives) of those on the partner (the flow ran twice).
        on_partner = {p.name for p in a.partner.glob("nightly-*.tar.zst.age")}
        (picked,) = ran[0].details["archives"]
        assert picked in on_partner and len(on_partner) == 2
        # ...and no archive run happened for it.
        assert len(app.store.list_audit(action=AuditAction.ARCHIVE_WRITTEN, limit=None)) == runs
        # Not due again at once.
        (again,) = await check_all(app)
        assert again.report is None and len(drills(app.store, "nightly")) == before + 1
    finally:
        app.store.close()


async def test_serve_runs_a_due_drill_with_no_run_of_the_flow(archived: Archived) -> None:
    """The whole service: the flow has no schedule (nothing runs it); serve's check drills."""
    a = archived
    app = a.app(every="1s")
    try:
        runs = len(app.store.list_audit(action=AuditAction.ARCHIVE_WRITTEN, limit=None))
        before = len(drills(app.store, "nightly"))
        time.sleep(1.1)
        stop = asyncio.Event()
        task = asyncio.create_task(ServeLoop(app).serve(stop=stop, poll_interval_s=3600))
        try:
            deadline = time.monotonic() + 60
            while len(drills(app.store, "nightly")) == before:
                assert time.monotonic() < deadline, "serve ran no drill"
                assert not task.done(), task
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            await asyncio.wait_for(task, 60)
        ran = drills(app.store, "nightly")
        assert len(ran) == before + 1 and ran[0].details["trigger"] == "schedule"
        assert ran[0].details["outcome"] == "ok", ran[0].details
        assert len(app.store.list_audit(action=AuditAction.ARCHIVE_WRITTEN, limit=None)) == runs
    finally:
        app.store.close()


# --- archives retention removed (last: it removes the module's archive from the listing) -------


async def test_an_archive_retention_deleted_is_neither_listed_nor_drilled(
    archived: Archived,
) -> None:
    a = archived
    listed = json.loads(_cli(a.config, "list", "--json").stdout)
    assert len(listed) == 2  # the flow ran twice in this module
    newest, oldest = (entry["name"] for entry in listed)
    app = a.app(sample_archives=2)
    try:
        app.store.append_audit(
            "retention:nightly",
            AuditAction.ARCHIVE_DELETED,
            f"archive:{oldest}",
            {"flow": "nightly"},
        )
        assert [e.name for e in list_archives(app.store, flow="nightly")] == [newest]
        kept = list_archives(app.store, flow="nightly", include_deleted=True)
        assert [e.name for e in kept] == [newest, oldest]
        # Two archives asked for, one left to offer: only it is read back.
        report = await run_drill(app, "nightly", trigger="test")
        assert report.ok and report.archives == [newest], report.as_json()
        (only,) = json.loads(_cli(a.config, "list", "--json").stdout)
        assert only["name"] == newest
        app.store.append_audit(
            "retention:nightly",
            AuditAction.ARCHIVE_DELETED,
            f"archive:{newest}",
            {"flow": "nightly"},
        )
        report = await run_drill(app, "nightly", trigger="test")
        assert report.copies == [] and report.outcome == "nothing to drill", report.as_json()
    finally:
        app.store.close()
    assert json.loads(_cli(a.config, "list", "--json").stdout) == []
    assert "no archives yet" in _cli(a.config, "list").stdout
