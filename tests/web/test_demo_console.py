"""``make demo`` ends with the console's address and a login for its data, and ``consonance-sftp
web`` against the demo's database (a real uvicorn, a real HTTP client) shows its deliveries."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.cli import CLI, free_port

pytestmark = pytest.mark.slow


def _wait_for(url: str, server: subprocess.Popen[str], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "the console stopped"
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"nothing answered at {url}")


def test_the_demo_ends_with_a_console_login_that_shows_its_deliveries(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    run = subprocess.run(
        [*CLI, "demo", "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    tail = run.stdout[run.stdout.index("demo finished") :]
    config = folder / "consonance-sftp.toml"
    assert f"consonance-sftp --config {config} web" in tail
    assert "http://127.0.0.1:8080/" in tail
    login = re.search(r"log in as\s+(\S+)\s+with password\s+(\S+)", tail)
    assert login is not None, tail
    user, password = login.groups()
    assert len(password) >= 16

    with sqlite3.connect(folder / "var" / "consonance-sftp.db") as db:
        sent = [p for (p,) in db.execute("SELECT remote_path FROM delivery_ledger")]
        hashes = [h for (h,) in db.execute("SELECT password_hash FROM console_users")]
    assert sent
    assert password not in " ".join(hashes)  # only its hash is kept

    port = free_port()
    server = subprocess.Popen(
        [*CLI, "--config", str(config), "web", "--port", str(port), "--no-secure-cookies"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{base}/login", server)
        with httpx.Client(base_url=base, timeout=30) as client:
            form = client.get("/login").text
            csrf = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            done = client.post(
                "/login", data={"username": user, "password": password, "csrf_token": csrf}
            )
            assert done.status_code == 303, done.text
            page = client.get("/deliveries")
            assert page.status_code == 200
            for path in sent:
                assert path in page.text
            refused = httpx.get(f"{base}/deliveries", timeout=30)  # no login: no data
            assert refused.status_code == 303 and sent[0] not in refused.text
    finally:
        server.terminate()
        server.wait(timeout=20)
