"""The service as an operator drives it: real ``sandbox`` and ``serve`` processes, the CLI next to
them.

One sandbox (Consonance API + SFTP partners) for the module. ``run --dry-run`` sends nothing;
``serve`` sees a title moved to the production stage and delivers its package to the printer's
SFTP folder with one ledger row per file; ``history --csv`` names it; a paused partner's
delivery is held until it is resumed; ``resend`` records who and why and sends a new
generation; SIGTERM stops ``serve`` cleanly.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from consonance_sftp.config import load_settings
from consonance_sftp.config.starter import CONFIG_NAME, init_project
from tests.cli import CLI, free_port, running_sandbox, store_only_intake

FLOW = "print-files"
STAGE = "Production approval"

pytestmark = pytest.mark.slow


def _wait(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Project:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config = folder / CONFIG_NAME
        self.db = folder / "var" / "consonance-sftp.db"
        self.printer_in = folder / "var" / "sandbox" / "sftp" / "printer" / "in"

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "USER": "tester"}
        done = subprocess.run(
            [*CLI, "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        return done

    def rows(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        if not self.db.exists():
            return []
        try:
            with sqlite3.connect(self.db) as db:
                return db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # read while a starting process migrates
                return []
            raise

    def landed(self, isbn: str) -> list[str]:
        folder = self.printer_in / isbn
        # Final names only: a temporary upload name starts with '.' and ends with '.part'.
        if not folder.exists():
            return []
        return sorted(
            p.name for p in folder.glob("*") if p.is_file() and not p.name.startswith(".")
        )

    def ledger_rows(self, isbn: str, generation: int = 0) -> int:
        found = self.rows(
            "SELECT count(*) FROM delivery_ledger WHERE isbn = ? AND generation = ?",
            isbn,
            generation,
        )
        return int(str(found[0][0])) if found else 0


def _printable_titles(config: Path) -> list[tuple[int, str]]:
    """(work id, ISBN) of print products whose interior and cover are approved."""
    from consonance_sftp.app import App

    async def find() -> list[tuple[int, str]]:
        out = []
        async with App(load_settings(config)).consonance() as api:
            async for work in api.iter_works():
                if not work.production_runs or work.project_stage == STAGE:
                    continue
                for p in work.products:
                    approved = {
                        f.file_variant
                        for f in p.production_files
                        if f.approval_status == "APPROVED"
                    }
                    if (
                        p.typename == "PhysicalBookProduct"
                        and p.isbn13
                        and approved >= {"INTERIOR", "COVER"}
                    ):
                        out.append((work.id, p.isbn13))
                        break
        return out

    return asyncio.run(find())


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    folder = tmp_path_factory.mktemp("service")
    init_project(folder, sftp_port=free_port(), api_port=free_port())
    proj = Project(folder)
    store_only_intake(proj.config)  # the intake test here is of taking files in, not matching
    with running_sandbox(proj.config, folder):
        yield proj


def test_run_dry_run_prints_the_plan_and_sends_nothing(project: Project) -> None:
    titles = _printable_titles(project.config)
    assert titles, "the sandbox catalogue has no printable title"
    _work, isbn = titles[0]
    out = project.cli("run", FLOW, "--isbn", isbn, "--dry-run").stdout
    assert "dry run" in out and "nothing was sent" in out
    assert f"/in/{isbn}/{isbn}_interior.pdf" in out
    assert any(len(tok) == 64 and all(c in "0123456789abcdef" for c in tok) for tok in out.split())
    assert project.landed(isbn) == []
    assert project.rows("SELECT count(*) FROM delivery_ledger") == [(0,)]


def test_a_disabled_flow_says_so_and_how_to_enable_it(project: Project) -> None:
    done = project.cli("run", "nightly-archive", "--dry-run", check=False)  # off in the starter
    assert done.returncode == 1
    assert "is disabled in the config" in done.stderr
    assert "Set enabled = true in the flows.nightly-archive table" in done.stderr


def test_run_of_an_intake_flow_takes_a_partner_upload_in_once(project: Project) -> None:
    """``run design-intake`` looks into the designer's inbox now: a finished upload is stored
    locally, checksummed and on the intake ledger; run again, it is not taken twice."""
    import hashlib

    inbox = project.folder / "var" / "sandbox" / "sftp" / "designer" / "out"
    inbox.mkdir(parents=True, exist_ok=True)
    body = os.urandom(200_000)
    (inbox / "cover-v2.pdf").write_bytes(body)
    out = project.cli("run", "design-intake").stdout
    assert "cover-v2.pdf" in out and "stored" in out, out
    rows = project.rows("SELECT remote_path, size, sha256, outcome, local_path FROM intake_ledger")
    assert len(rows) == 1
    remote_path, size, sha, outcome, local = rows[0]
    assert (remote_path, size, outcome) == ("/out/cover-v2.pdf", len(body), "stored")
    assert sha == hashlib.sha256(body).hexdigest()
    assert Path(str(local)).read_bytes() == body
    again = project.cli("run", "design-intake").stdout
    assert "1 file already taken in earlier" in again
    assert len(project.rows("SELECT id FROM intake_ledger")) == 1
    status = project.cli("status").stdout
    assert "intake: done 1" in status and "flow ticks: none" in status, status
    refused = project.cli("run", "design-intake", "--dry-run", check=False)
    assert refused.returncode == 1 and "do not apply" in refused.stderr


def test_serve_delivers_on_a_stage_change_pause_holds_resend_records(project: Project) -> None:
    from consonance_sftp.sandbox.consonance.control import SandboxControl

    titles = _printable_titles(project.config)
    assert len(titles) >= 2
    (work_a, isbn_a), (_work_b, isbn_b) = titles[0], titles[1]
    settings = load_settings(project.config)
    serve = subprocess.Popen(
        [*CLI, "--config", str(project.config), "serve", "--poll-interval", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "USER": "tester"},
    )
    try:
        # The first poll is a silent baseline; wait for it before changing anything.
        _wait(
            lambda: project.rows(
                "SELECT value FROM watermarks WHERE name = 'consonance.changes.incremental'"
            ),
            60,
            "the baseline poll",
        )
        # One executor per SQLite file: a second serve is refused at once, with a reason.
        second = project.cli("serve", check=False, timeout=30)
        assert second.returncode == 1
        assert "another process already runs the engine" in second.stderr

        with SandboxControl(settings.consonance.base_url) as control:
            control.move_stage(work_a, STAGE)
        _wait(lambda: len(project.landed(isbn_a)) >= 5, 60, "the package on the printer's SFTP")
        _wait(lambda: project.ledger_rows(isbn_a) >= 5, 30, "the ledger rows")
        rows = project.rows(
            "SELECT remote_path, outcome, generation, trigger FROM delivery_ledger WHERE isbn = ?",
            isbn_a,
        )
        assert len(rows) == len(project.landed(isbn_a))
        assert {r[1] for r in rows} == {"sent"}
        assert all(str(r[3]).startswith("consonance: work") for r in rows)
        assert list((project.printer_in / isbn_a).glob(".*")) == [], "a temporary name is left"

        # history --csv answers "did it go, when, which version".
        out = project.cli("history", "--isbn", isbn_a, "--csv").stdout
        table = list(csv.DictReader(io.StringIO(out)))
        assert len(table) == len(rows)
        assert {r["outcome"] for r in table} == {"sent"}
        assert all(r["finished_at"] and len(r["sha256"]) == 64 for r in table)
        assert {r["package"] for r in table} == {f"{isbn_a} production"}

        # A paused partner's deliveries are held, and sent once it is resumed.
        project.cli("partner", "pause", "printer", "--reason", "printer maintenance")
        held = project.cli("run", FLOW, "--isbn", isbn_b, "--no-wait").stdout
        assert "held" in held
        time.sleep(2.5)
        assert project.landed(isbn_b) == []
        status = project.cli("status").stdout
        assert "printer" in status
        # status lists the held package and why it waits
        assert f"{isbn_b} production" in status
        assert "partner 'printer' is paused" in status
        project.cli("partner", "resume", "printer", "--reason", "back")
        _wait(lambda: len(project.landed(isbn_b)) >= 5, 60, "the held package after resume")
        _wait(lambda: project.ledger_rows(isbn_b) >= 5, 30, "the released package's ledger rows")

        # An explicit resend: a new generation, a new workflow, who and why on the record, and
        # the files go again although the printer still holds identical bytes.
        before = {p.name: p.stat().st_mtime_ns for p in (project.printer_in / isbn_a).glob("*")}
        project.cli(
            "resend", "--isbn", isbn_a, "--partner", "printer", "--reason", "lost", "--by", "alice"
        )
        after = {p.name: p.stat().st_mtime_ns for p in (project.printer_in / isbn_a).glob("*")}
        assert after.keys() == before.keys()
        assert all(after[n] != before[n] for n in before), "a file was not sent again"
        gens = project.rows(
            "SELECT generation, workflow_id FROM delivery_ledger"
            " WHERE isbn = ? AND outcome = 'sent'",
            isbn_a,
        )
        assert sorted(g for g, _ in gens) == [0] * len(before) + [1] * len(before)
        assert len({w for _, w in gens}) == 2
        audit = project.rows(
            "SELECT actor, details FROM audit_events WHERE action = 'delivery.resend'"
        )
        assert len(audit) == 1
        assert audit[0][0] == "user:alice"
        assert json.loads(str(audit[0][1]))["reason"] == "lost"
        actions = [a for (a,) in project.rows("SELECT action FROM audit_events")]
        assert {"partner.paused", "partner.resumed", "delivery.held", "delivery.released"} <= set(
            actions
        )
        # Held once, released once: a pause does not re-record the held delivery.
        assert actions.count("delivery.held") == 1
        assert actions.count("delivery.released") == 1
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            code = serve.wait(40)
        except subprocess.TimeoutExpired:
            serve.kill()
            raise
        output = serve.stdout.read() if serve.stdout else ""
    assert code == 0, output
    assert "stopped" in output
