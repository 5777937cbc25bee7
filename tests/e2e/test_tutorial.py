"""The tutorial, walked: every shell command of docs/tutorial/first-exchange.md, in order, against
a real sandbox in a temporary folder, each checked for the effect the text promises.

The commands are read from the Markdown's fenced ``sh`` blocks, so the page and the test cannot
drift apart. An HTML comment just before a block says how to run it:

- ``<!-- tutorial-test: skip (why) -->``: not run (installing the project);
- ``<!-- tutorial-test: background, ready="TEXT" -->``: a long-running command (``sandbox``,
  ``serve``), started in the background; the walk goes on once it has printed TEXT.

Every command must have a check below (``CHECKS``, matched by a regular expression); a command
without one fails the test, and so does a command whose check finds nothing happened, e.g. a
stage change that sends nothing.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cli import free_port

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "tutorial" / "first-exchange.md"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow

_BLOCK = re.compile(
    r"(?:<!--\s*tutorial-test:\s*(?P<directive>.*?)\s*-->\s*\n)?```sh\n(?P<body>.*?)```",
    re.S,
)


@dataclass
class Step:
    command: str
    background: bool = False
    ready: str = ""


def tutorial_steps(text: str) -> list[Step]:
    """The commands of the fenced ``sh`` blocks, in order, with their run directives."""
    steps: list[Step] = []
    for block in _BLOCK.finditer(text):
        directive = block.group("directive") or ""
        if directive.startswith("skip"):
            continue
        ready = re.search(r'ready="([^"]*)"', directive)
        for line in block.group("body").splitlines():
            command = line.split("  #")[0].strip()
            if command and not command.startswith("#"):
                steps.append(
                    Step(
                        command,
                        background="background" in directive,
                        ready=ready.group(1) if ready else "",
                    )
                )
    return steps


# --- the walk ------------------------------------------------------------------------------


@dataclass
class Walk:
    """The reader's shell: a working folder that ``cd`` changes, the background processes."""

    home: Path
    cwd: Path
    env: dict[str, str]
    background: list[tuple[str, subprocess.Popen[str], Path]] = field(default_factory=list)
    ledger_before: int = 0

    @property
    def project(self) -> Path:
        return self.home / "my-exchange"

    def shell(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
        return done

    def start(self, step: Step) -> None:
        log = self.home / f"background-{len(self.background)}.log"
        handle = log.open("w")
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {step.command}"],
            cwd=self.cwd,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.background.append((step.command, proc, log))
        deadline = time.monotonic() + 90
        while step.ready not in log.read_text():
            if proc.poll() is not None:
                raise AssertionError(f"'{step.command}' exited early:\n{log.read_text()}")
            assert time.monotonic() < deadline, f"'{step.command}' never printed {step.ready!r}"
            time.sleep(0.2)

    def stop_all(self) -> None:
        for _command, proc, _log in reversed(self.background):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)

    def sql(self, query: str, *params: object) -> list[tuple[object, ...]]:
        db = self.project / "var" / "consonance-sftp.db"
        if not db.exists():
            return []
        with sqlite3.connect(db) as conn:
            return conn.execute(query, params).fetchall()

    def ledger(self, isbn: str) -> list[tuple[object, ...]]:
        return self.sql(
            "SELECT remote_path, outcome, created_at FROM delivery_ledger WHERE isbn = ?", isbn
        )


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout} s: {what}"
        time.sleep(0.5)


# --- what each command must have done ------------------------------------------------------

ISBN = "9781900200066"  # work 1004's print edition
EBOOK = "9781900200073"  # work 1004's ebook
Check = Callable[[Walk, Step, subprocess.CompletedProcess[str] | None], None]


def _ok(done: subprocess.CompletedProcess[str] | None) -> str:
    assert done is not None
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def check_demo(walk: Walk, _s: Step, done: subprocess.CompletedProcess[str] | None) -> None:
    assert "demo finished" in _ok(done)
    received = _files(walk.cwd / "demo-run" / "var" / "sandbox" / "sftp" / "printer" / "in")
    assert any(n.endswith("_interior.pdf") for n in received), received


def check_ls_demo(_w: Walk, _s: Step, done: subprocess.CompletedProcess[str] | None) -> None:
    out = _ok(done)
    for suffix in ("_interior.pdf", "_cover.pdf", "_spec.pdf", "_manifest.json", ".done"):
        assert suffix in out, out


def check_audit(_w: Walk, _s: Step, done: subprocess.CompletedProcess[str] | None) -> None:
    out = _ok(done)
    assert out.startswith("ok: ") and " events in " in out, out


def check_init(walk: Walk, _s: Step, done: subprocess.CompletedProcess[str] | None) -> None:
    _ok(done)
    config = walk.cwd / "my-exchange" / "consonance-sftp.toml"
    assert config.is_file()
    # The tutorial uses the starter's default ports; the test moves them to free ones so it
    # never meets another sandbox on this machine (the host key line names the port too).
    text = config.read_text()
    assert "2222" in text and "8765" in text
    sftp, api = free_port(), free_port()
    config.write_text(text.replace("2222", str(sftp)).replace("8765", str(api)))


def check_cd(walk: Walk, step: Step, _done: subprocess.CompletedProcess[str] | None) -> None:
    assert walk.cwd == walk.home / shlex.split(step.command)[1]


def check_config(_w: Walk, _s: Step, done: subprocess.CompletedProcess[str] | None) -> None:
    out = _ok(done)
    assert "config ok" in out and "print-files: production -> printer" in out, out


def check_sandbox(walk: Walk, _s: Step, _done: subprocess.CompletedProcess[str] | None) -> None:
    # What the text says it prints, and the folders it names.
    log = walk.background[-1][2].read_text()
    assert "var/sandbox/sftp" in log, log
    for folder in ("in", "out"):
        assert (walk.project / "var" / "sandbox" / "sftp" / "printer" / folder).is_dir()


def check_probe(_w: Walk, _s: Step, done: subprocess.CompletedProcess[str] | None) -> None:
    out = _ok(done)
    assert "posix-rename" in out and "stored:" in out, out


def check_partner_test(_w: Walk, _s: Step, done: subprocess.CompletedProcess[str] | None) -> None:
    assert "then removed it" in _ok(done)


def _narrow(walk: Walk, command: str) -> str:
    """The command's output in a pseudo-terminal 70 columns wide, without colours."""
    shown = _ok(walk.shell(f"COLUMNS=70 script -qec {shlex.quote(command)} /dev/null"))
    return re.sub(r"\x1b\[[0-9;]*m", "", shown)


def check_dry_run(walk: Walk, step: Step, done: subprocess.CompletedProcess[str] | None) -> None:
    out = _ok(done)
    assert f"/in/{ISBN}/{ISBN}_interior.pdf" in out and "nothing was sent" in out, out
    assert "…" not in _narrow(walk, step.command)  # paths and hashes fold, never cut
    assert not _files(walk.project / "var" / "sandbox" / "sftp" / "printer" / "in")
    assert walk.ledger(ISBN) == []


def check_serve(walk: Walk, _s: Step, _done: subprocess.CompletedProcess[str] | None) -> None:
    # "Once the service has learnt it (a few seconds)": the first poll's baseline is recorded.
    _until(
        lambda: bool(walk.sql("SELECT 1 FROM watermarks WHERE name LIKE 'consonance.changes.%'")),
        60,
        "serve's first poll of Consonance",
    )


def check_stage(walk: Walk, _s: Step, done: subprocess.CompletedProcess[str] | None) -> None:
    out = _ok(done)
    assert '"stage": "Production approval"' in out, out


def check_history(walk: Walk, step: Step, _done: subprocess.CompletedProcess[str] | None) -> None:
    # The step that should send: within a poll or two the ledger has a row per file sent.
    _until(
        lambda: len([r for r in walk.ledger(ISBN) if r[1] == "sent"]) >= 5,
        60,
        f"serve to deliver {ISBN} after the stage change",
    )
    walk.ledger_before = len(walk.ledger(ISBN))
    again = walk.shell(step.command)  # the reader looks again once it has gone
    out = _ok(again)
    assert ISBN in out and "sent" in out and "5 files" in out, out
    # On a narrow terminal (a pseudo-terminal 70 columns wide) the table folds long paths
    # rather than cutting them with "…".
    narrow = _narrow(walk, step.command)
    assert "…" not in narrow, narrow
    column = "".join(
        cells[5].strip()
        for line in narrow.splitlines()
        if len(cells := line.split("│")) > 6  # the rows of the body, not the borders
    )
    for path, _outcome, _created in walk.ledger(ISBN):
        assert str(path) in column, (path, narrow)


def check_ls_printer(walk: Walk, _s: Step, done: subprocess.CompletedProcess[str] | None) -> None:
    out = _ok(done)
    for suffix in ("_interior.pdf", "_cover.pdf", "_spec.pdf"):
        assert f"{ISBN}{suffix}" in out, out


def check_run_again(walk: Walk, _s: Step, done: subprocess.CompletedProcess[str] | None) -> None:
    out = _ok(done)
    assert "already sent on" in out and "(5 files), nothing sent now" in out, out
    assert " 5 sent" not in out, out
    assert len(walk.ledger(ISBN)) == walk.ledger_before


def check_run_ebook(_w: Walk, _s: Step, done: subprocess.CompletedProcess[str] | None) -> None:
    out = _ok(done)
    assert "nothing to send" in out, out
    assert f"{EBOOK}: no print-ready interior PDF among its files (it has: EPUB" in out, out


def check_status(_w: Walk, _s: Step, done: subprocess.CompletedProcess[str] | None) -> None:
    out = _ok(done)
    assert "an executor is running" in out and "deliveries: done" in out, out


CHECKS: list[tuple[str, Check]] = [
    (r"consonance-sftp demo$", check_demo),
    (r"ls -R demo-run/\S+/printer/in$", check_ls_demo),
    (r"consonance-sftp (--config \S+ )?audit verify$", check_audit),
    (r"consonance-sftp init --dir my-exchange$", check_init),
    (r"cd my-exchange$", check_cd),
    (r"consonance-sftp config check$", check_config),
    (r"consonance-sftp sandbox$", check_sandbox),
    (r"consonance-sftp partner probe printer$", check_probe),
    (r"consonance-sftp partner test printer$", check_partner_test),
    (rf"consonance-sftp run print-files --isbn {ISBN} --dry-run$", check_dry_run),
    (r"consonance-sftp serve --poll-interval \d+$", check_serve),
    (r'consonance-sftp sandbox stage 1004 "Production approval"$', check_stage),
    (rf"consonance-sftp history --isbn {ISBN}$", check_history),
    (rf"ls -R var/sandbox/sftp/printer/in/{ISBN}$", check_ls_printer),
    (rf"consonance-sftp run print-files --isbn {ISBN}$", check_run_again),
    (rf"consonance-sftp run print-files --isbn {EBOOK}$", check_run_ebook),
    (r"consonance-sftp status$", check_status),
]


def _check_for(command: str) -> Check:
    found = [check for pattern, check in CHECKS if re.fullmatch(pattern, command)]
    assert len(found) == 1, (
        f"the tutorial's command {command!r} has {len(found)} checks in this test; "
        "every command must say what it does (add one to CHECKS)"
    )
    return found[0]


# --- the tests -----------------------------------------------------------------------------


def test_the_tutorial_blocks_are_read() -> None:
    steps = tutorial_steps(TUTORIAL.read_text())
    commands = [s.command for s in steps]
    # The walk below must not pass because it found nothing to run.
    assert "consonance-sftp sandbox" in commands and any("serve" in c for c in commands)
    assert [s.command for s in steps if s.background] == [
        "consonance-sftp sandbox",
        "consonance-sftp serve --poll-interval 5",
    ]
    for s in steps:
        _check_for(s.command)


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walk]:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": "200",
        "USER": "tutorial",
    }
    env.pop("CONSONANCE_SFTP_CONFIG", None)
    w = Walk(home=tmp_path, cwd=tmp_path, env=env)
    try:
        yield w
    finally:
        w.stop_all()


def test_every_tutorial_step_does_what_the_page_says(walk: Walk) -> None:
    for step in tutorial_steps(TUTORIAL.read_text()):
        check = _check_for(step.command)
        if step.command.startswith("cd "):
            walk.cwd = walk.cwd / shlex.split(step.command)[1]
            check(walk, step, None)
        elif step.background:
            walk.start(step)
            check(walk, step, None)
        else:
            check(walk, step, walk.shell(step.command))
    # Ctrl-C (SIGINT) stops serve and the sandbox, as the page says.
    walk.stop_all()
    for command, proc, log in walk.background:
        assert proc.returncode == 0, f"'{command}' ended with {proc.returncode}:\n{log.read_text()}"
