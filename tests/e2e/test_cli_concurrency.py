"""Commands at once on one SQLite engine file, as an operator starts them: real CLI processes
against a real ``sandbox`` process (Consonance API + SFTP partners).

* two ``run`` of one ONIX flow started together: the second waits for the first (saying which
  process it waits for) and plans from the baseline the first left, so a delta goes once and
  every message has its own MessageNumber;
* a second ``serve`` on the same file is refused, naming the first (pid and command); a
  ``run`` while ``serve`` runs hands its deliveries to it and follows them;
* a delta whose delivery failed and was sent later by ``retry`` moves the baseline: the next
  delta holds only what changed since.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consonance_sftp.config.starter import CONFIG_NAME, init_project
from tests.cli import CLI, free_port, running_sandbox

FLOW = "onix-distributor"

pytestmark = pytest.mark.slow


class Project:
    def __init__(self, folder: Path, api_port: int) -> None:
        self.folder = folder
        self.config = folder / CONFIG_NAME
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.inbox = folder / "var" / "sandbox" / "sftp" / "distributor" / "in"

    def command(self, *args: str) -> list[str]:
        return [*CLI, "--config", str(self.config), *args]

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "USER": "tester"},
        )

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "USER": "tester"},
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        return done

    def feeds(self) -> list[Path]:
        return sorted(p for p in self.inbox.glob("*.xml") if not p.name.startswith("."))

    def product_ids(self) -> list[int]:
        from consonance_sftp.app import App

        async def ids() -> list[int]:
            async with App.from_config(self.config).consonance() as api:
                return [p.id async for w in api.iter_works() for p in w.products]

        return asyncio.run(ids())

    def retitle(self, product_id: int, title: str) -> None:
        from consonance_sftp.sandbox.consonance.control import SandboxControl

        with SandboxControl(self.api_url) as ctl:
            ctl.update_product(product_id, title=title)


def _message_number(feed: Path) -> int:
    found = re.search(rb"<MessageNumber>(\d+)</MessageNumber>", feed.read_bytes()[:4000])
    assert found, f"{feed.name} has no MessageNumber"
    return int(found.group(1))


def _products(feed: Path) -> int:
    return feed.read_bytes().count(b"<Product>")


def _finish(proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert "Traceback" not in out + err, out + err
    return proc.returncode, out, err


def _read_until(stream: object, text: str, timeout: float) -> str:
    """Lines of a child's pipe until one holds ``text`` (AssertionError after ``timeout``).

    Reads the pipe's file descriptor, not the text wrapper: a wrapper's ``readline`` may pull
    several lines into its buffer at once, and ``select`` on the pipe would then wait for more
    while the line looked for sits in that buffer (a flaky miss under load)."""
    assert hasattr(stream, "fileno")
    fd = stream.fileno()
    pending = b""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace") + "\n"
            seen.append(line)
            if text in line:
                return line
    raise AssertionError(f"no {text!r} within {timeout} s: {''.join(seen)}")


@contextlib.contextmanager
def _one_shot_holds_the_engine(project: Project) -> Iterator[None]:
    """This test process holds the engine's SQLite lease as a one-shot command would."""
    from consonance_sftp.app import App
    from consonance_sftp.engine.lease import ONE_SHOT, SqliteLease

    lease = SqliteLease(App.from_config(project.config).engine_settings())
    lease.role = ONE_SHOT
    lease.acquire(0)
    try:
        yield
    finally:
        lease.release()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    folder = tmp_path_factory.mktemp("concurrency")
    api_port = free_port()
    init_project(folder, sftp_port=free_port(), api_port=api_port)
    proj = Project(folder, api_port)
    with running_sandbox(proj.config, folder):
        yield proj


def test_two_runs_of_one_feed_at_once_send_it_once_with_distinct_message_numbers(
    project: Project,
) -> None:
    # Two deltas at once, nothing sent before: the first sends every product; the second
    # waits for it, then finds nothing changed.
    first, second = project.start("run", FLOW), project.start("run", FLOW)
    results = [_finish(first), _finish(second)]
    assert [code for code, _out, _err in results] == [0, 0], results
    feeds = project.feeds()
    assert len(feeds) == 1, [f.name for f in feeds]
    assert _message_number(feeds[0]) == 1
    outs = [out for _code, out, _err in results]
    assert sum("delta ready" in o for o in outs) == 1, outs
    assert sum("nothing changed since the last send" in o for o in outs) == 1, outs
    # The one that waited said whom it waited for.
    waited = [err for _code, _out, err in results if "waiting" in err]
    assert len(waited) == 1, [err for _c, _o, err in results]
    pids = {str(first.pid), str(second.pid)}
    assert any(f"pid {pid}" in waited[0] for pid in pids) and f"run {FLOW}" in waited[0]

    # Two forced full feeds at once: both go (a full feed is asked for each time), one after
    # the other, each with its own MessageNumber.
    full = [project.start("run", FLOW, "--full"), project.start("run", FLOW, "--full")]
    for code, out, _err in (_finish(p) for p in full):
        assert code == 0, out
        assert re.search(r"full ready: \S+, [\d,]+ bytes, [\d,]+ products \(every product", out)
        assert "changed" not in out.split("full ready")[1].splitlines()[0]
    feeds = project.feeds()
    assert len(feeds) == 3, [f.name for f in feeds]
    assert sorted(_message_number(f) for f in feeds) == [1, 2, 3]


def test_serve_is_alone_on_its_file_and_a_run_beside_it_is_handed_to_it(
    project: Project,
) -> None:
    serve = project.start("serve", "--poll-interval", "3600")
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()
        assert "serving" in line, line
        again = project.cli("serve", check=False)
        assert again.returncode == 1
        assert f"pid {serve.pid}" in again.stderr and "serve" in again.stderr, again.stderr
        before = len(project.feeds())
        done = project.cli("run", FLOW, "--full")
        assert "done dlv-distributor-" in done.stdout and "1 sent" in done.stdout, done.stdout
        assert "waiting" not in done.stderr  # serve's engine did the work, nothing waited
        assert len(project.feeds()) == before + 1
        numbers = sorted(_message_number(f) for f in project.feeds())
        assert numbers == list(range(1, before + 2))
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
    assert serve.returncode == 0


def _failed_delta(project: Project, product_id: int, title: str) -> str:
    """Change one product, then run the feed while the partner's folder is broken: the
    delivery fails at once (not a directory). Returns the failed workflow's ID."""
    project.retitle(product_id, title)
    project.inbox.rename(project.inbox.with_name("in.away"))
    project.inbox.write_bytes(b"")
    try:
        failed = project.cli("run", FLOW, check=False)
    finally:
        project.inbox.unlink()
        project.inbox.with_name("in.away").rename(project.inbox)
    assert failed.returncode == 1, failed.stdout
    found = re.search(r"failed (dlv-\S+):", failed.stdout)
    assert found, failed.stdout
    return found.group(1)


@pytest.mark.parametrize("beside_serve", [False, True], ids=["retry-alone", "retry-by-serve"])
def test_a_failed_delta_sent_by_retry_moves_the_baseline(
    project: Project, beside_serve: bool
) -> None:
    """Whoever runs the retried delivery (the ``retry`` command's own engine, or ``serve``),
    the baseline and MessageNumber follow it."""
    ids = project.product_ids()
    tag = "serve" if beside_serve else "alone"
    project.cli("run", FLOW)  # whatever earlier tests left: the baseline is now current
    sent = len(project.feeds())
    workflow = _failed_delta(project, ids[0], f"Changed Before The Outage {tag}")
    assert len(project.feeds()) == sent

    serve = project.start("serve", "--poll-interval", "3600") if beside_serve else None
    try:
        if serve is not None:
            assert serve.stdout is not None and "serving" in serve.stdout.readline()
        retried = project.cli("retry", workflow)
        assert "done" in retried.stdout, retried.stdout
        feeds = project.feeds()
        assert len(feeds) == sent + 1 and _products(feeds[-1]) == 1

        project.retitle(ids[1], f"Changed After The Outage {tag}")
        project.cli("run", FLOW)
    finally:
        if serve is not None:
            serve.send_signal(signal.SIGTERM)
            serve.wait(60)
    feeds = project.feeds()
    assert len(feeds) == sent + 2
    newest = feeds[-1]  # names carry the send time
    # Only what changed since the retried delta: one product, the next MessageNumber.
    assert _products(newest) == 1
    assert f"Changed After The Outage {tag}".encode() in newest.read_bytes()
    assert b"Changed Before The Outage" not in newest.read_bytes()
    assert sorted(_message_number(f) for f in feeds) == list(range(1, sent + 3))
    assert _message_number(newest) == sent + 2


def test_commands_wait_for_a_one_shot_command_holding_the_engine_and_say_so(
    project: Project,
) -> None:
    """A ``run`` (or ``serve``) started while a one-shot command holds the engine file does
    not hand its work to an engine about to stop: it waits, naming the holder, then runs."""
    before = len(project.feeds())
    with _one_shot_holds_the_engine(project):
        run = project.start("run", FLOW, "--full")
        line = _read_until(run.stderr, "waiting", 60)
        assert f"the engine is in use by pid {os.getpid()}" in line, line
        time.sleep(1.0)
        assert run.poll() is None and len(project.feeds()) == before
    code, out, _err = _finish(run)
    assert code == 0 and "1 sent" in out, out
    assert len(project.feeds()) == before + 1

    with _one_shot_holds_the_engine(project):
        serve = project.start("serve", "--poll-interval", "3600")
        try:
            line = _read_until(serve.stderr, "waiting", 60)
            assert f"pid {os.getpid()}" in line, line
            assert serve.poll() is None
        except BaseException:
            serve.kill()
            raise
    try:
        assert "serving" in _read_until(serve.stdout, "serving", 60)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
    assert serve.returncode == 0
