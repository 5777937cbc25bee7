"""The delivery ledger says how each file was verified (issue 13: a file is recorded as sent only
with a hash match or an explicit, configured ``checksum = "size"``, and its row says which).

The engine runs in this process with the real SFTP transport to the asyncssh fault server (no
check-file, no shell: 'auto' reads files back) and the real store, on SQLite and on
PostgreSQL; its DBOS system database is SQLite, as in ``test_delivery_failures.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from consonance_sftp.adapters.sftp.fs import SftpRemoteFS
from consonance_sftp.adapters.store.sql_store import SqlStore, open_store
from consonance_sftp.app.delivery import SftpDeliveryTransport
from consonance_sftp.engine import Engine, StoreLedger
from consonance_sftp.models import DeliveryOutcome, Verification
from consonance_sftp.ports.delivery import DeliveryRequest, StageResult
from tests.engine_worker import make_source, settings_from
from tests.fixtures.sftp_servers import EndpointFactory


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    st = open_store(store_url)
    try:
        yield st
    finally:
        st.close()


async def test_each_ledger_row_says_how_its_file_was_verified(
    fault_endpoint: EndpointFactory, store: SqlStore, tmp_path: Path
) -> None:
    def make_fs(partner: str) -> SftpRemoteFS:
        # The archive partner is configured for a size-only check; the printer has defaults.
        transfer = {"checksum": "size"} if partner == "archive" else {}
        endpoint = dataclasses.replace(fault_endpoint(**transfer), partner=partner)
        return SftpRemoteFS(endpoint, state_dir=tmp_path / "state")

    settings = settings_from(
        {
            "db": f"sqlite:///{tmp_path}/dbos.sqlite",
            "executor_id": "verified-test",
            "retry": {"max_attempts": 2, "initial_interval_s": 0.1},
        }
    )
    transport = SftpDeliveryTransport(make_fs)
    engine = Engine(settings, transport=transport, ledger=StoreLedger(store), alerts=store)
    await asyncio.to_thread(engine.launch)
    printed = make_source(tmp_path / "interior.pdf", 300_000, seed=1)
    archived = make_source(tmp_path / "archive.zip", 200_000, seed=2)
    try:
        for partner, f, generation in (
            ("printer", printed, 0),
            ("archive", archived, 0),
            # An explicit resend's plan finds the bytes at the final name already: skipped,
            # and the row says how that copy was found to be these bytes.
            ("printer", printed, 1),
        ):
            request = DeliveryRequest(
                flow="print",
                partner=partner,
                package=f"{partner} {generation}",
                files=(f,),
                generation=generation,
            )
            workflow_id = await engine.enqueue_delivery(request, max_connections=2)
            await engine.result(workflow_id, 60)
    finally:
        await engine.aclose()
        await transport.close()

    rows = {(r.partner, r.generation): r for r in store.list_deliveries()}
    assert {k: (r.outcome, r.verified_by) for k, r in rows.items()} == {
        ("printer", 0): (DeliveryOutcome.SENT, Verification.READ_BACK),
        ("archive", 0): (DeliveryOutcome.SENT, Verification.SIZE),
        ("printer", 1): (DeliveryOutcome.SKIPPED, Verification.READ_BACK),
    }
    # The row's audit event says it too, and the trail still verifies.
    sent = [e for e in store.list_audit(limit=50) if e.action == "delivery.sent"]
    assert sorted(e.details["verified_by"] for e in sent) == ["read_back", "size"]
    report = store.verify_audit()
    assert report.ok, report.problems


def test_a_stage_checkpoint_of_the_previous_release_still_replays() -> None:
    """The upload step checkpointed the bytes sent alone before it said how the file was
    verified: a workflow recovered by this release reads that as 'not known'."""
    assert StageResult.from_checkpoint(4096) == StageResult(sent=4096, verified_by=None)
    staged = StageResult(sent=10, verified_by=Verification.SHELL_SHA1)
    assert staged.to_dict() == {"sent": 10, "verified_by": "shell-sha1"}
    assert StageResult.from_checkpoint(staged.to_dict()) == staged
    # A name a later release may add is not an error, only unknown here.
    assert StageResult.from_checkpoint({"sent": 1, "verified_by": "blake3"}).verified_by is None
