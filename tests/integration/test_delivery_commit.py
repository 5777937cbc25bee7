"""The ``commit`` step of the delivery workflow (rename every file, then record the package):
when a rename fails part-way, the files already renamed keep ``sent`` rows, only the others are
``failed``, and ``retry`` finishes the package without renaming a file twice. The engine runs in
this process on SQLite, with the engine tests' folder transport and ledger."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from consonance_sftp.engine import Engine, EngineClient
from consonance_sftp.errors import RemotePermissionDenied
from consonance_sftp.ports.delivery import DeliveryRequest, Fence, FileToSend
from tests.engine_worker import (
    EventLog,
    FolderTransport,
    SqliteLedger,
    ledger_rows,
    make_source,
    read_events,
    settings_from,
)


class _RenameRefused(FolderTransport):
    """Refuses the rename of one path while ``refuse`` names it (a partner's permissions)."""

    def __init__(self, cfg: dict[str, Any], events: EventLog) -> None:
        super().__init__(cfg, events)
        self.refuse: str | None = None

    async def publish(self, partner: str, f: FileToSend, fence: Fence) -> None:
        if f.remote_path == self.refuse:
            raise RemotePermissionDenied("rename refused", partner=partner, path=f.remote_path)
        await super().publish(partner, f, fence)


async def test_a_failed_rename_keeps_earlier_files_sent_and_retry_finishes_once(
    tmp_path: Path,
) -> None:
    cfg: dict[str, Any] = {
        "db": f"sqlite:///{tmp_path}/dbos.sqlite",
        "executor_id": "commit-test",
        "dest": str(tmp_path / "dest"),
        "retry": {"max_attempts": 1},
    }
    events_path = tmp_path / "events.jsonl"
    transport = _RenameRefused(cfg, EventLog(str(events_path), "commit-test"))
    transport.refuse = "/in/b.bin"
    ledger_path = tmp_path / "ledger.sqlite"
    settings = settings_from(cfg)
    engine = Engine(settings, transport=transport, ledger=SqliteLedger(str(ledger_path)))
    await asyncio.to_thread(engine.launch)
    client = EngineClient(settings)
    try:
        a = make_source(tmp_path / "a.bin", 3000, seed=1)
        b = make_source(tmp_path / "b.bin", 3000, seed=2)
        request = DeliveryRequest(flow="t", partner="p", package="pkg", files=(a, b))
        workflow_id = await engine.enqueue_delivery(request, max_connections=2)
        with pytest.raises(Exception, match="rename refused"):
            await engine.result(workflow_id, 60)

        rows = {r[1]: (r[4], r[5]) for r in ledger_rows(ledger_path)}
        assert rows["/in/a.bin"] == ("sent", None)  # renamed before the failure
        outcome, reason = rows["/in/b.bin"]
        assert outcome == "failed" and reason is not None and "rename refused" in reason

        transport.refuse = None
        await asyncio.to_thread(client.retry, workflow_id)
        deadline = time.monotonic() + 60
        while await asyncio.to_thread(client.status, workflow_id) != "SUCCESS":
            assert time.monotonic() < deadline, "retry did not finish"
            await asyncio.sleep(0.1)
    finally:
        client.close()
        await engine.aclose()

    rows = {r[1]: (r[4], r[5]) for r in ledger_rows(ledger_path)}
    assert rows == {"/in/a.bin": ("sent", None), "/in/b.bin": ("sent", None)}
    events = read_events(events_path)
    renamed = [e["path"] for e in events if e["ev"] == "rename"]
    assert sorted(renamed) == ["/in/a.bin", "/in/b.bin"]  # each renamed once
    assert [e["path"] for e in events if e["ev"] == "upload_start"] == ["/in/a.bin", "/in/b.bin"]
    for f in (a, b):
        final = tmp_path / "dest" / "p" / f.remote_path.lstrip("/")
        assert final.read_bytes() == Path(f.source).read_bytes()
