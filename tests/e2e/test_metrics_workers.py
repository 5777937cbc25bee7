"""``/metrics`` after deliveries on two ``worker`` processes, everything on PostgreSQL (the
store and the engine's system database): ``promtool check metrics`` finds nothing to say, and
the counters equal the delivery ledger's rows, whichever process serves them (``metrics
--once``, a ``metrics`` server scraped over HTTP, and the console's ``/metrics`` scraped with an
API token after refusing an anonymous scrape; none of them delivered anything)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from consonance_sftp.config.starter import CONFIG_NAME, init_project
from tests.cli import CLI, free_port, running_sandbox
from tests.e2e.test_cli_service import _printable_titles
from tests.fixtures.postgres import PostgresCluster

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

STORE_LINE = 'url = "sqlite:///{state_dir}/consonance-sftp.db"'
SYSTEM_LINE = 'dbos_system_url = "sqlite:///{state_dir}/dbos-system.db"'


@contextmanager
def _process(args: list[str], ready: str, timeout: float = 90) -> Iterator[list[str]]:
    """A CLI process, ready once it printed ``ready``; its output is drained into the yielded
    list (a full pipe would stall it); stopped with SIGTERM on the way out."""
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ}
    )
    said: list[str] = []
    up = threading.Event()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            said.append(line)
            if ready in line:
                up.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        while not up.wait(0.2):
            assert proc.poll() is None, f"exited before {ready!r}: " + "".join(said)
            assert time.monotonic() < deadline, f"not ready: {ready}: " + "".join(said)
        yield said
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


def _samples(
    text: str, name: str, keys: tuple[str, ...] = ("direction", "flow", "partner", "outcome")
) -> dict[tuple[str, ...], float]:
    """The samples of ``name`` by the values of their ``keys`` labels (those they have)."""
    out: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(s.labels[k] for k in keys if k in s.labels)] = s.value
    return out


def _get(url: str, timeout: float = 60) -> httpx.Response:
    """GET, retried while the server is still binding its port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=timeout)
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def store_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = postgres_cluster.create_database(name)
    try:
        yield url
    finally:
        postgres_cluster.drop_database(name)


def test_metrics_after_deliveries_on_two_workers(
    tmp_path: Path, pg_url: str, store_url: str
) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's 'prometheus' (make system-deps does)"
    init_project(tmp_path, sftp_port=free_port(), api_port=free_port())
    config = tmp_path / CONFIG_NAME
    text = config.read_text()
    assert STORE_LINE in text and SYSTEM_LINE in text
    text = text.replace(STORE_LINE, f'url = "{store_url}"')
    text = text.replace(SYSTEM_LINE, f'dbos_system_url = "{pg_url}"')
    # One delivery at a time per worker: with four titles queued at once, both workers take
    # some (with the default 32, the first worker to poll may take them all).
    config.write_text(text + "\n[engine]\nworker_concurrency = 1\n")
    base = [*CLI, "--config", str(config)]
    port = free_port()

    with (
        running_sandbox(config, tmp_path),
        _process([*base, "worker", "--id", "w-a"], "worker w-a started"),
        _process([*base, "worker", "--id", "w-b"], "worker w-b started"),
    ):
        titles = [isbn for _work, isbn in _printable_titles(config)][:4]
        assert len(titles) >= 2, titles
        isbns = [arg for isbn in titles for arg in ("--isbn", isbn)]
        done = subprocess.run(
            [*base, "run", "print-files", *isbns], capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, done.stdout + done.stderr
        once = subprocess.run(
            [*base, "metrics", "--once"], capture_output=True, text=True, timeout=120
        )
        assert once.returncode == 0, once.stderr
        with _process([*base, "metrics", "--port", str(port)], "metrics on http://"):
            response = _get(f"http://127.0.0.1:{port}/metrics")
        # The console serves the same numbers, to an API token only.
        added = subprocess.run(
            [*base, "users", "add", "prometheus", "--role", "viewer"],
            input="scrape-password-1\n",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert added.returncode == 0, added.stdout + added.stderr
        made = subprocess.run(
            [*base, "users", "token", "prometheus", "--label", "scrape"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert made.returncode == 0, made.stdout + made.stderr
        token = made.stdout.strip().splitlines()[-1]
        web_port = free_port()
        with _process([*base, "web", "--port", str(web_port)], "console on http://"):
            anonymous = _get(f"http://127.0.0.1:{web_port}/metrics")
            console = httpx.get(
                f"http://127.0.0.1:{web_port}/metrics",
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
    assert anonymous.status_code == 401 and "consonance_sftp_" not in anonymous.text
    assert console.status_code == 200, console.text
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"

    # The deliveries went through both workers (the ledger says which process recorded each).
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT flow, partner, outcome, count(*), sum(size), "
                    "count(DISTINCT executor_id) FROM delivery_ledger "
                    "GROUP BY flow, partner, outcome"
                )
            ).all()
            executors = {
                e for (e,) in conn.execute(sa.text("SELECT executor_id FROM delivery_ledger"))
            }
    finally:
        engine.dispose()
    assert executors == {"w-a", "w-b"}, executors
    ledger = {(f, p, o): (n, int(size)) for f, p, o, n, size, _ in rows}
    assert sum(n for n, _ in ledger.values()) >= 5 * len(titles)
    assert {o for _f, _p, o in ledger} == {"sent"}

    for text in (once.stdout, response.text, console.text):
        lint = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True
        )
        assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint
        deliveries = _samples(text, "consonance_sftp_deliveries_total")
        assert deliveries == {k: float(n) for k, (n, _size) in ledger.items()}
        files = _samples(text, "consonance_sftp_delivery_ledger_files")
        assert files == deliveries
        sent_bytes = _samples(text, "consonance_sftp_transfer_bytes_total")
        assert sent_bytes == {
            ("out", f, p): float(size) for (f, p, _o), (_n, size) in ledger.items()
        }
        # Everything ran: nothing waits, and the engine's records were read.
        depth = _samples(text, "consonance_sftp_queue_depth", ("kind",))
        assert depth[("delivery",)] == 0.0 and set(depth.values()) == {0.0}
        assert _samples(text, "consonance_sftp_engine_readable") == {(): 1.0}
