"""Acknowledgements back to the partner (``intake_ack``), against a real OpenSSH server and the
real engine: ``<name>.accepted`` / ``<name>.quarantined`` (with the reason) next to the upload
or in an ack folder, written through a temporary name and a rename, replaced when the partner
sends the name again; never taken back in; a failure to write one is an event on the file's
record, not a failed intake, and the file is not taken again.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from consonance_sftp.app import App
from consonance_sftp.app.intake import InboxReport, poll_inbox
from consonance_sftp.app.runner import DeliveryRunner
from consonance_sftp.config import Settings
from consonance_sftp.config.flows import IntakeFlow
from consonance_sftp.models import AuditAction, IntakeOutcome
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.settings import offline_settings, openssh_partner

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class World:
    app: App
    runner: DeliveryRunner
    root: Path

    def inbox(self, partner: str) -> Path:
        return self.root / "sftp" / partner

    async def poll(self, partner: str) -> InboxReport:
        flow = self.app.settings.flows[f"{partner}-in"]
        assert isinstance(flow, IntakeFlow)
        return await poll_inbox(self.app, self.runner, f"{partner}-in", flow, trigger="test")

    async def take_all(self, partner: str) -> tuple[InboxReport, list[dict[str, Any]]]:
        report = await self.poll(partner)
        results = [await self.runner.wait(f.workflow_id or "", timeout_s=60) for f in report.taken]
        return report, results


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    openssh: OpenSshServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    root = tmp_path_factory.mktemp("acks")
    blocker = root / "sftp" / "not-a-folder"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the ack folder should go")
    acks: dict[str, dict[str, Any]] = {
        "beside": {},  # next to the upload
        "folder": {"folder": "ack"},  # in a folder below the inbox
        "broken": {"folder": str(blocker / "ack")},  # cannot be made: every ack fails
    }
    partners = {}
    for name, ack in acks.items():
        (root / "sftp" / name).mkdir()
        partners[name] = openssh_partner(
            openssh,
            {"receive": str(root / "sftp" / name)},
            transfer={
                "stable_interval": 0.1,
                "post_action": "delete" if name == "folder" else "leave",
            },
            intake_ack=ack,
        )
    settings = Settings.model_validate(
        offline_settings(
            root,
            partners=partners,
            flows={f"{n}-in": {"kind": "intake", "partners": [n]} for n in partners},
            engine={"retry_max_attempts": 2, "retry_initial_interval_s": 0.1},
        )
    )
    app = App(settings)
    runner = DeliveryRunner(app, executor=True, quiet=True)
    await runner.__aenter__()
    try:
        yield World(app=app, runner=runner, root=root)
    finally:
        await runner.__aexit__(None, None, None)
        app.store.close()


def _put(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    then = time.time() - 60
    os.utime(path, (then, then))
    return hashlib.sha256(data).hexdigest()


def _fields(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines)


async def test_each_file_is_acknowledged_beside_it_and_acks_are_never_taken_in(
    world: World,
) -> None:
    inbox = world.inbox("beside")
    good = _put(inbox / "9781900200011_cover.pdf", os.urandom(30_000))
    bad = _put(inbox / "-rf.pdf", os.urandom(2_000))  # a name that could pass as an option

    _, results = await world.take_all("beside")
    assert sorted(r["outcome"] for r in results) == ["quarantined", "stored"]
    assert all(r["ack"] for r in results), results

    accepted = _fields(inbox / "9781900200011_cover.pdf.accepted")
    assert accepted == {
        "accepted": "9781900200011_cover.pdf",
        "outcome": "stored",
        "size": "30000",
        "sha256": good,
    }
    quarantined = _fields(inbox / "-rf.pdf.quarantined")
    assert quarantined["quarantined"] == "-rf.pdf" and quarantined["sha256"] == bad
    assert "starts with '-'" in quarantined["reason"]
    # Written under a temporary name, then renamed: nothing else is left in the folder.
    assert sorted(p.name for p in inbox.iterdir()) == [
        "-rf.pdf",
        "-rf.pdf.quarantined",
        "9781900200011_cover.pdf",
        "9781900200011_cover.pdf.accepted",
    ]

    again = await world.poll("beside")
    assert again.taken == [] and len(again.known) == 2
    why = {Path(f.path).name: f.reason for f in again.ignored}
    assert why == {
        "-rf.pdf.quarantined": "an acknowledgement we wrote",
        "9781900200011_cover.pdf.accepted": "an acknowledgement we wrote",
    }
    rows = world.app.store.list_intakes(partner="beside")
    assert sorted(Path(r.remote_path).name for r in rows) == ["-rf.pdf", "9781900200011_cover.pdf"]
    acked = world.app.store.list_audit(action=AuditAction.INTAKE_ACKNOWLEDGED, limit=50)
    assert sorted(e.details["ack"] for e in acked if e.subject.startswith("beside:")) == [
        str(inbox / "-rf.pdf.quarantined"),
        str(inbox / "9781900200011_cover.pdf.accepted"),
    ]

    # The partner sends the same name again, with new bytes: its acknowledgement is replaced.
    newer = os.urandom(31_000)
    (inbox / "9781900200011_cover.pdf").write_bytes(newer)
    later = time.time() - 30
    os.utime(inbox / "9781900200011_cover.pdf", (later, later))
    _, results = await world.take_all("beside")
    assert [r["outcome"] for r in results] == ["stored"]
    assert _fields(inbox / "9781900200011_cover.pdf.accepted")["sha256"] == (
        hashlib.sha256(newer).hexdigest()
    )


async def test_acks_go_to_the_ack_folder_after_the_post_action(world: World) -> None:
    inbox = world.inbox("folder")
    sha = _put(inbox / "index.pdf", os.urandom(5_000))

    _, results = await world.take_all("folder")
    assert [(r["outcome"], r["post_action"]) for r in results] == [("stored", "delete")]
    assert not (inbox / "index.pdf").exists()  # taken, then deleted as configured
    assert _fields(inbox / "ack" / "index.pdf.accepted")["sha256"] == sha
    assert sorted(p.name for p in (inbox / "ack").iterdir()) == ["index.pdf.accepted"]

    again = await world.poll("folder")
    assert again.taken == []
    assert [(Path(f.path).name, f.reason) for f in again.ignored] == [
        ("ack", "the folder our acknowledgements are written to")
    ]
    # Said in the poll's report, but not an "ignored" event on the audit trail.
    ignored = world.app.store.list_audit(action=AuditAction.INTAKE_IGNORED, limit=50)
    assert [e.subject for e in ignored if e.subject.startswith("folder:")] == []


async def test_an_ack_that_cannot_be_written_is_an_event_not_a_failed_intake(
    world: World,
) -> None:
    inbox = world.inbox("broken")
    sha = _put(inbox / "jacket.txt", b"jacket copy\n")

    _, results = await world.take_all("broken")
    [result] = results
    assert "error" not in result, result
    assert (result["outcome"], result["sha256"], result["ack"]) == ("stored", sha, "failed")
    assert Path(result["local_path"]).read_bytes() == b"jacket copy\n"
    [row] = world.app.store.list_intakes(partner="broken")
    assert (row.outcome, row.sha256) == (IntakeOutcome.STORED, sha)
    [event] = [
        e
        for e in world.app.store.list_audit(action=AuditAction.INTAKE_ACK_FAILED, limit=50)
        if e.subject.startswith("broken:")
    ]
    assert event.details["reason"].startswith("acknowledgement failed: ")
    assert str(inbox / "jacket.txt") in event.subject
    # No alert: the file is in; and the next poll does not take it again.
    assert [a for a in world.app.store.list_alerts() if a.partner == "broken"] == []
    again = await world.poll("broken")
    assert again.taken == [] and len(again.known) == 1
