"""Inbox polling and the intake workflow against a real OpenSSH server and a real engine.

One engine (SQLite) runs for the module; each test has its own partner and flow, so their
files never meet. What is checked is what a partner and an operator would see: the files left
on (or gone from) the server, the local copies and their SHA-256, the intake ledger rows, the
audit trail and the workflows in DBOS.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from consonance_sftp.app import App
from consonance_sftp.app.intake import InboxReport, poll_inbox
from consonance_sftp.app.runner import Controls, DeliveryRunner
from consonance_sftp.config import Settings
from consonance_sftp.config.flows import IntakeFlow, SalesInFlow
from consonance_sftp.engine import EngineClient
from consonance_sftp.errors import ValidationFailed
from consonance_sftp.models import IntakeOutcome
from consonance_sftp.ports.intake import FetchedFile, HandOffResult, IntakeRequest
from consonance_sftp.sandbox.openssh import OpenSshServer
from tests.settings import offline_settings, openssh_partner

pytestmark = pytest.mark.asyncio(loop_scope="module")

WRONG_PIN = "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8"


@dataclass
class World:
    app: App
    runner: DeliveryRunner
    folders: dict[str, Path]  # partner -> its inbox folder, as the test sees it
    root: Path

    async def poll(self, flow_name: str) -> InboxReport:
        flow = self.app.settings.flows[flow_name]
        assert isinstance(flow, IntakeFlow | SalesInFlow)
        return await poll_inbox(self.app, self.runner, flow_name, flow, trigger="test")

    async def result(self, workflow_id: str) -> dict[str, Any]:
        return await self.runner.wait(workflow_id, timeout_s=60)

    def rows(self, partner: str) -> list[Any]:
        return self.app.store.list_intakes(partner=partner)


def _partner(openssh: OpenSshServer, folders: dict[str, str], **transfer: Any) -> dict[str, Any]:
    return openssh_partner(
        openssh, folders, max_connections=2, transfer={"stable_interval": 0.4, **transfer}
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    openssh: OpenSshServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    root = tmp_path_factory.mktemp("inbox")
    names = ("plain", "mover", "marked", "pinned", "odd", "hider", "namer", "grower", "stuck")
    folders = {name: root / "sftp" / name for name in names}
    for folder in folders.values():
        folder.mkdir(parents=True)
    (root / "sftp" / "mover-done").mkdir()
    partners = {
        "plain": _partner(openssh, {"receive": str(folders["plain"])}),
        "mover": _partner(
            openssh,
            {"receive": str(folders["mover"])},
            post_action="move",
            processed_folder=str(root / "sftp" / "mover-done"),
        ),
        "marked": _partner(
            openssh,
            {"receive": str(folders["marked"])},
            intake_done_marker="{name}.done",
            post_action="delete",
        ),
        "pinned": {
            **_partner(openssh, {"receive": str(folders["pinned"])}),
            "host_keys": [WRONG_PIN],
        },
        **{
            name: _partner(openssh, {"receive": str(folders[name])})
            for name in ("odd", "hider", "namer", "grower")
        },
        "stuck": _partner(  # its processed folder is missing: every move fails
            openssh,
            {"receive": str(folders["stuck"])},
            post_action="move",
            processed_folder=str(root / "sftp" / "no-such-folder"),
        ),
    }
    flows: dict[str, Any] = {
        "typesetting": {
            "kind": "intake",
            "partners": ["plain"],
            "patterns": ["*.pdf", "*.epub"],
            "poll_interval": 60,
        },
        "revisions": {"kind": "intake", "partners": ["mover"]},
        "sales": {"kind": "sales_in", "partners": ["marked"], "patterns": ["*.csv"]},
        "pinned-in": {"kind": "intake", "partners": ["pinned"]},
        **{f"{name}-in": {"kind": "intake", "partners": [name]} for name in ("odd", "hider")},
        "namer-in": {"kind": "intake", "partners": ["namer"]},
        "grower-in": {"kind": "intake", "partners": ["grower"]},
        "stuck-in": {"kind": "intake", "partners": ["stuck"]},
    }
    chroot = openssh.chroot_upload_dir
    if chroot is not None and openssh.chroot_user is not None:
        locked = chroot / f"locked-{root.name}"
        locked.mkdir()
        user = pwd.getpwnam(openssh.chroot_user)
        os.chown(locked, user.pw_uid, user.pw_gid)
        folders["locked"] = locked
        partners["locked"] = {
            **_partner(openssh, {"receive": f"/upload/{locked.name}"}, post_action="delete"),
            "user": openssh.chroot_user,
        }
        flows["locked-in"] = {"kind": "intake", "partners": ["locked"]}
    settings = Settings.model_validate(
        offline_settings(
            root,
            partners=partners,
            flows=flows,
            engine={"retry_max_attempts": 2, "retry_initial_interval_s": 0.1},
        )
    )
    app = App(settings)
    runner = DeliveryRunner(app, executor=True, quiet=True)
    await runner.__aenter__()
    try:
        yield World(app=app, runner=runner, folders=folders, root=root)
    finally:
        await runner.__aexit__(None, None, None)
        app.store.close()
        if "locked" in folders:
            shutil.rmtree(folders["locked"], ignore_errors=True)


def _put(path: Path, size: int, *, age_s: float = 0.0) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
    return data


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_a_stable_file_is_taken_exactly_once_across_repeated_polls(world: World) -> None:
    inbox = world.folders["plain"]
    data = _put(inbox / "interior.pdf", 700_000, age_s=30)
    _put(inbox / "readme.txt", 10, age_s=30)  # not one of the flow's patterns
    _put(inbox / ".interior.pdf.part", 10, age_s=30)  # a partial upload

    first, second = await asyncio.gather(world.poll("typesetting"), world.poll("typesetting"))
    taken = [f for report in (first, second) for f in report.taken]
    assert {f.path for f in taken} == {str(inbox / "interior.pdf")}
    assert len({f.workflow_id for f in taken}) == 1  # the second enqueue attached
    assert sorted((f.path, f.reason) for f in first.ignored) == [
        (str(inbox / ".interior.pdf.part"), "a temporary upload name (an upload still under way)"),
        (str(inbox / "readme.txt"), "not in patterns"),
    ]
    workflow_id = taken[0].workflow_id
    assert workflow_id is not None and workflow_id.startswith("ing-plain-")

    result = await world.result(workflow_id)
    assert result["outcome"] == "stored" and result["post_action"] == "leave"
    assert result["sha256"] == _sha(data)
    local = Path(result["local_path"])
    assert local.read_bytes() == data
    assert local.is_relative_to(world.app.state_dir / "inbox" / "typesetting" / "plain")
    assert local.name == "interior.pdf"

    third = await world.poll("typesetting")
    assert third.taken == [] and [f.path for f in third.known] == [str(inbox / "interior.pdf")]

    rows = world.rows("plain")
    assert [(r.remote_path, r.outcome, r.sha256, r.flow) for r in rows] == [
        (str(inbox / "interior.pdf"), IntakeOutcome.STORED, _sha(data), "typesetting")
    ]
    assert rows[0].local_path == str(local)
    assert (inbox / "interior.pdf").exists()  # post_action "leave"
    client = EngineClient(world.app.engine_settings())
    try:
        statuses = client.statuses(prefix="ing-plain-")
    finally:
        client.close()
    assert statuses == {workflow_id: "SUCCESS"}
    events = world.app.store.list_audit(subject=f"plain:{inbox / 'interior.pdf'}")
    assert sorted(e.action for e in events) == ["intake.post_action", "intake.stored"]


async def test_a_growing_file_is_not_taken_until_it_is_stable(world: World) -> None:
    path = world.folders["plain"] / "growing.epub"
    path.write_bytes(b"PK" + os.urandom(1000))
    stop = asyncio.Event()

    async def partner_still_uploading() -> None:
        while not stop.is_set():
            with path.open("ab") as fh:
                fh.write(os.urandom(4096))
            await asyncio.sleep(0.05)

    writer = asyncio.create_task(partner_still_uploading())
    try:
        early = await world.poll("typesetting")
    finally:
        stop.set()
        await writer
    assert [(f.path, f.reason) for f in early.unstable] == [(str(path), "still being written")]
    assert early.taken == []
    assert world.app.store.find_intake("plain", str(path), 0, 0) is None

    later = await world.poll("typesetting")
    assert [f.path for f in later.taken] == [str(path)]
    workflow_id = later.taken[0].workflow_id
    assert workflow_id is not None
    result = await world.result(workflow_id)
    assert Path(result["local_path"]).read_bytes() == path.read_bytes()
    assert result["size"] == path.stat().st_size


async def test_move_happens_only_after_the_intake_row_exists(world: World) -> None:
    inbox = world.folders["mover"]
    done = world.root / "sftp" / "mover-done"
    data = _put(inbox / "cover.tif", 300_000, age_s=30)
    report = await world.poll("revisions")
    assert [f.path for f in report.taken] == [str(inbox / "cover.tif")]
    workflow_id = report.taken[0].workflow_id
    assert workflow_id is not None
    result = await world.result(workflow_id)

    assert result["post_action"] == f"move:{done / 'cover.tif'}"
    assert not (inbox / "cover.tif").exists()
    assert (done / "cover.tif").read_bytes() == data
    [row] = world.rows("mover")
    assert (row.outcome, row.sha256) == (IntakeOutcome.STORED, _sha(data))
    assert Path(row.local_path or "").read_bytes() == data

    # The remote file moved only after the row was written: the record step finished
    # (checkpointed) before the post-action step began, and the audit trail says the same.
    from dbos import DBOS

    steps = await asyncio.to_thread(DBOS.list_workflow_steps, workflow_id)
    names = [s["function_name"] for s in steps]
    assert names == ["fetch", "screen", "record", "post-action", "check-growth"]
    record, post = steps[2], steps[3]
    assert record["completed_at_epoch_ms"] <= post["started_at_epoch_ms"]
    events = world.app.store.list_audit(subject=f"mover:{inbox / 'cover.tif'}")
    assert [e.action for e in reversed(events)] == ["intake.stored", "intake.post_action"]

    # A new version under the same name is a new file: taken again, kept beside the first.
    data2 = _put(inbox / "cover.tif", 1000, age_s=10)
    again = await world.poll("revisions")
    assert [f.path for f in again.taken] == [str(inbox / "cover.tif")]
    assert again.taken[0].workflow_id != workflow_id
    second = await world.result(again.taken[0].workflow_id or "")
    assert Path(second["local_path"]).read_bytes() == data2
    assert Path(result["local_path"]).read_bytes() == data
    assert len(world.rows("mover")) == 2


async def test_a_dangerous_name_is_quarantined_with_its_bytes_kept(world: World) -> None:
    inbox = world.folders["plain"]
    names = {"-rf proof.pdf": "starts with '-'", "bad\x1bname.pdf": "control characters"}
    kept = {name: _put(inbox / name, 5000, age_s=30) for name in names}
    report = await world.poll("typesetting")
    assert sorted(f.path for f in report.taken) == sorted(str(inbox / n) for n in names)
    for item in report.taken:
        result = await world.result(item.workflow_id or "")
        name = Path(item.path).name
        assert result["outcome"] == "quarantined"
        assert names[name] in result["reason"]
        local = Path(result["local_path"])
        assert local.is_relative_to(world.app.state_dir / "quarantine" / "typesetting" / "plain")
        assert not local.name.startswith(("-", ".")) and "\x1b" not in local.name
        assert local.read_bytes() == kept[name]
        row = world.app.store.find_intake("plain", item.path, item.size, item.mtime)
        assert row is not None and row.outcome is IntakeOutcome.QUARANTINED
        assert row.reason == result["reason"] and row.sha256 == _sha(kept[name])


async def test_a_terminal_fetch_error_leaves_the_remote_file_and_a_failed_row(
    world: World,
) -> None:
    if "locked" not in world.folders:
        pytest.skip("the chroot account (a user other than the file's owner) needs root")
    path = world.folders["locked"] / "statement.csv"
    data = _put(path, 2000, age_s=30)
    path.chmod(0o000)  # the partner's account may list it but not read it
    report = await world.poll("locked-in")
    assert [Path(f.path).name for f in report.taken] == ["statement.csv"]
    workflow_id = report.taken[0].workflow_id or ""
    result = await world.result(workflow_id)
    assert "error" in result and "statement.csv" in result["error"]

    [row] = world.rows("locked")
    assert row.outcome is IntakeOutcome.FAILED
    assert row.reason and "ermission" in row.reason
    assert row.local_path is None and row.sha256 is None
    path.chmod(0o600)
    assert path.read_bytes() == data  # post_action "delete" never ran
    client = EngineClient(world.app.engine_settings())
    try:
        assert client.status(workflow_id) == "ERROR"
    finally:
        client.close()
    # The next poll does not take it again: the failure is on the record, and
    # 'consonance-sftp retry' runs it again once the cause is fixed.
    again = await world.poll("locked-in")
    assert again.taken == [] and len(again.known) == 1


async def test_a_done_marker_decides_and_the_post_action_deletes(world: World) -> None:
    inbox = world.folders["marked"]
    data = _put(inbox / "sales-2026-11.csv", 4000)
    early = await world.poll("sales")
    assert [(f.path, f.reason) for f in early.unstable] == [
        (str(inbox / "sales-2026-11.csv"), "no done marker yet")
    ]
    (inbox / "sales-2026-11.csv.done").write_text("")
    report = await world.poll("sales")
    assert [f.path for f in report.taken] == [str(inbox / "sales-2026-11.csv")]
    result = await world.result(report.taken[0].workflow_id or "")
    assert result["post_action"] == "delete"
    assert not (inbox / "sales-2026-11.csv").exists()
    assert Path(result["local_path"]).read_bytes() == data
    assert Path(result["local_path"]).is_relative_to(world.app.state_dir / "inbox" / "sales")
    assert not (inbox / "sales-2026-11.csv.done").exists()  # the marker follows its file
    (inbox / "old.csv.done").write_text("")  # a marker left over from long ago
    after = await world.poll("sales")  # ...is never taken as a file
    assert after.taken == [] and after.unstable == [] and after.ignored == []


async def test_pauses_windows_and_a_changed_host_key_hold_the_poll(world: World) -> None:
    _put(world.folders["pinned"] / "x.pdf", 10, age_s=30)
    report = await world.poll("pinned-in")
    assert report.taken == [] and "pinned" in report.errors
    assert "host key" in report.errors["pinned"].lower()
    alerts = world.app.store.list_alerts(partner="pinned", kind="host_key_mismatch")
    assert len(alerts) == 1
    again = await world.poll("pinned-in")
    assert again.errors == {} and again.held == {"pinned": "partner 'pinned' is paused"}

    controls = Controls(world.app)
    controls.set("flow", "typesetting", paused=True, by="test", reason="maintenance")
    try:
        held = await world.poll("typesetting")
    finally:
        controls.set("flow", "typesetting", paused=False, by="test", reason="done")
    assert held.held == {"plain": "flow 'typesetting' is paused"} and held.taken == []
    assert held.summary()["held"] == {"plain": "flow 'typesetting' is paused"}


class _Matcher:
    """A stand-in for the later intake processing: attaches ``*.pdf`` files to work 12 and
    refuses anything else as a terminal error."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    async def handle(self, request: IntakeRequest, file: FetchedFile) -> HandOffResult:
        self.seen.append((request.remote_path, file.sha256))
        if not request.remote_path.endswith(".pdf"):
            raise ValidationFailed(f"{request.remote_path}: no work matches this file")
        return HandOffResult(outcome=IntakeOutcome.ATTACHED, work_id=12, product_id=34)


async def test_a_bound_hand_off_attaches_or_records_why_not(world: World) -> None:
    inbox = world.folders["plain"]
    pdf = _put(inbox / "index-v2.pdf", 3000, age_s=30)
    epub = _put(inbox / "proof.epub", 3000, age_s=30)
    engine = world.runner.engine
    assert engine is not None
    matcher = _Matcher()
    engine.intake_handlers["intake"] = matcher
    try:
        report = await world.poll("typesetting")
        by_name = {Path(f.path).name: f for f in report.taken}
        assert sorted(by_name) == ["index-v2.pdf", "proof.epub"]
        attached = await world.result(by_name["index-v2.pdf"].workflow_id or "")
        refused = await world.result(by_name["proof.epub"].workflow_id or "")
    finally:
        del engine.intake_handlers["intake"]
    assert attached["outcome"] == "attached"
    row = world.app.store.find_intake(
        "plain", str(inbox / "index-v2.pdf"), 3000, _mtime(inbox / "index-v2.pdf")
    )
    assert row is not None
    assert (row.outcome, row.work_id, row.product_id) == (IntakeOutcome.ATTACHED, 12, 34)
    assert row.sha256 == _sha(pdf)
    assert "no work matches" in refused["error"]
    row = world.app.store.find_intake(
        "plain", str(inbox / "proof.epub"), 3000, _mtime(inbox / "proof.epub")
    )
    assert row is not None and row.outcome is IntakeOutcome.STORED  # kept, awaiting a fix
    assert row.reason is not None and "processing failed" in row.reason
    assert Path(row.local_path or "").read_bytes() == epub
    assert sorted(p for p, _ in matcher.seen) == [
        str(inbox / "index-v2.pdf"),
        str(inbox / "proof.epub"),
    ]


def _mtime(path: Path) -> float:
    return float(int(path.stat().st_mtime))


async def test_a_flow_tick_polls_the_inbox_and_reports_what_it_took(world: World) -> None:
    from datetime import UTC, datetime

    from consonance_sftp.app.serving import run_tick

    inbox = world.folders["mover"]
    data = _put(inbox / "jacket-copy.docx", 2000, age_s=30)
    tick = datetime.now(UTC).replace(microsecond=0)
    summary = await run_tick(world.app, "revisions", tick, runner=world.runner)
    [taken] = summary["inbox"]["taken"]
    assert taken["path"] == str(inbox / "jacket-copy.docx")
    assert summary["inbox"]["trigger"] == f"schedule:{tick.isoformat()}"
    result = await world.result(taken["workflow_id"])
    assert Path(result["local_path"]).read_bytes() == data
    row = world.app.store.find_intake(
        "mover",
        taken["path"],
        taken["size"],
        _mtime(inbox.parent / "mover-done" / "jacket-copy.docx"),
    )
    assert row is not None and row.outcome is IntakeOutcome.STORED


async def test_a_name_that_is_not_utf8_does_not_block_the_inbox(world: World) -> None:
    """A file whose name is bytes that are not UTF-8 used to fail every poll of the partner
    (no file taken at all). It is quarantined under a safe name, with its bytes on the
    record; the partner's other files are stored."""
    inbox = world.folders["odd"]
    odd = b"Bj\xf6rk cover.pdf"  # Latin-1
    odd_path = os.path.join(bytes(inbox), odd)
    odd_data = os.urandom(6000)
    with open(odd_path, "wb") as fh:
        fh.write(odd_data)
    then = time.time() - 30
    os.utime(odd_path, (then, then))
    good = _put(inbox / "interior.pdf", 7000, age_s=30)

    report = await world.poll("odd-in")
    assert report.errors == {}
    shown = f"{inbox}/Bj\\xf6rk cover.pdf"
    assert sorted(f.path for f in report.taken) == sorted([shown, str(inbox / "interior.pdf")])
    results = {f.path: await world.result(f.workflow_id or "") for f in report.taken}
    assert results[str(inbox / "interior.pdf")]["sha256"] == _sha(good)
    assert results[shown]["outcome"] == "quarantined"
    assert "not valid UTF-8" in results[shown]["reason"]
    assert Path(results[shown]["local_path"]).read_bytes() == odd_data
    rows = {r.remote_path: r for r in world.rows("odd")}
    assert rows[shown].outcome is IntakeOutcome.QUARANTINED
    assert rows[shown].raw_name == odd.hex()
    assert rows[str(inbox / "interior.pdf")].outcome is IntakeOutcome.STORED
    [event] = world.app.store.list_audit(subject=f"odd:{shown}", action="intake.quarantined")
    assert event.details["raw_name"] == odd.hex()
    again = await world.poll("odd-in")
    assert again.errors == {} and again.taken == [] and len(again.known) == 2


async def test_hidden_files_links_and_folders_are_reported_once_per_version(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Left alone, as before, but never silently: each poll's report lists them with the
    reason, and the first poll that sees a version says so once (audit event, INFO line)."""
    inbox = world.folders["hider"]
    _put(inbox / ".draft.pdf", 100, age_s=30)
    (inbox / "chapters").mkdir()
    target = _put(world.root / "outside.pdf", 100, age_s=30)
    (inbox / "link.pdf").symlink_to(world.root / "outside.pdf")
    expected = {
        str(inbox / ".draft.pdf"): "a hidden file (its name starts with '.')",
        str(inbox / "chapters"): "a folder (an inbox takes the files directly in it)",
        str(inbox / "link.pdf"): "a symbolic link (an inbox takes regular files only)",
    }
    caplog.set_level("INFO", logger="consonance_sftp.app.intake")
    for _ in range(2):
        report = await world.poll("hider-in")
        assert {f.path: f.reason for f in report.ignored} == expected
        assert report.taken == [] and report.errors == {}
    events = [
        e
        for path in expected
        for e in world.app.store.list_audit(subject=f"hider:{path}", action="intake.ignored")
    ]
    assert sorted((e.subject, e.details["reason"]) for e in events) == sorted(
        (f"hider:{p}", r) for p, r in expected.items()
    )
    said = [r.getMessage() for r in caplog.records if "left" in r.getMessage()]
    assert len(said) == 3 and all("hider" in m for m in said)
    # A new version of the hidden file (it grew) is said once more; the others are not.
    with (inbox / ".draft.pdf").open("ab") as fh:
        fh.write(b"more")
    await world.poll("hider-in")
    hidden = world.app.store.list_audit(
        subject=f"hider:{inbox / '.draft.pdf'}", action="intake.ignored"
    )
    assert sorted(e.details["size"] for e in hidden) == [100, 104]
    assert world.rows("hider") == []  # nothing taken
    assert (world.root / "outside.pdf").read_bytes() == target


async def test_nfd_and_look_alike_names_are_noted_on_the_record(world: World) -> None:
    """An NFD name is stored under its own name, with a note (its NFC form) on the ledger row,
    the audit event and the ``run`` output; a name mixing look-alike scripts is quarantined
    (issue 14), the scripts named in its reason and its note."""
    import unicodedata

    from consonance_sftp.cli import service as cli_service

    inbox = world.folders["namer"]
    nfd = unicodedata.normalize("NFD", "Café crème.pdf")
    lookalike = "p\u0430yment.pdf"  # a Cyrillic "а" among Latin letters
    for name in (nfd, lookalike, "plain.pdf"):
        _put(inbox / name, 3000, age_s=30)
    report = await world.poll("namer-in")
    results = {Path(f.path).name: await world.result(f.workflow_id or "") for f in report.taken}
    assert {n: r["outcome"] for n, r in results.items()} == {
        **dict.fromkeys((nfd, "plain.pdf"), "stored"),
        lookalike: "quarantined",
    }
    assert results[lookalike]["reason_code"] == "name-mixed-scripts"
    assert "(Cyrillic, Latin)" in results[lookalike]["reason"]
    rows = {Path(r.remote_path).name: r for r in world.rows("namer")}
    assert rows[nfd].name_nfc == "Café crème.pdf" and rows[nfd].name_nfc != nfd
    assert rows[nfd].name_note and "not in NFC form" in rows[nfd].name_note
    assert rows[lookalike].name_note and "Cyrillic, Latin" in rows[lookalike].name_note
    assert rows["plain.pdf"].name_note is None and rows["plain.pdf"].name_nfc is None
    assert Path(rows[nfd].local_path or "").name == nfd  # kept under its own name
    [event] = world.app.store.list_audit(subject=f"namer:{inbox / nfd}", action="intake.stored")
    assert event.details["name_nfc"] == "Café crème.pdf"
    assert results[lookalike]["name_note"] == rows[lookalike].name_note

    with cli_service.console.capture() as captured:
        cli_service._print_inbox(
            report, {f.workflow_id or "": results[Path(f.path).name] for f in report.taken}
        )
    out = captured.get()
    assert "look-alike scripts (Cyrillic, Latin)" in out and "not in NFC form" in out, out


async def test_a_file_taken_during_a_pause_is_superseded_as_incomplete(world: World) -> None:
    """The partner wrote the first part, paused longer than ``stable_interval``, then wrote
    the rest. The first poll took the part (it looked finished); the next poll's version is
    recognised as the same growing file and the first marked ``superseded-incomplete``."""
    path = world.folders["grower"] / "index.pdf"
    whole = os.urandom(500_000)
    path.write_bytes(whole[:180_000])
    then = time.time() - 30
    os.utime(path, (then, then))
    first = await world.poll("grower-in")
    [taken] = first.taken
    part = await world.result(taken.workflow_id or "")
    assert (part["outcome"], part["size"], part["supersedes"]) == ("stored", 180_000, [])

    with path.open("ab") as fh:  # the partner goes on writing
        fh.write(whole[180_000:])
    os.utime(path, (then + 5, then + 5))
    second = await world.poll("grower-in")
    [taken] = second.taken
    full = await world.result(taken.workflow_id or "")
    assert full["sha256"] == _sha(whole)
    rows = {r.size: r for r in world.rows("grower")}
    assert rows[180_000].outcome is IntakeOutcome.SUPERSEDED_INCOMPLETE
    assert rows[180_000].reason and "still writing" in rows[180_000].reason
    assert full["supersedes"] == [rows[180_000].id]
    assert (rows[500_000].outcome, rows[500_000].supersedes) == (
        IntakeOutcome.STORED,
        rows[180_000].id,
    )
    [event] = world.app.store.list_audit(
        subject=f"grower:{path}", action="intake.superseded_incomplete"
    )
    assert event.details["intake_id"] == rows[180_000].id
    assert event.details["incomplete_sha256"] == _sha(whole[:180_000])


async def test_a_failed_post_action_raises_one_alert_with_the_reason(world: World) -> None:
    """The file is stored, but moving it on the server fails for good: one alert says so
    (with the partner, the path and the reason), not only a warning in the log."""
    path = world.folders["stuck"] / "jacket.pdf"
    data = _put(path, 4000, age_s=30)
    report = await world.poll("stuck-in")
    [taken] = report.taken
    result = await world.result(taken.workflow_id or "")
    assert "post-action failed" in result["error"]
    [row] = world.rows("stuck")
    assert row.outcome is IntakeOutcome.STORED and row.sha256 == _sha(data)
    [alert] = world.app.store.list_alerts(kind="intake_failed", partner="stuck")
    assert alert.flow == "stuck-in" and str(path) in alert.message
    assert "post-action failed" in alert.message
    assert path.read_bytes() == data  # still there, for the next try
