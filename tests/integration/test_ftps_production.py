"""A production package end to end to an FTPS partner (issue 20): the Consonance sandbox over
HTTP -> the production flow (``ProductionHandoff``) -> the durable engine (DBOS on SQLite) ->
``App.remote_fs`` picking the FTP adapter by the partner's ``protocol`` -> vsftpd with
explicit TLS and its default "session reuse required", asserted on the server's disk and on
the ledger."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consonance_sftp.adapters.ftp.fs import FtpRemoteFS
from consonance_sftp.app import App
from consonance_sftp.app.dispatch import delivery_request
from consonance_sftp.config import ProductionFlow, Settings
from consonance_sftp.flows.production import ProductionHandoff
from consonance_sftp.formats.packaging import parse_manifest, sha256_file
from consonance_sftp.models import DeliveryOutcome, Verification, Work
from consonance_sftp.sandbox.consonance.generator import generate_catalogue
from tests.fixtures.consonance_sandbox import start_sandbox
from tests.fixtures.ftp_servers import FtpServer, start_vsftpd

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
def vsftpd_explicit() -> Iterator[FtpServer]:
    server = start_vsftpd(implicit=False)
    try:
        yield server
    finally:
        server.stop()


def _printable(work: Work) -> bool:
    return bool(work.production_runs) and any(
        p.typename == "PhysicalBookProduct"
        and {f.file_variant for f in p.production_files if f.approval_status == "APPROVED"}
        >= {"INTERIOR", "COVER"}
        for p in work.products
    )


@pytest.mark.slow
async def test_a_production_package_reaches_an_ftps_partner_through_the_engine(
    tmp_path: Path, vsftpd_explicit: FtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = vsftpd_explicit
    assert server.certificate is not None
    monkeypatch.setenv("CSFTP_TEST_FTPS_PASSWORD", server.password)
    catalogue = generate_catalogue(40, seed=5)
    work = next(w for w in catalogue.works.values() if _printable(w))
    sandbox = start_sandbox(catalogue)
    (tmp_path / "token").write_text(sandbox.token)
    partner: dict[str, Any] = {
        "protocol": "ftps",
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "tls_fingerprints": [server.certificate.fingerprint],
        "auth": {"password": {"env": "CSFTP_TEST_FTPS_PASSWORD"}},
        "folders": {"send": "/in"},
        "max_connections": 2,
    }
    settings = Settings.model_validate(
        {
            "state_dir": str(tmp_path / "var"),
            "consonance": {"base_url": sandbox.url, "token": {"file": str(tmp_path / "token")}},
            "partners": {"printer": partner},
            "flows": {
                "print": {
                    "kind": "production",
                    "partners": ["printer"],
                    "when": {"project_stage": "Production approval"},
                    "profile": {"preset": "print_on_demand", "preflight": {"pdf_x": False}},
                }
            },
        }
    )
    app = App(settings)
    fs = app.remote_fs("printer")
    assert isinstance(fs, FtpRemoteFS)  # the adapter follows the partner's protocol
    await fs.close()
    flow = settings.flows["print"]
    assert isinstance(flow, ProductionFlow)
    engine = app.engine()
    await asyncio.to_thread(engine.launch)
    try:
        async with app.consonance() as api:
            fetched = await api.get_work(work.id)
            assert fetched is not None
            packages, _ = await ProductionHandoff(
                api, app.store, app.state_dir / "packages"
            ).prepare(flow, fetched, now=NOW)
        assert packages
        ids = []
        for pkg in packages:
            request = delivery_request(pkg, flow="print", folder="/in", trigger="test: ftps")
            ids.append(await engine.enqueue_delivery(request, max_connections=2))
        results = [await engine.result(wid, timeout_s=120) for wid in ids]
    finally:
        await engine.aclose()
        sandbox.stop()
    assert all(r["sent"] for r in results)
    landed = server.root / "in"
    pkg = packages[0]
    isbn = pkg.product.isbn13
    manifest = parse_manifest((landed / f"{isbn}_manifest.json").read_bytes())
    assert f"{isbn}_text.pdf" in manifest
    for name, (size, sha) in manifest.items():
        assert sha256_file(landed / name) == (size, sha)  # whole, as planned, on the server
    # Only final names on the server: every temporary name was renamed away.
    on_server = sorted(os.listdir(landed))
    assert not [n for n in on_server if n.startswith(".") or n.endswith(".part")], on_server
    rows = app.store.list_deliveries(flow="print")
    assert rows and all(r.outcome is DeliveryOutcome.SENT for r in rows)
    for row in rows:
        assert row.partner == "printer"
        local = server.local(row.remote_path)
        assert row.sha256 == hashlib.sha256(local.read_bytes()).hexdigest()
        # vsftpd offers no server-side hash: each file was read back and hashed.
        assert row.verified_by is Verification.READ_BACK
    app.store.close()
