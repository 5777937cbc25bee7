"""kill -9 of ``consonance-sftp run`` in the middle of uploading a multi-GiB archive to a real
OpenSSH partner, then the same command again: the run delivers the archive the first one wrote
(it does not write another), the upload resumes from the bytes already on the server (its
checkpoint says fewer bytes were sent than the file holds), the partner's copy is byte for
byte the local archive, and the ledger holds one ``sent`` row for it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyrage
import pytest
import tomlkit
from dbos import DBOSClient

from consonance_sftp.app import App
from consonance_sftp.config import Settings
from consonance_sftp.models import DeliveryOutcome
from consonance_sftp.ports.store import AssetVersion
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.cli import CLI
from tests.fixtures.consonance_sandbox import SandboxHandle, start_sandbox
from tests.settings import openssh_partner

pytestmark = [pytest.mark.sshd]

ASSETS = 3
ASSET_SIZE = 690 * 1024 * 1024  # 3 x 690 MiB: an archive of just over 2 GiB
CHUNK = 16 * 1024 * 1024


def _random_file(path: Path, size: int) -> None:
    with path.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(CHUNK, left))
            out.write(block)
            left -= len(block)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _allocated(path: Path) -> int:
    """Bytes the server has written into ``path`` (segments land out of order: its length
    runs ahead of what it holds; its allocated blocks do not)."""
    try:
        return path.stat().st_blocks * 512
    except FileNotFoundError:
        return 0


@pytest.fixture
def sandbox() -> Iterator[SandboxHandle]:
    handle = start_sandbox(generate_catalogue(6, seed=17))
    yield handle
    handle.stop()


@pytest.mark.slow
def test_kill9_mid_upload_of_a_multi_gib_archive_resumes(
    openssh: OpenSshServer, sandbox: SandboxHandle, tmp_path: Path
) -> None:
    free = os.statvfs(tmp_path)
    if free.f_bavail * free.f_frsize < 4 * ASSETS * ASSET_SIZE:
        raise AssertionError(f"{tmp_path} needs {4 * ASSETS * ASSET_SIZE:,} bytes free")
    token = tmp_path / "token"
    token.write_text(sandbox.token)
    partner = tmp_path / "vault"
    partner.mkdir()
    identity = pyrage.x25519.Identity.generate()
    raw: dict[str, Any] = {
        "state_dir": str(tmp_path / "var"),
        "consonance": {"base_url": sandbox.url, "token": {"file": str(token)}},
        "partners": {
            "vault": openssh_partner(
                openssh,
                {"send": str(partner)},
                max_connections=4,
                transfer={
                    "segment_size": 32 * 1024 * 1024,  # the resume journal marks each 32 MiB
                    "allow_shell": True,  # the server hashes the copy (sha256sum)
                },
            )
        },
        "flows": {
            "nightly": {
                "kind": "archive",
                "partners": ["vault"],
                "organisation": "Meridian Press",
                "age_recipients": [str(identity.to_public())],
            }
        },
    }
    config = tmp_path / "consonance-sftp.toml"
    config.write_text(tomlkit.dumps(raw))
    app = App(Settings.model_validate(raw), config)
    products = [
        (w.id, p.id)
        for w in sorted(sandbox.catalogue.works.values(), key=lambda w: w.id)
        for p in w.products
    ][:ASSETS]
    assert len(products) == ASSETS
    for n, (work_id, product_id) in enumerate(products):
        master = tmp_path / f"audio-master-{n}.wav"
        _random_file(master, ASSET_SIZE)
        app.store.add_asset_version(
            AssetVersion(
                work_id=work_id,
                product_id=product_id,
                kind="AUDIO_MASTER",
                sha256="0" * 64,
                size=ASSET_SIZE,
                local_path=str(master),
            )
        )
    env = {**os.environ, "CONSONANCE_EXECUTOR_ID": f"archive-resume-{os.getpid()}"}
    command = [*CLI, "--config", str(config), "run", "nightly"]
    log = tmp_path / "run-1.log"

    with log.open("w") as out:
        first = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        while True:
            temps = list(partner.glob(".nightly-*.part"))
            if temps and _allocated(temps[0]) > ASSETS * ASSET_SIZE // 4:
                break
            assert first.poll() is None, f"the run ended before the kill:\n{log.read_text()}"
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        first.kill()  # kill -9, mid-upload
    finally:
        first.kill()
        first.wait(30)
    folder = tmp_path / "var" / "archive" / "nightly"
    [archive] = folder.glob("nightly-*.tar.zst.age")
    size = archive.stat().st_size
    at_kill = _allocated(temps[0])
    assert size > 2 * 1024**3 and at_kill < size, (size, at_kill)
    assert not (partner / archive.name).exists()  # nothing under its final name
    assert app.store.list_deliveries(flow="nightly") == []  # nothing recorded yet

    started = time.monotonic()
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=150)
    output = second.stdout + second.stderr
    print(f"second run: {time.monotonic() - started:.1f} s")
    assert second.returncode == 0, output
    assert "not written again" in output, output

    # The archive the first run wrote, not another one.
    assert sorted(p.name for p in folder.iterdir()) == [archive.name, f"{archive.name}.sha256"]
    local_sha = _sha256(archive)
    sidecar = (folder / f"{archive.name}.sha256").read_text()
    assert sidecar == f"{local_sha}  {archive.name}\n"
    # The partner's copy: byte for byte, with its sidecar, no temporary file left.
    assert _sha256(partner / archive.name) == local_sha
    assert (partner / f"{archive.name}.sha256").read_text() == sidecar
    assert list(partner.glob(".*.part")) == []
    # One ledger row says it was sent.
    rows = [r for r in app.store.list_deliveries(flow="nightly") if r.sha256 == local_sha]
    assert [(r.outcome, r.size, r.remote_path.rsplit("/", 1)[-1]) for r in rows] == [
        (DeliveryOutcome.SENT, size, archive.name)
    ]
    # The upload went on from the bytes already there: its checkpoint counts what was sent.
    client = DBOSClient(system_database_url=app.settings.database.dbos_system_url)
    try:
        workflows = [w for w in client.list_workflows() if w.workflow_id.startswith("dlv-")]
        assert [w.status for w in workflows] == ["SUCCESS"]  # one delivery, not a second
        steps = client.list_workflow_steps(workflows[0].workflow_id)
    finally:
        client.destroy()
    [upload] = [s for s in steps if str(s["function_name"]).endswith(f"/{archive.name}")]
    sent = upload["output"]["sent"]
    print(f"archive {size:,} bytes; {at_kill:,} on the server at the kill; {sent:,} sent after")
    assert 0 < sent <= size - size // 8, (sent, size, at_kill)
    app.store.close()
