"""The sandbox as the demo runs it: separate processes for seed, serve and control."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx

from consonance_sftp.sandbox.consonance.catalogue import Catalogue
from tests.cli import CLI, free_port

TOKEN = "clitoken00000000000000000000cli1"


def run(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_seed_serve_control_and_persist(tmp_path: Path):
    data = tmp_path / "sandbox"
    out = run(
        "sandbox", "seed", "--works", "6", "--seed", "3", "--data-dir", str(data), cwd=tmp_path
    )
    assert "seeded 6 works" in out
    seeded = Catalogue.load(data / "consonance")
    work_id = seeded.work_ids[2]
    todo_id = next(t.id for t in seeded.works[work_id].todos if not t.completed)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*CLI, "sandbox", "serve", "--data-dir", str(data), "--port", str(port), "--token", TOKEN],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/_sandbox/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "sandbox did not start"
            time.sleep(0.1)
        run("sandbox", "stage", str(work_id), "Printing", "--url", url, cwd=tmp_path)
        run("sandbox", "todo", str(todo_id), "--url", url, cwd=tmp_path)
        answer = httpx.post(
            f"{url}/graphql",
            json={"query": f"{{ work(workSearch: {{idEq: {work_id}}}) {{ projectStage }} }}"},
            headers={"Authorization": f"Token {TOKEN}"},
        ).json()
        assert answer == {"data": {"work": {"projectStage": "Printing"}}}
        assert httpx.post(f"{url}/graphql", json={"query": "{ works { id } }"}).status_code == 401
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    again = Catalogue.load(data / "consonance")
    assert again.works[work_id].project_stage == "Printing"
    assert next(t for t in again.works[work_id].todos if t.id == todo_id).completed


def test_statements_for_the_sandboxs_catalogue(tmp_path: Path):
    data, out = tmp_path / "sandbox", tmp_path / "statements"
    run("sandbox", "seed", "--works", "6", "--seed", "3", "--data-dir", str(data), cwd=tmp_path)
    said = run(
        "sandbox",
        "statements",
        "--out",
        str(out),
        "--payees",
        "20",
        "--period",
        "2026H2",
        "--data-dir",
        str(data),
        "--bad",
        cwd=tmp_path,
    )
    assert "wrote 20 statements for 2026H2" in said
    assert "added " in said  # six works have fewer than 20 authors
    saved = Catalogue.load(data / "consonance")
    names = sorted(p.name for p in out.glob("*.pdf"))
    assert len(names) == 20
    ids = [int(n.removeprefix("statement_2026H2_").removesuffix(".pdf")) for n in names]
    assert all(i in saved.contacts for i in ids)  # the sandbox serves every payee
    assert len(list((out / "bad").glob("*.pdf"))) == 3
    again = run(
        "sandbox",
        "statements",
        "--out",
        str(tmp_path / "again"),
        "--payees",
        "20",
        "--period",
        "2026H2",
        "--data-dir",
        str(data),
        cwd=tmp_path,
    )
    assert "added" not in again  # the saved catalogue has them now
    for name in names:
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()
