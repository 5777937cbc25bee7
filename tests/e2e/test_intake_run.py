"""``run`` of an intake flow as an operator sees it: the real CLI against the sandbox's SFTP
partner (asyncssh). A name that is not UTF-8 does not block the inbox, hidden files and folders
are listed as ignored with the reason (and said once on the audit trail), a decomposed name is
noted."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from consonance_sftp.config.starter import CONFIG_NAME, init_project
from tests.cli import CLI, free_port, running_sandbox, store_only_intake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("inbox-run")
    init_project(folder, sftp_port=free_port(), api_port=free_port())
    store_only_intake(folder / CONFIG_NAME)  # taking files in, not matching them
    with running_sandbox(folder / CONFIG_NAME, folder):
        yield folder


def _run(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "--config", str(folder / CONFIG_NAME), "run", "design-intake"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "USER": "tester", "COLUMNS": "250"},
        check=False,
    )


def _rows(folder: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(folder / "var" / "consonance-sftp.db") as db:
        return db.execute(sql).fetchall()


def test_run_takes_the_inbox_in_and_says_what_it_left_alone(project: Path) -> None:
    inbox = project / "var" / "sandbox" / "sftp" / "designer" / "out"
    inbox.mkdir(parents=True, exist_ok=True)
    odd = os.path.join(bytes(inbox), b"Bj\xf6rk cover.pdf")
    with open(odd, "wb") as fh:
        fh.write(os.urandom(3000))
    nfd = unicodedata.normalize("NFD", "Café.pdf")
    (inbox / nfd).write_bytes(os.urandom(2000))
    (inbox / "back-v3.pdf").write_bytes(os.urandom(2500))
    (inbox / ".back-v3.pdf.swp").write_bytes(b"x" * 10)
    (inbox / "old").mkdir()

    first = _run(project)
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert "Bj\\xf6rk cover.pdf" in out and "quarantined" in out and "not valid UTF-8" in out
    assert "back-v3.pdf" in out and "stored" in out
    assert "ignored: a hidden file" in out and "ignored: a folder" in out
    assert "not in NFC form" in out
    rows = dict(_rows(project, "SELECT remote_path, outcome FROM intake_ledger"))
    assert rows == {
        "/out/Bj\\xf6rk cover.pdf": "quarantined",
        f"/out/{nfd}": "stored",
        "/out/back-v3.pdf": "stored",
    }

    again = _run(project)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3 files already taken in earlier" in again.stdout
    assert "ignored: a hidden file" in again.stdout  # listed on every run...
    said = _rows(project, "SELECT subject FROM audit_events WHERE action = 'intake.ignored'")
    assert sorted(s for (s,) in said) == [  # ...but said once
        "designer:/out/.back-v3.pdf.swp",
        "designer:/out/old",
    ]
